//! Prometheus text metrics at `GET /metrics`.
//!
//! Hot-path figures (reports, writes, watchers) are process-wide atomics bumped by one-line
//! hooks: no lock, no allocation per report. Per-machine figures (last success, last job
//! duration) and the running-job count are read from the database at scrape time, so they are
//! the same whichever hub of a PostgreSQL cluster is scraped. Labels are machine names and gRPC
//! codes, never job ids. When tokens are configured the endpoint needs a viewer token
//! (`authorization: Bearer …`; Prometheus: `authorization: { credentials_file: … }`).

use crate::auth::{Auth, Role};
use crate::domain::JobStatus;
use crate::error::Result;
use crate::hub::Hub;
use crate::store::schema::{backup_jobs, machines};
use crate::store::writer::{BatchStats, JobWrite, WriteOutcome};
use diesel::prelude::*;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Upper bounds of the write-batch size histogram (writes per transaction).
const SIZE_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048];
/// Upper bounds of the write-batch latency histogram, in microseconds.
const MICROS_BUCKETS: [u64; 13] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000,
];
/// gRPC codes 0..=16.
const CODES: usize = 17;

/// A fixed-bucket histogram of atomics.
struct Histogram<const N: usize> {
    bounds: [u64; N],
    /// Per bucket, not cumulative; the last slot is +Inf.
    counts: [AtomicU64; N],
    overflow: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn observe(&self, v: u64) {
        match self.bounds.iter().position(|b| v <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Relaxed),
            None => self.overflow.fetch_add(1, Relaxed),
        };
        self.sum.fetch_add(v, Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines; `scale` turns a stored unit into the
    /// exposed one (1e-6 for microseconds to seconds).
    fn render(&self, out: &mut String, name: &str, help: &str, scale: f64) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            total += count.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {total}",
                *bound as f64 * scale
            );
        }
        total += self.overflow.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {total}",
            self.sum.load(Relaxed) as f64 * scale
        );
    }
}

/// Every process-wide figure.
struct Figures {
    reports_accepted: AtomicU64,
    reports_duplicate: AtomicU64,
    reports_rejected: [AtomicU64; CODES],
    snapshots_written: AtomicU64,
    rollups: AtomicU64,
    batches_failed: AtomicU64,
    batch_size: Histogram<12>,
    batch_micros: Histogram<13>,
    write_wait_micros: Histogram<13>,
    watchers: AtomicI64,
    retention_jobs: AtomicU64,
    retention_machines: AtomicU64,
}

/// Process-wide, like a Prometheus client's default registry: hubs started in one process (as
/// tests do) add to the same counters.
static FIGURES: Figures = Figures {
    reports_accepted: AtomicU64::new(0),
    reports_duplicate: AtomicU64::new(0),
    reports_rejected: [const { AtomicU64::new(0) }; CODES],
    snapshots_written: AtomicU64::new(0),
    rollups: AtomicU64::new(0),
    batches_failed: AtomicU64::new(0),
    batch_size: Histogram::new(SIZE_BUCKETS),
    batch_micros: Histogram::new(MICROS_BUCKETS),
    write_wait_micros: Histogram::new(MICROS_BUCKETS),
    watchers: AtomicI64::new(0),
    retention_jobs: AtomicU64::new(0),
    retention_machines: AtomicU64::new(0),
};

/// Hook: a report was acknowledged (new, or a duplicate that changed nothing).
pub fn report_acknowledged(duplicate: bool) {
    if duplicate {
        FIGURES.reports_duplicate.fetch_add(1, Relaxed);
    } else {
        FIGURES.reports_accepted.fetch_add(1, Relaxed);
    }
}

/// Hook: a report was refused with this gRPC code (validation, auth, size, storage…).
pub fn report_rejected(code: tonic::Code) {
    let i = (code as usize).min(CODES - 1);
    FIGURES.reports_rejected[i].fetch_add(1, Relaxed);
}

/// Hook for the writer thread after each batch: `writes` are the batch's entries in order
/// (`None` for flush markers), `results` their outcomes when the transaction committed.
pub fn batch_committed<'a>(
    stats: &BatchStats,
    writes: impl Iterator<Item = Option<&'a JobWrite>>,
    results: Option<&[Result<WriteOutcome>]>,
) {
    FIGURES.batch_size.observe(stats.size as u64);
    FIGURES
        .batch_micros
        .observe(u64::try_from(stats.micros).unwrap_or(u64::MAX));
    let Some(results) = results else {
        FIGURES.batches_failed.fetch_add(1, Relaxed);
        return;
    };
    let (mut snapshots, mut rollups) = (0u64, 0u64);
    for (write, result) in writes.zip(results) {
        match (write, result) {
            (Some(w), Ok(WriteOutcome::Stored)) => snapshots += w.points.len() as u64,
            (Some(w), Ok(WriteOutcome::RolledUp(_))) => {
                snapshots += w.points.len() as u64;
                rollups += 1;
            }
            _ => {}
        }
    }
    FIGURES.snapshots_written.fetch_add(snapshots, Relaxed);
    FIGURES.rollups.fetch_add(rollups, Relaxed);
}

