//! Diesel rows of the three tables and their conversions to and from the domain and API types.

use super::schema::{backup_jobs, job_telemetry_snapshots, machines};
use crate::domain::job::JobState;
use crate::domain::report::MachineFacts;
use crate::domain::rollup::decode_record;
use crate::domain::{duration, timestamp, JobStatus, JobType, Millis, Point};
use crate::error::{Error, Result};
use crate::proto;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = machines)]
pub struct MachineRow {
    pub name: String,
    pub cpu_cores: Option<i32>,
    pub memory_bytes: Option<i64>,
    pub disk_count: Option<i32>,
    pub os: Option<String>,
    pub first_seen_at_ms: i64,
    pub last_seen_at_ms: i64,
}

impl MachineRow {
    pub fn new(name: &str, facts: Option<&MachineFacts>, now: Millis) -> Self {
        let facts = facts.cloned().unwrap_or_default();
        MachineRow {
            name: name.to_string(),
            cpu_cores: facts.cpu_cores,
            memory_bytes: facts.memory_bytes,
            disk_count: facts.disk_count,
            os: facts.os,
            first_seen_at_ms: now,
            last_seen_at_ms: now,
        }
    }

    pub fn to_proto(&self) -> proto::Machine {
        let has_info = self.cpu_cores.is_some()
            || self.memory_bytes.is_some()
            || self.disk_count.is_some()
            || self.os.is_some();
        proto::Machine {
            name: self.name.clone(),
            info: has_info.then(|| proto::MachineInfo {
                cpu_cores: self.cpu_cores.unwrap_or(0) as u32,
                memory_bytes: self.memory_bytes.unwrap_or(0) as u64,
                disk_count: self.disk_count.unwrap_or(0) as u32,
                os: self.os.clone().unwrap_or_default(),
            }),
            first_seen_at: Some(timestamp(self.first_seen_at_ms)),
            last_seen_at: Some(timestamp(self.last_seen_at_ms)),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = backup_jobs)]
pub struct JobRow {
    pub job_id: String,
    pub machine: String,
    pub job_type: String,
    pub status: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub bytes_transferred: i64,
    pub total_bytes: i64,
    pub progress_percent: f64,
    pub phase: String,
    pub transfer_speed_bps: i64,
    pub peak_speed_bps: i64,
    pub min_speed_bps: Option<i64>,
    pub average_speed_bps: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error_message: String,
    pub last_sequence: i64,
    pub last_report_at_ms: i64,
    pub last_received_at_ms: i64,
    pub last_snapshot_at_ms: Option<i64>,
    pub recent_speed_bps: f64,
    pub estimated_completion_at_ms: Option<i64>,
    pub performance_metrics: Option<Vec<u8>>,
}

/// The columns a report updates while a job runs. Status and end time are not among them: a
/// column in the SET list rewrites every index over it (or filtering on it), even when its
/// value stays, and a running job's snapshot should rewrite its row and nothing else.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = backup_jobs, treat_none_as_null = true)]
pub struct JobProgress {
    pub bytes_transferred: i64,
    pub total_bytes: i64,
    pub progress_percent: f64,
    pub phase: String,
    pub transfer_speed_bps: i64,
    pub peak_speed_bps: i64,
    pub min_speed_bps: Option<i64>,
    pub error_message: String,
    pub last_sequence: i64,
    pub last_report_at_ms: i64,
    pub last_received_at_ms: i64,
    pub last_snapshot_at_ms: Option<i64>,
    pub recent_speed_bps: f64,
    pub estimated_completion_at_ms: Option<i64>,
}

/// The columns only the write that ends a job sets (with its last progress).
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = backup_jobs, treat_none_as_null = true)]
pub struct JobEnd {
    pub status: String,
    pub ended_at_ms: Option<i64>,
}

impl JobProgress {
    pub fn of(job: &JobState) -> Self {
        JobProgress {
            bytes_transferred: job.bytes_transferred as i64,
            total_bytes: job.total_bytes as i64,
            progress_percent: job.progress_percent,
            phase: job.phase.clone(),
            transfer_speed_bps: job.transfer_speed_bps as i64,
            peak_speed_bps: job.peak_speed_bps as i64,
            min_speed_bps: job.min_speed_bps.map(|v| v as i64),
            error_message: job.error_message.clone(),
            last_sequence: job.last_sequence as i64,
            last_report_at_ms: job.last_report_at,
            last_received_at_ms: job.last_received_at,
            last_snapshot_at_ms: job.last_snapshot_at,
            recent_speed_bps: job.recent_speed_bps,
            estimated_completion_at_ms: job.estimated_completion,
        }
    }
}

impl JobEnd {
    pub fn of(job: &JobState) -> Self {
        JobEnd {
            status: job.status.as_str().to_string(),
            ended_at_ms: job.ended_at,
        }
    }
}

