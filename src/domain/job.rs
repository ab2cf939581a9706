//! The job state machine: what one accepted report does to a job. It decides duplicates and
//! ended jobs, derives speed when the agent leaves it 0, keeps the true peak and minimum, keeps
//! the ETA, and applies the snapshot policy (first report, phase change, or the interval passed
//! on the agent's clock). The caller persists the points it returns before acknowledging.

use super::report::Report;
use super::{duration, timestamp, JobStatus, JobType, Millis, Point};
use crate::error::{Error, Result};
use crate::proto;

/// Time constant of the recent-speed average that drives the ETA.
const RECENT_SPEED_WINDOW_MS: f64 = 60_000.0;
/// The ETA needs this much of the job done…
const ETA_MIN_PERCENT: f64 = 5.0;
/// …and this much reporting history.
const ETA_MIN_ELAPSED_MS: Millis = 60_000;

/// Everything the hub knows about one job between reports.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub job_id: String,
    pub machine: String,
    pub job_type: JobType,
    pub status: JobStatus,
    /// Agent clock of the first report.
    pub started_at: Millis,
    /// Agent clock of the terminal report (or the last report, when abandoned).
    pub ended_at: Option<Millis>,
    pub phase: String,
    pub progress_percent: f64,
    pub bytes_transferred: u64,
    pub total_bytes: u64,
    pub transfer_speed_bps: u64,
    pub error_message: String,
    pub last_sequence: u64,
    /// Agent clock of the latest accepted report.
    pub last_report_at: Millis,
    /// Hub clock of the latest accepted report; the stall timeout runs on it.
    pub last_received_at: Millis,
    /// Agent clock of the newest stored snapshot. (Every phase change is stored, so the
    /// newest snapshot's phase is always the current `phase`.)
    pub last_snapshot_at: Option<Millis>,
    /// Highest speed of any accepted report.
    pub peak_speed_bps: u64,
    /// Lowest measured speed of any accepted report (the first report, before any byte
    /// moved, is no measurement).
    pub min_speed_bps: Option<u64>,
    /// The peak report when it has not been stored as a snapshot yet; it is stored with the
    /// next snapshot so the curve always contains the peak.
    pub unstored_peak: Option<Point>,
    /// Exponentially weighted recent speed (bytes/s), for the ETA.
    pub recent_speed_bps: f64,
    pub estimated_completion: Option<Millis>,
}

/// What the caller must do with an accepted report.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A retry of a report already accepted: acknowledge with `duplicate = true`, change nothing.
    Duplicate,
    /// Accepted. `store` lists the points to commit before acknowledging (empty: none);
    /// `ends` means this report ended the job and the rollup must run in the same commit.
    Accepted { store: Vec<Point>, ends: bool },
}

impl JobState {
    /// The state created by a job's first report, which is always stored as a snapshot.
    pub fn start(report: &Report) -> Result<(JobState, Vec<Point>)> {
        if report.machine.is_empty() {
            return Err(Error::invalid(
                "machine",
                "is required on the first report of a job",
            ));
        }
        let job_type = report.job_type.ok_or_else(|| {
            Error::invalid("job_type", "is required on the first report of a job")
        })?;
        let mut state = JobState {
            job_id: report.job_id.clone(),
            machine: report.machine.clone(),
            job_type,
            status: JobStatus::Running,
            started_at: report.sampled_at,
            ended_at: None,
            phase: String::new(),
            progress_percent: 0.0,
            bytes_transferred: 0,
            total_bytes: 0,
            transfer_speed_bps: 0,
            error_message: String::new(),
            last_sequence: report.sequence,
            last_report_at: report.sampled_at,
            last_received_at: report.received_at,
            last_snapshot_at: None,
            peak_speed_bps: 0,
            min_speed_bps: None,
            unstored_peak: None,
            recent_speed_bps: 0.0,
            estimated_completion: None,
        };
        let store = state.take(report, true, 0);
        Ok((state, store))
    }

    /// Applies a later report. Errors leave the state unchanged.
    pub fn accept(&mut self, report: &Report, snapshot_interval_ms: Millis) -> Result<Step> {
        if self.status.is_terminal() {
            if report.sequence == self.last_sequence {
                return Ok(Step::Duplicate);
            }
            return Err(Error::FailedPrecondition(format!(
                "job {} has ended ({}); it accepts no further reports",
                self.job_id,
                self.status.as_str()
            )));
        }
        if report.sequence <= self.last_sequence {
            return Ok(Step::Duplicate);
        }
        if !report.machine.is_empty() && report.machine != self.machine {
            return Err(Error::invalid(
                "machine",
                format!("job {} belongs to machine {}", self.job_id, self.machine),
            ));
        }
        if report.bytes_transferred < self.bytes_transferred {
            return Err(Error::invalid(
                "bytes_transferred",
                format!(
                    "must not decrease within a job (last accepted: {})",
                    self.bytes_transferred
                ),
            ));
        }
        let store = self.take(report, false, snapshot_interval_ms);
        Ok(Step::Accepted {
            store,
            ends: self.status.is_terminal(),
        })
    }

