//! Live state: every job the hub is working with, in memory, one lock per job so reports for
//! different jobs never wait on each other, plus the watch fan-out (`watch`).

pub mod watch;

use crate::domain::job::JobState;
use crate::domain::{Millis, Point};
use crate::error::Result;
use crate::proto;
use crate::store::rows::JobRow;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

/// One job in memory.
#[derive(Debug, Clone)]
pub struct LiveJob {
    pub state: JobState,
    /// The performance record once the job has been rolled up.
    pub record: Option<Arc<proto::PerformanceRecord>>,
    /// When this hub learnt the job ended; ended jobs are evicted a while later.
    pub ended_seen: Option<Instant>,
    /// The `last_sequence` on the job row as this hub last wrote or read it.
    pub stored_sequence: u64,
}

impl LiveJob {
    /// The job as stored, to continue it after a restart or from another hub's writes.
    pub fn from_row(row: &JobRow) -> Result<Self> {
        Ok(LiveJob::new(row.to_state()?, row.record()?))
    }

    /// A running job after a restart on SQLite, where its row keeps what its first report said
    /// and its snapshots carry the progress (see `writer::progress_rewrites_row`): it goes on
    /// from the newest snapshot. Its stall timeout starts again at `now`: while the hub was
    /// down its agent may have kept trying.
    pub fn resumed(row: &JobRow, latest: Option<Point>, now: Millis) -> Result<Self> {
        let mut state = row.to_state()?;
        state.resume(latest, now);
        Ok(LiveJob {
            stored_sequence: row.last_sequence as u64,
            ..LiveJob::new(state, None)
        })
    }

    /// The current state has been committed (with the record, when this write rolled it up).
    pub fn committed(&mut self, record: Option<proto::PerformanceRecord>) {
        self.stored_sequence = self.state.last_sequence;
        if let Some(record) = record {
            self.record = Some(Arc::new(record));
            self.ended_seen = Some(Instant::now());
        }
    }

    pub fn new(state: JobState, record: Option<proto::PerformanceRecord>) -> Self {
        let ended_seen = state.status.is_terminal().then(Instant::now);
        LiveJob {
            stored_sequence: state.last_sequence,
            state,
            record: record.map(Arc::new),
            ended_seen,
        }
    }
}

/// What a sweep of memory found.
#[derive(Debug, Default)]
pub struct Swept {
    /// Running jobs silent since the sweep's cut-off.
    pub silent: Vec<String>,
    /// Jobs running (or locked) in memory.
    pub running: usize,
}

/// `None` until the job has been looked up in the database.
pub type Slot = Arc<Mutex<Option<LiveJob>>>;

/// The in-memory job table.
#[derive(Default)]
pub struct LiveJobs {
    slots: DashMap<String, Slot>,
}

impl LiveJobs {
    /// The job's slot, created empty when absent.
    pub fn slot(&self, job_id: &str) -> Slot {
        if let Some(s) = self.slots.get(job_id) {
            return s.clone();
        }
        self.slots.entry(job_id.to_string()).or_default().clone()
    }

    /// The job's slot if the hub holds it.
    pub fn get(&self, job_id: &str) -> Option<Slot> {
        self.slots.get(job_id).map(|s| s.clone())
    }

    /// Forgets a slot that turned out to name no job.
    pub fn forget_if_empty(&self, job_id: &str) {
        self.slots.remove_if(job_id, |_, s| {
            s.try_lock().map(|g| g.is_none()).unwrap_or(false)
        });
    }

    /// One pass for the stall sweep: drops the slots of jobs that ended more than `ended_for`
    /// ago (and empty ones), and returns the running jobs whose last report reached this hub
    /// before `silent_since` (hub clock) and how many jobs are running. A slot locked by a
    /// report or a read is kept and counted as running. The table is read under its shards'
    /// shared locks, which reports finding their job take too; the slots found droppable are
    /// then removed one at a time, checked again. (The sweep runs at the lowest priority: an
    /// exclusive lock held for a whole shard, as `retain` does, would hold up every report on
    /// that shard while the sweep waited for a core.)
    pub fn sweep(&self, ended_for: std::time::Duration, silent_since: Millis) -> Swept {
        let droppable = |job: Option<&LiveJob>| match job {
            None => true,
            Some(j) => {
                j.state.status.is_terminal()
                    && j.ended_seen.is_some_and(|t| t.elapsed() >= ended_for)
            }
        };
        let mut swept = Swept::default();
        let mut dropped = Vec::new();
        for entry in self.slots.iter() {
            let Ok(guard) = entry.value().try_lock() else {
                swept.running += 1;
                continue;
            };
            match guard.as_ref() {
                Some(j) if !j.state.status.is_terminal() => {
                    swept.running += 1;
                    if j.state.last_received_at < silent_since {
                        swept.silent.push(entry.key().clone());
                    }
                }
                job if droppable(job) => dropped.push(entry.key().clone()),
                _ => {}
            }
        }
        for id in dropped {
            self.slots.remove_if(&id, |_, s| {
                s.try_lock().is_ok_and(|g| droppable(g.as_ref()))
            });
        }
        swept
    }

    /// Whether the job is held in memory (a slot locked by a report or a read counts).
    pub fn holds(&self, job_id: &str) -> bool {
        self.slots
            .get(job_id)
            .is_some_and(|s| s.try_lock().map(|g| g.is_some()).unwrap_or(true))
    }

    /// Running jobs held in memory.
    pub fn running(&self) -> usize {
        self.slots
            .iter()
            .filter(|e| {
                e.value()
                    .try_lock()
                    .map(|g| g.as_ref().is_some_and(|j| !j.state.status.is_terminal()))
                    .unwrap_or(true)
            })
            .count()
    }
}
