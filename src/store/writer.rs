//! The group-commit writer: one thread takes every pending job write, commits as many as are
//! waiting in one transaction (writes arriving during a commit share the next one; on
//! PostgreSQL at most one commit every 3 ms under load; per-write savepoints only after an
//! error, so one bad write fails alone), and then answers each waiter. Snapshot inserts, job
//! creation and the terminal rollup all go through it; a report is acknowledged only after its
//! write is committed. On SQLite a running job's snapshots go to the snapshot journal instead
//! (`super::journal`), and each commit first moves the journal's rows into the table; there the
//! writer also keeps the write-ahead log bounded (`checkpoints`).
//! The thread asks the scheduler for a short time slice, to run soon after it is woken
//! (`wake_promptly`).

use super::journal::{self, Journal};
use super::rows::{JobEnd, JobProgress, JobRow, MachineRow, SnapshotRow};
use super::schema::{backup_jobs, job_telemetry_snapshots, machines};
use super::{Checkpoint, Db, Store};
use crate::domain::job::JobState;
use crate::domain::report::MachineFacts;
use crate::domain::rollup::{encode_record, rollup, RollupInput};
use crate::domain::{JobStatus, Millis};
use crate::error::{Error, Result};
use crate::proto;
use diesel::prelude::*;
use diesel::query_dsl::methods::ExecuteDsl;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Rollups per transaction; more wait for the next one.
const MAX_ROLLUPS_PER_BATCH: usize = 8;
/// Snapshot rows per multi-row insert on PostgreSQL (at most 65535 bound values; 7 per row).
const INSERT_CHUNK: usize = 1000;
/// PostgreSQL: shortest time between the starts of two commits. There a commit waits for the
/// server's log flush, so under load a short wait lets the next few writes share it. Not on
/// SQLite, where a commit is an append to the log (no flush): there the wait only delayed
/// every stored report (p99 at 20,000 jobs 3.5 ms with it, 1.0 ms without).
const GATHER_ON_POSTGRES: std::time::Duration = std::time::Duration::from_millis(3);
/// How often the SQLite write-ahead log is copied into the database file (see `checkpoints`).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the snapshot journal is moved into the table (see `checkpoints`). At 50,000
/// running jobs ~170 rows a time, 2-4 ms of commit; once a second it was 17-42 ms at once,
/// and reports waited for a core meanwhile.
const MOVE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// Nice value of background work: it takes only CPU time no report wants.
const LOWEST_PRIORITY: i32 = 19;
/// The copy beside the writer goes over the log again while more than this many pages were
/// committed during its last pass, so that the writer's own step has only a few left.
const LEAVE_TO_WRITER: u64 = 64;
/// Most passes of that copy per checkpoint.
const COPY_PASSES: usize = 4;
/// The writer thread's time slice, in ns (see `wake_promptly`; the default was 1.4 ms here).
const WRITER_SLICE_NS: u64 = 100_000;
/// Writes waiting for the writer before callers wait for room.
const QUEUE: usize = 65_536;

/// What to persist for one job.
#[derive(Debug, Clone)]
pub struct JobWrite {
    pub kind: WriteKind,
    /// The job after the report (or the sweep) that caused the write.
    pub job: JobState,
    /// Snapshot points to insert.
    pub points: Vec<crate::domain::Point>,
    /// The `last_sequence` the job row must still hold for the write to apply (optimistic
    /// concurrency between hubs sharing one database); ignored on creation.
    pub stored_sequence: u64,
}

#[derive(Debug, Clone)]
pub enum WriteKind {
    /// The job's first report: the machine is upserted and the job row inserted.
    Create { machine: Option<MachineFacts> },
    /// A running job's snapshot.
    Progress,
    /// The job ended: final points, record and status in one go, snapshots deleted.
    End,
}

/// What a committed write did.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// Committed; a job write's row now holds the job as written.
    Stored,
    /// The rollup ran; this is the record now on the job row.
    RolledUp(proto::PerformanceRecord),
    /// The job had already ended (another hub or the sweep got there first).
    AlreadyEnded {
        status: JobStatus,
        last_sequence: u64,
    },
    /// The row moved on since this hub last read it (another hub took a report, or created
    /// the job first): reload and judge the report again.
    Stale,
}

struct Pending {
    /// None: a flush (answered once everything queued before it is committed).
    write: Option<JobWrite>,
    /// The checkpoint thread's periodic move of the snapshot journal, which nobody waits on.
    background: bool,
    reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Pending>,
    /// SQLite: where running jobs' snapshots are stored.
    journal: Option<Arc<Journal>>,
}

/// Figures of the last batches, for logs and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchStats {
    pub size: usize,
    pub micros: u128,
}

