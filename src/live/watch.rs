//! The watch fan-out. Every watched job (per update interval) has one feed task that builds one
//! update per tick from the job's live state and broadcasts it; watchers only forward. A feed
//! stops at the first tick with no watcher left, and after the job's final message.

use super::{LiveJob, Slot};
use crate::proto;
use crate::store::{queries, Store};
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Updates a slow watcher may fall behind before it skips ahead.
const WATCHER_BACKLOG: usize = 16;

type Update = Arc<proto::WatchJobResponse>;

/// Running feeds by (job id, interval in ms).
#[derive(Clone, Default)]
pub struct Feeds {
    feeds: Arc<DashMap<(String, u64), broadcast::Sender<Update>>>,
}

impl Feeds {
    /// Subscribes to the job's feed at `interval`, starting the feed if nobody watches yet.
    /// With `shared`, the feed reads the job's row each tick, so reports taken by other hubs
    /// sharing the database reach this hub's watchers too.
    pub fn subscribe(
        &self,
        job_id: &str,
        slot: Slot,
        interval: Duration,
        shared: Option<Store>,
        shutdown: watch::Receiver<bool>,
    ) -> broadcast::Receiver<Update> {
        let key = (job_id.to_string(), interval.as_millis() as u64);
        let entry = self.feeds.entry(key.clone()).or_insert_with(|| {
            let (tx, _) = broadcast::channel(WATCHER_BACKLOG);
            let feed = Feed {
                feeds: self.clone(),
                key,
                slot,
                tx: tx.clone(),
                shared,
            };
            tokio::spawn(feed.run(interval, shutdown));
            tx
        });
        entry.subscribe()
    }

    /// Number of jobs with a running feed.
    pub fn len(&self) -> usize {
        self.feeds.len()
    }

    /// Whether no feed is running.
    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    /// Removes the feed when nobody listens any more; true if it was removed.
    fn retire_if_unwatched(&self, key: &(String, u64)) -> bool {
        self.feeds
            .remove_if(key, |_, tx| tx.receiver_count() == 0)
            .is_some()
    }
}

/// One watched job's source of updates.
struct Feed {
    feeds: Feeds,
    key: (String, u64),
    slot: Slot,
    tx: broadcast::Sender<Update>,
    shared: Option<Store>,
}

impl Feed {
    async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sequence = self
            .slot
            .lock()
            .await
            .as_ref()
            .map(|j| j.state.last_sequence);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            if self.feeds.retire_if_unwatched(&self.key) {
                return;
            }
            if let Some(store) = &self.shared {
                self.refresh(store).await;
            }
            let update = {
                let guard = self.slot.lock().await;
                let Some(live) = guard.as_ref() else { break };
                let fresh = last_sequence != Some(live.state.last_sequence);
                last_sequence = Some(live.state.last_sequence);
                proto::WatchJobResponse {
                    job: Some(live.state.to_proto()),
                    points: if fresh {
                        vec![live.state.current_point().to_proto(live.state.started_at)]
                    } else {
                        Vec::new()
                    },
                    performance: live.record.as_deref().cloned(),
                }
            };
            let last = update.performance.is_some();
            let _ = self.tx.send(Arc::new(update));
            if last {
                break;
            }
        }
        self.feeds.feeds.remove(&self.key);
    }

    /// Adopts the stored row when another hub moved the job on.
    async fn refresh(&self, store: &Store) {
        let id = self.key.0.clone();
        let row = match store.run(move |c| Ok(queries::job(c, &id)?)).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "watch feed could not read the job row");
                return;
            }
        };
        let Ok(stored) = LiveJob::from_row(&row) else {
            return;
        };
        let mut guard = self.slot.lock().await;
        let newer = guard.as_ref().is_none_or(|live| {
            stored.state.last_sequence > live.state.last_sequence
                || (stored.record.is_some() && live.record.is_none())
        });
        if newer {
            *guard = Some(stored);
        }
    }
}
