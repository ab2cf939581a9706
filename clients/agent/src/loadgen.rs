//! Load against a hub: a paced fleet of jobs, saturated `ReportProgress`, many `WatchJob`
//! streams, and the latency statistics the benchmark prints.
//!
//! Every simulated job reports like a real agent would (strictly increasing sequence, growing
//! bytes, `sampled_at` = now, machine and type on every report), so the hub does its real work:
//! job creation, live state, a snapshot every 30 s per job.

use std::time::{Duration, Instant, SystemTime};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::hub::HubClient;
use crate::proto::{JobStatus, JobType, ReportProgressRequest, WatchJobRequest};
use crate::wire::ReportLine;

/// Sorted latencies in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn new(mut micros: Vec<u32>) -> Self {
        micros.sort_unstable();
        Latencies(micros)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These latencies and `other`'s, pooled.
    pub fn pooled(mut self, other: Latencies) -> Latencies {
        self.0.extend(other.0);
        Latencies::new(self.0)
    }

    /// The `q` quantile (0.5, 0.99); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        Duration::from_micros(u64::from(self.0[rank - 1]))
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(u64::from(self.0.last().copied().unwrap_or(0)))
    }

    /// `p50 1.23 ms  p99 4.56 ms  max 7.89 ms (n=…)`
    pub fn summary(&self) -> String {
        format!(
            "p50 {}  p99 {}  max {}  (n={})",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.max()),
            self.len()
        )
    }
}

/// `1.234 ms`
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// One answered report: when it was sent (since the run started) and how long the answer took.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub sent_ms: u32,
    pub latency_us: u32,
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Answered reports sent after the warm-up.
    pub samples: Vec<Sample>,
    /// Failed calls, any time.
    pub errors: u64,
    /// Paced reports not sent because the previous one of the job was still waiting at its tick.
    pub skipped: u64,
    pub first_error: Option<String>,
    /// Length of the measured window (after the warm-up).
    pub window: Duration,
}

