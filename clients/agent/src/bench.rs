//! The SPEC 8 benchmark: starts a release hub on a temporary SQLite database and an in-process
//! no-op server, drives both with the same load generator, and prints a table. It measures and
//! compares; it asserts nothing.
//!
//! Phases: (1) saturated `ReportProgress` throughput, hub vs no-op; (2) a paced fleet reporting
//! every 3 s, latency hub vs no-op; (3) `WatchJob` streams: update lag and hub memory; (4) rollup
//! of 24-hour jobs, then a storm of jobs ending at once under a paced fleet; (5) bytes stored per
//! finished job, read from the SQLite file header after a clean hub shutdown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::hub::{HubClient, HubOptions};
use crate::loadgen::{self, ms, running_report, terminal_report, Latencies, LoadReport};

/// What to run against.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The hub binary (`target/release/backwatch`); built with cargo when missing.
    pub hub_bin: PathBuf,
    /// A ~30 s smoke run with small numbers, for CI.
    pub quick: bool,
    /// Connections carrying `ReportProgress` load, the same for hub and no-op.
    pub connections: usize,
    /// `WatchJob` streams per connection (hyper's server default allows 200).
    pub streams_per_connection: usize,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Hub(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Connect(#[from] crate::hub::ConnectError),
}

/// Sizes of each phase.
struct Scale {
    interval: Duration,
    saturate_for: Duration,
    concurrency: usize,
    fleet_jobs: usize,
    fleet_for: Duration,
    watchers: usize,
    watch_for: Duration,
    rollup_jobs: usize,
    rollup_points: u64,
    storm_jobs: usize,
    storm_fleet: usize,
    storm_for: Duration,
    stored_jobs: usize,
    stored_points: u64,
}

impl Scale {
    fn new(quick: bool) -> Self {
        let s = Duration::from_secs;
        if quick {
            Scale {
                interval: s(1),
                saturate_for: s(3),
                concurrency: 32,
                fleet_jobs: 1_000,
                fleet_for: s(5),
                watchers: 500,
                watch_for: s(5),
                rollup_jobs: 1,
                rollup_points: 360,
                storm_jobs: 100,
                storm_fleet: 1_000,
                storm_for: s(5),
                stored_jobs: 100,
                stored_points: 40,
            }
        } else {
            Scale {
                interval: s(3),
                saturate_for: s(10),
                concurrency: 64,
                fleet_jobs: 50_000,
                fleet_for: s(24),
                watchers: 10_000,
                watch_for: s(18),
                rollup_jobs: 3,
                rollup_points: 2_880,
                storm_jobs: 1_000,
                storm_fleet: 10_000,
                storm_for: s(21),
                stored_jobs: 1_000,
                stored_points: 120,
            }
        }
    }
}

/// One row of the final table.
struct Row {
    metric: String,
    hub: String,
    noop: String,
    result: String,
    target: &'static str,
}

/// Runs every phase and prints the table. Takes under 3 minutes on 2 cores (`quick`: ~30 s).
pub async fn run(options: BenchOptions) -> Result<(), BenchError> {
    let scale = Scale::new(options.quick);
    let hub_bin = ensure_hub_binary(&options.hub_bin).await?;
    let dir = tempfile::Builder::new()
        .prefix("backwatch-bench")
        .tempdir()?;
    let db = dir.path().join("bench.db");
    let mut hub = HubProcess::start(&hub_bin, &db, &dir.path().join("hub.log")).await?;
    let noop_url = start_noop()?;
    println!(
        "hub {} (pid {}), no-op {noop_url}, database {}",
        hub.url,
        hub.pid,
        db.display()
    );
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut rows = Vec::new();
    let began = Instant::now();

    // 1. Saturated throughput.
    let (hubs, noops) = (
        clients(&hub.url, options.connections)?,
        clients(&noop_url, options.connections)?,
    );
    let warm = Duration::from_secs(1);
    println!(
        "\n[1] saturated ReportProgress, {} in flight over {} connections",
        scale.concurrency, options.connections
    );
    let h = loadgen::saturated(
        &hubs,
        &format!("sat-{stamp}"),
        scale.concurrency,
        scale.saturate_for,
        warm,
    )
    .await;
    println!("    hub   {}", h.summary());
    let n = loadgen::saturated(
        &noops,
        &format!("sat-{stamp}"),
        scale.concurrency,
        scale.saturate_for,
        warm,
    )
    .await;
    println!("    no-op {}", n.summary());
    let ratio = h.throughput() / n.throughput().max(1e-9);
    rows.push(Row {
        metric: "saturated throughput".into(),
        hub: format!("{:.0}/s", h.throughput()),
        noop: format!("{:.0}/s", n.throughput()),
        result: format!("ratio {ratio:.2} {}", verdict(ratio >= 0.9)),
        target: ">= 0.90",
    });

    // 2. Paced fleet.
    let warm = scale.interval * 2;
    println!(
        "\n[2] paced fleet: {} jobs every {:?} for {:?} (first {:?} not measured)",
        scale.fleet_jobs, scale.interval, scale.fleet_for, warm
    );
    let h = loadgen::paced(
        &hubs,
        &format!("fleet-{stamp}"),
        scale.fleet_jobs,
        scale.interval,
        scale.fleet_for,
        warm,
    )
    .await;
    println!("    hub   {}", h.summary());
    let n = loadgen::paced(
        &noops,
        &format!("fleet-{stamp}"),
        scale.fleet_jobs,
        scale.interval,
        scale.fleet_for,
        warm,
    )
    .await;
    println!("    no-op {}", n.summary());
    let (hl, nl) = (h.latencies(), n.latencies());
    let ratio = hl.quantile(0.99).as_secs_f64() / nl.quantile(0.99).as_secs_f64().max(1e-9);
    rows.push(Row {
        metric: format!("paced {} jobs: p50 latency", scale.fleet_jobs),
        hub: ms(hl.quantile(0.5)),
        noop: ms(nl.quantile(0.5)),
        result: String::new(),
        target: "",
    });
    rows.push(Row {
        metric: format!("paced {} jobs: p99 latency", scale.fleet_jobs),
        hub: ms(hl.quantile(0.99)),
        noop: ms(nl.quantile(0.99)),
        result: format!("{ratio:.2}x {}{}", verdict(ratio <= 1.5), errors_note(&h)),
        target: "<= 1.5x no-op",
    });

    // 3. Watchers.
    rows.extend(watch_phase(&hub, &options, &scale, stamp).await?);

    // 4. Rollup and storm.
    rows.extend(rollup_phase(&hubs, &scale, stamp).await);
    rows.extend(storm_phase(&hubs, &scale, stamp).await);

    // 5. Storage.
    hub.stop().await;
    let before = DbSize::read(&db)?;
    let mut hub = HubProcess::start(&hub_bin, &db, &dir.path().join("hub2.log")).await?;
    let written = store_jobs(&clients(&hub.url, options.connections)?, &scale, stamp).await;
    hub.stop().await;
    let after = DbSize::read(&db)?;
    println!(
        "\n[5] {} finished jobs of {} reports each: database {before} -> {after}{}",
        scale.stored_jobs, scale.stored_points, written
    );
    let per_job = after.used.saturating_sub(before.used) as f64 / scale.stored_jobs as f64;
    let growth = after.file.saturating_sub(before.file) as f64 * 1000.0 / scale.stored_jobs as f64;
    rows.push(Row {
        metric: "stored per finished job".into(),
        hub: format!("{:.0} B", per_job),
        noop: String::new(),
        result: verdict(per_job <= 6000.0).into(),
        target: "<= 6 KB",
    });
    rows.push(Row {
        metric: "database growth per 1,000 jobs".into(),
        hub: format!("{:.2} MB", growth / 1e6),
        noop: String::new(),
        result: String::new(),
        target: "",
    });

    print_table(&rows);
    println!("\nbenchmark took {:.0} s", began.elapsed().as_secs_f64());
    Ok(())
}

async fn watch_phase(
    hub: &HubProcess,
    options: &BenchOptions,
    scale: &Scale,
    stamp: u128,
) -> Result<Vec<Row>, BenchError> {
    let connections = scale
        .watchers
        .div_ceil(options.streams_per_connection.max(1));
    println!(
        "\n[3] {} WatchJob streams over {connections} connections on {} jobs reporting every {:?}",
        scale.watchers, scale.watchers, scale.interval
    );
    let rss_before = hub.rss_kb();
    let reporters = clients(&hub.url, 2)?;
    let watchers = clients(&hub.url, connections)?;
    let prefix = format!("watch-{stamp}");
    let lead = scale.interval + Duration::from_secs(1);
    let fleet_for = lead + scale.interval + scale.watch_for + Duration::from_secs(1);
    let fleet = {
        let prefix = prefix.clone();
        let jobs = scale.watchers;
        let interval = scale.interval;
        tokio::spawn(async move {
            loadgen::paced(&reporters, &prefix, jobs, interval, fleet_for, lead).await
        })
    };
    tokio::time::sleep(lead).await;
    let ids = (0..scale.watchers)
        .map(|i| format!("{prefix}-{i}"))
        .collect();
    let pid = hub.pid;
    let rss_peak = tokio::spawn(async move {
        let mut peak = 0;
        for _ in 0..(fleet_for - lead).as_secs() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(rss_kb(pid));
        }
        peak
    });
    let w = loadgen::watch(&watchers, ids, scale.interval, scale.watch_for).await;
    let fleet = fleet.await.expect("fleet task");
    let rss_peak = rss_peak.await.expect("rss task");
    println!(
        "    opened {} (failed {}{}), updates {}, missed ticks {}",
        w.opened,
        w.failed,
        w.first_error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
        w.updates,
        w.missed
    );
    println!("    first message {}", w.first_message.summary());
    println!("    update lag    {}", w.lag.summary());
    println!("    reporting fleet meanwhile {}", fleet.summary());
    println!(
        "    hub RSS {} MB before, {} MB peak",
        rss_before / 1024,
        rss_peak / 1024
    );
    Ok(vec![
        Row {
            metric: format!("{} watchers: update lag p50 / p99", scale.watchers),
            hub: format!("{} / {}", ms(w.lag.quantile(0.5)), ms(w.lag.quantile(0.99))),
            noop: String::new(),
            result: format!(
                "{}{}",
                verdict(
                    w.lag.quantile(0.99) < Duration::from_millis(250)
                        && w.failed == 0
                        && !w.lag.is_empty()
                ),
                if w.missed > 0 {
                    format!(" ({} missed ticks)", w.missed)
                } else {
                    String::new()
                }
            ),
            target: "p99 < 250 ms",
        },
        Row {
            metric: format!("{} watchers: hub RSS", scale.watchers),
            hub: format!("{} MB", rss_peak / 1024),
            noop: String::new(),
            result: format!("{} MB before", rss_before / 1024),
            target: "",
        },
    ])
}