impl Writer {
    /// Starts the writer thread on `store`. On SQLite the snapshot journal is opened first,
    /// and what an earlier run left in it is moved into the table.
    pub fn start(store: Store, max_batch: usize) -> Result<Writer> {
        let journal = match store.sqlite_path() {
            Some(path) => {
                let (journal, left) = Journal::open(path)?;
                if !left.is_empty() {
                    let mut conn = store.connection()?;
                    conn.transaction(|c| move_journal(c, &left))?;
                    tracing::info!(
                        snapshots = left.len(),
                        "moved the snapshot journal of the last run into the database"
                    );
                }
                journal.clear()?;
                Some(Arc::new(journal))
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let copied = Arc::new(AtomicBool::new(false));
        let (running, stopped) = std::sync::mpsc::channel::<()>();
        if let Some(journal) = &journal {
            let (store, copied) = (store.clone(), copied.clone());
            let (journal, writer) = (journal.clone(), tx.downgrade());
            background_thread("backwatch-checkpoint", move || {
                checkpoints(store, journal, writer, copied, stopped)
            })
            .expect("spawning the checkpoint thread");
        }
        let moves = journal.clone();
        std::thread::Builder::new()
            .name("backwatch-writer".into())
            .spawn(move || {
                run(store, moves, rx, max_batch.max(1), copied);
                drop(running);
            })
            .expect("spawning the writer thread");
        Ok(Writer { tx, journal })
    }

    /// SQLite: the snapshot journal, where a running job's snapshots are stored.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_deref()
    }

    /// Queues a write and waits until it is committed.
    pub async fn write(&self, write: JobWrite) -> Result<WriteOutcome> {
        let queued = Instant::now();
        let outcome = self.send(Some(write)).await;
        crate::metrics::write_waited(queued.elapsed());
        outcome
    }

    /// Waits until every write queued before this call is committed.
    pub async fn flush(&self) -> Result<()> {
        self.send(None).await.map(|_| ())
    }

    async fn send(&self, write: Option<JobWrite>) -> Result<WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                write,
                background: false,
                reply,
            })
            .await
            .map_err(|_| Error::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("the writer dropped a write".into()))?
    }
}

/// SQLite: every `MOVE_EVERY` this thread has the writer move the snapshot journal into the
/// table (a commit, even when no other write comes), and every `CHECKPOINT_EVERY` it
/// checkpoints.
///
/// Checkpoints go in two steps, so the log neither grows without end nor holds up the
/// writer. Every second this thread copies the log into the database file beside the writer
/// (tens of milliseconds at 50,000 running jobs), then again what was committed during that
/// copy, until a pass finds only a few new pages, and raises `copied`; the writer then copies
/// the pages committed since itself, between two commits, where no write races it: the copy
/// completes and the next commit starts the log over from its beginning. (A checkpoint racing
/// a busy writer never catches up, and the log grew by gigabytes in minutes; with one pass the
/// writer's step took 5-10 ms at 50,000 jobs, now 1.3 ms at the median.) The copy runs at the
/// lowest CPU priority: it can wait, reports cannot. Stops with the writer.
fn checkpoints(
    store: Store,
    journal: Arc<Journal>,
    writer: mpsc::WeakSender<Pending>,
    copied: Arc<AtomicBool>,
    stopped: std::sync::mpsc::Receiver<()>,
) {
    let mut last_copy = Instant::now();
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(MOVE_EVERY) {
        if journal.has_unmoved() {
            let Some(writer) = writer.upgrade() else {
                return;
            };
            let (reply, moved) = oneshot::channel();
            let request = Pending {
                write: None,
                background: true,
                reply,
            };
            if writer.blocking_send(request).is_ok() {
                let _ = moved.blocking_recv();
            }
        }
        if last_copy.elapsed() < CHECKPOINT_EVERY {
            continue;
        }
        last_copy = Instant::now();
        let copy = store.connection().and_then(|mut c| {
            let mut log = Checkpoint::Passive.run(&mut c)?;
            for _ in 1..COPY_PASSES {
                let before = log;
                log = Checkpoint::Passive.run(&mut c)?;
                if log.saturating_sub(before) <= LEAVE_TO_WRITER {
                    break;
                }
            }
            Ok(())
        });
        match copy {
            Ok(()) => copied.store(true, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
    }
}

/// Starts a thread for background work (the checkpoints, the stall sweep) at the lowest CPU
/// priority: it takes only CPU time no report wants. A lowered thread never goes back up, so
/// this needs no privilege.
pub(crate) fn background_thread(
    name: &str,
    work: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            set_thread_nice(LOWEST_PRIORITY);
            work()
        })
}

/// The calling thread's nice value (Linux; elsewhere, or where unreadable, none).
fn thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority on this thread's own id; errno is this thread's.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t);
        if nice != -1 || *libc::__errno_location() == 0 {
            return Some(nice);
        }
    }
    None
}