impl LoadReport {
    /// Answered reports per second in the measured window.
    pub fn throughput(&self) -> f64 {
        self.samples.len() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn latencies(&self) -> Latencies {
        Latencies::new(self.samples.iter().map(|s| s.latency_us).collect())
    }

    /// Latencies of reports sent in `[from, to)` since the run started.
    pub fn latencies_between(&self, from: Duration, to: Duration) -> Latencies {
        let (from, to) = (from.as_millis() as u32, to.as_millis() as u32);
        Latencies::new(
            self.samples
                .iter()
                .filter(|s| s.sent_ms >= from && s.sent_ms < to)
                .map(|s| s.latency_us)
                .collect(),
        )
    }

    /// One line per `window` of send time: answered reports and their latencies, to see how a
    /// run settles (creation burst, backlog) and when latency moved.
    pub fn timeline(&self, window: Duration) -> Vec<String> {
        let step = window.as_millis().max(1) as u32;
        let last = self.samples.iter().map(|s| s.sent_ms).max().unwrap_or(0);
        (0..=last / step)
            .map(|k| {
                let from = Duration::from_millis(u64::from(k * step));
                let l = self.latencies_between(from, from + window);
                format!("{:>6.1} s  {}", from.as_secs_f64(), l.summary())
            })
            .collect()
    }

    /// Throughput, latencies and errors on one line.
    pub fn summary(&self) -> String {
        let errors = match &self.first_error {
            Some(e) => format!("  errors {} (first: {e})", self.errors),
            None => String::new(),
        };
        let skipped = match self.skipped {
            0 => String::new(),
            n => format!("  skipped ticks {n}"),
        };
        format!(
            "{:.0} req/s  {}{errors}{skipped}",
            self.throughput(),
            self.latencies().summary()
        )
    }

    /// Adds another run's measurements (its window adds to this one).
    pub fn absorb(&mut self, other: LoadReport) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        self.skipped += other.skipped;
        self.window += other.window;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn merge(&mut self, part: Part) {
        self.samples.extend(part.samples);
        self.errors += part.errors;
        self.skipped += part.skipped;
        if self.first_error.is_none() {
            self.first_error = part.first_error;
        }
    }
}

#[derive(Default)]
struct Part {
    samples: Vec<Sample>,
    errors: u64,
    skipped: u64,
    first_error: Option<String>,
}

impl Part {
    /// A call sent at `sent` and answered (or failed) at `answered`.
    fn record(
        &mut self,
        started: Instant,
        measure_from: Instant,
        (sent, answered): (Instant, Instant),
        result: Result<(), tonic::Status>,
    ) {
        match result {
            Ok(()) if sent >= measure_from => self.samples.push(Sample {
                sent_ms: (sent - started).as_millis() as u32,
                latency_us: (answered - sent).as_micros().min(u128::from(u32::MAX)) as u32,
            }),
            Ok(()) => {}
            Err(status) => {
                self.errors += 1;
                self.first_error
                    .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }
}

/// Report number `sequence` of a simulated running job: 16 MB/s, a snapshot-worthy curve.
pub fn running_report(
    job_id: &str,
    machine: &str,
    sequence: u64,
    sampled_at: SystemTime,
) -> ReportProgressRequest {
    const TOTAL: u64 = 2_000_000_000_000;
    let bytes = sequence * 48_000_000;
    ReportProgressRequest {
        job_id: job_id.to_string(),
        sequence,
        sampled_at: Some(sampled_at.into()),
        status: JobStatus::Running as i32,
        phase: "transfer".into(),
        bytes_transferred: bytes,
        total_bytes: TOTAL,
        progress_percent: (bytes as f64 * 100.0 / TOTAL as f64).min(99.0),
        transfer_speed_bps: 16_000_000 + (sequence % 7) * 1_000_000,
        error_message: String::new(),
        machine: machine.to_string(),
        job_type: JobType::Incremental as i32,
        machine_info: None,
    }
}

/// The terminal report that ends a job made of [`running_report`]s.
pub fn terminal_report(
    job_id: &str,
    machine: &str,
    sequence: u64,
    sampled_at: SystemTime,
) -> ReportProgressRequest {
    ReportProgressRequest {
        status: JobStatus::Succeeded as i32,
        phase: "finalize".into(),
        progress_percent: 100.0,
        ..running_report(job_id, machine, sequence, sampled_at)
    }
}

/// Machine of job number `i` in a fleet (200 machines per fleet).
pub fn machine_of(prefix: &str, i: usize) -> String {
    format!("{prefix}-m{:03}", i % 200)
}

/// How far back a fleet job's first report is dated: the hub stores a snapshot per job every
/// 30 s of agent time, so spreading the first snapshot over 30 s spreads all later ones as in
/// a fleet whose jobs started at different times, instead of every job snapshotting in the
/// same 3 s.
const SNAPSHOT_SPREAD: Duration = Duration::from_secs(30);

/// The first report of fleet job `i`, dated up to 30 s back (see `SNAPSHOT_SPREAD`).
fn first_report(prefix: &str, i: usize) -> ReportProgressRequest {
    let spread = SNAPSHOT_SPREAD.mul_f64((i as f64 * 0.618_034).fract());
    running_report(
        &format!("{prefix}-{i}"),
        &machine_of(prefix, i),
        1,
        SystemTime::now() - spread,
    )
}

/// Creates the jobs of a fleet (`<prefix>-<i>`, their first report each) as fast as the hub takes
/// them, `in_flight` at a time. The report's window is the time it took.
pub async fn create_jobs(
    lines: &[ReportLine],
    prefix: &str,
    jobs: usize,
    in_flight: usize,
) -> LoadReport {
    let started = Instant::now();
    let workers = in_flight.clamp(1, jobs.max(1));
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let line = lines[w % lines.len()].clone();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let mut part = Part::default();
            for i in (w..jobs).step_by(workers) {
                let sent = Instant::now();
                let result = line.report(&first_report(&prefix, i)).await;
                part.record(started, started, (sent, Instant::now()), result);
            }
            part
        });
    }
    let mut report = collect(tasks, Duration::ZERO).await;
    report.window = started.elapsed();
    report
}

/// Where the jobs of a paced fleet pick up.
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    /// The next report's sequence number (1: the fleet is new; 2 after [`create_jobs`]).
    pub sequence: u64,
    /// How far the jobs' clock (`sampled_at`) runs behind the real one: the time the fleet was
    /// paused, so that it resumes as if it had never stopped instead of every job being due
    /// for a snapshot at once.
    pub clock_behind: Duration,
}

impl Resume {
    /// Report `sequence` next, on the real clock.
    pub fn at(sequence: u64) -> Self {
        Resume {
            sequence,
            clock_behind: Duration::ZERO,
        }
    }
}

