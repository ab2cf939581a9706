//! `--retention`: a background task that deletes finished jobs whose `ended_at` is older than
//! the retention period, and the machines left without any job, in small transactions with a
//! pause between them so the group-commit writer (and so ingestion) never waits long. Running
//! jobs are never touched. Portable Diesel: the same code runs on SQLite and PostgreSQL, and
//! several hubs sharing one PostgreSQL database may run it at once.

use crate::domain::{now_millis, JobStatus, Millis};
use crate::store::schema::{backup_jobs, job_telemetry_snapshots, machines};
use crate::store::{Db, Store};
use diesel::prelude::*;
use std::time::Duration;
use tokio::sync::watch;

/// Jobs deleted per transaction.
pub const BATCH: i64 = 500;
/// Pause between two batches of one pass, so other writers get the database.
const PAUSE: Duration = Duration::from_millis(50);

/// What one batch deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub jobs: usize,
    pub machines: usize,
}

/// Runs passes until `stop` turns true: the first within 5 s of start, then one per `keep / 4`
/// (between 250 ms and 10 min).
pub async fn run(store: Store, keep: Duration, mut stop: watch::Receiver<bool>) {
    let every = (keep / 4).clamp(Duration::from_millis(250), Duration::from_secs(600));
    tracing::info!(retention = %humantime::format_duration(keep), "retention on: finished jobs older than this are deleted");
    // The first pass comes soon after start, the others every `every`.
    let mut wait = every.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = every;
        let cutoff =
            now_millis().saturating_sub(keep.as_millis().try_into().unwrap_or(Millis::MAX));
        let mut total = Deleted::default();
        loop {
            match store
                .run(move |c| Ok(delete_batch(c, cutoff, BATCH)?))
                .await
            {
                Ok(d) => {
                    crate::metrics::retention_deleted(d.jobs, d.machines);
                    total.jobs += d.jobs;
                    total.machines += d.machines;
                    if (d.jobs as i64) < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    // E.g. a new job raced a machine's deletion (the foreign key refuses it):
                    // nothing was deleted by this batch, the next pass tries again.
                    tracing::warn!(error = %e, "retention batch failed; will retry");
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PAUSE) => {}
                _ = stop.changed() => return,
            }
        }
        if total.jobs > 0 {
            tracing::info!(
                jobs = total.jobs,
                machines = total.machines,
                "retention: deleted finished jobs older than {}",
                humantime::format_duration(keep)
            );
        }
    }
}

/// Deletes up to `limit` finished jobs that ended before `cutoff` (oldest first), their
/// snapshots, and those of their machines that have no job left, in one transaction.
pub fn delete_batch(conn: &mut Db, cutoff: Millis, limit: i64) -> QueryResult<Deleted> {
    conn.transaction(|c| {
        let victims: Vec<(String, String)> = backup_jobs::table
            .filter(backup_jobs::status.ne(JobStatus::Running.as_str()))
            // A job ends after it starts: this lets the start index narrow the scan.
            .filter(backup_jobs::started_at_ms.lt(cutoff))
            .filter(backup_jobs::ended_at_ms.lt(cutoff))
            .order(backup_jobs::started_at_ms.asc())
            .select((backup_jobs::job_id, backup_jobs::machine))
            .limit(limit)
            .load(c)?;
        if victims.is_empty() {
            return Ok(Deleted::default());
        }
        let ids: Vec<&str> = victims.iter().map(|(id, _)| id.as_str()).collect();
        let mut names: Vec<&str> = victims.iter().map(|(_, m)| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        // Rolled-up jobs have no snapshots left; this only covers rows from older versions.
        diesel::delete(
            job_telemetry_snapshots::table.filter(job_telemetry_snapshots::job_id.eq_any(&ids)),
        )
        .execute(c)?;
        let jobs = diesel::delete(
            backup_jobs::table
                .filter(backup_jobs::job_id.eq_any(&ids))
                .filter(backup_jobs::status.ne(JobStatus::Running.as_str())),
        )
        .execute(c)?;
        let still_used = backup_jobs::table
            .filter(backup_jobs::machine.eq_any(&names))
            .select(backup_jobs::machine);
        let machines = diesel::delete(
            machines::table
                .filter(machines::name.eq_any(&names))
                .filter(diesel::dsl::not(machines::name.eq_any(still_used))),
        )
        .execute(c)?;
        Ok(Deleted { jobs, machines })
    })
}
