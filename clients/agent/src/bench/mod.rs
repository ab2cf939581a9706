//! The SPEC 8 benchmark: starts a release hub on a temporary SQLite database (or a fresh
//! PostgreSQL database, created and dropped with `psql`) and a no-op server process beside it,
//! drives both with the same load generator, and prints a table. It measures and compares; it
//! asserts nothing about time. It fails only when a phase cannot run (the hub does not start,
//! every call of a phase fails).
//!
//! Phases: (1) saturated `ReportProgress` throughput, hub vs no-op; (2) a paced fleet reporting
//! every 3 s, latency hub vs no-op; (3) `WatchJob` streams: update lag and hub memory; (4) rollup
//! of 24-hour jobs, then a storm of jobs ending at once under a paced fleet; (5) bytes stored per
//! finished job, read from the SQLite files (header and WAL) after a clean hub shutdown, or on
//! PostgreSQL from `pg_database_size` and `pg_column_size` of the finished jobs' rows.

mod db_size;
mod hub_process;
mod postgres;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;

use crate::hub::{HubClient, HubOptions};
use crate::loadgen::{self, ms, running_report, terminal_report, Latencies, LoadReport, Resume};
use crate::wire::ReportLine;
use hub_process::{ensure_hub_binary, rss_kb, ServerProcess};
use postgres::BenchDatabase;

/// What to run against.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The hub binary (`target/release/backwatch`); built with cargo when missing.
    pub hub_bin: PathBuf,
    /// A ~30 s smoke run with small numbers, for CI.
    pub quick: bool,
    /// Connections carrying `ReportProgress` load, the same for hub and no-op.
    pub connections: usize,
    /// `WatchJob` streams per connection (the hub allows 256 by default).
    pub streams_per_connection: usize,
    /// Keep the temporary directory (database, hub logs) for a look afterwards.
    pub keep: bool,
    /// `postgres://…` to run on a fresh PostgreSQL database `backwatch_bench_<pid>` created on
    /// that server (dropped at the end); `None` for a fresh SQLite file in the temp directory.
    pub database_url: Option<String>,
    /// The phases to run; empty: all of them.
    pub only: Vec<Phase>,
}

/// A phase of the benchmark, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// (1) saturated throughput.
    Saturated,
    /// (2) the paced fleets.
    Paced,
    /// (3) WatchJob streams.
    Watch,
    /// (4a) rollup of 24-hour jobs.
    Rollup,
    /// (4b) a storm of jobs ending at once.
    Storm,
    /// (5) bytes stored per finished job.
    Storage,
}