/// `jobs` jobs named `<prefix>-<i>`, each reporting every `interval` (spread evenly over one
/// interval) for `duration`, picking up at `resume`. Latencies count from `warmup` on. A
/// first report is dated up to 30 s back (see `SNAPSHOT_SPREAD`), so snapshot writes are
/// spread evenly.
///
/// One clock task sends each report when it is due, at most 1 ms late. (A timer per job made
/// the load generator itself stall every 4.1 s: tokio's timer wheel moves the timers of a
/// 4.096-s slot down all at once, some 35,000 of them at 50,000 jobs, and every latency
/// measured meanwhile, hub's and no-op's alike, took the stall.)
pub async fn paced(
    lines: &[ReportLine],
    prefix: &str,
    jobs: usize,
    resume: Resume,
    interval: Duration,
    duration: Duration,
    warmup: Duration,
) -> LoadReport {
    let started = Instant::now();
    let (measure_from, end) = (started + warmup, started + duration);
    let names: Vec<(String, String)> = (0..jobs)
        .map(|i| (format!("{prefix}-{i}"), machine_of(prefix, i)))
        .collect();
    // A job still waiting for its last answer when its next report is due skips that tick,
    // like an agent on a timer: it does not fire the missed ones at once later.
    let busy: Arc<[AtomicBool]> = (0..jobs).map(|_| AtomicBool::new(false)).collect();
    let mut sequences = vec![resume.sequence.max(1) - 1; jobs];
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let mut report = LoadReport {
        window: duration.saturating_sub(warmup),
        ..LoadReport::default()
    };
    // Report n is job n % jobs's report number n / jobs of this run.
    let due = |n: usize| started + interval.mul_f64(n as f64 / jobs.max(1) as f64);
    let mut next = 0;
    while jobs > 0 && due(next) < end {
        sleep_until(due(next).into()).await;
        let now = Instant::now();
        while due(next) <= now && due(next) < end {
            let i = next % jobs;
            next += 1;
            if busy[i].swap(true, Ordering::AcqRel) {
                report.skipped += 1;
                continue;
            }
            sequences[i] += 1;
            let (job_id, machine) = &names[i];
            let request = match sequences[i] {
                1 => first_report(prefix, i),
                sequence => running_report(
                    job_id,
                    machine,
                    sequence,
                    SystemTime::now() - resume.clock_behind,
                ),
            };
            let (busy, done) = (busy.clone(), done_tx.clone());
            let line = lines[i % lines.len()].clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let result = line.report(&request).await;
                let answered = Instant::now();
                busy[i].store(false, Ordering::Release);
                let _ = done.send(((sent, answered), result));
            });
        }
    }
    drop(done_tx);
    let mut part = Part::default();
    while let Some((times, result)) = done.recv().await {
        part.record(started, measure_from, times, result);
    }
    report.merge(part);
    report
}

/// `concurrency` jobs named `<prefix>-<i>`, each sending its next report as soon as the last is
/// answered, for `duration`; throughput and latencies count from `warmup` on.
pub async fn saturated(
    lines: &[ReportLine],
    prefix: &str,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
) -> LoadReport {
    let started = Instant::now();
    let (measure_from, end) = (started + warmup, started + duration);
    let mut tasks = JoinSet::new();
    for i in 0..concurrency {
        let line = lines[i % lines.len()].clone();
        let job_id = format!("{prefix}-{i}");
        let machine = machine_of(prefix, i);
        tasks.spawn(async move {
            let mut part = Part::default();
            let mut sequence = 0;
            while Instant::now() < end {
                sequence += 1;
                let sent = Instant::now();
                let request = running_report(&job_id, &machine, sequence, SystemTime::now());
                let result = line.report(&request).await;
                part.record(started, measure_from, (sent, Instant::now()), result);
            }
            part
        });
    }
    collect(tasks, duration.saturating_sub(warmup)).await
}

async fn collect(mut tasks: JoinSet<Part>, window: Duration) -> LoadReport {
    let mut report = LoadReport {
        window,
        ..LoadReport::default()
    };
    while let Some(part) = tasks.join_next().await {
        report.merge(part.expect("load task panicked"));
    }
    report
}

/// What the watchers saw.
#[derive(Debug, Clone, Default)]
pub struct WatchReport {
    /// Streams that delivered their first message.
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// From the call to the first message (the job's full state).
    pub first_message: Latencies,
    /// Per update: arrival minus its expected tick (see [`watch`]).
    pub lag: Latencies,
    pub updates: u64,
    /// Updates that were expected by the stream's schedule but never came.
    pub missed: u64,
}

