//! Agent side of backwatch: the reporter a backup agent embeds, a backup simulator, and the load
//! generator and benchmark that measure the hub.
//!
//! A backup must never wait on telemetry: [`JobReporter::report`] only records the report; a
//! background task per job delivers reports in order, retries with the same sequence while the
//! hub is unreachable (exponential backoff with jitter), and buffers meanwhile (bounded; the
//! oldest running reports are dropped first, the terminal report never). Only
//! [`JobReporter::finish`] waits, with a timeout, for the hub to take the terminal report.
//!
//! ```no_run
//! use backwatch_agent::{JobSpec, Outcome, Progress, Reporter, ReporterConfig};
//! use backwatch_agent::proto::JobType;
//!
//! # async fn backup() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ReporterConfig::new("https://hub.example.net:50051")
//!     .token("agent-secret")
//!     .tls("/etc/backwatch/ca.pem", None);
//! let reporter = Reporter::new(config)?;
//! let job = reporter.start_job(JobSpec {
//!     job_id: format!("db-01-{}", 1_767_225_600_000u64),
//!     machine: "db-01".into(),
//!     job_type: JobType::Incremental,
//!     machine_info: None,
//! });
//! let total = 40_000_000_000;
//! for done in (0..=total).step_by(4_000_000_000) {
//!     // … copy a chunk …
//!     job.report(Progress {
//!         phase: "transfer".into(),
//!         bytes_transferred: done,
//!         total_bytes: total,
//!         progress_percent: done as f64 * 100.0 / total as f64,
//!         transfer_speed_bps: 250_000_000,
//!         ..Progress::default()
//!     })?;
//! }
//! let ack = job
//!     .finish(Outcome::Succeeded, Progress { bytes_transferred: total, total_bytes: total, progress_percent: 100.0, ..Progress::default() })
//!     .await?;
//! println!("hub says the job is {:?}", ack.job_status);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`proto`]: the generated `backwatch.v1` messages, client and server stubs.
//! - [`hub`]: connection to a hub (endpoint, TLS, bearer token).
//! - [`reporter`]: [`Reporter`] and [`JobReporter`], built on [`backoff`] and [`queue`] (pure).
//! - [`simulator`]: machines and realistic backup curves; [`simulator::run_demo`] for `backwatch demo`.
//! - [`loadgen`]: paced and saturated `ReportProgress` load, `WatchJob` lag, latency statistics.
//! - [`noop`]: a `TelemetryService` that answers at once, the benchmark's baseline.
//! - [`bench`]: the SPEC 8 benchmark that starts a hub and runs everything above against it.

pub mod backoff;
pub mod bench;
pub mod hub;
pub mod loadgen;
pub mod noop;
pub mod queue;
pub mod reporter;
pub mod simulator;
pub mod wire;

/// Generated from `proto/backwatch/v1/telemetry.proto`.
pub mod proto {
    tonic::include_proto!("backwatch.v1");
}

pub use hub::{HubClient, HubOptions};
pub use reporter::{
    Ack, JobReporter, JobSpec, Outcome, Progress, ReportError, Reporter, ReporterConfig,
};