/// Sets the calling thread's nice value (Linux; elsewhere nothing); false when refused.
fn set_thread_nice(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system call on this thread's own id, no memory involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Whether a thread of this process, lowered to `LOWEST_PRIORITY`, may go back to `nice`.
/// Only root, a holder of CAP_SYS_NICE or an RLIMIT_NICE that allows it may raise a priority;
/// anyone may lower one. Tried on a thread of its own, which ends lowered either way.
fn priority_comes_back_to(nice: i32) -> bool {
    std::thread::spawn(move || set_thread_nice(LOWEST_PRIORITY) && set_thread_nice(nice))
        .join()
        .unwrap_or(false)
}

/// Asks the scheduler to run the calling thread soon after it wakes (Linux 6.12 and later:
/// a short time slice, `WRITER_SLICE_NS`, for this thread at its current nice value;
/// elsewhere, or where refused, nothing). The writer sleeps between commits and works ~50 us
/// per wake; a waking thread with the default slice may wait until the one it interrupts has
/// used its own, and job starts, job ends and (on PostgreSQL) stored reports wait for the
/// writer to wake. Measured at 50,000 jobs when every stored report went through the writer,
/// 5 same-run pairs: average wait for a commit 267-338 -> 180-235 us, waits under 0.5 ms
/// 82-90 % -> 92-96 %, report p99 lower in 4 of the 5.
fn wake_promptly() {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority and sched_setattr on this thread's own id; `attr` is a valid,
    // fully initialised struct whose size field is its size, and outlives the call.
    unsafe {
        let Some(nice) = thread_nice() else {
            return;
        };
        let mut attr: libc::sched_attr = std::mem::zeroed();
        attr.size = std::mem::size_of::<libc::sched_attr>() as u32;
        attr.sched_policy = libc::SCHED_OTHER as u32;
        attr.sched_nice = nice;
        attr.sched_runtime = WRITER_SLICE_NS;
        if libc::syscall(
            libc::SYS_sched_setattr,
            libc::gettid(),
            &attr as *const libc::sched_attr,
            0,
        ) != 0
        {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "writer keeps the default time slice"
            );
        }
    }
}

fn run(
    store: Store,
    journal: Option<Arc<Journal>>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    copied: Arc<AtomicBool>,
) {
    wake_promptly();
    // The periodic move runs lowered only where the writer can come back from it: a writer
    // left at the lowest priority would keep every job start and end waiting behind other
    // threads (a hub run by a user without CAP_SYS_NICE, the usual service account).
    let nice = thread_nice().filter(|&nice| priority_comes_back_to(nice));
    if nice.is_none() && journal.is_some() {
        tracing::info!("the snapshot journal's periodic move runs at the writer's own priority");
    }
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    // Rollups (and flushes queued behind them) beyond the per-batch cap wait here, so a storm
    // of jobs ending at once never holds up the snapshots of running jobs.
    let mut held: VecDeque<Pending> = VecDeque::new();
    let gather = if store.is_sqlite() {
        std::time::Duration::ZERO
    } else {
        GATHER_ON_POSTGRES
    };
    let mut last_commit = Instant::now();
    loop {
        let mut rollups = 0;
        while rollups < MAX_ROLLUPS_PER_BATCH && batch.len() < max_batch {
            let Some(p) = held.pop_front() else { break };
            rollups += usize::from(p.is_rollup());
            batch.push(p);
        }
        if batch.is_empty() {
            match rx.blocking_recv() {
                Some(p) => {
                    rollups += usize::from(p.is_rollup());
                    batch.push(p);
                }
                None => return,
            }
            // An idle writer commits at once.
            std::thread::sleep(gather.saturating_sub(last_commit.elapsed()));
        }
        while batch.len() < max_batch {
            let Ok(p) = rx.try_recv() else { break };
            let rollup = p.is_rollup();
            if (rollup && rollups >= MAX_ROLLUPS_PER_BATCH)
                || (p.write.is_none() && !held.is_empty())
            {
                held.push_back(p);
            } else {
                rollups += usize::from(rollup);
                batch.push(p);
            }
        }
        // The journal's periodic move and the rollups of ended jobs are background work, done
        // at the lowest CPU priority with the checkpoint step after them; a batch that also
        // holds a job's creation, a progress write or a flush is not. Running jobs' reports never
        // wait for the writer on SQLite, but they wait for a core while it works.
        // - The move: at 50,000 jobs, 3 same-run pairs, report p99 1.39-1.61 -> 1.23-1.45 ms
        //   (no-op 1.05-1.18).
        // - Rollups: 1,000 jobs ending at once keep the writer busy ~100 ms. Beside a fleet of
        //   10,000 jobs, the fleet's p99 per 10-ms window over that time was 0.3-1.6 ms
        //   (median 0.72) at the writer's own priority and 0.3-0.96 ms (median 0.35) at the
        //   lowest, against 0.2-0.6 ms before the storm; the storm was answered in 92-143 ms
        //   before and 92-159 ms after.
        let background = nice.is_some() && batch.iter().all(|p| p.background || p.is_rollup());
        if background {
            set_thread_nice(LOWEST_PRIORITY);
        }
        let started = Instant::now();
        last_commit = started;
        let results = commit(&store, journal.as_deref(), &batch);
        let stats = BatchStats {
            size: batch.len(),
            micros: started.elapsed().as_micros(),
        };
        tracing::trace!(
            size = stats.size,
            micros = stats.micros as u64,
            "write batch committed"
        );
        crate::metrics::batch_committed(
            &stats,
            batch.iter().map(|p| p.write.as_ref()),
            results.as_deref().ok(),
        );
        match results {
            Ok(results) => {
                for (p, r) in batch.drain(..).zip(results) {
                    let _ = p.reply.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = batch.len(), "write batch failed");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(Error::Unavailable(e.to_string())));
                }
            }
        }
        // After the answers, so no report waits for it.
        if copied.swap(false, Ordering::Acquire) {
            let started = Instant::now();
            if let Err(e) = store
                .connection()
                .and_then(|mut c| Checkpoint::Passive.run(&mut c))
            {
                tracing::warn!(error = %e, "checkpoint failed");
            }
            tracing::trace!(
                micros = started.elapsed().as_micros() as u64,
                "checkpoint finished"
            );
        }
        if let (true, Some(nice)) = (background, nice) {
            set_thread_nice(nice);
        }
    }
}