/// Fills jobs with `points` snapshots 30 s apart ending now, then times each terminal report.
async fn rollup_phase(clients: &[HubClient], scale: &Scale, stamp: u128) -> Vec<Row> {
    let points = scale.rollup_points;
    println!(
        "\n[4a] rollup: {} job(s) of {points} snapshots 30 s apart",
        scale.rollup_jobs
    );
    let filled = Instant::now();
    let mut fills = JoinSet::new();
    for j in 0..scale.rollup_jobs {
        let mut client = clients[j % clients.len()].clone();
        let job_id = format!("rollup-{stamp}-{j}");
        fills.spawn(async move {
            let base = SystemTime::now() - Duration::from_secs(30 * (points - 1) + 20);
            let mut latencies = Vec::new();
            for i in 0..points {
                let at = base + Duration::from_secs(30 * i);
                let sent = Instant::now();
                if let Err(status) = client
                    .report_progress(running_report(&job_id, "rollup", i + 1, at))
                    .await
                {
                    println!("    fill of {job_id} failed at report {}: {status}", i + 1);
                    break;
                }
                latencies.push(sent.elapsed().as_micros() as u32);
            }
            (client, job_id, latencies)
        });
    }
    let mut jobs = Vec::new();
    let mut fill = Vec::new();
    while let Some(done) = fills.join_next().await {
        let (client, job_id, latencies) = done.expect("fill task");
        fill.extend(latencies);
        jobs.push((client, job_id));
    }
    let fill = Latencies::new(fill);
    println!(
        "    filled in {:.1} s; snapshot reports {}",
        filled.elapsed().as_secs_f64(),
        fill.summary()
    );
    let mut rollups = Vec::new();
    for (mut client, job_id) in jobs {
        let sent = Instant::now();
        match client
            .report_progress(terminal_report(
                &job_id,
                "rollup",
                points + 1,
                SystemTime::now(),
            ))
            .await
        {
            Ok(_) => rollups.push(sent.elapsed().as_micros() as u32),
            Err(status) => println!("    terminal report of {job_id} failed: {status}"),
        }
    }
    let rollups = Latencies::new(rollups);
    println!(
        "    terminal report round trip (rollup included) {}",
        rollups.summary()
    );
    vec![Row {
        metric: format!("rollup of {points} snapshots (terminal round trip)"),
        hub: ms(rollups.max()),
        noop: String::new(),
        result: format!(
            "{} (fill p50 {})",
            verdict(!rollups.is_empty() && rollups.max() < Duration::from_millis(20)),
            ms(fill.quantile(0.5))
        ),
        target: "< 20 ms",
    }]
}

