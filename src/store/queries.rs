//! Read queries behind GetHistory, ListMachines, ListJobs, GetMachineSummary, the job loader and
//! the stall sweep. Each takes a connection and runs on the blocking pool via `Store::run`.

use super::rows::{JobRow, MachineRow, SnapshotRow};
use super::schema::{backup_jobs, job_telemetry_snapshots, machines};
use super::Db;
use crate::domain::{JobStatus, Millis, Point};
use diesel::dsl::count_star;
use diesel::prelude::*;

/// One job row.
pub fn job(conn: &mut Db, job_id: &str) -> QueryResult<Option<JobRow>> {
    backup_jobs::table
        .find(job_id)
        .select(JobRow::as_select())
        .first(conn)
        .optional()
}

/// A running job's stored snapshots in time order.
pub fn snapshots(conn: &mut Db, job_id: &str) -> QueryResult<Vec<Point>> {
    // Run on the engine's own connection, where the prepared statement is kept for the next
    // call (the selection is typed per engine, hence the query written once per arm).
    macro_rules! query {
        () => {
            job_telemetry_snapshots::table
                .filter(job_telemetry_snapshots::job_id.eq(job_id))
                .order((
                    job_telemetry_snapshots::sampled_at_ms.asc(),
                    job_telemetry_snapshots::sequence.asc(),
                ))
                .select(SnapshotRow::as_select())
        };
    }
    let rows: Vec<SnapshotRow> = match conn {
        Db::Sqlite(c) => query!().load(c)?,
        Db::Postgresql(c) => query!().load(c)?,
    };
    Ok(rows.into_iter().map(SnapshotRow::into_point).collect())
}

/// A job's newest stored snapshot (the last in time order).
pub fn latest_snapshot(conn: &mut Db, job_id: &str) -> QueryResult<Option<Point>> {
    let row: Option<SnapshotRow> = job_telemetry_snapshots::table
        .filter(job_telemetry_snapshots::job_id.eq(job_id))
        .order((
            job_telemetry_snapshots::sampled_at_ms.desc(),
            job_telemetry_snapshots::sequence.desc(),
        ))
        .select(SnapshotRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(SnapshotRow::into_point))
}

/// One machine.
pub fn machine(conn: &mut Db, name: &str) -> QueryResult<Option<MachineRow>> {
    machines::table
        .find(name)
        .select(MachineRow::as_select())
        .first(conn)
        .optional()
}

/// Machines by name after `after`, at most `limit`.
pub fn machines_page(
    conn: &mut Db,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<MachineRow>> {
    let mut q = machines::table
        .select(MachineRow::as_select())
        .order(machines::name.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(machines::name.gt(after.to_string()));
    }
    q.load(conn)
}

/// Jobs newest first (by start, then id), optionally of one machine, after a page cursor.
pub fn jobs_page(
    conn: &mut Db,
    machine: Option<&str>,
    after: Option<(Millis, String)>,
    limit: i64,
) -> QueryResult<Vec<JobRow>> {
    let mut q = backup_jobs::table
        .select(JobRow::as_select())
        .order((
            backup_jobs::started_at_ms.desc(),
            backup_jobs::job_id.desc(),
        ))
        .limit(limit)
        .into_boxed();
    if let Some(m) = machine {
        q = q.filter(backup_jobs::machine.eq(m.to_string()));
    }
    if let Some((started, id)) = after {
        q = q.filter(
            backup_jobs::started_at_ms
                .lt(started)
                .or(backup_jobs::started_at_ms
                    .eq(started)
                    .and(backup_jobs::job_id.lt(id))),
        );
    }
    q.load(conn)
}

/// How many jobs of a machine are in each status.
pub fn status_counts(conn: &mut Db, machine: &str) -> QueryResult<Vec<(JobStatus, i64)>> {
    let rows: Vec<(String, i64)> = backup_jobs::table
        .filter(backup_jobs::machine.eq(machine))
        .group_by(backup_jobs::status)
        .select((backup_jobs::status, count_star()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(s, n)| JobStatus::parse(&s).map(|s| (s, n)))
        .collect())
}

/// Bytes, duration (ms) and average speed of one succeeded job.
pub type JobFigures = (i64, Option<i64>, Option<i64>);

/// Bytes, duration and average speed of a machine's succeeded jobs.
pub fn succeeded_figures(conn: &mut Db, machine: &str) -> QueryResult<Vec<JobFigures>> {
    backup_jobs::table
        .filter(backup_jobs::machine.eq(machine))
        .filter(backup_jobs::status.eq(JobStatus::Succeeded.as_str()))
        .select((
            backup_jobs::bytes_transferred,
            backup_jobs::duration_ms,
            backup_jobs::average_speed_bps,
        ))
        .load(conn)
}

/// A machine's most recent ended jobs, newest first.
pub fn recent_ended(conn: &mut Db, machine: &str, limit: i64) -> QueryResult<Vec<JobRow>> {
    backup_jobs::table
        .filter(backup_jobs::machine.eq(machine))
        .filter(backup_jobs::status.ne(JobStatus::Running.as_str()))
        .select(JobRow::as_select())
        .order((
            backup_jobs::started_at_ms.desc(),
            backup_jobs::job_id.desc(),
        ))
        .limit(limit)
        .load(conn)
}

/// How many jobs the database holds as running.
pub fn running_jobs(conn: &mut Db) -> QueryResult<i64> {
    backup_jobs::table
        .filter(backup_jobs::status.eq(JobStatus::Running.as_str()))
        .count()
        .get_result(conn)
}

/// Running jobs whose row was last written for a report that reached a hub before `before`
/// (hub clock), at most `limit`.
pub fn stalled(conn: &mut Db, before: Millis, limit: Option<i64>) -> QueryResult<Vec<String>> {
    let q = backup_jobs::table
        .filter(backup_jobs::status.eq(JobStatus::Running.as_str()))
        .filter(backup_jobs::last_received_at_ms.lt(before))
        .select(backup_jobs::job_id);
    match limit {
        Some(n) => q.limit(n).load(conn),
        None => q.load(conn),
    }
}