    /// Moves the state to `report` and returns the points to store.
    fn take(&mut self, report: &Report, first: bool, snapshot_interval_ms: Millis) -> Vec<Point> {
        // An agent whose clock stepped back still produces a monotonic curve.
        let sampled_at = report.sampled_at.max(self.last_report_at);
        let elapsed_since_last = sampled_at - self.last_report_at;
        let speed = if report.transfer_speed_bps > 0 || first {
            report.transfer_speed_bps
        } else if elapsed_since_last > 0 {
            let grown = report.bytes_transferred - self.bytes_transferred;
            (grown as f64 * 1000.0 / elapsed_since_last as f64).round() as u64
        } else {
            self.transfer_speed_bps
        };
        let terminal = report.status.is_terminal();
        // Proto3 cannot tell "unset" from empty: an empty phase or a 0 total keeps the last one.
        let phase_changed = !report.phase.is_empty() && report.phase != self.phase;
        let measured = if first {
            speed > 0
        } else {
            !(terminal && speed == 0)
        };

        self.status = report.status;
        self.last_sequence = report.sequence;
        self.last_report_at = sampled_at;
        self.last_received_at = report.received_at;
        if phase_changed {
            self.phase = report.phase.clone();
        }
        self.progress_percent = report.progress_percent;
        self.bytes_transferred = report.bytes_transferred;
        if report.total_bytes > 0 {
            self.total_bytes = report.total_bytes;
        }
        self.transfer_speed_bps = speed;
        if !report.error_message.is_empty() {
            self.error_message = report.error_message.clone();
        }
        if terminal {
            self.ended_at = Some(sampled_at);
            self.estimated_completion = None;
        }

        let point = self.current_point();
        let new_peak = measured && speed > self.peak_speed_bps;
        if measured {
            if self.min_speed_bps.is_none() {
                self.recent_speed_bps = speed as f64;
            } else if elapsed_since_last > 0 {
                let alpha = 1.0 - (-(elapsed_since_last as f64) / RECENT_SPEED_WINDOW_MS).exp();
                self.recent_speed_bps += alpha * (speed as f64 - self.recent_speed_bps);
            }
            self.min_speed_bps = Some(self.min_speed_bps.map_or(speed, |m| m.min(speed)));
            self.peak_speed_bps = self.peak_speed_bps.max(speed);
        }
        if !terminal {
            self.estimated_completion = self.eta();
        }

        let due = first
            || terminal
            || phase_changed
            || self
                .last_snapshot_at
                .is_none_or(|at| sampled_at - at >= snapshot_interval_ms);
        if !due {
            if new_peak {
                self.unstored_peak = Some(point);
            }
            return Vec::new();
        }
        let mut store = Vec::with_capacity(2);
        // The held-back peak matters only if the point stored now does not show it already.
        if let Some(peak) = self.unstored_peak.take() {
            if peak.speed_bps > point.speed_bps {
                store.push(peak);
            }
        }
        self.last_snapshot_at = Some(sampled_at);
        store.push(point);
        store
    }

    /// Goes on from `latest`, the newest stored snapshot, when it is ahead of this state (a job
    /// read back from a row that keeps what its first report said), and from `now` for the
    /// stall timeout. The recent speed starts over from the snapshot's.
    pub fn resume(&mut self, latest: Option<Point>, now: Millis) {
        if let Some(p) = latest.filter(|p| p.sequence > self.last_sequence) {
            self.last_sequence = p.sequence;
            self.last_report_at = p.sampled_at;
            self.last_snapshot_at = Some(p.sampled_at);
            self.bytes_transferred = p.bytes_transferred;
            self.transfer_speed_bps = p.speed_bps;
            self.progress_percent = p.progress_percent;
            if p.speed_bps > 0 {
                self.recent_speed_bps = p.speed_bps as f64;
                self.peak_speed_bps = self.peak_speed_bps.max(p.speed_bps);
                self.min_speed_bps = Some(
                    self.min_speed_bps
                        .map_or(p.speed_bps, |m| m.min(p.speed_bps)),
                );
            }
            self.phase = p.phase;
            self.estimated_completion = self.eta();
        }
        self.last_received_at = self.last_received_at.max(now);
    }

