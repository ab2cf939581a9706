//! Exponential backoff with jitter: how long the reporter waits before retrying a report.

use std::time::Duration;

/// Retry schedule for reports the hub could not take (unreachable, overloaded, timed out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Wait before the first retry; short, because most outages are a restarting hub.
    pub initial: Duration,
    /// Upper bound of any wait, so a hub that comes back is noticed within this time.
    pub max: Duration,
    /// Growth of the wait per failed attempt.
    pub multiplier: f64,
    /// Share of each wait that is random (0 = none, 1 = anywhere from zero to the full wait), so
    /// agents that lost the hub together do not all come back in the same instant.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry); `random` is uniform in
    /// [0, 1) and picks the point inside the jitter range.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let grown =
            self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(attempt.min(1000) as i32);
        let capped = grown.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.0,
        }
    }

    #[test]
    fn doubles_from_the_initial_wait() {
        let b = plain();
        let waits: Vec<_> = (0..4).map(|a| b.delay(a, 0.7).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800]);
    }

    #[test]
    fn never_waits_longer_than_max_even_after_many_attempts() {
        let b = plain();
        assert_eq!(b.delay(10, 0.0), Duration::from_secs(5));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn jitter_shortens_the_wait_within_its_share() {
        let b = Backoff {
            jitter: 0.5,
            ..plain()
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(1, 0.999_999).as_millis(), 100);
        for r in [0.1, 0.4, 0.9] {
            let d = b.delay(3, r);
            assert!(
                d >= Duration::from_millis(400) && d <= Duration::from_millis(800),
                "{d:?}"
            );
        }
    }
}
