//! The hub's operations, one method per API call, shared by every transport (gRPC, grpc-web):
//! ingestion with the durability rules of SPEC 3, history and lists that overlay live state on
//! stored rows, the watch streams, and the stall sweep.

use crate::domain::job::{JobState, Step};
use crate::domain::report::{validate, validate_job_id, validate_machine};
use crate::domain::rollup::{rollup, RollupInput};
use crate::domain::{duration, now_millis, timestamp, JobStatus, Millis, Point};
use crate::error::{Error, Result};
use crate::live::watch::Feeds;
use crate::live::{LiveJob, LiveJobs, Slot};
use crate::proto;
use crate::store::rows::{JobRow, MachineRow};
use crate::store::writer::{JobWrite, WriteKind, WriteOutcome, Writer};
use crate::store::{queries, Store};
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};

/// Timing rules of the hub.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Minimum agent-clock time between stored snapshots of a running job.
    pub snapshot_interval: Duration,
    /// Default time between WatchJob updates.
    pub update_interval: Duration,
    /// A running job silent this long (hub clock) is abandoned.
    pub stall_timeout: Duration,
    /// Most job writes committed in one transaction.
    pub write_batch: usize,
}

/// Shortest update interval a watcher may ask for.
pub const MIN_UPDATE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest update interval a watcher may ask for.
pub const MAX_UPDATE_INTERVAL: Duration = Duration::from_secs(3600);
/// Ended jobs stay in memory this long, for retried terminal reports and late watchers.
const KEEP_ENDED: Duration = Duration::from_secs(300);
const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;
/// Times a report is judged again when other hubs keep moving its job on.
const STALE_RETRIES: usize = 5;
/// Silent jobs a sweep takes from a shared database at a time.
const SWEEP_BATCH: i64 = 1000;
/// Ended jobs in a machine's trend series.
const TREND_JOBS: i64 = 30;

/// Shared state behind every call.
pub struct Hub {
    store: Store,
    writer: Writer,
    live: Arc<LiveJobs>,
    feeds: Feeds,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
    /// PostgreSQL, possibly shared with other hubs: every report is written and watchers
    /// read progress from the database.
    shared: bool,
    /// SQLite: hub clock of each machine's newest stored snapshot. There a machine's row is
    /// written when one of its jobs starts or ends, not with every snapshot (one row less per
    /// commit); reads show the later of the two.
    machines_seen: dashmap::DashMap<String, Millis>,
}

/// A stream of watch updates.
pub type WatchStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<proto::WatchJobResponse>> + Send>>;

