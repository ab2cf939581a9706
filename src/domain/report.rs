//! Validation of an agent's `ReportProgress` request into a `Report` the job state machine can
//! trust. Every rule here answers `INVALID_ARGUMENT` naming the field and the rule.

use super::{JobStatus, JobType, Millis};
use crate::error::{Error, Result};
use crate::proto;

/// Longest accepted `job_id`.
pub const MAX_JOB_ID_LEN: usize = 128;
/// Longest accepted `machine` name.
pub const MAX_MACHINE_LEN: usize = 255;
/// Longest accepted `phase`.
pub const MAX_PHASE_LEN: usize = 64;
/// Largest accepted `error_message`, in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;
/// Longest accepted `machine_info.os`.
pub const MAX_OS_LEN: usize = 255;
/// How far `sampled_at` may be from the hub's clock.
pub const MAX_CLOCK_SKEW_MS: Millis = 24 * 3600 * 1000;

/// Machine facts an agent may send with any report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MachineFacts {
    pub cpu_cores: Option<i32>,
    pub memory_bytes: Option<i64>,
    pub disk_count: Option<i32>,
    pub os: Option<String>,
}

/// A report that passed every stateless rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub job_id: String,
    pub sequence: u64,
    /// Agent clock, or the receive time when the agent left it unset.
    pub sampled_at: Millis,
    /// Hub clock at receipt; drives the stall timeout.
    pub received_at: Millis,
    pub status: JobStatus,
    pub phase: String,
    pub bytes_transferred: u64,
    pub total_bytes: u64,
    pub progress_percent: f64,
    pub transfer_speed_bps: u64,
    pub error_message: String,
    /// Empty when the agent did not send it (allowed after the first report).
    pub machine: String,
    pub job_type: Option<JobType>,
    pub machine_info: Option<MachineFacts>,
}

/// Checks `job_id` against its rule; reads use it too.
pub fn validate_job_id(job_id: &str) -> Result<()> {
    if job_id.is_empty() || job_id.len() > MAX_JOB_ID_LEN {
        return Err(Error::invalid("job_id", "must be 1-128 characters"));
    }
    if !job_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(Error::invalid(
            "job_id",
            "may contain only A-Z a-z 0-9 . _ : -",
        ));
    }
    Ok(())
}