impl Pending {
    fn is_rollup(&self) -> bool {
        matches!(
            &self.write,
            Some(JobWrite {
                kind: WriteKind::End,
                ..
            })
        )
    }
}

/// Commits a batch, the snapshot journal's rows first (taken back into the journal if the
/// commit fails); the outer error means nothing was committed.
fn commit(
    store: &Store,
    journal: Option<&Journal>,
    batch: &[Pending],
) -> Result<Vec<Result<WriteOutcome>>> {
    let taken = journal.and_then(Journal::take);
    let rows = taken.as_ref().map_or(&[][..], |t| &t.rows[..]);
    let committed = commit_batch(store, rows, batch);
    if let (Some(journal), Some(taken)) = (journal, taken) {
        match committed {
            Ok(_) => {
                crate::metrics::snapshots_moved(taken.rows.len());
                journal.moved(taken);
            }
            Err(_) => journal.put_back(taken),
        }
    }
    committed
}

/// The whole batch goes in one transaction with snapshot rows gathered into multi-row inserts;
/// if one write breaks a rule, the batch is redone with each write in its own savepoint so
/// that it fails alone. `moved`: journal rows, inserted first.
fn commit_batch(
    store: &Store,
    moved: &[SnapshotRow],
    batch: &[Pending],
) -> Result<Vec<Result<WriteOutcome>>> {
    let mut conn = store.connection()?;
    let now = crate::domain::now_millis();
    match conn.transaction(|conn| {
        move_journal(conn, moved)?;
        apply_all(conn, batch, now)
    }) {
        Ok(results) => return Ok(results),
        Err(e) if is_lost_connection(&e) => return Err(Error::Unavailable(e.to_string())),
        Err(_) => {}
    }
    let mut results = Vec::with_capacity(batch.len());
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        move_journal(conn, moved)?;
        for p in batch {
            results.push(match &p.write {
                None => Ok(WriteOutcome::Stored),
                Some(w) => match conn.transaction(|conn| apply(conn, w, now)) {
                    Ok(outcome) => Ok(outcome),
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => Ok(WriteOutcome::Stale),
                    Err(e) => {
                        tracing::warn!(job_id = %w.job.job_id, error = %e, "job write failed");
                        Err(Error::from(e))
                    }
                },
            });
        }
        Ok(())
    })
    .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok(results)
}

fn is_lost_connection(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as D};
    matches!(
        e,
        D::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | D::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)
            | D::BrokenTransactionManager
    )
}

/// Inserts the snapshot journal's rows (SQLite; see `journal::move_rows`).
fn move_journal(conn: &mut Db, rows: &[SnapshotRow]) -> QueryResult<()> {
    match conn {
        Db::Sqlite(c) if !rows.is_empty() => journal::move_rows(c, rows),
        _ => Ok(()),
    }
}