    /// Completion estimate from the recent speed; `None` until there is enough data.
    fn eta(&self) -> Option<Millis> {
        if self.total_bytes == 0 || self.recent_speed_bps < 1.0 {
            return None;
        }
        let done = self.bytes_transferred as f64 * 100.0 / self.total_bytes as f64;
        if done < ETA_MIN_PERCENT || self.last_report_at - self.started_at < ETA_MIN_ELAPSED_MS {
            return None;
        }
        let remaining = self.total_bytes.saturating_sub(self.bytes_transferred) as f64;
        let ms = (remaining / self.recent_speed_bps * 1000.0).min(1e13) as Millis;
        Some(self.last_report_at + ms)
    }

    /// The latest report as a chart point.
    pub fn current_point(&self) -> Point {
        Point {
            sequence: self.last_sequence,
            sampled_at: self.last_report_at,
            bytes_transferred: self.bytes_transferred,
            speed_bps: self.transfer_speed_bps,
            progress_percent: self.progress_percent,
            phase: self.phase.clone(),
        }
    }

    /// Marks a silent job abandoned at its last report; returns the points still to store.
    pub fn abandon(&mut self) -> Vec<Point> {
        self.status = JobStatus::Abandoned;
        self.ended_at = Some(self.last_report_at);
        self.estimated_completion = None;
        let mut store: Vec<Point> = self.unstored_peak.take().into_iter().collect();
        if self.last_snapshot_at != Some(self.last_report_at) {
            store.push(self.current_point());
        }
        store
    }