/// A paced fleet runs; a batch of jobs with history ends all at once in its middle.
async fn storm_phase(clients: &[HubClient], scale: &Scale, stamp: u128) -> Vec<Row> {
    const HISTORY: u64 = 20;
    println!(
        "\n[4b] storm: {} jobs ending at once while {} jobs report every {:?}",
        scale.storm_jobs, scale.storm_fleet, scale.interval
    );
    let ids: Vec<String> = (0..scale.storm_jobs)
        .map(|i| format!("storm-{stamp}-{i}"))
        .collect();
    // History first: 20 reports 30 s apart in the past, 64 jobs at a time.
    let base = SystemTime::now() - Duration::from_secs(30 * HISTORY + 60);
    let mut fills = JoinSet::new();
    for (w, chunk) in ids.chunks(ids.len().div_ceil(64)).enumerate() {
        let mut client = clients[w % clients.len()].clone();
        let chunk = chunk.to_vec();
        fills.spawn(async move {
            for job_id in chunk {
                for i in 0..HISTORY {
                    let at = base + Duration::from_secs(30 * i);
                    let _ = client
                        .report_progress(running_report(&job_id, "storm", i + 1, at))
                        .await;
                }
            }
        });
    }
    while fills.join_next().await.is_some() {}

    let warm = scale.interval * 2;
    let fleet = {
        let clients = clients.to_vec();
        let (jobs, interval, run_for) = (scale.storm_fleet, scale.interval, scale.storm_for);
        let prefix = format!("stormfleet-{stamp}");
        tokio::spawn(async move {
            loadgen::paced(&clients, &prefix, jobs, interval, run_for, warm).await
        })
    };
    let fleet_started = Instant::now();
    let fire_after = warm + (scale.storm_for - warm) / 3;
    tokio::time::sleep(fire_after).await;
    let fired = fleet_started.elapsed();
    let mut storm = JoinSet::new();
    for (i, job_id) in ids.into_iter().enumerate() {
        let mut client = clients[i % clients.len()].clone();
        storm.spawn(async move {
            let sent = Instant::now();
            let result = client
                .report_progress(terminal_report(
                    &job_id,
                    "storm",
                    HISTORY + 1,
                    SystemTime::now(),
                ))
                .await;
            result.map(|_| sent.elapsed().as_micros() as u32)
        });
    }
    let (mut enders, mut failed) = (Vec::new(), 0);
    while let Some(done) = storm.join_next().await {
        match done.expect("storm task") {
            Ok(micros) => enders.push(micros),
            Err(_) => failed += 1,
        }
    }
    let storm_end = fleet_started.elapsed();
    let enders = Latencies::new(enders);
    let fleet = fleet.await.expect("fleet task");
    let calm = fleet.latencies_between(warm, fired);
    let during = fleet.latencies_between(fired, storm_end + Duration::from_secs(1));
    println!(
        "    storm took {} ; terminal reports {}{}",
        ms(storm_end - fired),
        enders.summary(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    println!("    fleet before the storm {}", calm.summary());
    println!("    fleet during the storm {}", during.summary());
    println!("    fleet whole run {}", fleet.summary());
    vec![Row {
        metric: format!("report p99 before / during storm of {}", scale.storm_jobs),
        hub: format!(
            "{} / {}",
            ms(calm.quantile(0.99)),
            ms(during.quantile(0.99))
        ),
        noop: String::new(),
        result: format!(
            "storm {} ; enders p99 {}",
            ms(storm_end - fired),
            ms(enders.quantile(0.99))
        ),
        target: "p99 not raised",
    }]
}

/// Writes `stored_jobs` finished jobs of `stored_points` snapshots each (64 jobs at a time).
async fn store_jobs(clients: &[HubClient], scale: &Scale, stamp: u128) -> String {
    let points = scale.stored_points;
    let started = Instant::now();
    let mut workers = JoinSet::new();
    let per_worker = scale.stored_jobs.div_ceil(64);
    for w in 0..scale.stored_jobs.div_ceil(per_worker) {
        let mut client = clients[w % clients.len()].clone();
        let jobs: Vec<String> = (w * per_worker..((w + 1) * per_worker).min(scale.stored_jobs))
            .map(|j| format!("stored-{stamp}-{j}"))
            .collect();
        workers.spawn(async move {
            let mut failed = 0;
            for job_id in jobs {
                let machine = loadgen::machine_of("stored", job_id.len());
                let base = SystemTime::now() - Duration::from_secs(30 * points + 60);
                for i in 0..points {
                    let at = base + Duration::from_secs(30 * i);
                    failed += client
                        .report_progress(running_report(&job_id, &machine, i + 1, at))
                        .await
                        .is_err() as u32;
                }
                let end = terminal_report(
                    &job_id,
                    &machine,
                    points + 1,
                    base + Duration::from_secs(30 * points),
                );
                failed += client.report_progress(end).await.is_err() as u32;
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(f) = workers.join_next().await {
        failed += f.expect("store task");
    }
    format!(
        " (written in {:.1} s{})",
        started.elapsed().as_secs_f64(),
        if failed > 0 {
            format!(", {failed} reports failed")
        } else {
            String::new()
        }
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn errors_note(report: &LoadReport) -> String {
    if report.errors > 0 {
        format!(" ({} errors)", report.errors)
    } else {
        String::new()
    }
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.metric.len()).max().unwrap_or(0);
    println!(
        "\n{:w$}  {:>22}  {:>12}  {:15}  result",
        "metric", "hub", "no-op", "target"
    );
    println!("{}", "-".repeat(w + 80));
    for r in rows {
        println!(
            "{:w$}  {:>22}  {:>12}  {:15}  {}",
            r.metric, r.hub, r.noop, r.target, r.result
        );
    }
}

fn clients(url: &str, connections: usize) -> Result<Vec<HubClient>, BenchError> {
    let options = HubOptions::new(url);
    Ok((0..connections.max(1))
        .map(|_| options.client())
        .collect::<Result<_, _>>()?)
}

/// Starts the no-op server on its own 2-thread runtime (like a separate process would have) and
/// returns its URL.
fn start_noop() -> Result<String, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("no-op listener");
            let _ = crate::noop::serve(listener, std::future::pending()).await;
        })
    });
    Ok(url)
}

/// The hub binary, built with `cargo build --release -p backwatch` when it is missing.
async fn ensure_hub_binary(path: &Path) -> Result<PathBuf, BenchError> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [path.to_path_buf(), workspace.join(path)];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    println!(
        "{} not found: running `cargo build --release -p backwatch`",
        path.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "backwatch"])
        .current_dir(&workspace)
        .status()
        .await?;
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) if status.success() => Ok(found.clone()),
        _ => Err(BenchError::Hub(format!(
            "no hub binary at {}; build it with `cargo build --release -p backwatch` or pass --hub-bin",
            path.display()
        ))),
    }
}