impl BenchOptions {
    fn runs(&self, phase: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&phase)
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Hub(String),
    #[error("{0}")]
    Database(String),
    #[error("phases that could not run: {}", .0.join("; "))]
    Phases(Vec<String>),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Connect(#[from] crate::hub::ConnectError),
    #[error(transparent)]
    Line(#[from] crate::wire::LineError),
}

/// Sizes of each phase.
struct Scale {
    interval: Duration,
    saturate_for: Duration,
    concurrency: usize,
    /// Paced fleets, each run against hub and no-op: the SPEC's 50,000, and one the load
    /// generator and no-op can carry on a shared 2-core machine with room to spare.
    fleets: Vec<usize>,
    /// Paced reporting time of each side (hub, no-op), split into turns.
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
                fleets: vec![1_000],
                fleet_for: s(6),
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
                saturate_for: s(8),
                concurrency: 64,
                fleets: vec![20_000, 50_000],
                fleet_for: s(18),
                watchers: 10_000,
                watch_for: s(15),
                rollup_jobs: 3,
                rollup_points: 2_880,
                storm_jobs: 1_000,
                storm_fleet: 10_000,
                storm_for: s(7),
                // 80-minute jobs: more points than a curve keeps, the worst case for a record.
                stored_jobs: 300,
                stored_points: 160,
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
    let hub_bin = ensure_hub_binary(&options.hub_bin).await?;
    let dir = tempfile::Builder::new()
        .prefix("backwatch-bench")
        .tempdir()?;
    // The PostgreSQL database is dropped when `db` goes out of scope: on success, on error and
    // on a panic alike (unless --keep).
    let db = BenchDatabase::create(options.database_url.as_deref(), dir.path(), options.keep)?;
    let result = run_on(&options, &hub_bin, &db, dir.path()).await;
    if options.keep {
        println!("\ndatabase and hub logs kept in {}", dir.keep().display());
        if let Some(url) = db.postgres_url() {
            println!("PostgreSQL database kept: {url}");
        }
    }
    result
}

async fn run_on(
    options: &BenchOptions,
    hub_bin: &std::path::Path,
    db: &BenchDatabase,
    dir: &std::path::Path,
) -> Result<(), BenchError> {
    let scale = Scale::new(options.quick);
    let mut hub = ServerProcess::start(hub_bin, &db.hub_url(), &dir.join("hub.log")).await?;
    let noop = ServerProcess::noop(&dir.join("noop.log")).await?;
    let noop_url = noop.url.clone();
    println!(
        "hub {} (pid {}), no-op {noop_url} (pid {}), database {} {}",
        hub.url,
        hub.pid,
        noop.pid,
        db.engine(),
        db.describe()
    );
    let mut broken = Vec::new();
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut rows = Vec::new();
    let began = Instant::now();

    // 1. Saturated throughput.
    let (hubs, noops) = (
        lines(&hub.url, options.connections).await?,
        lines(&noop_url, options.connections).await?,
    );
    if options.runs(Phase::Saturated) {
        println!(
            "\n[1] saturated ReportProgress, {} in flight over {} connections, hub and no-op alternating",
            scale.concurrency, options.connections
        );
        rows.push(saturated_phase(&hubs, &noops, &scale, stamp, &mut broken).await);
    }

    // 2. Paced fleets.
    if options.runs(Phase::Paced) {
        for &jobs in &scale.fleets {
            rows.extend(paced_phase(&hubs, &noops, &scale, jobs, stamp, &mut broken).await);
        }
    }

    // 3. Watchers.
    if options.runs(Phase::Watch) {
        rows.extend(watch_phase(&hub, options, &scale, stamp, &mut broken).await?);
        settle(&hubs, &format!("watch-{stamp}")).await;
    }

    // 4. Rollup and storm.
    if options.runs(Phase::Rollup) {
        rows.extend(rollup_phase(&hubs, &scale, stamp, &mut broken).await);
    }
    if options.runs(Phase::Storm) {
        // The ending jobs are other agents than the running fleet's: they report over
        // connections of their own, so the fleet's calls do not queue behind theirs.
        let enders = (
            lines(&hub.url, options.connections).await?,
            lines(&noop_url, options.connections).await?,
        );
        rows.extend(storm_phase(&hubs, &noops, &enders, &scale, stamp, &mut broken).await);
    }

    // 5. Storage.
    hub.stop().await;
    if options.runs(Phase::Storage) {
        rows.extend(storage_phase(options, hub_bin, db, dir, &scale, stamp, &mut broken).await?);
    }

    print_table(db.engine(), &rows);
    if options.runs(Phase::Storage) {
        println!("\n{}", db.size_note());
    }
    println!("\nbenchmark took {:.0} s", began.elapsed().as_secs_f64());
    if broken.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Phases(broken))
    }
}

/// Saturated throughput, hub against no-op.
async fn saturated_phase(
    hubs: &[ReportLine],
    noops: &[ReportLine],
    scale: &Scale,
    stamp: u128,
    broken: &mut Vec<String>,
) -> Row {
    let (h, n) = saturated_alternating(hubs, noops, scale, stamp).await;
    println!("    hub   {}", h.summary());
    println!("    no-op {}", n.summary());
    check(
        broken,
        "saturated: no hub report answered",
        h.samples.is_empty(),
    );
    check(
        broken,
        "saturated: no no-op report answered",
        n.samples.is_empty(),
    );
    let ratio = h.throughput() / n.throughput().max(1e-9);
    Row {
        metric: "saturated throughput".into(),
        hub: format!("{:.0}/s", h.throughput()),
        noop: format!("{:.0}/s", n.throughput()),
        result: format!("ratio {ratio:.2} {}", verdict(ratio >= 0.9)),
        target: ">= 0.90",
    }
}