/// The fast path: every write of the batch, running jobs' snapshots in multi-row inserts.
fn apply_all(
    conn: &mut Db,
    batch: &[Pending],
    now: Millis,
) -> QueryResult<Vec<Result<WriteOutcome>>> {
    let mut rows = Vec::new();
    let mut seen: HashMap<&str, Millis> = HashMap::new();
    let mut results = Vec::with_capacity(batch.len());
    for p in batch {
        let Some(w) = &p.write else {
            results.push(Ok(WriteOutcome::Stored));
            continue;
        };
        let outcome = match w.kind {
            WriteKind::Progress if update_running(conn, w)? => {
                rows.extend(
                    w.points
                        .iter()
                        .map(|pt| SnapshotRow::new(&w.job.job_id, pt)),
                );
                if !w.points.is_empty() && progress_rewrites_row(conn) {
                    let at = seen.entry(&w.job.machine).or_default();
                    *at = (*at).max(w.job.last_received_at);
                }
                WriteOutcome::Stored
            }
            WriteKind::Progress => moved_on(conn, &w.job.job_id)?,
            _ => apply(conn, w, now)?,
        };
        results.push(Ok(outcome));
    }
    insert_rows(conn, &rows)?;
    for (machine, at) in seen {
        touch_machine(conn, machine, at)?;
    }
    Ok(results)
}

fn apply(conn: &mut Db, w: &JobWrite, now: Millis) -> QueryResult<WriteOutcome> {
    let job = &w.job;
    match &w.kind {
        WriteKind::Create { machine } => {
            upsert_machine(conn, &job.machine, machine.as_ref(), now)?;
            // Created already (by another hub, or before a restart): judge the report again.
            let insert = diesel::insert_into(backup_jobs::table)
                .values(JobRow::new(job))
                .on_conflict_do_nothing();
            if execute(conn, insert)? == 0 {
                return Ok(WriteOutcome::Stale);
            }
            insert_points(conn, w)?;
            Ok(WriteOutcome::Stored)
        }
        WriteKind::Progress => {
            if !update_running(conn, w)? {
                return moved_on(conn, &job.job_id);
            }
            insert_points(conn, w)?;
            Ok(WriteOutcome::Stored)
        }
        WriteKind::End => {
            // The conditional update locks the row and makes the rollup happen exactly once.
            if !update_running(conn, w)? {
                return moved_on(conn, &job.job_id);
            }
            insert_points(conn, w)?;
            let points = super::queries::snapshots(conn, &job.job_id)?;
            let ended_at = job.ended_at.unwrap_or(job.last_report_at);
            let record = rollup(&RollupInput {
                started_at: job.started_at,
                ended_at,
                bytes_transferred: job.bytes_transferred,
                peak_speed_bps: job.peak_speed_bps,
                min_speed_bps: job.min_speed_bps,
                points: &points,
            });
            let update = KeptUpdate::new(
                kept::Record,
                (
                    backup_jobs::performance_metrics.eq(encode_record(&record)),
                    backup_jobs::peak_speed_bps.eq(record.peak_speed_bps as i64),
                    backup_jobs::min_speed_bps.eq(record.min_speed_bps as i64),
                    backup_jobs::average_speed_bps.eq(record.average_speed_bps as i64),
                    backup_jobs::duration_ms.eq(ended_at - job.started_at),
                ),
                backup_jobs::job_id.eq(&job.job_id),
            );
            execute(conn, update)?;
            execute(
                conn,
                diesel::delete(
                    job_telemetry_snapshots::table
                        .filter(job_telemetry_snapshots::job_id.eq(&job.job_id)),
                ),
            )?;
            let update = KeptUpdate::new(
                kept::MachineSeenAtEnd,
                machines::last_seen_at_ms.eq(now),
                machines::name.eq(&job.machine),
            );
            execute(conn, update)?;
            Ok(WriteOutcome::RolledUp(record))
        }
    }
}

/// Whether a running job's snapshot also rewrites the job's row (a `Progress` write). Where
/// several hubs share the database (PostgreSQL) the row is how each sees the others' sequence
/// numbers and progress, and every report is written. On SQLite one hub owns the database and
/// keeps every running job in memory; a snapshot goes to the journal and the row keeps what
/// the job's first report said until the job ends; after a restart the job resumes from its
/// newest snapshot (`LiveJob::resumed`). Nor does a snapshot there write the machine's "last
/// seen" (`touch_machine`): the hub keeps it in memory between the job's start and end.
fn progress_rewrites_row(conn: &Db) -> bool {
    matches!(conn, Db::Postgresql(_))
}

/// Updates a running job's row if nobody else moved it on; false otherwise. A write that ends
/// the job also sets its status and end time.
fn update_running(conn: &mut Db, w: &JobWrite) -> QueryResult<bool> {
    let progress = JobProgress::of(&w.job);
    let updated = match w.kind {
        WriteKind::End => {
            let end = JobEnd::of(&w.job);
            let update = KeptUpdate::new(kept::Ending, (&progress, &end), still_as_read(w));
            execute(conn, update)?
        }
        _ => {
            let update = KeptUpdate::new(kept::Running, &progress, still_as_read(w));
            execute(conn, update)?
        }
    };
    Ok(updated == 1)
}