impl JobRow {
    /// A new job's row; the record comes at rollup.
    pub fn new(job: &JobState) -> Self {
        JobRow {
            job_id: job.job_id.clone(),
            machine: job.machine.clone(),
            job_type: job.job_type.as_str().to_string(),
            status: job.status.as_str().to_string(),
            started_at_ms: job.started_at,
            ended_at_ms: job.ended_at,
            bytes_transferred: job.bytes_transferred as i64,
            total_bytes: job.total_bytes as i64,
            progress_percent: job.progress_percent,
            phase: job.phase.clone(),
            transfer_speed_bps: job.transfer_speed_bps as i64,
            peak_speed_bps: job.peak_speed_bps as i64,
            min_speed_bps: job.min_speed_bps.map(|v| v as i64),
            average_speed_bps: None,
            duration_ms: None,
            error_message: job.error_message.clone(),
            last_sequence: job.last_sequence as i64,
            last_report_at_ms: job.last_report_at,
            last_received_at_ms: job.last_received_at,
            last_snapshot_at_ms: job.last_snapshot_at,
            recent_speed_bps: job.recent_speed_bps,
            estimated_completion_at_ms: job.estimated_completion,
            performance_metrics: None,
        }
    }

    pub fn status(&self) -> Result<JobStatus> {
        JobStatus::parse(&self.status).ok_or_else(|| {
            Error::Internal(format!("job {} has status {:?}", self.job_id, self.status))
        })
    }

    /// The live state of a stored job, to continue it after a restart or on another hub.
    pub fn to_state(&self) -> Result<JobState> {
        let job_type = JobType::parse(&self.job_type).ok_or_else(|| {
            Error::Internal(format!("job {} has type {:?}", self.job_id, self.job_type))
        })?;
        Ok(JobState {
            job_id: self.job_id.clone(),
            machine: self.machine.clone(),
            job_type,
            status: self.status()?,
            started_at: self.started_at_ms,
            ended_at: self.ended_at_ms,
            phase: self.phase.clone(),
            progress_percent: self.progress_percent,
            bytes_transferred: self.bytes_transferred as u64,
            total_bytes: self.total_bytes as u64,
            transfer_speed_bps: self.transfer_speed_bps as u64,
            error_message: self.error_message.clone(),
            last_sequence: self.last_sequence as u64,
            last_report_at: self.last_report_at_ms,
            last_received_at: self.last_received_at_ms,
            last_snapshot_at: self.last_snapshot_at_ms,
            peak_speed_bps: self.peak_speed_bps as u64,
            min_speed_bps: self.min_speed_bps.map(|v| v as u64),
            unstored_peak: None,
            recent_speed_bps: self.recent_speed_bps,
            estimated_completion: self.estimated_completion_at_ms,
        })
    }

    pub fn is_running(&self) -> bool {
        self.status == JobStatus::Running.as_str()
    }

    /// The stored record, if the job has been rolled up.
    pub fn record(&self) -> Result<Option<proto::PerformanceRecord>> {
        self.performance_metrics
            .as_deref()
            .map(decode_record)
            .transpose()
            .map_err(|e| {
                Error::Internal(format!("job {} has an unreadable record: {e}", self.job_id))
            })
    }

    pub fn to_proto(&self) -> Result<proto::Job> {
        let mut job = self.to_state()?.to_proto();
        if let Some(ms) = self.duration_ms {
            job.duration = Some(duration(ms));
        }
        Ok(job)
    }
}

/// Every column is always given (no `DEFAULT`): a row's INSERT is one fixed statement, kept
/// prepared on SQLite (`writer::insert_rows`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = job_telemetry_snapshots, treat_none_as_default_value = false)]
pub struct SnapshotRow {
    pub job_id: String,
    pub sampled_at_ms: i64,
    pub sequence: i64,
    pub bytes_transferred: i64,
    pub transfer_speed_bps: i64,
    pub progress_percent: f64,
    pub phase: String,
}

impl SnapshotRow {
    pub fn new(job_id: &str, p: &Point) -> Self {
        SnapshotRow {
            job_id: job_id.to_string(),
            sampled_at_ms: p.sampled_at,
            sequence: p.sequence as i64,
            bytes_transferred: p.bytes_transferred as i64,
            transfer_speed_bps: p.speed_bps as i64,
            progress_percent: p.progress_percent,
            phase: p.phase.clone(),
        }
    }

    pub fn into_point(self) -> Point {
        Point {
            sequence: self.sequence as u64,
            sampled_at: self.sampled_at_ms,
            bytes_transferred: self.bytes_transferred as u64,
            speed_bps: self.transfer_speed_bps as u64,
            progress_percent: self.progress_percent,
            phase: self.phase,
        }
    }
}