/// Finished jobs written to a restarted hub; bytes per job and growth, read after it stops.
async fn storage_phase(
    options: &BenchOptions,
    hub_bin: &std::path::Path,
    db: &BenchDatabase,
    dir: &std::path::Path,
    scale: &Scale,
    stamp: u128,
    broken: &mut Vec<String>,
) -> Result<Vec<Row>, BenchError> {
    let before = db.size().await?;
    let mut hub = ServerProcess::start(hub_bin, &db.hub_url(), &dir.join("hub2.log")).await?;
    let (written, failed) =
        store_jobs(&lines(&hub.url, options.connections).await?, scale, stamp).await;
    let total = scale.stored_jobs as u64 * (scale.stored_points + 1);
    check(broken, "storage: every report failed", failed >= total);
    let row_bytes = db.finished_row_bytes(&format!("stored-{stamp}-")).await?;
    hub.stop().await;
    let after = db.size().await?;
    println!(
        "\n[5] {} finished jobs of {} reports each: database {before} -> {after}{}",
        scale.stored_jobs, scale.stored_points, written
    );
    let growth = after.file.saturating_sub(before.file) as f64 * 1000.0 / scale.stored_jobs as f64;
    let per_job = match row_bytes {
        // PostgreSQL: the finished job's row as stored (compressed record included); its
        // snapshots are deleted by the rollup, so the row is all a finished job keeps.
        Some(bytes) => {
            println!("    average stored row of these jobs (pg_column_size): {bytes:.0} B");
            bytes
        }
        None => after.used.saturating_sub(before.used) as f64 / scale.stored_jobs as f64,
    };
    Ok(vec![
        Row {
            metric: "stored per finished job".into(),
            hub: format!("{:.0} B", per_job),
            noop: String::new(),
            result: verdict(per_job <= 6000.0).into(),
            target: "<= 6 KB",
        },
        Row {
            metric: "database growth per 1,000 jobs".into(),
            hub: format!("{:.2} MB", growth / 1e6),
            noop: String::new(),
            result: String::new(),
            target: "",
        },
    ])
}

/// Records a phase that could not run (every call failed); a missed target is never one.
fn check(broken: &mut Vec<String>, what: &str, failed: bool) {
    if failed {
        println!("    PHASE COULD NOT RUN: {what}");
        broken.push(what.to_string());
    }
}

