//! Pure backup-telemetry logic: validated reports, the job state machine with its snapshot
//! policy, speed derivation and ETA, and the rollup into a performance record. No network, no
//! database: everything here is testable on its own.

pub mod job;
pub mod report;
pub mod rollup;

use crate::proto;

/// Milliseconds since the Unix epoch; all stored and compared times use it.
pub type Millis = i64;

/// Lifecycle of a backup job as stored in `backup_jobs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Abandoned,
}

impl JobStatus {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Abandoned => "abandoned",
        }
    }

    /// Reads the stored word; unknown words are a corrupted row.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            "abandoned" => JobStatus::Abandoned,
            _ => return None,
        })
    }

    /// True once the job has ended and been (or is being) rolled up.
    pub fn is_terminal(self) -> bool {
        self != JobStatus::Running
    }

    pub fn to_proto(self) -> proto::JobStatus {
        match self {
            JobStatus::Running => proto::JobStatus::Running,
            JobStatus::Succeeded => proto::JobStatus::Succeeded,
            JobStatus::Failed => proto::JobStatus::Failed,
            JobStatus::Cancelled => proto::JobStatus::Cancelled,
            JobStatus::Abandoned => proto::JobStatus::Abandoned,
        }
    }
}

/// Full or incremental backup, as stored in `backup_jobs.job_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    Full,
    Incremental,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Full => "full",
            JobType::Incremental => "incremental",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(JobType::Full),
            "incremental" => Some(JobType::Incremental),
            _ => None,
        }
    }

    pub fn to_proto(self) -> proto::JobType {
        match self {
            JobType::Full => proto::JobType::Full,
            JobType::Incremental => proto::JobType::Incremental,
        }
    }
}

/// One measurement of a running job: what a snapshot row stores and a chart point shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The report's sequence number (unique per job).
    pub sequence: u64,
    /// Agent clock when the values were measured.
    pub sampled_at: Millis,
    pub bytes_transferred: u64,
    pub speed_bps: u64,
    pub progress_percent: f64,
    pub phase: String,
}

impl Point {
    /// The chart form of this point for a job that started at `started_at`.
    pub fn to_proto(&self, started_at: Millis) -> proto::SpeedPoint {
        proto::SpeedPoint {
            elapsed_seconds: (self.sampled_at - started_at).max(0) as f64 / 1000.0,
            speed_bps: self.speed_bps,
            bytes_transferred: self.bytes_transferred,
            progress_percent: self.progress_percent,
            phase: self.phase.clone(),
        }
    }
}

/// Converts epoch milliseconds to a protobuf timestamp.
pub fn timestamp(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Converts a millisecond span to a protobuf duration.
pub fn duration(ms: Millis) -> prost_types::Duration {
    let ms = ms.max(0);
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// The current wall-clock time in epoch milliseconds.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