/// Checks a machine name against its rule; reads use it too.
pub fn validate_machine(machine: &str) -> Result<()> {
    let chars = machine.chars().count();
    if chars == 0 || chars > MAX_MACHINE_LEN {
        return Err(Error::invalid("machine", "must be 1-255 characters"));
    }
    if machine.chars().any(char::is_control) {
        return Err(Error::invalid(
            "machine",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Validates a request received at `now` (hub clock). Takes the request to move its strings
/// into the report instead of copying them.
pub fn validate(req: proto::ReportProgressRequest, now: Millis) -> Result<Report> {
    validate_job_id(&req.job_id)?;
    if req.sequence > i64::MAX as u64 {
        return Err(Error::invalid(
            "sequence",
            "must be at most 9223372036854775807",
        ));
    }
    let status = match proto::JobStatus::try_from(req.status) {
        Ok(proto::JobStatus::Running) => JobStatus::Running,
        Ok(proto::JobStatus::Succeeded) => JobStatus::Succeeded,
        Ok(proto::JobStatus::Failed) => JobStatus::Failed,
        Ok(proto::JobStatus::Cancelled) => JobStatus::Cancelled,
        Ok(proto::JobStatus::Abandoned) => {
            return Err(Error::invalid(
                "status",
                "JOB_STATUS_ABANDONED is set by the hub, agents may not send it",
            ))
        }
        Ok(proto::JobStatus::Unspecified) => return Err(Error::invalid("status", "must be set")),
        Err(_) => return Err(Error::invalid("status", "unknown JobStatus value")),
    };
    let sampled_at = match &req.sampled_at {
        None => now,
        Some(ts) => {
            if !(0..1_000_000_000).contains(&ts.nanos) {
                return Err(Error::invalid("sampled_at", "nanos must be 0-999999999"));
            }
            let ms = ts
                .seconds
                .checked_mul(1000)
                .and_then(|s| s.checked_add(i64::from(ts.nanos) / 1_000_000))
                .ok_or_else(|| {
                    Error::invalid("sampled_at", "must be within 24 h of the hub's clock")
                })?;
            if (ms - now).abs() > MAX_CLOCK_SKEW_MS {
                return Err(Error::invalid(
                    "sampled_at",
                    "must be within 24 h of the hub's clock",
                ));
            }
            ms
        }
    };
    if req.phase.chars().count() > MAX_PHASE_LEN {
        return Err(Error::invalid("phase", "must be at most 64 characters"));
    }
    if req.phase.chars().any(char::is_control) {
        return Err(Error::invalid(
            "phase",
            "must not contain control characters",
        ));
    }
    if req.error_message.len() > MAX_ERROR_MESSAGE_BYTES {
        return Err(Error::invalid("error_message", "must be at most 4 KiB"));
    }
    if !req.progress_percent.is_finite() || !(0.0..=100.0).contains(&req.progress_percent) {
        return Err(Error::invalid(
            "progress_percent",
            "must be a finite number from 0 to 100",
        ));
    }
    for (field, value) in [
        ("bytes_transferred", req.bytes_transferred),
        ("total_bytes", req.total_bytes),
        ("transfer_speed_bps", req.transfer_speed_bps),
    ] {
        if value > i64::MAX as u64 {
            return Err(Error::invalid(field, "must be at most 9223372036854775807"));
        }
    }
    if !req.machine.is_empty() {
        validate_machine(&req.machine)?;
    }
    let job_type = match proto::JobType::try_from(req.job_type) {
        Ok(proto::JobType::Unspecified) => None,
        Ok(proto::JobType::Full) => Some(JobType::Full),
        Ok(proto::JobType::Incremental) => Some(JobType::Incremental),
        Err(_) => return Err(Error::invalid("job_type", "unknown JobType value")),
    };
    let machine_info = req.machine_info.as_ref().map(machine_facts).transpose()?;
    Ok(Report {
        job_id: req.job_id,
        sequence: req.sequence,
        sampled_at,
        received_at: now,
        status,
        phase: req.phase,
        bytes_transferred: req.bytes_transferred,
        total_bytes: req.total_bytes,
        progress_percent: req.progress_percent,
        transfer_speed_bps: req.transfer_speed_bps,
        error_message: req.error_message,
        machine: req.machine,
        job_type,
        machine_info,
    })
}

fn machine_facts(info: &proto::MachineInfo) -> Result<MachineFacts> {
    let count = |field: &'static str, v: u32| -> Result<Option<i32>> {
        match v {
            0 => Ok(None),
            v if v <= 1_000_000 => Ok(Some(v as i32)),
            _ => Err(Error::invalid(field, "must be at most 1000000")),
        }
    };
    if info.memory_bytes > i64::MAX as u64 {
        return Err(Error::invalid(
            "machine_info.memory_bytes",
            "must be at most 9223372036854775807",
        ));
    }
    if info.os.chars().count() > MAX_OS_LEN || info.os.chars().any(char::is_control) {
        return Err(Error::invalid(
            "machine_info.os",
            "must be at most 255 characters without control characters",
        ));
    }
    Ok(MachineFacts {
        cpu_cores: count("machine_info.cpu_cores", info.cpu_cores)?,
        memory_bytes: (info.memory_bytes > 0).then_some(info.memory_bytes as i64),
        disk_count: count("machine_info.disk_count", info.disk_count)?,
        os: (!info.os.is_empty()).then(|| info.os.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Millis = 1_800_000_000_000;

    fn valid() -> proto::ReportProgressRequest {
        proto::ReportProgressRequest {
            job_id: "vm-01:2026-11-29.full_1".into(),
            sequence: 1,
            status: proto::JobStatus::Running as i32,
            machine: "vm-01".into(),
            job_type: proto::JobType::Full as i32,
            progress_percent: 12.5,
            ..Default::default()
        }
    }

    fn field_of(req: proto::ReportProgressRequest) -> &'static str {
        match validate(req, NOW) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_valid_report_and_defaults_sampled_at_to_receive_time() {
        let r = validate(valid(), NOW).unwrap();
        assert_eq!(r.sampled_at, NOW);
        assert_eq!(r.status, JobStatus::Running);
        assert_eq!(r.job_type, Some(JobType::Full));
    }

    #[test]
    fn names_the_field_that_breaks_a_rule() {
        let mut r = valid();
        r.job_id = "bad id".into();
        assert_eq!(field_of(r), "job_id");
        let mut r = valid();
        r.job_id = "x".repeat(129);
        assert_eq!(field_of(r), "job_id");
        let mut r = valid();
        r.machine = "a\nb".into();
        assert_eq!(field_of(r), "machine");
        let mut r = valid();
        r.phase = "p".repeat(65);
        assert_eq!(field_of(r), "phase");
        let mut r = valid();
        r.error_message = "e".repeat(4097);
        assert_eq!(field_of(r), "error_message");
        let mut r = valid();
        r.progress_percent = f64::NAN;
        assert_eq!(field_of(r), "progress_percent");
        let mut r = valid();
        r.progress_percent = 100.5;
        assert_eq!(field_of(r), "progress_percent");
        let mut r = valid();
        r.status = proto::JobStatus::Unspecified as i32;
        assert_eq!(field_of(r), "status");
        let mut r = valid();
        r.status = proto::JobStatus::Abandoned as i32;
        assert_eq!(field_of(r), "status");
        let mut r = valid();
        r.sampled_at = Some(super::super::timestamp(NOW - MAX_CLOCK_SKEW_MS - 1));
        assert_eq!(field_of(r), "sampled_at");
        let mut r = valid();
        r.sampled_at = Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        });
        assert_eq!(field_of(r), "sampled_at");
    }

    #[test]
    fn machine_names_count_characters_not_bytes() {
        let mut r = valid();
        r.machine = "ü".repeat(255);
        assert!(validate(r, NOW).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_reports_keep_the_rules(
            job_id in ".{0,140}",
            machine in ".{0,260}",
            phase in ".{0,70}",
            status in -2i32..8,
            percent in proptest::num::f64::ANY,
            seconds in proptest::num::i64::ANY,
            sequence in proptest::num::u64::ANY,
        ) {
            let req = proto::ReportProgressRequest {
                job_id, machine, phase, status, progress_percent: percent, sequence,
                sampled_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
                ..Default::default()
            };
            if let Ok(r) = validate(req, NOW) {
                prop_assert!(validate_job_id(&r.job_id).is_ok());
                prop_assert!((0.0..=100.0).contains(&r.progress_percent));
                prop_assert!((r.sampled_at - NOW).abs() <= MAX_CLOCK_SKEW_MS);
                prop_assert!(r.status != JobStatus::Abandoned);
                prop_assert!(r.phase.chars().count() <= MAX_PHASE_LEN);
            }
        }
    }
}