/// The job's row as this hub last read it: running, at the sequence the write started from.
fn still_as_read(
    w: &JobWrite,
) -> impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>
       + diesel::query_builder::QueryFragment<diesel::pg::Pg>
       + '_ {
    backup_jobs::job_id
        .eq(&w.job.job_id)
        .and(backup_jobs::status.eq(JobStatus::Running.as_str()))
        .and(backup_jobs::last_sequence.eq(w.stored_sequence as i64))
}

/// Why a conditional update found nothing: the job ended, or another hub moved it on.
fn moved_on(conn: &mut Db, job_id: &str) -> QueryResult<WriteOutcome> {
    let (status, last_sequence): (String, i64) = backup_jobs::table
        .find(job_id)
        .select((backup_jobs::status, backup_jobs::last_sequence))
        .first(conn)?;
    Ok(match JobStatus::parse(&status) {
        Some(JobStatus::Running) => WriteOutcome::Stale,
        status => WriteOutcome::AlreadyEnded {
            status: status.unwrap_or(JobStatus::Abandoned),
            last_sequence: last_sequence as u64,
        },
    })
}

/// Inserts one write's snapshot points (and marks its machine seen, see `touch_machine`).
fn insert_points(conn: &mut Db, w: &JobWrite) -> QueryResult<()> {
    if w.points.is_empty() {
        return Ok(());
    }
    let rows: Vec<SnapshotRow> = w
        .points
        .iter()
        .map(|p| SnapshotRow::new(&w.job.job_id, p))
        .collect();
    insert_rows(conn, &rows)?;
    if progress_rewrites_row(conn) {
        touch_machine(conn, &w.job.machine, w.job.last_received_at)?;
    }
    Ok(())
}

/// Inserts snapshot rows. SQLite: a kept single-row INSERT per row (a multi-row INSERT is
/// prepared anew on every call, and Diesel's default for a list of rows ran each row in a
/// savepoint of its own); PostgreSQL: multi-row inserts, one round trip per chunk.
fn insert_rows(conn: &mut Db, rows: &[SnapshotRow]) -> QueryResult<()> {
    let insert = || diesel::insert_into(job_telemetry_snapshots::table);
    match conn {
        Db::Sqlite(c) => {
            for row in rows {
                insert().values(row).execute(c)?;
            }
        }
        Db::Postgresql(c) => {
            for chunk in rows.chunks(INSERT_CHUNK) {
                insert().values(chunk).execute(c)?;
            }
        }
    }
    Ok(())
}

/// Where a snapshot rewrites its job's row, the machine is seen with each stored snapshot of
/// its jobs: "last seen" stays fresh without a write per report. (On SQLite the hub keeps it
/// in memory between a job's start and end, which write the machine's row.)
fn touch_machine(conn: &mut Db, machine: &str, at: Millis) -> QueryResult<()> {
    let update = KeptUpdate::new(
        kept::MachineSeen,
        machines::last_seen_at_ms.eq(at),
        machines::name
            .eq(machine)
            .and(machines::last_seen_at_ms.lt(at)),
    );
    execute(conn, update)?;
    Ok(())
}

/// Runs a statement on the engine's own connection. There Diesel keeps the prepared statement
/// for the next call (through the two-engine wrapper every call is parsed and planned again),
/// and statements that exist per engine only (multi-row and conflict-ignoring inserts) work.
fn execute<Q>(conn: &mut Db, query: Q) -> QueryResult<usize>
where
    Q: ExecuteDsl<diesel::SqliteConnection> + ExecuteDsl<diesel::PgConnection>,
{
    match conn {
        Db::Sqlite(c) => ExecuteDsl::<diesel::SqliteConnection>::execute(query, c),
        Db::Postgresql(c) => ExecuteDsl::<diesel::PgConnection>::execute(query, c),
    }
}

/// `UPDATE table SET … WHERE …` that the connection keeps prepared, under the name `Id` (one of
/// `kept`). Diesel's own UPDATE is parsed and planned again on every call (its SET list may
/// vary); the writer's updates have a fixed shape. Re-preparing them was a fifth of the
/// writer's CPU, and building their SQL text to find them in the statement cache cost about
/// 8 us of each commit: a statement with a name is found by its type. The table is the
/// changeset's.
struct KeptUpdate<Id, F, S, W> {
    id: std::marker::PhantomData<Id>,
    from: F,
    set: S,
    filter: W,
}

impl<Id, F, S, W> KeptUpdate<Id, F, S, W> {
    fn new<T, C>(_name: Id, set: C, filter: W) -> Self
    where
        T: Table<FromClause = F> + Default,
        C: AsChangeset<Target = T, Changeset = S>,
    {
        KeptUpdate {
            id: std::marker::PhantomData,
            from: T::default().from_clause(),
            set: set.as_changeset(),
            filter,
        }
    }
}

