//! The watch fan-out. Every watched job (per update interval) has one feed task that builds one
//! update per tick from the job's live state and broadcasts it; watchers only forward. A feed
//! stops at the first tick with no watcher left, and after the job's final message.

use super::Slot;
use crate::proto;
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
    /// `load_record` fetches the stored record when the job was ended by another hub.
    pub fn subscribe(
        &self,
        job_id: &str,
        slot: Slot,
        interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> broadcast::Receiver<Update> {
        let key = (job_id.to_string(), interval.as_millis() as u64);
        let entry = self.feeds.entry(key.clone()).or_insert_with(|| {
            let (tx, _) = broadcast::channel(WATCHER_BACKLOG);
            tokio::spawn(run_feed(
                self.clone(),
                key,
                slot,
                tx.clone(),
                interval,
                shutdown,
            ));
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

async fn run_feed(
    feeds: Feeds,
    key: (String, u64),
    slot: Slot,
    tx: broadcast::Sender<Update>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sequence = slot.lock().await.as_ref().map(|j| j.state.last_sequence);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        if feeds.retire_if_unwatched(&key) {
            return;
        }
        let update = {
            let guard = slot.lock().await;
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
        let _ = tx.send(Arc::new(update));
        if last {
            break;
        }
    }
    feeds.feeds.remove(&key);
}