    /// The job as the API shows it.
    pub fn to_proto(&self) -> proto::Job {
        let end = self.ended_at.unwrap_or(self.last_report_at);
        proto::Job {
            job_id: self.job_id.clone(),
            machine: self.machine.clone(),
            job_type: self.job_type.to_proto() as i32,
            status: self.status.to_proto() as i32,
            started_at: Some(timestamp(self.started_at)),
            ended_at: self.ended_at.map(timestamp),
            phase: self.phase.clone(),
            progress_percent: self.progress_percent,
            bytes_transferred: self.bytes_transferred,
            total_bytes: self.total_bytes,
            transfer_speed_bps: self.transfer_speed_bps,
            error_message: self.error_message.clone(),
            last_report_at: Some(timestamp(self.last_report_at)),
            estimated_completion: self.estimated_completion.map(timestamp),
            duration: Some(duration(end - self.started_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;
    const INTERVAL: Millis = 30_000;

    fn report(sequence: u64, secs: i64, bytes: u64, speed: u64) -> Report {
        Report {
            job_id: "job-1".into(),
            sequence,
            sampled_at: T0 + secs * 1000,
            received_at: T0 + secs * 1000,
            status: JobStatus::Running,
            phase: "transfer".into(),
            bytes_transferred: bytes,
            total_bytes: 1_000_000_000,
            progress_percent: bytes as f64 / 10_000_000.0,
            transfer_speed_bps: speed,
            error_message: String::new(),
            machine: "vm-01".into(),
            job_type: Some(JobType::Full),
            machine_info: None,
        }
    }

    fn stored(step: Step) -> Vec<Point> {
        match step {
            Step::Accepted { store, .. } => store,
            Step::Duplicate => panic!("unexpected duplicate"),
        }
    }

    #[test]
    fn first_report_needs_machine_and_type_and_is_stored() {
        let mut r = report(1, 0, 0, 0);
        r.machine.clear();
        assert!(matches!(
            JobState::start(&r),
            Err(Error::InvalidArgument {
                field: "machine",
                ..
            })
        ));
        let mut r = report(1, 0, 0, 0);
        r.job_type = None;
        assert!(matches!(
            JobState::start(&r),
            Err(Error::InvalidArgument {
                field: "job_type",
                ..
            })
        ));
        let (_, store) = JobState::start(&report(1, 0, 0, 0)).unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn snapshots_follow_the_agent_clock_interval_and_phase_changes() {
        let (mut job, _) = JobState::start(&report(1, 0, 0, 0)).unwrap();
        // Reports every 3 s: one snapshot per 30 s of agent time.
        let mut stored_at = Vec::new();
        for i in 1..=20u64 {
            let s = stored(
                job.accept(
                    &report(i + 1, i as i64 * 3, i * 30_000_000, 10_000_000),
                    INTERVAL,
                )
                .unwrap(),
            );
            if !s.is_empty() {
                stored_at.push(i * 3);
            }
        }
        assert_eq!(stored_at, vec![30, 60]);
        let mut r = report(30, 61, 700_000_000, 10_000_000);
        r.phase = "finalize".into();
        assert_eq!(
            stored(job.accept(&r, INTERVAL).unwrap()).len(),
            1,
            "phase change is stored"
        );
    }

    #[test]
    fn duplicates_change_nothing_and_ended_jobs_refuse_new_reports() {
        let (mut job, _) = JobState::start(&report(5, 0, 0, 0)).unwrap();
        let before = job.clone();
        assert_eq!(
            job.accept(&report(5, 3, 10, 0), INTERVAL).unwrap(),
            Step::Duplicate
        );
        assert_eq!(
            job.accept(&report(4, 3, 10, 0), INTERVAL).unwrap(),
            Step::Duplicate
        );
        assert_eq!(job, before);
        let mut end = report(6, 10, 100, 0);
        end.status = JobStatus::Succeeded;
        assert!(matches!(
            job.accept(&end, INTERVAL).unwrap(),
            Step::Accepted { ends: true, .. }
        ));
        assert_eq!(
            job.accept(&end, INTERVAL).unwrap(),
            Step::Duplicate,
            "terminal retry"
        );
        assert!(matches!(
            job.accept(&report(7, 11, 100, 0), INTERVAL),
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[test]
    fn an_unset_phase_or_total_keeps_the_last_known_one() {
        let (mut job, _) = JobState::start(&report(1, 0, 0, 0)).unwrap();
        let mut r = report(2, 3, 30, 10);
        r.phase.clear();
        r.total_bytes = 0;
        assert!(
            stored(job.accept(&r, INTERVAL).unwrap()).is_empty(),
            "no phase change"
        );
        assert_eq!(job.phase, "transfer");
        assert_eq!(job.total_bytes, 1_000_000_000);
    }

    #[test]
    fn bytes_may_not_decrease() {
        let (mut job, _) = JobState::start(&report(1, 0, 500, 0)).unwrap();
        let err = job.accept(&report(2, 3, 400, 0), INTERVAL).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidArgument {
                field: "bytes_transferred",
                ..
            }
        ));
        assert_eq!(job.last_sequence, 1, "a rejected report changes nothing");
    }

    #[test]
    fn speed_is_derived_from_bytes_and_agent_time_when_unset() {
        let (mut job, _) = JobState::start(&report(1, 0, 0, 0)).unwrap();
        job.accept(&report(2, 4, 40_000_000, 0), INTERVAL).unwrap();
        assert_eq!(job.transfer_speed_bps, 10_000_000);
        job.accept(&report(3, 6, 50_000_000, 7), INTERVAL).unwrap();
        assert_eq!(job.transfer_speed_bps, 7, "the agent's own figure wins");
    }

    #[test]
    fn an_unstored_peak_is_stored_with_the_next_snapshot() {
        let (mut job, _) = JobState::start(&report(1, 0, 0, 0)).unwrap();
        assert!(stored(job.accept(&report(2, 3, 30, 90), INTERVAL).unwrap()).is_empty());
        assert!(stored(job.accept(&report(3, 6, 60, 20), INTERVAL).unwrap()).is_empty());
        let s = stored(job.accept(&report(4, 30, 300, 20), INTERVAL).unwrap());
        assert_eq!(
            s.iter().map(|p| p.speed_bps).collect::<Vec<_>>(),
            vec![90, 20]
        );
        assert_eq!(job.peak_speed_bps, 90);
        assert_eq!(job.min_speed_bps, Some(20));
    }

    #[test]
    fn eta_waits_for_five_percent_and_a_minute() {
        let (mut job, _) = JobState::start(&report(1, 0, 0, 0)).unwrap();
        job.accept(&report(2, 30, 300_000_000, 10_000_000), INTERVAL)
            .unwrap();
        assert_eq!(job.estimated_completion, None, "30 s is not enough history");
        job.accept(&report(3, 60, 600_000_000, 10_000_000), INTERVAL)
            .unwrap();
        let eta = job.estimated_completion.expect("eta after 60 s and 60 %");
        assert_eq!(eta, T0 + 60_000 + 40_000);
        let mut unknown = report(1, 0, 0, 0);
        unknown.total_bytes = 0;
        let (mut job, _) = JobState::start(&unknown).unwrap();
        for (seq, secs) in [(2, 60), (3, 120)] {
            let mut r = report(seq, secs, secs as u64 * 10_000_000, 10_000_000);
            r.total_bytes = 0;
            job.accept(&r, INTERVAL).unwrap();
        }
        assert_eq!(job.estimated_completion, None, "no total, no guess");
    }
}