impl<Id, F, S, W, DB> diesel::query_builder::QueryFragment<DB> for KeptUpdate<Id, F, S, W>
where
    DB: diesel::backend::Backend,
    F: diesel::query_builder::QueryFragment<DB>,
    S: diesel::query_builder::QueryFragment<DB>,
    W: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        out.push_sql("UPDATE ");
        self.from.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.set.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.filter.walk_ast(out.reborrow())
    }
}

/// Cached under its name: the statement cache is searched by type, without building the SQL.
impl<Id: 'static, F, S, W> diesel::query_builder::QueryId for KeptUpdate<Id, F, S, W> {
    type QueryId = Id;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Id, F, S, W, C> RunQueryDsl<C> for KeptUpdate<Id, F, S, W> {}

/// The names of the writer's kept updates: one per statement, each given at one call site (the
/// test builds the same two statements), so that a name always stands for the same SQL text.
mod kept {
    /// A running job's progress (`update_running`).
    pub struct Running;
    /// The progress, status and end time of a job that ends (`update_running`).
    pub struct Ending;
    /// The performance record of a job that ended (the rollup).
    pub struct Record;
    /// A machine's "last seen" when one of its jobs ends.
    pub struct MachineSeenAtEnd;
    /// A machine's "last seen" with a stored snapshot, only ever forward (`touch_machine`).
    pub struct MachineSeen;
    /// A machine that reported again, with its facts (`upsert_machine`).
    pub struct MachineFacts;
    /// A machine that reported again, without facts (`upsert_machine`).
    pub struct MachineSeenAgain;
}