/// A fleet of `jobs` reporting every interval, first against the hub, then the no-op.
async fn paced_phase(
    hubs: &[ReportLine],
    noops: &[ReportLine],
    scale: &Scale,
    jobs: usize,
    stamp: u128,
    broken: &mut Vec<String>,
) -> Vec<Row> {
    let offered = jobs as f64 / scale.interval.as_secs_f64();
    let slice = scale.fleet_for / PACED_ROUNDS as u32;
    println!(
        "\n[2] paced fleet: {jobs} jobs created, then reporting every {:?} ({offered:.0} reports/s offered), \
         hub and no-op taking turns of {slice:?} ({PACED_ROUNDS} each, first {TURN_WARMUP:?} of a turn not measured)",
        scale.interval
    );
    let prefix = format!("fleet{jobs}-{stamp}");
    let mut created = Vec::new();
    for (name, clients) in [("hub", hubs), ("no-op", noops)] {
        let c = loadgen::create_jobs(clients, &prefix, jobs, 256).await;
        println!(
            "    {name:5} created {jobs} jobs in {:.1} s ({:.0}/s, {})",
            c.window.as_secs_f64(),
            c.throughput(),
            c.latencies().summary()
        );
        created.push(c);
    }
    let hub_created = created.swap_remove(0);
    settle(hubs, &prefix).await;
    // Turns hub, no-op, no-op, hub, …: a change in what else the machine does weighs on both
    // alike. The same jobs report again each turn, their sequence numbers moved well past the
    // previous turn's and their clock held back by the time they were paused.
    let (mut h, mut n) = (LoadReport::default(), LoadReport::default());
    // Each turn's p99, shown beside the pooled verdict: one disturbed turn on either side
    // moves the pooled p99s, and the table should show when it did.
    let mut turn_p99s: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut paused: [(Duration, Option<Instant>); 2] = [(Duration::ZERO, None); 2];
    for round in 0..PACED_ROUNDS {
        for on_hub in turn_order(round) {
            let clients = if on_hub { hubs } else { noops };
            let (behind, since) = &mut paused[usize::from(on_hub)];
            *behind += since.map_or(Duration::ZERO, |t| t.elapsed());
            let resume = Resume {
                sequence: 2 + round as u64 * 1_000,
                clock_behind: *behind,
            };
            let turn = loadgen::paced(
                clients,
                &prefix,
                jobs,
                resume,
                scale.interval,
                slice,
                TURN_WARMUP,
            )
            .await;
            println!(
                "    {:5} {}",
                if on_hub { "hub" } else { "no-op" },
                turn.summary()
            );
            *since = Some(Instant::now());
            turn_p99s[usize::from(on_hub)].push(ms(turn.latencies().quantile(0.99)));
            if on_hub {
                h.absorb(turn);
            } else {
                n.absorb(turn);
            }
        }
    }
    // A hub too slow for the fleet (every paced report timing out) misses a target; it is
    // broken only when it answered nothing at all, job creation included.
    let what = format!("paced {jobs}: no hub report answered, creation included");
    check(
        broken,
        &what,
        h.samples.is_empty() && hub_created.samples.is_empty(),
    );
    let what = format!("paced {jobs}: no no-op report answered");
    check(broken, &what, n.samples.is_empty());
    let (hl, nl) = (h.latencies(), n.latencies());
    let ratio = hl.quantile(0.99).as_secs_f64() / nl.quantile(0.99).as_secs_f64().max(1e-9);
    // When even the no-op cannot take the offered rate, the machine (load generator included)
    // is saturated and the comparison says little about the hub.
    let saturated = n.throughput() < offered * 0.95 || n.skipped > 0 || n.errors > 0;
    let mut notes = errors_note(&h);
    if saturated {
        notes.push_str(&format!(
            " (no-op took {:.0}/s of {offered:.0}/s: machine saturated)",
            n.throughput()
        ));
    } else if h.throughput() < offered * 0.95 {
        notes.push_str(&format!(
            " (hub took {:.0}/s of {offered:.0}/s)",
            h.throughput()
        ));
    }
    vec![
        Row {
            metric: format!("create {jobs} jobs"),
            hub: format!("{:.0}/s", hub_created.throughput()),
            noop: String::new(),
            result: format!(
                "in {:.1} s{}",
                hub_created.window.as_secs_f64(),
                errors_note(&hub_created)
            ),
            target: "",
        },
        Row {
            metric: format!("paced {jobs} jobs: p50 latency"),
            hub: ms(hl.quantile(0.5)),
            noop: ms(nl.quantile(0.5)),
            result: String::new(),
            target: "",
        },
        Row {
            metric: format!("paced {jobs} jobs: p99 latency"),
            hub: ms(hl.quantile(0.99)),
            noop: ms(nl.quantile(0.99)),
            result: format!(
                "{ratio:.2}x {}{notes} (turns: hub {}, no-op {})",
                verdict(ratio <= 1.5 && h.errors == 0),
                turn_p99s[1].join(" / "),
                turn_p99s[0].join(" / ")
            ),
            target: "<= 1.5x no-op",
        },
    ]
}

/// Whether the hub goes first (`true`) or second in round `round`: hub, no-op, no-op, hub, …
/// so that a change in what else the machine does weighs on both alike.
fn turn_order(round: usize) -> [bool; 2] {
    let hub_first = round.is_multiple_of(2);
    [hub_first, !hub_first]
}

/// Turns each of hub and no-op takes in a paced phase: more, shorter turns spread what else the
/// machine does over both sides more evenly. A turn lasts a whole number of intervals (6 s), so
/// the paused fleet resumes each job where its own 3-s cycle stood.
const PACED_ROUNDS: usize = 3;

/// Not measured at the start of a paced turn: the server sat idle through the other side's
/// turn. (There is no snapshot burst to skip: the fleet's clock is held back by its pause, so
/// no job became due for a snapshot while silent.)
const TURN_WARMUP: Duration = Duration::from_secs(1);