impl Hub {
    /// Starts the writer (on SQLite after moving what the snapshot journal still holds).
    pub fn new(
        store: Store,
        settings: Settings,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Hub>> {
        let writer = Writer::start(store.clone(), settings.write_batch)?;
        Ok(Arc::new(Hub {
            writer,
            live: Arc::default(),
            feeds: Feeds::default(),
            settings,
            shutdown,
            shared: !store.is_sqlite(),
            machines_seen: dashmap::DashMap::new(),
            store,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits until every acknowledged-or-pending write is committed.
    pub async fn flush(&self) -> Result<()> {
        self.writer.flush().await
    }

    /// ReportProgress: validate, apply to live state, commit what SPEC 3 requires, acknowledge.
    pub async fn report(
        &self,
        req: proto::ReportProgressRequest,
    ) -> Result<proto::ReportProgressResponse> {
        let report = validate(req, now_millis())?;
        let slot = self.live.slot(&report.job_id);
        let mut guard = slot.lock().await;
        // Another hub sharing the database may move the job on between our read and our
        // write; the conditional write notices, and the report is judged again on fresh state.
        // A report that could create its job tries that first (no read for a new job); if the
        // job exists after all, the write comes back stale and the job is loaded.
        let mut may_create = !report.machine.is_empty() && report.job_type.is_some();
        for _ in 0..STALE_RETRIES {
            if guard.is_none() && !std::mem::take(&mut may_create) {
                *guard = self.load(&report.job_id).await?;
            }
            // The slot takes the report at once; until the write is committed nobody else can
            // see it (we hold the job's lock), and if the write fails the slot is emptied so
            // the next report reloads the job from the database, which is the truth.
            let write = match guard.as_mut() {
                None => {
                    let (state, points) = JobState::start(&report)?;
                    let write = JobWrite {
                        kind: WriteKind::Create {
                            machine: report.machine_info.clone(),
                        },
                        job: state.clone(),
                        points,
                        stored_sequence: 0,
                    };
                    *guard = Some(LiveJob::new(state, None));
                    write
                }
                Some(live) => {
                    let (points, ends) =
                        match live.state.accept(&report, self.snapshot_interval_ms())? {
                            Step::Duplicate => return Ok(answer(true, live.state.status)),
                            Step::Accepted { store, ends } => (store, ends),
                        };
                    // On a shared database every report is written, so that every hub sees
                    // the latest sequence (dedupe) and the latest progress (watchers).
                    if points.is_empty() && !ends && !self.shared {
                        return Ok(answer(false, JobStatus::Running));
                    }
                    JobWrite {
                        kind: if ends {
                            WriteKind::End
                        } else {
                            WriteKind::Progress
                        },
                        job: live.state.clone(),
                        points,
                        stored_sequence: live.stored_sequence,
                    }
                }
            };
            let status = write.job.status;
            // SQLite: a running job's snapshot is stored by the journal, on this task.
            if let (WriteKind::Progress, Some(journal)) = (&write.kind, self.writer.journal()) {
                if let Err(e) = journal.append(&write.job.job_id, &write.points) {
                    *guard = None;
                    return Err(e);
                }
                self.machine_seen(&write.job.machine, write.job.last_received_at);
                return Ok(answer(false, status));
            }
            let outcome = self.writer.write(write).await;
            match (outcome, guard.as_mut()) {
                (Ok(WriteOutcome::Stored), Some(live)) => {
                    live.committed(None);
                    return Ok(answer(false, status));
                }
                (Ok(WriteOutcome::RolledUp(record)), Some(live)) => {
                    live.committed(Some(record));
                    return Ok(answer(false, status));
                }
                (Err(e), _) => {
                    *guard = None;
                    return Err(e);
                }
                (Ok(_), _) => *guard = None,
            }
        }
        Err(Error::Unavailable(format!(
            "job {} kept changing on other hubs",
            report.job_id
        )))
    }

    /// GetHistory: the job and its record (stored, or computed so far while running).
    pub async fn history(&self, job_id: &str) -> Result<proto::GetHistoryResponse> {
        validate_job_id(job_id)?;
        let live = self.live_copy(job_id).await?;
        let (job, record) = match live {
            Some(LiveJob {
                state,
                record: Some(record),
                ..
            }) => (state.to_proto(), (*record).clone()),
            Some(LiveJob {
                state,
                record: None,
                ..
            }) if !state.status.is_terminal() => {
                self.journal_moved().await?;
                let id = job_id.to_string();
                let stored = self
                    .store
                    .run(move |c| Ok(queries::snapshots(c, &id)?))
                    .await?;
                (state.to_proto(), record_so_far(&state, stored))
            }
            _ => {
                let id = job_id.to_string();
                let (row, stored) = self
                    .store
                    .run(move |c| {
                        let row = queries::job(c, &id)?.ok_or_else(|| not_found(&id))?;
                        let stored = match row.status()? {
                            JobStatus::Running => queries::snapshots(c, &id)?,
                            _ => Vec::new(),
                        };
                        Ok((row, stored))
                    })
                    .await?;
                let record = match row.record()? {
                    Some(r) => r,
                    None => record_so_far(&row.to_state()?, stored),
                };
                (row.to_proto()?, record)
            }
        };
        Ok(proto::GetHistoryResponse {
            job: Some(job),
            performance: Some(record),
        })
    }

    /// WatchJob: the full state first, an update per interval, the record last.
    pub async fn watch(&self, job_id: &str, interval: Option<Duration>) -> Result<WatchStream> {
        validate_job_id(job_id)?;
        let interval = interval.unwrap_or(self.settings.update_interval);
        if interval < MIN_UPDATE_INTERVAL || interval > MAX_UPDATE_INTERVAL {
            return Err(Error::invalid("interval", "must be from 1s to 1h"));
        }
        let slot = self.live.slot(job_id);
        let (state, record, updates) = {
            let mut guard = slot.lock().await;
            if guard.is_none() {
                *guard = self.load(job_id).await?;
            }
            let Some(live) = guard.as_ref() else {
                drop(guard);
                self.live.forget_if_empty(job_id);
                return Err(not_found(job_id));
            };
            let updates = live.record.is_none().then(|| {
                self.feeds.subscribe(
                    job_id,
                    slot.clone(),
                    interval,
                    self.shared.then(|| self.store.clone()),
                    self.shutdown.clone(),
                )
            });
            (live.state.clone(), live.record.clone(), updates)
        };
        let first = match &record {
            Some(record) => proto::WatchJobResponse {
                job: Some(state.to_proto()),
                points: record.points.clone(),
                performance: Some((**record).clone()),
            },
            None => {
                self.journal_moved().await?;
                let id = job_id.to_string();
                let stored = self
                    .store
                    .run(move |c| Ok(queries::snapshots(c, &id)?))
                    .await?;
                proto::WatchJobResponse {
                    job: Some(state.to_proto()),
                    points: points_so_far(&state, stored)
                        .iter()
                        .map(|p| p.to_proto(state.started_at))
                        .collect(),
                    performance: None,
                }
            }
        };
        let mut cursor = first.points.last().map_or(-1.0, |p| p.elapsed_seconds);
        let first = tokio_stream::once(Ok(first));
        let Some(updates) = updates else {
            return Ok(Box::pin(first));
        };
        let rest = tokio_stream::wrappers::BroadcastStream::new(updates).filter_map(move |item| {
            let update = item.ok()?;
            let mut update = (*update).clone();
            update.points.retain(|p| p.elapsed_seconds > cursor);
            if let Some(p) = update.points.last() {
                cursor = p.elapsed_seconds;
            }
            Some(Ok(update))
        });
        Ok(Box::pin(first.chain(rest)))
    }

    /// ListMachines: machines by name with their newest job and success rate.
    pub async fn list_machines(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<proto::ListMachinesResponse> {
        let limit = page_limit(page_size);
        let after = match page_token {
            "" => None,
            t => Some(decode_token(t, "m")?),
        };
        let (rows, more) = self
            .store
            .run(move |c| {
                let mut machines = queries::machines_page(c, after.as_deref(), limit + 1)?;
                let more = machines.len() as i64 > limit;
                machines.truncate(limit as usize);
                let mut out = Vec::with_capacity(machines.len());
                for m in machines {
                    let last = queries::jobs_page(c, Some(&m.name), None, 1)?
                        .into_iter()
                        .next();
                    let counts = queries::status_counts(c, &m.name)?;
                    out.push((m, last, counts));
                }
                Ok((out, more))
            })
            .await?;
        let next_page_token = match (more, rows.last()) {
            (true, Some((m, _, _))) => encode_token("m", &m.name),
            _ => String::new(),
        };
        let mut machines = Vec::with_capacity(rows.len());
        for (m, last, counts) in rows {
            let last_job = match last {
                Some(row) => Some(self.fresh_job(&row).await?),
                None => None,
            };
            let (total, rate) = success_rate(&counts);
            machines.push(proto::MachineOverview {
                machine: Some(self.machine_proto(&m)),
                last_job,
                success_rate: rate,
                total_jobs: total as u32,
            });
        }
        Ok(proto::ListMachinesResponse {
            machines,
            next_page_token,
        })
    }

    /// ListJobs: jobs newest first with their metrics, without curves.
    pub async fn list_jobs(
        &self,
        machine: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<proto::ListJobsResponse> {
        if !machine.is_empty() {
            validate_machine(machine)?;
        }
        let limit = page_limit(page_size);
        let after = match page_token {
            "" => None,
            t => {
                let raw = decode_token(t, "j")?;
                let (started, id) = raw.split_once(':').ok_or_else(bad_token)?;
                Some((
                    started.parse::<Millis>().map_err(|_| bad_token())?,
                    id.to_string(),
                ))
            }
        };
        let filter = (!machine.is_empty()).then(|| machine.to_string());
        let (rows, more) = self
            .store
            .run(move |c| {
                if let Some(m) = &filter {
                    queries::machine(c, m)?
                        .ok_or_else(|| Error::NotFound(format!("machine {m} not found")))?;
                }
                let mut rows = queries::jobs_page(c, filter.as_deref(), after, limit + 1)?;
                let more = rows.len() as i64 > limit;
                rows.truncate(limit as usize);
                Ok((rows, more))
            })
            .await?;
        let next_page_token = match (more, rows.last()) {
            (true, Some(r)) => encode_token("j", &format!("{}:{}", r.started_at_ms, r.job_id)),
            _ => String::new(),
        };
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let performance = row.record()?.map(|mut r| {
                r.points.clear();
                r
            });
            jobs.push(proto::JobSummary {
                job: Some(self.fresh_job(&row).await?),
                performance,
            });
        }
        Ok(proto::ListJobsResponse {
            jobs,
            next_page_token,
        })
    }

    /// GetMachineSummary: counts, averages over succeeded jobs, and the recent trend.
    pub async fn machine_summary(&self, machine: &str) -> Result<proto::GetMachineSummaryResponse> {
        validate_machine(machine)?;
        let name = machine.to_string();
        let (row, counts, figures, recent) = self
            .store
            .run(move |c| {
                let row = queries::machine(c, &name)?
                    .ok_or_else(|| Error::NotFound(format!("machine {name} not found")))?;
                Ok((
                    row,
                    queries::status_counts(c, &name)?,
                    queries::succeeded_figures(c, &name)?,
                    queries::recent_ended(c, &name, TREND_JOBS)?,
                ))
            })
            .await?;
        let count =
            |s: JobStatus| counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n) as u32;
        let (total, rate) = success_rate(&counts);
        let n = figures.len().max(1) as f64;
        let average_bytes = figures.iter().map(|f| f.0 as f64).sum::<f64>() / n;
        let average_duration = figures.iter().map(|f| f.1.unwrap_or(0) as f64).sum::<f64>() / n;
        let average_speed = figures.iter().map(|f| f.2.unwrap_or(0) as f64).sum::<f64>() / n;
        let trend = recent
            .iter()
            .rev()
            .map(|r| proto::TrendPoint {
                job_id: r.job_id.clone(),
                started_at: Some(timestamp(r.started_at_ms)),
                job_type: crate::domain::JobType::parse(&r.job_type)
                    .map_or(0, |t| t.to_proto() as i32),
                status: r.status().map_or(0, |s| s.to_proto() as i32),
                bytes_transferred: r.bytes_transferred as u64,
                duration: Some(duration(r.duration_ms.unwrap_or(0))),
                average_speed_bps: r.average_speed_bps.unwrap_or(0) as u64,
                peak_speed_bps: r.peak_speed_bps as u64,
            })
            .collect();
        Ok(proto::GetMachineSummaryResponse {
            machine: Some(self.machine_proto(&row)),
            total_jobs: total as u32,
            running_jobs: count(JobStatus::Running),
            succeeded_jobs: count(JobStatus::Succeeded),
            failed_jobs: count(JobStatus::Failed),
            cancelled_jobs: count(JobStatus::Cancelled),
            abandoned_jobs: count(JobStatus::Abandoned),
            success_rate: rate,
            average_bytes: average_bytes.round() as u64,
            average_duration: Some(duration(average_duration.round() as Millis)),
            average_speed_bps: average_speed.round() as u64,
            trend,
        })
    }

    /// One pass of housekeeping: abandons silent jobs and evicts long-ended ones from memory.
    /// Returns the ids abandoned by this hub.
    pub async fn sweep(&self) -> Result<Vec<String>> {
        let cutoff = now_millis() - self.settings.stall_timeout.as_millis() as Millis;
        // Background work: a pass over every job in memory (7-8 ms of CPU at 50,000 jobs) and
        // a query, on a thread of its own at the lowest CPU priority, so that it takes no core
        // a report wants (see `on_sweep_thread`).
        //
        // On a shared database the rows carry every report's time and name the silent jobs,
        // other hubs' too, a batch per sweep. On SQLite every job this hub has heard of since
        // it started is in memory, judged by the pass; a running job's row keeps its
        // creation's time, so the rows name the jobs not heard of since a restart (or dropped
        // from memory by a failed write), which are read into memory (with a full stall
        // timeout from then) and judged at a later sweep. They are listed only while the rows
        // count more running jobs than memory holds: at 50,000 running jobs the list took
        // ~13 ms of CPU every sweep, the count ~2 ms.
        let (shared, live, store) = (self.shared, self.live.clone(), self.store.clone());
        let (mut ids, listed) = on_sweep_thread(move || -> Result<_> {
            let swept = live.sweep(KEEP_ENDED, cutoff);
            let mut conn = store.connection()?;
            let c = &mut *conn;
            if !shared && queries::running_jobs(c)? <= swept.running as i64 {
                return Ok((swept.silent, Vec::new()));
            }
            let ids = queries::stalled(c, cutoff, shared.then_some(SWEEP_BATCH))?;
            let listed = ids
                .into_iter()
                .filter(|id| shared || !live.holds(id))
                .collect::<Vec<_>>();
            Ok((swept.silent, listed))
        })
        .await??;
        ids.extend(listed);
        ids.sort();
        ids.dedup();
        let mut abandoned = Vec::new();
        for id in ids {
            if self.abandon(&id, cutoff).await? {
                abandoned.push(id);
            }
        }
        Ok(abandoned)
    }

    async fn abandon(&self, job_id: &str, cutoff: Millis) -> Result<bool> {
        let slot = self.live.slot(job_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = self.load(job_id).await?;
        }
        let Some(live) = guard.as_mut() else {
            return Ok(false);
        };
        if live.state.status.is_terminal() || live.state.last_received_at >= cutoff {
            return Ok(false);
        }
        let mut next = live.state.clone();
        let points = next.abandon();
        match self
            .writer
            .write(JobWrite {
                kind: WriteKind::End,
                job: next.clone(),
                points,
                stored_sequence: live.stored_sequence,
            })
            .await?
        {
            WriteOutcome::RolledUp(record) => {
                tracing::info!(job_id, machine = %next.machine, "job abandoned: no report within the stall timeout");
                *live = LiveJob::new(next, Some(record));
                Ok(true)
            }
            _ => {
                *guard = self.load(job_id).await?;
                Ok(false)
            }
        }
    }

    /// Running jobs in this hub's memory and jobs with a live feed, for logs and metrics.
    pub fn load_figures(&self) -> (usize, usize) {
        (self.live.running(), self.feeds.len())
    }

    fn snapshot_interval_ms(&self) -> Millis {
        self.settings.snapshot_interval.as_millis() as Millis
    }

    /// The job as stored. On SQLite a running job's row keeps what its first report said, and
    /// the job goes on from its newest snapshot (`LiveJob::resumed`).
    async fn load(&self, job_id: &str) -> Result<Option<LiveJob>> {
        self.journal_moved().await?;
        let (id, shared) = (job_id.to_string(), self.shared);
        self.store
            .run(move |c| match queries::job(c, &id)? {
                Some(row) if !shared && row.is_running() => {
                    let latest = queries::latest_snapshot(c, &id)?;
                    LiveJob::resumed(&row, latest, now_millis()).map(Some)
                }
                row => row.as_ref().map(LiveJob::from_row).transpose(),
            })
            .await
    }

    /// SQLite: waits until every snapshot in the journal is in the table, so that a read of
    /// snapshots sees them all (at most one commit; nothing to wait for when it is empty).
    async fn journal_moved(&self) -> Result<()> {
        match self.writer.journal() {
            Some(journal) if journal.has_unmoved() => self.writer.flush().await,
            _ => Ok(()),
        }
    }

    /// This hub's in-memory copy of a job, fresher than its row; a running job not in memory
    /// is read into it (an ended one is only read: reads of old jobs must not fill memory).
    /// On a shared database the row is written on every report, so reads take it from there:
    /// other hubs may be ahead.
    async fn live_copy(&self, job_id: &str) -> Result<Option<LiveJob>> {
        if self.shared {
            return Ok(None);
        }
        let slot: Slot = self.live.slot(job_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            match self.load(job_id).await? {
                Some(job) if !job.state.status.is_terminal() => *guard = Some(job),
                other => {
                    drop(guard);
                    self.live.forget_if_empty(job_id);
                    return Ok(other);
                }
            }
        }
        Ok(guard.clone())
    }

    /// A stored snapshot of one of the machine's jobs reached the hub at `at` (SQLite).
    fn machine_seen(&self, machine: &str, at: Millis) {
        match self.machines_seen.get_mut(machine) {
            Some(mut seen) => *seen = (*seen).max(at),
            None => {
                self.machines_seen.insert(machine.to_string(), at);
            }
        }
    }

    /// The stored machine, seen as late as this hub last stored a snapshot of its jobs.
    fn machine_proto(&self, row: &MachineRow) -> proto::Machine {
        let mut m = row.to_proto();
        if let Some(at) = self.machines_seen.get(&row.name) {
            if *at > row.last_seen_at_ms {
                m.last_seen_at = Some(timestamp(*at));
            }
        }
        m
    }

    /// The stored job, with this hub's fresher live state when it is running here.
    async fn fresh_job(&self, row: &JobRow) -> Result<proto::Job> {
        if row.is_running() {
            if let Some(live) = self.live_copy(&row.job_id).await? {
                return Ok(live.state.to_proto());
            }
        }
        row.to_proto()
    }
}

/// Runs `work` on a thread of its own at the lowest CPU priority (nice 19), for the stall
/// sweep (a thread a sweep: one every 250 ms to 30 s). Measured at 50,000 jobs with a sweep
/// every 2 s (stall timeout 8 s), 28 s each: 100-ms windows whose report p99 was above 4 ms,
/// 6-24 in 7 runs with the sweep on the runtime's blocking pool at normal priority, 4-5 in 2
/// runs here (0 with the default sweep every 30 s); the runs' p99 1.40-2.23 -> 1.16-1.17 ms.
/// Elsewhere than on Linux it runs at normal priority.
async fn on_sweep_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    crate::store::writer::background_thread("backwatch-sweep", move || {
        let _ = done.send(work());
    })
    .map_err(|e| Error::Internal(format!("stall sweep: {e}")))?;
    result
        .await
        .map_err(|_| Error::Internal("stall sweep: its thread stopped".into()))
}

fn answer(duplicate: bool, status: JobStatus) -> proto::ReportProgressResponse {
    proto::ReportProgressResponse {
        duplicate,
        job_status: status.to_proto() as i32,
    }
}

fn not_found(job_id: &str) -> Error {
    Error::NotFound(format!("job {job_id} not found"))
}

/// Stored points plus what live state has that is not stored yet, in time order.
fn points_so_far(state: &JobState, mut stored: Vec<Point>) -> Vec<Point> {
    let newest = stored.last().map_or(Millis::MIN, |p| p.sampled_at);
    for p in state
        .unstored_peak
        .iter()
        .cloned()
        .chain([state.current_point()])
    {
        if p.sampled_at > newest && !stored.iter().any(|s| s.sequence == p.sequence) {
            stored.push(p);
        }
    }
    stored.sort_by_key(|p| (p.sampled_at, p.sequence));
    stored
}

/// The record of a running job from its points so far.
fn record_so_far(state: &JobState, stored: Vec<Point>) -> proto::PerformanceRecord {
    let points = points_so_far(state, stored);
    rollup(&RollupInput {
        started_at: state.started_at,
        ended_at: state.ended_at.unwrap_or(state.last_report_at),
        bytes_transferred: state.bytes_transferred,
        peak_speed_bps: state.peak_speed_bps,
        min_speed_bps: state.min_speed_bps,
        points: &points,
    })
}

fn success_rate(counts: &[(JobStatus, i64)]) -> (i64, f64) {
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let ended: i64 = counts
        .iter()
        .filter(|(s, _)| s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let ok: i64 = counts
        .iter()
        .filter(|(s, _)| *s == JobStatus::Succeeded)
        .map(|(_, n)| n)
        .sum();
    (
        total,
        if ended > 0 {
            ok as f64 / ended as f64
        } else {
            0.0
        },
    )
}

fn page_limit(page_size: u32) -> i64 {
    match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
    .into()
}

fn encode_token(kind: &str, value: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}1:{value}"))
}

fn decode_token(token: &str, kind: &str) -> Result<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad_token())?;
    let raw = String::from_utf8(raw).map_err(|_| bad_token())?;
    raw.strip_prefix(&format!("{kind}1:"))
        .map(str::to_string)
        .ok_or_else(bad_token)
}

fn bad_token() -> Error {
    Error::invalid(
        "page_token",
        "is not a token from a previous answer of this call",
    )
}
