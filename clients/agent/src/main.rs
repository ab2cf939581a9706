//! `backwatch-agent`: simulated backups, load generation, a no-op baseline server and the
//! benchmark, all against a backwatch hub.

use std::path::PathBuf;
use std::time::Duration;

use backwatch_agent::hub::HubOptions;
use backwatch_agent::proto::{GetHistoryRequest, JobType, ListMachinesRequest};
use backwatch_agent::simulator::{self, fleet};
use backwatch_agent::wire::ReportLine;
use backwatch_agent::{bench, loadgen, noop, Reporter, ReporterConfig};
use clap::{Args, Parser, Subcommand};

/// mimalloc, as in the hub: the no-op baseline server runs in this binary, so hub and no-op
/// are compared on the same allocator, and both without transparent huge pages
/// (`no_transparent_huge_pages`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Simulated backup agents and the backwatch load generator and benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run simulated backups in real time, reporting through the reporter library.
    Simulate {
        #[command(flatten)]
        hub: HubArgs,
        /// Machines backed up in parallel.
        #[arg(long, default_value_t = 1)]
        machines: usize,
        /// Jobs per machine, one after another.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Planned length of each job (failures end a job sooner).
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Time between reports.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Make every job a full backup (default: one in five).
        #[arg(long)]
        full: bool,
    },
    /// The demo fleet of `backwatch demo`: history first, then live jobs, forever.
    Demo {
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Load a hub with many jobs and print throughput and latency (plain http:// only: its
    /// lean client has no TLS).
    Loadgen {
        #[command(flatten)]
        hub: HubAddress,
        /// Concurrent jobs (in saturated mode: reports in flight).
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        /// Time between reports of one job.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Send each job's next report as soon as the last is answered, ignoring --interval.
        #[arg(long)]
        saturate: bool,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Not measured at the start (job creation).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// HTTP/2 connections the jobs are spread over.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Job id prefix; jobs are `<prefix>-<n>`.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// Create every job first, as fast as the hub takes them, then start the paced reports.
        #[arg(long)]
        create_first: bool,
        /// Also print latencies per window of this length.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeline: Option<Duration>,
        /// A report not answered within this time is abandoned (the client cancels the call).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print a job and its performance record (GetHistory), for checking what the hub stored.
    History {
        #[command(flatten)]
        hub: HubArgs,
        job_id: String,
    },
    /// Print every machine with its last job (ListMachines).
    Machines {
        #[command(flatten)]
        hub: HubArgs,
    },
    /// A TelemetryService whose ReportProgress answers at once (the benchmark's baseline).
    NoopServer {
        #[arg(long, default_value = "127.0.0.1:50052")]
        listen: String,
    },
    /// The SPEC 8 benchmark: starts a release hub on a temporary database and compares.
    ///
    /// Exits non-zero only when a phase cannot run (hub does not start, every call fails),
    /// never because a target is missed.
    Bench {
        #[arg(long, default_value = "target/release/backwatch")]
        hub_bin: PathBuf,
        /// A ~30 s smoke run with small numbers.
        #[arg(long)]
        quick: bool,
        /// Connections carrying ReportProgress load (same for hub and no-op).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// WatchJob streams per connection (the hub allows 256, see its --max-streams-per-connection).
        #[arg(long, default_value_t = 100)]
        streams_per_connection: usize,
        /// Keep the temporary database and hub logs.
        #[arg(long)]
        keep: bool,
        /// Database to run the hub on. Default: a fresh SQLite file in the temp directory.
        /// `postgres://user@host:port/db`: a fresh database `backwatch_bench_<pid>` is created
        /// on that server with `psql` and dropped at the end.
        #[arg(long)]
        database_url: Option<String>,
        /// Run only these phases (comma-separated); the table then has only their rows.
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<bench::Phase>,
    },
}

/// The hub and the agent's token.
#[derive(Args)]
struct HubAddress {
    /// The hub, `http://host:port` (`https://host:port` for the commands with TLS options).
    #[arg(long, env = "BACKWATCH_HUB", default_value = "http://127.0.0.1:50051")]
    hub: String,
    /// Agent token, sent as `authorization: Bearer …`.
    #[arg(long, env = "BACKWATCH_TOKEN")]
    token: Option<String>,
}

impl HubAddress {
    fn options(self) -> HubOptions {
        HubOptions {
            token: self.token,
            ..HubOptions::new(self.hub)
        }
    }
}

/// The hub, plain or over TLS (`https://host:port`).
#[derive(Args)]
struct HubArgs {
    #[command(flatten)]
    address: HubAddress,
    /// CA certificate (PEM) that signed the hub's certificate.
    #[arg(long, env = "BACKWATCH_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Name to verify the hub's certificate against.
    #[arg(long, env = "BACKWATCH_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

impl HubArgs {
    fn options(self) -> HubOptions {
        HubOptions {
            ca_file: self.ca_file,
            tls_domain: self.tls_domain,
            ..self.address.options()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    no_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Simulate {
            hub,
            machines,
            jobs,
            duration,
            interval,
            full,
        } => {
            let reporter = Reporter::new(ReporterConfig::for_hub(hub.options()))?;
            let mut rng = fastrand::Rng::new();
            let mut tasks = tokio::task::JoinSet::new();
            for machine in fleet(machines, &mut rng) {
                let (reporter, mut rng) = (reporter.clone(), rng.fork());
                tasks.spawn(async move {
                    for _ in 0..jobs {
                        let job_type = if full || rng.u32(..5) == 0 {
                            JobType::Full
                        } else {
                            JobType::Incremental
                        };
                        let result = simulator::run_live_job(
                            &reporter, &machine, job_type, duration, interval, &mut rng,
                        )
                        .await;
                        match result {
                            Ok((job_id, outcome, ack)) => {
                                println!("{job_id}: {outcome:?}, hub says {:?}", ack.job_status)
                            }
                            Err(e) => println!("{}: telemetry lost: {e}", machine.name),
                        }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
        Command::Demo { hub } => {
            simulator::run_demo_with(ReporterConfig::for_hub(hub.options())).await
        }
        Command::Loadgen {
            hub,
            jobs,
            interval,
            saturate,
            duration,
            warmup,
            connections,
            prefix,
            timeout,
            timeline,
            create_first,
        } => {
            let options = HubOptions {
                request_timeout: timeout,
                ..hub.options()
            };
            let mut lines = Vec::new();
            for _ in 0..connections.max(1) {
                lines.push(ReportLine::connect(&options).await?);
            }
            let report = if saturate {
                loadgen::saturated(&lines, &prefix, jobs, duration, warmup).await
            } else {
                let first = if create_first {
                    let created = loadgen::create_jobs(&lines, &prefix, jobs, 256).await;
                    println!(
                        "created {jobs} jobs in {:.1} s: {}",
                        created.window.as_secs_f64(),
                        created.summary()
                    );
                    2
                } else {
                    1
                };
                loadgen::paced(
                    &lines,
                    &prefix,
                    jobs,
                    loadgen::Resume::at(first),
                    interval,
                    duration,
                    warmup,
                )
                .await
            };
            for line in timeline.map(|w| report.timeline(w)).unwrap_or_default() {
                println!("{line}");
            }
            println!("{}", report.summary());
        }
        Command::History { hub, job_id } => {
            let mut client = hub.options().client()?;
            let history = client
                .get_history(GetHistoryRequest { job_id })
                .await?
                .into_inner();
            println!("{:#?}", history.job);
            if let Some(p) = history.performance {
                println!(
                    "performance: peak {} B/s, average {} B/s, min {} B/s, {} bytes, {} snapshots, {} points",
                    p.peak_speed_bps,
                    p.average_speed_bps,
                    p.min_speed_bps,
                    p.bytes_transferred,
                    p.snapshot_count,
                    p.points.len()
                );
                for point in p.points {
                    println!(
                        "  {:>8.0} s  {:>12} B/s  {:>16} B  {:>6.2} %  {}",
                        point.elapsed_seconds,
                        point.speed_bps,
                        point.bytes_transferred,
                        point.progress_percent,
                        point.phase
                    );
                }
            }
        }
        Command::Machines { hub } => {
            let mut client = hub.options().client()?;
            let request = ListMachinesRequest {
                page_size: 1000,
                page_token: String::new(),
            };
            for m in client.list_machines(request).await?.into_inner().machines {
                let name = m.machine.map(|m| m.name).unwrap_or_default();
                let last = m
                    .last_job
                    .map(|j| format!("{} {:?} {:.0} %", j.job_id, j.status(), j.progress_percent));
                println!(
                    "{name:12} jobs {:4}  success {:5.1} %  last {}",
                    m.total_jobs,
                    m.success_rate * 100.0,
                    last.unwrap_or_default()
                );
            }
        }
        Command::NoopServer { listen } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!(
                "no-op server listening on http://{}",
                listener.local_addr()?
            );
            noop::serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
        Command::Bench {
            hub_bin,
            quick,
            connections,
            streams_per_connection,
            keep,
            database_url,
            only,
        } => {
            let result = bench::run(bench::BenchOptions {
                hub_bin,
                quick,
                connections,
                streams_per_connection,
                keep,
                database_url,
                only,
            })
            .await;
            if let Err(e) = result {
                eprintln!("bench failed: {e}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Keeps this process off transparent huge pages (Linux), as the hub does: the no-op baseline
/// must not pay for page faults the hub no longer pays for, nor the reverse.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