fn upsert_machine(
    conn: &mut Db,
    name: &str,
    facts: Option<&MachineFacts>,
    now: Millis,
) -> QueryResult<()> {
    let insert = diesel::insert_into(machines::table)
        .values(MachineRow::new(name, facts, now))
        .on_conflict_do_nothing();
    if execute(conn, insert)? == 0 {
        let seen = machines::name.eq(name);
        match facts {
            Some(f) => execute(
                conn,
                KeptUpdate::new(
                    kept::MachineFacts,
                    (
                        machines::last_seen_at_ms.eq(now),
                        machines::cpu_cores.eq(f.cpu_cores),
                        machines::memory_bytes.eq(f.memory_bytes),
                        machines::disk_count.eq(f.disk_count),
                        machines::os.eq(&f.os),
                    ),
                    seen,
                ),
            )?,
            None => execute(
                conn,
                KeptUpdate::new(
                    kept::MachineSeenAgain,
                    machines::last_seen_at_ms.eq(now),
                    seen,
                ),
            )?,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report::Report;
    use crate::domain::JobType;
    use diesel::sql_types::Text;

    #[derive(QueryableByName)]
    struct Step {
        #[diesel(sql_type = Text)]
        opcode: String,
        /// The cursor an instruction works on.
        #[diesel(sql_type = diesel::sql_types::Integer)]
        p1: i32,
        /// For `OpenWrite`, the root page of the B-tree the cursor opens.
        #[diesel(sql_type = diesel::sql_types::Integer)]
        p2: i32,
    }

    #[derive(QueryableByName)]
    struct Btree {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        rootpage: i32,
    }

    /// The tables and indexes `sql` inserts into or deletes from, as SQLite plans it.
    fn written_btrees(conn: &mut diesel::SqliteConnection, sql: &str) -> Vec<String> {
        let steps: Vec<Step> = diesel::sql_query(format!("EXPLAIN {sql}"))
            .load(conn)
            .unwrap();
        let btrees: Vec<Btree> =
            diesel::sql_query("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0")
                .load(conn)
                .unwrap();
        let root_of = |cursor: i32| {
            steps
                .iter()
                .find(|s| s.opcode == "OpenWrite" && s.p1 == cursor)
                .map(|s| s.p2)
        };
        let mut written: Vec<String> = steps
            .iter()
            .filter(|s| ["Insert", "IdxInsert", "Delete", "IdxDelete"].contains(&&*s.opcode))
            .filter_map(|s| root_of(s.p1))
            .filter_map(|root| btrees.iter().find(|b| b.rootpage == root))
            .map(|b| b.name.clone())
            .collect();
        written.sort();
        written.dedup();
        written
    }

    fn sql_of<Q: diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>>(q: &Q) -> String {
        let shown = diesel::debug_query::<diesel::sqlite::Sqlite, _>(q).to_string();
        shown.split(" -- binds").next().unwrap().to_string()
    }

    /// The writer asks for a short time slice, so that it runs soon after a report wakes it.
    /// Read back from the kernel's own account of the thread (`se.slice`); kernels before 6.12
    /// take no slice from a thread, so there is nothing to check on them.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_thread_asks_for_a_short_time_slice() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut version = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        if (version.next().unwrap_or(0), version.next().unwrap_or(0)) < (6, 12) {
            return;
        }
        let slice = std::thread::spawn(|| {
            wake_promptly();
            let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
            sched
                .lines()
                .find(|l| l.starts_with("se.slice"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .expect("se.slice in /proc/thread-self/sched")
        })
        .join()
        .unwrap();
        assert_eq!(slice, WRITER_SLICE_NS, "the writer's time slice in ns");
    }

    /// After the journal's periodic move, run lowered, the writer is back at its own priority,
    /// also where the process may not raise a priority again: the test's thread gives up
    /// CAP_SYS_NICE (capabilities are per thread, and the writer's threads inherit them). A
    /// writer that lowered itself there stayed at nice 19 for good.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_is_back_at_its_priority_after_the_periodic_move() {
        fn writer_threads() -> Vec<(String, i32)> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| {
                    let dir = t.ok()?.path();
                    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
                    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                    // Fields after the command's closing parenthesis start at the 3rd; nice is the 19th.
                    let nice = stat.rsplit_once(')')?.1.split_whitespace().nth(16)?;
                    (comm.trim() == "backwatch-write")
                        .then(|| (dir.display().to_string(), nice.parse().unwrap()))
                })
                .collect()
        }
        let (_dir, store) = crate::store::tests::temporary_sqlite();
        std::thread::spawn(move || {
            drop_cap_sys_nice();
            let own = thread_nice().expect("this thread's nice value");
            let before = writer_threads();
            let writer = Writer::start(store, 16).unwrap();
            let journal = writer.journal().expect("SQLite has a snapshot journal");
            let point = crate::domain::Point {
                sampled_at: 1_000,
                sequence: 2,
                bytes_transferred: 10,
                speed_bps: 10,
                progress_percent: 1.0,
                phase: "transfer".into(),
            };
            journal.append("job-1", &[point]).unwrap();
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while journal.has_unmoved() && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(!journal.has_unmoved(), "the periodic move took the row");
            let ours: Vec<_> = writer_threads()
                .into_iter()
                .filter(|(thread, _)| before.iter().all(|(seen, _)| seen != thread))
                .collect();
            assert_eq!(ours.len(), 1, "one writer thread started: {ours:?}");
            assert_eq!(ours[0].1, own, "the writer's nice value after the move");
        })
        .join()
        .unwrap();
    }

    /// Takes CAP_SYS_NICE out of the calling thread's effective capabilities.
    #[cfg(target_os = "linux")]
    fn drop_cap_sys_nice() {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        const CAP_SYS_NICE: u32 = 23;
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget/capset on the calling thread (pid 0) with a version-3 header and the
        // two data words that version takes, both valid for the calls.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
                0
            );
            data[0].effective &= !(1 << CAP_SYS_NICE);
            assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
        }
    }

    /// Where a running job's snapshot rewrites its row (a shared database, see
    /// `progress_rewrites_row`), it rewrites no index over the table: the partial index of
    /// running jobs and the index by end time cover status and end time, which only the write
    /// that ends the job sets (a column in the SET list rewrites every index over it; on
    /// PostgreSQL it rules out a heap-only update). Read from SQLite's plan: the statements are
    /// the same on both engines.
    #[test]
    fn a_running_jobs_snapshot_rewrites_its_row_and_no_index() {
        let (_dir, store) = crate::store::tests::temporary_sqlite();
        let mut pooled = store.connection().unwrap();
        let Db::Sqlite(conn) = &mut *pooled else {
            unreachable!("the store was opened on SQLite")
        };
        let (mut job, _) = JobState::start(&Report {
            job_id: "job-1".into(),
            sequence: 1,
            sampled_at: 1_000,
            received_at: 1_000,
            status: JobStatus::Running,
            phase: "transfer".into(),
            bytes_transferred: 0,
            total_bytes: 100,
            progress_percent: 0.0,
            transfer_speed_bps: 0,
            error_message: String::new(),
            machine: "vm-01".into(),
            job_type: Some(JobType::Full),
            machine_info: None,
        })
        .unwrap();
        let write = JobWrite {
            kind: WriteKind::Progress,
            job: job.clone(),
            points: Vec::new(),
            stored_sequence: 1,
        };
        let progress = JobProgress::of(&job);
        let running = sql_of(&KeptUpdate::new(
            kept::Running,
            &progress,
            still_as_read(&write),
        ));
        assert_eq!(written_btrees(conn, &running), ["backup_jobs"]);

        job.status = JobStatus::Succeeded;
        job.ended_at = Some(2_000);
        let end = JobEnd::of(&job);
        let ending = sql_of(&KeptUpdate::new(
            kept::Ending,
            (&progress, &end),
            still_as_read(&write),
        ));
        assert_eq!(
            written_btrees(conn, &ending),
            ["backup_jobs", "backup_jobs_by_end", "backup_jobs_running"]
        );
    }
}