/// Hook: the writer moved this many snapshots from the snapshot journal into the table.
pub fn snapshots_moved(rows: usize) {
    FIGURES.snapshots_written.fetch_add(rows as u64, Relaxed);
}

/// Hook: a report (or a sweep) waited this long for its write to be committed: queue, gathering
/// (PostgreSQL) and commit, as the agent feels it on top of the network.
pub fn write_waited(waited: std::time::Duration) {
    FIGURES
        .write_wait_micros
        .observe(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
}

/// Hook: retention deleted this many jobs and machines.
pub fn retention_deleted(jobs: usize, machines: usize) {
    FIGURES.retention_jobs.fetch_add(jobs as u64, Relaxed);
    FIGURES
        .retention_machines
        .fetch_add(machines as u64, Relaxed);
}

/// Counts one open WatchJob stream for as long as it lives.
#[derive(Debug)]
pub struct WatcherGauge(());

impl WatcherGauge {
    pub fn open() -> Self {
        FIGURES.watchers.fetch_add(1, Relaxed);
        WatcherGauge(())
    }
}

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        FIGURES.watchers.fetch_sub(1, Relaxed);
    }
}

/// `GET /metrics`, behind the viewer token when tokens are configured.
pub fn router(hub: Arc<Hub>, auth: Auth) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let hub = hub.clone();
                async move {
                    let mut res = http::Response::new(axum::body::Body::from(render(&hub).await));
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    res
                }
            }),
        )
        .layer(auth.require(Role::Viewer))
}

/// Per-machine figures read at scrape time.
struct MachineFigures {
    name: String,
    last_success_ms: Option<i64>,
    last_duration_ms: Option<i64>,
}