/// Opens one `WatchJob` stream per job id (spread over the first `interval`, as GUIs come and
/// go) and listens for `duration`.
///
/// Lag definition: the hub promises update k of a stream at t0 + k × interval. The phase t0 is
/// the hub's choice and cannot be seen from outside, so each stream takes the most favourable
/// one its own updates allow: t0 = min over k of (arrival_k − k × interval). Lag of update k is
/// arrival_k − (t0 + k × interval): zero for the most punctual update, and it grows with
/// late ticks, jitter and drift (a skipped tick also counts in `missed`). A constant delay common
/// to every update of a stream is not visible this way.
pub async fn watch(
    clients: &[HubClient],
    job_ids: Vec<String>,
    interval: Duration,
    duration: Duration,
) -> WatchReport {
    let started = Instant::now();
    let count = job_ids.len();
    let mut tasks = JoinSet::new();
    for (i, job_id) in job_ids.into_iter().enumerate() {
        let mut client = clients[i % clients.len()].clone();
        let open_at = started + interval.mul_f64(i as f64 / count as f64);
        let end = open_at + duration;
        tasks.spawn(async move {
            sleep_until(open_at.into()).await;
            let opened = Instant::now();
            let request = WatchJobRequest {
                job_id,
                interval: Some(interval.try_into().expect("interval fits")),
            };
            let mut stream = client.watch_job(request).await?.into_inner();
            stream.message().await?;
            let first = opened.elapsed();
            let mut arrivals = Vec::new();
            while let Ok(message) = tokio::time::timeout_at(end.into(), stream.message()).await {
                if message?.is_none() {
                    break;
                }
                arrivals.push(Instant::now());
            }
            Ok::<_, tonic::Status>((first, arrivals))
        });
    }
    let mut report = WatchReport::default();
    let (mut firsts, mut lags) = (Vec::new(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        match result.expect("watch task panicked") {
            Ok((first, arrivals)) => {
                report.opened += 1;
                firsts.push(first.as_micros() as u32);
                report.updates += arrivals.len() as u64;
                let (stream_lags, missed) = tick_lags(&arrivals, interval);
                report.missed += missed;
                lags.extend(stream_lags);
            }
            Err(status) => {
                report.failed += 1;
                report
                    .first_error
                    .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }
    report.first_message = Latencies::new(firsts);
    report.lag = Latencies::new(lags);
    report
}

/// Lags (µs) of periodic arrivals against the most favourable schedule, and how many ticks of
/// that schedule were skipped (see [`watch`]).
pub fn tick_lags(arrivals: &[Instant], interval: Duration) -> (Vec<u32>, u64) {
    let Some(&first) = arrivals.first() else {
        return (Vec::new(), 0);
    };
    let step = interval.as_secs_f64();
    let offsets: Vec<f64> = arrivals
        .iter()
        .enumerate()
        .map(|(k, a)| (*a - first).as_secs_f64() - k as f64 * step)
        .collect();
    let t0 = offsets.iter().copied().fold(f64::INFINITY, f64::min);
    let lags = offsets
        .iter()
        .map(|o| ((o - t0) * 1e6).round() as u32)
        .collect();
    let span = (*arrivals.last().unwrap() - first).as_secs_f64() - t0;
    let expected = (span / step + 1e-6).floor() as u64 + 1;
    (lags, expected.saturating_sub(arrivals.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let l = Latencies::new((1..=100).rev().collect());
        assert_eq!(l.quantile(0.5), Duration::from_micros(50));
        assert_eq!(l.quantile(0.99), Duration::from_micros(99));
        assert_eq!(l.max(), Duration::from_micros(100));
        assert_eq!(Latencies::default().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn punctual_ticks_have_no_lag_and_a_late_one_shows() {
        let t = Instant::now();
        let s = Duration::from_secs(3);
        let at = |ms: u64| t + Duration::from_millis(ms);
        let (lags, missed) = tick_lags(&[at(0), at(3000), at(6000), at(9200), at(12000)], s);
        assert_eq!(lags, [0, 0, 0, 200_000, 0]);
        assert_eq!(missed, 0);
        // A stream whose first update came late: the later ones define the schedule.
        let (lags, _) = tick_lags(&[at(100), at(3000), at(6000)], s);
        assert_eq!(lags, [100_000, 0, 0]);
    }
}
