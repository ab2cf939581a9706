//! Simulated backups: machines, realistic speed curves, and the demo fleet behind `backwatch demo`.
//!
//! A job goes through `snapshot` (no data yet), `transfer` and `finalize`. The transfer speed
//! ramps up, moves between plateaus (disks, cache warm-up), dips now and then (contention), and
//! carries a little noise. Full jobs move the whole disk set, incrementals a fraction of it at a
//! lower speed. About one job in twelve fails with an operator-style error, one in thirty is
//! cancelled.

use std::f64::consts::PI;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::proto::{JobType, MachineInfo};
use crate::reporter::{Ack, JobSpec, Outcome, Progress, ReportError, Reporter, ReporterConfig};

/// A machine being backed up.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMachine {
    pub name: String,
    pub info: MachineInfo,
    /// Typical full-backup read speed of this machine.
    pub speed_bps: f64,
}

/// `count` machines with plausible, varied hardware.
pub fn fleet(count: usize, rng: &mut fastrand::Rng) -> Vec<SimMachine> {
    const ROLES: [(&str, &str); 8] = [
        ("db", "Ubuntu 22.04"),
        ("web", "Debian 12"),
        ("files", "Windows Server 2022"),
        ("mail", "Rocky Linux 9"),
        ("erp", "Windows Server 2019"),
        ("build", "Ubuntu 24.04"),
        ("dc", "Windows Server 2022"),
        ("git", "Debian 12"),
    ];
    (0..count)
        .map(|i| {
            let (role, os) = ROLES[i % ROLES.len()];
            let cores = [2, 4, 8, 16][rng.usize(..4)];
            SimMachine {
                name: format!("{role}-{:02}", i / ROLES.len() + 1),
                info: MachineInfo {
                    cpu_cores: cores,
                    memory_bytes: u64::from(cores) * [2, 4, 8][rng.usize(..3)] * 1_073_741_824,
                    disk_count: 1 + rng.u32(..4),
                    os: os.to_string(),
                },
                speed_bps: 60e6 + rng.f64() * 340e6,
            }
        })
        .collect()
}

const ERRORS: [&str; 5] = [
    "Connection to backup repository lost: connection reset by peer",
    "Read error on /dev/sdb at sector 183746112: Input/output error",
    "Repository out of space: 12.4 GB free, 38.1 GB required",
    "Lost contact with hypervisor host esx-02 (no answer for 300 s)",
    "Changed block tracking data is invalid; a full backup is required",
];

/// How a simulated job will go, fixed when it starts.
#[derive(Debug, Clone)]
struct Plan {
    total_bytes: u64,
    snapshot_secs: f64,
    transfer_secs: f64,
    finalize_secs: f64,
    nominal_bps: f64,
    /// Speed level of each equal slice of the transfer (fractions of nominal).
    plateaus: Vec<f64>,
    /// (centre, width, depth) as fractions of the planned transfer time and of the speed.
    dips: Vec<(f64, f64, f64)>,
    /// Stop early at this share of the bytes (0 = during the snapshot) with this outcome.
    early_end: Option<(f64, Outcome)>,
}

impl Plan {
    fn new(
        machine: &SimMachine,
        job_type: JobType,
        duration: Duration,
        rng: &mut fastrand::Rng,
    ) -> Self {
        let d = duration.as_secs_f64().max(20.0);
        let snapshot_secs = (d * (0.03 + rng.f64() * 0.03)).clamp(2.0, 300.0);
        let finalize_secs = (d * (0.02 + rng.f64() * 0.03)).clamp(2.0, 240.0);
        let transfer_secs = d - snapshot_secs - finalize_secs;
        let kind = if job_type == JobType::Full { 1.0 } else { 0.65 };
        let slices = 2 + rng.usize(..3);
        let early_end = match rng.u32(..100) {
            0..=7 => {
                let at = if rng.bool() {
                    0.0
                } else {
                    0.1 + rng.f64() * 0.8
                };
                Some((
                    at,
                    Outcome::Failed(ERRORS[rng.usize(..ERRORS.len())].to_string()),
                ))
            }
            8..=10 => Some((0.2 + rng.f64() * 0.7, Outcome::Cancelled)),
            _ => None,
        };
        let mut plan = Plan {
            total_bytes: 0,
            snapshot_secs,
            transfer_secs,
            finalize_secs,
            nominal_bps: machine.speed_bps * kind * (0.85 + rng.f64() * 0.3),
            plateaus: (0..slices).map(|_| 0.6 + rng.f64() * 0.55).collect(),
            dips: (0..rng.usize(..4))
                .map(|_| {
                    (
                        0.15 + rng.f64() * 0.8,
                        0.03 + rng.f64() * 0.06,
                        0.2 + rng.f64() * 0.3,
                    )
                })
                .collect(),
            early_end,
        };
        // The size that this curve moves in the planned time, so the job lasts about `duration`.
        let steps = 400;
        let dt = transfer_secs / steps as f64;
        plan.total_bytes = (0..steps)
            .map(|i| plan.speed_at(i as f64 * dt) * dt)
            .sum::<f64>() as u64;
        plan
    }

