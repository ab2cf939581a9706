//! The bounded buffer of reports waiting for delivery, and what it drops when full.
//!
//! Policy: reports leave in the order they were recorded. When the buffer is full, the oldest
//! report that may be dropped goes first. Reports pushed with `keep` (the job's first report,
//! which creates the job on the hub, and the terminal report) are never dropped; the buffer
//! grows past its capacity rather than lose one. Dropping a running report only costs a point on
//! the chart: later reports carry the cumulative bytes and progress.

use std::collections::VecDeque;

/// Reports waiting for delivery, oldest first.
#[derive(Debug)]
pub struct ReportQueue<T> {
    items: VecDeque<Entry<T>>,
    capacity: usize,
    dropped: u64,
}

#[derive(Debug)]
struct Entry<T> {
    sequence: u64,
    keep: bool,
    item: T,
}

impl<T> ReportQueue<T> {
    /// A buffer that holds `capacity` droppable reports (at least 1).
    pub fn new(capacity: usize) -> Self {
        ReportQueue {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Appends a report. When the buffer is full, drops the oldest droppable report first and
    /// returns its sequence.
    pub fn push(&mut self, sequence: u64, keep: bool, item: T) -> Option<u64> {
        let mut dropped = None;
        if self.items.len() >= self.capacity {
            if let Some(i) = self.items.iter().position(|e| !e.keep) {
                dropped = self.items.remove(i).map(|e| e.sequence);
                self.dropped += 1;
            }
        }
        self.items.push_back(Entry {
            sequence,
            keep,
            item,
        });
        dropped
    }

    /// The oldest report still waiting.
    pub fn front(&self) -> Option<(u64, &T)> {
        self.items.front().map(|e| (e.sequence, &e.item))
    }

    /// Forgets every report at or below `sequence`: the hub has it (a later sequence acknowledged
    /// implies the earlier ones are no longer needed).
    pub fn acknowledge(&mut self, sequence: u64) {
        while self.items.front().is_some_and(|e| e.sequence <= sequence) {
            self.items.pop_front();
        }
    }

    /// Empties the buffer (the hub refused the job; nothing more will be sent).
    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many reports were dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sequences waiting, oldest first.
    pub fn sequences(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().map(|e| e.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(q: &ReportQueue<()>) -> Vec<u64> {
        q.sequences().collect()
    }

    #[test]
    fn keeps_order_and_drops_the_oldest_running_report_when_full() {
        let mut q = ReportQueue::new(3);
        q.push(1, true, ());
        q.push(2, false, ());
        q.push(3, false, ());
        assert_eq!(q.push(4, false, ()), Some(2));
        assert_eq!(q.push(5, false, ()), Some(3));
        assert_eq!(seqs(&q), [1, 4, 5]);
        assert_eq!(q.dropped(), 2);
    }

    #[test]
    fn terminal_and_first_reports_are_never_dropped() {
        let mut q = ReportQueue::new(2);
        q.push(1, true, ());
        for s in 2..100 {
            q.push(s, false, ());
        }
        q.push(100, true, ());
        assert_eq!(seqs(&q), [1, 100]);
        // Only kept reports left: the buffer grows rather than lose one.
        q.push(101, true, ());
        assert_eq!(seqs(&q), [1, 100, 101]);
    }

    #[test]
    fn order_is_kept_under_any_mix_of_pushes() {
        let mut q = ReportQueue::new(4);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut kept = Vec::new();
        for s in 1..500 {
            let keep = rng.u8(..).is_multiple_of(9);
            if keep {
                kept.push(s);
            }
            q.push(s, keep, ());
            let v = seqs(&q);
            assert!(v.windows(2).all(|w| w[0] < w[1]), "{v:?}");
            assert!(
                kept.iter().all(|k| v.contains(k)),
                "a kept report was dropped"
            );
            assert!(v.len() <= 4.max(kept.len() + 1), "{v:?}");
        }
    }

    #[test]
    fn acknowledging_removes_everything_up_to_the_sequence() {
        let mut q = ReportQueue::new(10);
        for s in 1..=5 {
            q.push(s, s == 5, ());
        }
        q.acknowledge(3);
        assert_eq!(q.front().map(|(s, _)| s), Some(4));
        q.acknowledge(5);
        assert!(q.is_empty());
    }
}