/// The whole exposition text.
pub async fn render(hub: &Hub) -> String {
    let f = &FIGURES;
    let mut out = String::with_capacity(4096);
    counter(
        &mut out,
        "backwatch_reports_total",
        "ReportProgress calls acknowledged, by result (accepted or duplicate).",
        &[
            ("result=\"accepted\"", f.reports_accepted.load(Relaxed)),
            ("result=\"duplicate\"", f.reports_duplicate.load(Relaxed)),
        ],
    );
    let always = [
        tonic::Code::InvalidArgument,
        tonic::Code::FailedPrecondition,
        tonic::Code::Unauthenticated,
        tonic::Code::PermissionDenied,
        tonic::Code::OutOfRange,
        tonic::Code::Unavailable,
        tonic::Code::Internal,
    ];
    let rejected: Vec<(String, u64)> = (0..CODES)
        .map(|i| {
            (
                tonic::Code::from_i32(i as i32),
                f.reports_rejected[i].load(Relaxed),
            )
        })
        .filter(|(code, n)| *n > 0 || always.contains(code))
        .map(|(code, n)| (format!("code=\"{}\"", code_name(code)), n))
        .collect();
    let rejected: Vec<(&str, u64)> = rejected.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    counter(
        &mut out,
        "backwatch_reports_rejected_total",
        "ReportProgress calls refused, by gRPC status code.",
        &rejected,
    );
    counter(
        &mut out,
        "backwatch_snapshots_written_total",
        "Snapshot rows committed.",
        &[("", f.snapshots_written.load(Relaxed))],
    );
    counter(
        &mut out,
        "backwatch_rollups_total",
        "Jobs rolled up into a performance record by this hub.",
        &[("", f.rollups.load(Relaxed))],
    );
    counter(
        &mut out,
        "backwatch_write_batches_failed_total",
        "Group-commit transactions that failed as a whole.",
        &[("", f.batches_failed.load(Relaxed))],
    );
    f.batch_size.render(
        &mut out,
        "backwatch_write_batch_size",
        "Writes committed per group-commit transaction.",
        1.0,
    );
    f.batch_micros.render(
        &mut out,
        "backwatch_write_batch_duration_seconds",
        "Time to commit one group-commit transaction.",
        1e-6,
    );
    f.write_wait_micros.render(
        &mut out,
        "backwatch_write_wait_seconds",
        "Time a report that had to be committed waited for its commit (job starts and ends; on PostgreSQL stored snapshots too): queue, gathering on PostgreSQL, commit.",
        1e-6,
    );
    counter(
        &mut out,
        "backwatch_retention_deleted_jobs_total",
        "Finished jobs deleted by --retention.",
        &[("", f.retention_jobs.load(Relaxed))],
    );
    counter(
        &mut out,
        "backwatch_retention_deleted_machines_total",
        "Machines deleted by --retention once they had no job left.",
        &[("", f.retention_machines.load(Relaxed))],
    );
    let (live, feeds) = hub.load_figures();
    gauge(
        &mut out,
        "backwatch_watchers",
        "WatchJob streams open on this hub.",
        &[("", f.watchers.load(Relaxed).max(0) as f64)],
    );
    gauge(
        &mut out,
        "backwatch_watch_feeds",
        "Watched jobs with a running update feed on this hub.",
        &[("", feeds as f64)],
    );
    gauge(
        &mut out,
        "backwatch_live_jobs",
        "Running jobs held in this hub's memory.",
        &[("", live as f64)],
    );

    match stored_figures(hub).await {
        Ok((running, machines)) => {
            gauge(
                &mut out,
                "backwatch_database_up",
                "1 when the database answered this scrape.",
                &[("", 1.0)],
            );
            gauge(
                &mut out,
                "backwatch_running_jobs",
                "Jobs running now, as stored (every hub sharing the database).",
                &[("", running as f64)],
            );
            let labels: Vec<String> = machines
                .iter()
                .map(|m| format!("machine=\"{}\"", escape_label(&m.name)))
                .collect();
            let series = |pick: fn(&MachineFigures) -> Option<i64>| -> Vec<(&str, f64)> {
                machines
                    .iter()
                    .zip(&labels)
                    .filter_map(|(m, l)| pick(m).map(|ms| (l.as_str(), ms as f64 / 1000.0)))
                    .collect()
            };
            gauge(
                &mut out,
                "backwatch_machine_last_success_timestamp_seconds",
                "End of the machine's newest succeeded job (agent clock, Unix seconds).",
                &series(|m| m.last_success_ms),
            );
            gauge(
                &mut out,
                "backwatch_machine_last_job_duration_seconds",
                "Duration of the machine's newest finished job.",
                &series(|m| m.last_duration_ms),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: database figures unavailable");
            gauge(
                &mut out,
                "backwatch_database_up",
                "1 when the database answered this scrape.",
                &[("", 0.0)],
            );
        }
    }
    out
}

/// Running jobs and per-machine figures, in one blocking task.
async fn stored_figures(hub: &Hub) -> Result<(i64, Vec<MachineFigures>)> {
    hub.store()
        .run(|c| {
            let running: i64 = backup_jobs::table
                .filter(backup_jobs::status.eq(JobStatus::Running.as_str()))
                .count()
                .get_result(c)?;
            let successes: Vec<(String, Option<i64>)> = backup_jobs::table
                .filter(backup_jobs::status.eq(JobStatus::Succeeded.as_str()))
                .group_by(backup_jobs::machine)
                .select((
                    backup_jobs::machine,
                    diesel::dsl::max(backup_jobs::ended_at_ms),
                ))
                .load(c)?;
            let names: Vec<String> = machines::table
                .select(machines::name)
                .order(machines::name.asc())
                .load(c)?;
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                // Newest finished job by start, through the (machine, started_at) index.
                let last_duration_ms: Option<i64> = backup_jobs::table
                    .filter(backup_jobs::machine.eq(&name))
                    .filter(backup_jobs::status.ne(JobStatus::Running.as_str()))
                    .order((
                        backup_jobs::started_at_ms.desc(),
                        backup_jobs::job_id.desc(),
                    ))
                    .select(backup_jobs::duration_ms)
                    .first::<Option<i64>>(c)
                    .optional()?
                    .flatten();
                let last_success_ms = successes
                    .iter()
                    .find(|(m, _)| *m == name)
                    .and_then(|(_, t)| *t);
                out.push(MachineFigures {
                    name,
                    last_success_ms,
                    last_duration_ms,
                });
            }
            Ok((running, out))
        })
        .await
}

fn counter(out: &mut String, name: &str, help: &str, series: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in series {
        sample(out, name, labels, &v.to_string());
    }
}

fn gauge(out: &mut String, name: &str, help: &str, series: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in series {
        sample(out, name, labels, &v.to_string());
    }
}

fn sample(out: &mut String, name: &str, labels: &str, value: &str) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The canonical upper-case name of a gRPC code (`INVALID_ARGUMENT`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let h = Histogram::new([1, 10]);
        for v in [0, 1, 5, 10, 11] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help", 1.0);
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_sum 27\nx_count 5\n"), "{out}");
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