/// A hub child process with its log going to a file.
struct HubProcess {
    child: Child,
    pid: u32,
    url: String,
}

impl HubProcess {
    /// Starts `backwatch serve` on port 0 and waits for its "listening on" line.
    async fn start(bin: &Path, db: &Path, log: &Path) -> Result<HubProcess, BenchError> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
            .arg(format!("sqlite://{}", db.display()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Hub(format!("cannot start {}: {e}", bin.display())))?;
        let pid = child.id().unwrap_or(0);
        let (found, mut url) = mpsc::channel(2);
        let file = tokio::fs::File::create(log).await?;
        let (lines_tx, mut lines_rx) = mpsc::unbounded_channel::<String>();
        for pipe in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (found, lines_tx) = (found.clone(), lines_tx.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(u) = listening_url(&line) {
                        let _ = found.try_send(u);
                    }
                    let _ = lines_tx.send(line);
                }
            });
        }
        // Keeps the hub's pipes drained into the log file, so it never blocks on logging.
        tokio::spawn(async move {
            let mut file = tokio::io::BufWriter::new(file);
            while let Some(line) = lines_rx.recv().await {
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
                let _ = file.flush().await;
            }
        });
        drop(found);
        match tokio::time::timeout(Duration::from_secs(60), url.recv()).await {
            Ok(Some(url)) => Ok(HubProcess { child, pid, url }),
            _ => {
                let _ = child.kill().await;
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                Err(BenchError::Hub(format!(
                    "the hub did not log `listening on http://…` within 60 s; its last lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )))
            }
        }
    }

    fn rss_kb(&self) -> u64 {
        rss_kb(self.pid)
    }

    /// SIGTERM, then up to 30 s for a clean shutdown (which checkpoints SQLite), then SIGKILL.
    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            println!("    hub did not stop within 30 s of SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// `http://127.0.0.1:PORT` from a log line containing `listening on http://127.0.0.1:PORT`.
pub fn listening_url(line: &str) -> Option<String> {
    let clean = strip_ansi(line);
    let rest = &clean[clean.find("listening on ")? + "listening on ".len()..];
    let start = rest.find("http")?;
    let url: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/.[]-".contains(*c))
        .collect();
    let port = url.rsplit(':').next()?;
    (url.starts_with("http") && !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
        .then_some(url)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @–~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Resident memory of a process in kB, from /proc (0 when unknown).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Size of an SQLite database: bytes on disk (file + WAL) and bytes in use (pages minus free
/// pages, from the file header, exact once the WAL is checkpointed).
#[derive(Debug, Clone, Copy)]
struct DbSize {
    file: u64,
    wal: u64,
    used: u64,
}

impl DbSize {
    fn read(db: &Path) -> Result<DbSize, BenchError> {
        let bytes = std::fs::read(db)?;
        let wal = std::fs::metadata(format!("{}-wal", db.display()))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(DbSize {
            file: bytes.len() as u64,
            wal,
            used: sqlite_used_bytes(&bytes).unwrap_or(bytes.len() as u64),
        })
    }
}

impl std::fmt::Display for DbSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} MB file, {:.2} MB used",
            self.file as f64 / 1e6,
            self.used as f64 / 1e6
        )?;
        if self.wal > 0 {
            write!(
                f,
                " (+{:.2} MB WAL not checkpointed: figures are approximate)",
                self.wal as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

/// (page count − freelist pages) × page size, from the 100-byte SQLite header.
pub fn sqlite_used_bytes(file: &[u8]) -> Option<u64> {
    if file.len() < 100 || !file.starts_with(b"SQLite format 3\0") {
        return None;
    }
    let be32 = |at: usize| u64::from(u32::from_be_bytes(file[at..at + 4].try_into().unwrap()));
    let page_size = match u16::from_be_bytes([file[16], file[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    Some((be32(28).saturating_sub(be32(36))) * page_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_url_in_plain_json_and_coloured_log_lines() {
        let want = Some("http://127.0.0.1:41234".to_string());
        assert_eq!(
            listening_url("INFO backwatch: listening on http://127.0.0.1:41234"),
            want
        );
        assert_eq!(
            listening_url(r#"{"fields":{"message":"listening on http://127.0.0.1:41234"}}"#),
            want
        );
        assert_eq!(
            listening_url("\u{1b}[32m INFO\u{1b}[0m listening on http://127.0.0.1:41234 grpc=true"),
            want
        );
        assert_eq!(listening_url("listening on http://127.0.0.1:"), None);
        assert_eq!(listening_url("starting"), None);
    }

    #[test]
    fn used_bytes_come_from_page_and_freelist_counts() {
        let mut header = vec![0u8; 100];
        header[..16].copy_from_slice(b"SQLite format 3\0");
        header[16..18].copy_from_slice(&4096u16.to_be_bytes());
        header[28..32].copy_from_slice(&10u32.to_be_bytes());
        header[36..40].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(sqlite_used_bytes(&header), Some(7 * 4096));
        assert_eq!(sqlite_used_bytes(b"not a database"), None);
    }
}