/// Waits until the hub has worked off what a phase queued (at most 30 s): a job creation, which
/// waits for its commit behind every queued write, answers within 20 ms.
async fn settle(hubs: &[ReportLine], prefix: &str) {
    let started = Instant::now();
    let client = &hubs[0];
    for k in 0.. {
        let probe = running_report(
            &format!("{prefix}-settle-{k}"),
            "settle",
            1,
            SystemTime::now(),
        );
        let sent = Instant::now();
        let answered = client.report(&probe).await.is_ok();
        if (answered && sent.elapsed() < Duration::from_millis(20))
            || started.elapsed() > Duration::from_secs(30)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if started.elapsed() > Duration::from_secs(1) {
        println!(
            "    (the hub took {:.1} s to work off its backlog)",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Saturated load in four slices, hub, no-op, no-op, hub, so that a change in what else the
/// machine is doing weighs on both alike.
async fn saturated_alternating(
    hubs: &[ReportLine],
    noops: &[ReportLine],
    scale: &Scale,
    stamp: u128,
) -> (LoadReport, LoadReport) {
    let (mut hub, mut noop) = (LoadReport::default(), LoadReport::default());
    let slice = scale.saturate_for / 2;
    for (k, on_hub) in [true, false, false, true].into_iter().enumerate() {
        let clients = if on_hub { hubs } else { noops };
        let prefix = format!("sat-{stamp}-{k}");
        let run = loadgen::saturated(
            clients,
            &prefix,
            scale.concurrency,
            slice,
            Duration::from_millis(500),
        )
        .await;
        if on_hub { &mut hub } else { &mut noop }.absorb(run);
    }
    (hub, noop)
}

async fn watch_phase(
    hub: &ServerProcess,
    options: &BenchOptions,
    scale: &Scale,
    stamp: u128,
    broken: &mut Vec<String>,
) -> Result<Vec<Row>, BenchError> {
    let connections = scale
        .watchers
        .div_ceil(options.streams_per_connection.max(1));
    println!(
        "\n[3] {} WatchJob streams over {connections} connections on {} jobs reporting every {:?}",
        scale.watchers, scale.watchers, scale.interval
    );
    let rss_before = hub.rss_kb();
    let reporters = lines(&hub.url, 2).await?;
    let watchers = watch_clients(&hub.url, connections)?;
    let prefix = format!("watch-{stamp}");
    loadgen::create_jobs(&reporters, &prefix, scale.watchers, 256).await;
    settle(&reporters, &prefix).await;
    let lead = Duration::from_secs(1);
    let fleet_for = lead + scale.interval + scale.watch_for + Duration::from_secs(1);
    let fleet = {
        let prefix = prefix.clone();
        let jobs = scale.watchers;
        let interval = scale.interval;
        tokio::spawn(async move {
            loadgen::paced(
                &reporters,
                &prefix,
                jobs,
                Resume::at(2),
                interval,
                fleet_for,
                lead,
            )
            .await
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
    check(broken, "watch: no stream opened", w.opened == 0);
    check(broken, "watch: no update received", w.lag.is_empty());
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
async fn rollup_phase(
    clients: &[ReportLine],
    scale: &Scale,
    stamp: u128,
    broken: &mut Vec<String>,
) -> Vec<Row> {
    let points = scale.rollup_points;
    println!(
        "\n[4a] rollup: {} job(s) of {points} snapshots 30 s apart",
        scale.rollup_jobs
    );
    let filled = Instant::now();
    let mut fills = JoinSet::new();
    for j in 0..scale.rollup_jobs {
        let client = clients[j % clients.len()].clone();
        let job_id = format!("rollup-{stamp}-{j}");
        fills.spawn(async move {
            let base = SystemTime::now() - Duration::from_secs(30 * (points - 1) + 20);
            let mut latencies = Vec::new();
            for i in 0..points {
                let at = base + Duration::from_secs(30 * i);
                let sent = Instant::now();
                if let Err(status) = client
                    .report(&running_report(&job_id, "rollup", i + 1, at))
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
    // A 24-hour job's snapshots were stored long before it ends; the fill took seconds, and a
    // hub may still be storing its last ones (SQLite: moving them from the snapshot journal
    // into the table). What is measured is the rollup, not that backlog.
    settle(clients, &format!("rollup-{stamp}")).await;
    let mut rollups = Vec::new();
    for (client, job_id) in jobs {
        let sent = Instant::now();
        match client
            .report(&terminal_report(
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
    check(
        broken,
        "rollup: no terminal report answered",
        rollups.is_empty(),
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
async fn storm_phase(
    hubs: &[ReportLine],
    noops: &[ReportLine],
    (hub_enders, noop_enders): &(Vec<ReportLine>, Vec<ReportLine>),
    scale: &Scale,
    stamp: u128,
    broken: &mut Vec<String>,
) -> Vec<Row> {
    println!(
        "\n[4b] storm: {} jobs ending at once while {} jobs report every {:?}, {STORMS} storms each \
         on hub and no-op (hub, no-op, no-op, hub)",
        scale.storm_jobs, scale.storm_fleet, scale.interval
    );
    // A storm's fleet p99 is decided by the few dozen reports the burst of endings touches,
    // so one storm a side gives a wide spread; the storms' reports are pooled, each storm's
    // p99 shown beside the verdict as the paced turns' are.
    // Index 1: the hub's storms, 0: the no-op's.
    let mut runs: [Vec<Storm>; 2] = [Vec::new(), Vec::new()];
    for round in 0..STORMS {
        for on_hub in turn_order(round) {
            let prefix = format!("storm-{stamp}-{round}");
            let (clients, enders) = if on_hub {
                (hubs, hub_enders)
            } else {
                (noops, noop_enders)
            };
            let run = storm(clients, enders, scale, &prefix, on_hub).await;
            let name = if on_hub { "hub" } else { "no-op" };
            println!(
                "    {name:5} storm took {} ; terminal reports {}{}",
                ms(run.took),
                run.enders.summary(),
                match run.failed {
                    0 => String::new(),
                    n => format!(", {n} failed"),
                }
            );
            println!("    {name:5} fleet before the storm {}", run.calm.summary());
            println!(
                "    {name:5} fleet during the storm {}",
                run.during.summary()
            );
            runs[usize::from(on_hub)].push(run);
        }
    }
    let storm_p99s = |side: &[Storm]| {
        side.iter()
            .map(|run| ms(run.during.quantile(0.99)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let p99s = [storm_p99s(&runs[0]), storm_p99s(&runs[1])];
    let [noop, hub] = runs.map(|side| {
        side.into_iter()
            .reduce(Storm::pooled)
            .expect("at least one storm")
    });
    check(
        broken,
        "storm: no terminal report answered",
        hub.enders.is_empty(),
    );
    check(
        broken,
        "storm: no fleet report answered",
        hub.during.is_empty() && hub.calm.is_empty(),
    );
    let ratio = hub.during.quantile(0.99).as_secs_f64()
        / noop.during.quantile(0.99).as_secs_f64().max(1e-9);
    vec![Row {
        metric: format!("report p99 during a storm of {} endings", scale.storm_jobs),
        hub: format!(
            "{} (before {})",
            ms(hub.during.quantile(0.99)),
            ms(hub.calm.quantile(0.99))
        ),
        noop: ms(noop.during.quantile(0.99)),
        result: format!(
            "{ratio:.2}x {} (storms: hub {}, no-op {} ; longest storm {} ; enders p99 {})",
            verdict(ratio <= 1.5),
            p99s[1],
            p99s[0],
            ms(hub.took),
            ms(hub.enders.quantile(0.99))
        ),
        target: "<= 1.5x no-op",
    }]
}

/// Storms each of hub and no-op takes, in turns (hub, no-op, no-op, hub).
const STORMS: usize = 2;

/// What one storm run measured, or several pooled.
struct Storm {
    /// Terminal reports of the ending jobs.
    enders: Latencies,
    failed: usize,
    /// From the first terminal report sent to the last answered (pooled: the longest).
    took: Duration,
    /// Fleet reports sent before the storm (after the warm-up), and from its start to 1 s
    /// after its end.
    calm: Latencies,
    during: Latencies,
}

impl Storm {
    fn pooled(self, other: Storm) -> Storm {
        Storm {
            enders: self.enders.pooled(other.enders),
            failed: self.failed + other.failed,
            took: self.took.max(other.took),
            calm: self.calm.pooled(other.calm),
            during: self.during.pooled(other.during),
        }
    }
}

/// Jobs with 20 stored snapshots each end at once, a third into a paced fleet's run. The fleet
/// reports over `clients`, the ending jobs over `enders`. `settle_first`: let the hub work off
/// its backlog before the fleet starts (not the no-op).
async fn storm(
    clients: &[ReportLine],
    enders: &[ReportLine],
    scale: &Scale,
    prefix: &str,
    settle_first: bool,
) -> Storm {
    const HISTORY: u64 = 20;
    let ids: Vec<String> = (0..scale.storm_jobs)
        .map(|i| format!("{prefix}-{i}"))
        .collect();
    // History first: 20 reports 30 s apart in the past, 64 jobs at a time.
    let base = SystemTime::now() - Duration::from_secs(30 * HISTORY + 60);
    let mut fills = JoinSet::new();
    for (w, chunk) in ids.chunks(ids.len().div_ceil(64)).enumerate() {
        let client = enders[w % enders.len()].clone();
        let chunk = chunk.to_vec();
        fills.spawn(async move {
            for job_id in chunk {
                for i in 0..HISTORY {
                    let at = base + Duration::from_secs(30 * i);
                    let _ = client
                        .report(&running_report(&job_id, "storm", i + 1, at))
                        .await;
                }
            }
        });
    }
    while fills.join_next().await.is_some() {}

    let warm = scale.interval;
    let fleet_prefix = format!("{prefix}-fleet");
    loadgen::create_jobs(clients, &fleet_prefix, scale.storm_fleet, 256).await;
    if settle_first {
        settle(clients, &fleet_prefix).await;
    }
    let fleet = {
        let clients = clients.to_vec();
        let (jobs, interval, run_for) = (scale.storm_fleet, scale.interval, scale.storm_for);
        tokio::spawn(async move {
            loadgen::paced(
                &clients,
                &fleet_prefix,
                jobs,
                Resume::at(2),
                interval,
                run_for,
                warm,
            )
            .await
        })
    };
    let fleet_started = Instant::now();
    let fire_after = warm + (scale.storm_for - warm) / 3;
    tokio::time::sleep(fire_after).await;
    let fired = fleet_started.elapsed();
    let mut storm = JoinSet::new();
    for (i, job_id) in ids.into_iter().enumerate() {
        let client = enders[i % enders.len()].clone();
        storm.spawn(async move {
            let sent = Instant::now();
            let result = client
                .report(&terminal_report(
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
    let fleet = fleet.await.expect("fleet task");
    Storm {
        enders: Latencies::new(enders),
        failed,
        took: storm_end - fired,
        calm: fleet.latencies_between(warm, fired),
        during: fleet.latencies_between(fired, storm_end + Duration::from_secs(1)),
    }
}

/// Writes `stored_jobs` finished jobs of `stored_points` snapshots each (64 jobs at a time);
/// returns a note and the number of failed reports.
async fn store_jobs(clients: &[ReportLine], scale: &Scale, stamp: u128) -> (String, u64) {
    let points = scale.stored_points;
    let started = Instant::now();
    let mut workers = JoinSet::new();
    let per_worker = scale.stored_jobs.div_ceil(64);
    for w in 0..scale.stored_jobs.div_ceil(per_worker) {
        let client = clients[w % clients.len()].clone();
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
                        .report(&running_report(&job_id, &machine, i + 1, at))
                        .await
                        .is_err() as u32;
                }
                let end = terminal_report(
                    &job_id,
                    &machine,
                    points + 1,
                    base + Duration::from_secs(30 * points),
                );
                failed += client.report(&end).await.is_err() as u32;
            }
            failed
        });
    }
    let mut failed = 0u64;
    while let Some(f) = workers.join_next().await {
        failed += u64::from(f.expect("store task"));
    }
    let note = format!(
        " (written in {:.1} s{})",
        started.elapsed().as_secs_f64(),
        if failed > 0 {
            format!(", {failed} reports failed")
        } else {
            String::new()
        }
    );
    (note, failed)
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

fn print_table(engine: &str, rows: &[Row]) {
    let w = rows.iter().map(|r| r.metric.len()).max().unwrap_or(0);
    println!(
        "\n{:w$}  {:>22}  {:>12}  {:15}  result",
        "metric",
        format!("hub ({engine})"),
        "no-op",
        "target"
    );
    println!("{}", "-".repeat(w + 80));
    for r in rows {
        println!(
            "{:w$}  {:>22}  {:>12}  {:15}  {}",
            r.metric, r.hub, r.noop, r.target, r.result
        );
    }
}

/// Connections for reports, the load generator's lean client.
async fn lines(url: &str, connections: usize) -> Result<Vec<ReportLine>, BenchError> {
    let options = HubOptions::new(url);
    let mut lines = Vec::new();
    for _ in 0..connections.max(1) {
        lines.push(ReportLine::connect(&options).await?);
    }
    Ok(lines)
}

/// Connections for watchers.
fn watch_clients(url: &str, connections: usize) -> Result<Vec<HubClient>, BenchError> {
    let options = HubOptions::new(url);
    Ok((0..connections.max(1))
        .map(|_| options.client())
        .collect::<Result<_, _>>()?)
}