    /// Speed without noise, `t` seconds into the transfer.
    fn speed_at(&self, t: f64) -> f64 {
        let x = (t / self.transfer_secs).max(0.0);
        let slice = ((x * self.plateaus.len() as f64) as usize).min(self.plateaus.len() - 1);
        let ramp = 1.0 - (-t / (self.transfer_secs * 0.06).max(2.0)).exp();
        let dips: f64 = self
            .dips
            .iter()
            .map(|&(at, width, depth)| {
                let off = (x - at).abs() / (width / 2.0);
                if off < 1.0 {
                    1.0 - (1.0 - depth) * 0.5 * (1.0 + (PI * off).cos())
                } else {
                    1.0
                }
            })
            .product();
        self.nominal_bps * self.plateaus[slice] * ramp * dips
    }
}

/// One simulated backup job, advanced step by step.
#[derive(Debug, Clone)]
pub struct SimJob {
    plan: Plan,
    elapsed: f64,
    bytes: f64,
    speed: f64,
    /// Time the transfer ended (bytes complete), once it has.
    transfer_done_at: Option<f64>,
    rng: fastrand::Rng,
}

/// The state after a step: what to report, and the outcome once the job has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub progress: Progress,
    pub outcome: Option<Outcome>,
}

impl SimJob {
    /// A job on `machine` planned to last about `duration` (failures end it sooner).
    pub fn new(
        machine: &SimMachine,
        job_type: JobType,
        duration: Duration,
        mut rng: fastrand::Rng,
    ) -> Self {
        let plan = Plan::new(machine, job_type, duration, &mut rng);
        SimJob {
            plan,
            elapsed: 0.0,
            bytes: 0.0,
            speed: 0.0,
            transfer_done_at: None,
            rng,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.plan.total_bytes
    }

    /// The state now, without advancing.
    pub fn current(&self) -> Step {
        self.step(None)
    }

    /// Moves `dt` seconds on and returns the new state.
    pub fn advance(&mut self, dt: f64) -> Step {
        let p = &self.plan;
        self.elapsed += dt;
        let t = self.elapsed - p.snapshot_secs;
        if t <= 0.0 || self.transfer_done_at.is_some() {
            self.speed = 0.0;
        } else {
            let noise = 1.0 + (self.rng.f64() - 0.5) * 0.12;
            self.speed = p.speed_at(t) * noise;
            // Only the part of the step after the snapshot moves data.
            self.bytes = (self.bytes + self.speed * dt.min(t)).min(p.total_bytes as f64);
            if self.bytes >= p.total_bytes as f64 {
                self.transfer_done_at = Some(self.elapsed);
            }
        }
        let outcome = match (&p.early_end, self.transfer_done_at) {
            (Some((at, outcome)), _) if *at <= 0.0 && t > 0.0 => Some(outcome.clone()),
            (Some((at, outcome)), _) if *at > 0.0 && self.bytes >= at * p.total_bytes as f64 => {
                Some(outcome.clone())
            }
            (None, Some(done)) if self.elapsed - done >= p.finalize_secs => {
                Some(Outcome::Succeeded)
            }
            _ => None,
        };
        self.step(outcome)
    }

    fn step(&self, outcome: Option<Outcome>) -> Step {
        let total = self.plan.total_bytes;
        let phase = if self.elapsed < self.plan.snapshot_secs {
            "snapshot"
        } else if self.transfer_done_at.is_some() {
            "finalize"
        } else {
            "transfer"
        };
        Step {
            progress: Progress {
                phase: phase.to_string(),
                bytes_transferred: self.bytes as u64,
                total_bytes: total,
                progress_percent: (self.bytes / total.max(1) as f64 * 100.0).min(100.0),
                transfer_speed_bps: self.speed as u64,
                sampled_at: None,
            },
            outcome,
        }
    }
}

/// `<machine>-<unix-ms>` of the job's start.
pub fn job_id(machine: &str, started: SystemTime) -> String {
    let ms = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{machine}-{ms}")
}

fn spec(machine: &SimMachine, job_type: JobType, started: SystemTime) -> JobSpec {
    JobSpec {
        job_id: job_id(&machine.name, started),
        machine: machine.name.clone(),
        job_type,
        machine_info: Some(machine.info.clone()),
    }
}

/// Runs a job in real time, reporting every `interval` (±15 %), and waits for its terminal
/// report to be taken.
pub async fn run_live_job(
    reporter: &Reporter,
    machine: &SimMachine,
    job_type: JobType,
    duration: Duration,
    interval: Duration,
    rng: &mut fastrand::Rng,
) -> Result<(String, Outcome, Ack), ReportError> {
    let job = reporter.start_job(spec(machine, job_type, SystemTime::now()));
    let mut sim = SimJob::new(machine, job_type, duration, rng.fork());
    job.report(sim.current().progress)?;
    let mut last = Instant::now();
    loop {
        let wait = interval.as_secs_f64() * (0.85 + rng.f64() * 0.3);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let now = Instant::now();
        let step = sim.advance((now - last).as_secs_f64());
        last = now;
        match step.outcome {
            None => {
                job.report(step.progress)?;
            }
            Some(outcome) => {
                let ack = job.finish(outcome.clone(), step.progress).await?;
                return Ok((job.job().job_id.clone(), outcome, ack));
            }
        }
    }
}

/// Replays a job that started at `started` in the past: one report per 30 s of its time, sent
/// as fast as the hub takes them.
pub async fn backfill_job(
    reporter: &Reporter,
    machine: &SimMachine,
    job_type: JobType,
    duration: Duration,
    started: SystemTime,
    rng: &mut fastrand::Rng,
) -> Result<(String, Outcome, Ack), ReportError> {
    const STEP: f64 = 30.0;
    let job = reporter.start_job(spec(machine, job_type, started));
    let mut sim = SimJob::new(machine, job_type, duration, rng.fork());
    let at = |n: u32| Some(started + Duration::from_secs_f64(f64::from(n) * STEP));
    job.report(Progress {
        sampled_at: at(0),
        ..sim.current().progress
    })?;
    for n in 1.. {
        let step = sim.advance(STEP);
        let progress = Progress {
            sampled_at: at(n),
            ..step.progress
        };
        if let Some(outcome) = step.outcome {
            let ack = job.finish(outcome.clone(), progress).await?;
            return Ok((job.job().job_id.clone(), outcome, ack));
        }
        job.report(progress)?;
    }
    unreachable!("the loop returns when the job ends")
}

/// Full jobs take longer and are rarer; a rough scale for the demo.
fn pick_job(
    rng: &mut fastrand::Rng,
    full_every: u32,
    short: Duration,
    long: Duration,
) -> (JobType, Duration) {
    let spread =
        |lo: Duration, hi: Duration, rng: &mut fastrand::Rng| lo + (hi - lo).mul_f64(rng.f64());
    if rng.u32(..full_every) == 0 {
        (JobType::Full, spread(long.mul_f64(0.6), long, rng))
    } else {
        (JobType::Incremental, spread(short.mul_f64(0.4), short, rng))
    }
}

/// Backs up six machines forever against the hub at `endpoint` (`http://127.0.0.1:50051`), for
/// `backwatch demo`. First replays about eight finished jobs per machine spread over the last
/// 20 hours (sent as fast as the hub takes them, so history is there within seconds), then runs
/// live jobs of 1–4 minutes reporting every 2–3 s, one after another with short pauses.
/// Returns only if the endpoint is malformed.
pub async fn run_demo(endpoint: String) {
    run_demo_with(ReporterConfig::new(endpoint)).await
}

/// [`run_demo`] with full reporter settings, for a hub that wants an agent token or TLS.
pub async fn run_demo_with(config: ReporterConfig) {
    let reporter = match Reporter::new(config) {
        Ok(reporter) => reporter,
        Err(error) => {
            tracing::error!(%error, "demo agents cannot start");
            return;
        }
    };
    let mut rng = fastrand::Rng::new();
    let mut machines = tokio::task::JoinSet::new();
    for machine in fleet(6, &mut rng) {
        machines.spawn(demo_machine(reporter.clone(), machine, rng.fork()));
    }
    while machines.join_next().await.is_some() {}
}

async fn demo_machine(reporter: Reporter, machine: SimMachine, mut rng: fastrand::Rng) {
    let now = SystemTime::now();
    for k in 0..8u32 {
        let (job_type, duration) = pick_job(
            &mut rng,
            4,
            Duration::from_secs(25 * 60),
            Duration::from_secs(90 * 60),
        );
        let offset = Duration::from_secs(20 * 3600) - Duration::from_secs(9000) * k;
        let started = now - offset + Duration::from_secs(rng.u64(..1200));
        log_result(
            &machine,
            backfill_job(&reporter, &machine, job_type, duration, started, &mut rng).await,
        );
    }
    tokio::time::sleep(Duration::from_millis(rng.u64(..6000))).await;
    loop {
        let (job_type, duration) = pick_job(
            &mut rng,
            5,
            Duration::from_secs(150),
            Duration::from_secs(240),
        );
        let interval = Duration::from_millis(2000 + rng.u64(..1000));
        log_result(
            &machine,
            run_live_job(&reporter, &machine, job_type, duration, interval, &mut rng).await,
        );
        tokio::time::sleep(Duration::from_millis(4000 + rng.u64(..12_000))).await;
    }
}

fn log_result(machine: &SimMachine, result: Result<(String, Outcome, Ack), ReportError>) {
    match result {
        Ok((job_id, outcome, _)) => {
            tracing::info!(machine = %machine.name, %job_id, ?outcome, "simulated job ended")
        }
        Err(error) => {
            tracing::warn!(machine = %machine.name, %error, "simulated job lost its telemetry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;

    fn machine() -> SimMachine {
        fleet(1, &mut fastrand::Rng::with_seed(1)).remove(0)
    }

    fn run(seed: u64, job_type: JobType, minutes: u64, dt: f64) -> Vec<Step> {
        let mut job = SimJob::new(
            &machine(),
            job_type,
            Duration::from_secs(minutes * 60),
            fastrand::Rng::with_seed(seed),
        );
        let mut steps = vec![job.current()];
        while steps.last().unwrap().outcome.is_none() {
            steps.push(job.advance(dt));
            assert!(steps.len() < 100_000, "job never ends");
        }
        steps
    }

    #[test]
    fn jobs_go_through_snapshot_transfer_finalize_with_growing_bytes() {
        for seed in 0..200 {
            let steps = run(seed, JobType::Full, 30, 30.0);
            let bytes: Vec<u64> = steps.iter().map(|s| s.progress.bytes_transferred).collect();
            assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "bytes went down");
            assert_eq!(steps[0].progress.phase, "snapshot");
            let last = steps.last().unwrap();
            if last.outcome == Some(Outcome::Succeeded) {
                assert_eq!(last.progress.bytes_transferred, last.progress.total_bytes);
                assert_eq!(last.progress.phase, "finalize");
                // Ends near the planned 30 minutes.
                let minutes = steps.len() as f64 * 0.5;
                assert!((20.0..45.0).contains(&minutes), "{minutes} min");
            }
        }
    }

    #[test]
    fn some_jobs_fail_with_a_message_and_some_are_cancelled() {
        let outcomes: Vec<_> = (0..300)
            .map(|s| {
                run(s, JobType::Incremental, 5, 3.0)
                    .pop()
                    .unwrap()
                    .outcome
                    .unwrap()
            })
            .collect();
        let failed: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Failed(m) => Some(m),
                _ => None,
            })
            .collect();
        assert!(
            failed.len() > 5 && failed.len() < 60,
            "{} failed",
            failed.len()
        );
        assert!(failed.iter().all(|m| !m.is_empty()));
        assert!(outcomes.contains(&Outcome::Cancelled));
    }

    #[test]
    fn full_jobs_move_more_data_than_incrementals_of_the_same_machine() {
        let size = |t, s| {
            SimJob::new(
                &machine(),
                t,
                Duration::from_secs(3600),
                fastrand::Rng::with_seed(s),
            )
            .total_bytes()
        };
        let full: u64 = (0..20).map(|s| size(JobType::Full, s)).sum();
        let incr: u64 = (0..20).map(|s| size(JobType::Incremental, s)).sum();
        assert!(full > incr && full > 20 * 100 * GB, "{full} vs {incr}");
    }

    #[test]
    fn job_ids_are_machine_and_start_millis() {
        assert_eq!(
            job_id(
                "db-01",
                UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
            ),
            "db-01-1700000000123"
        );
    }
}
