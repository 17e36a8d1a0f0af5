//! Local rate limiting: one token bucket per route rule, lock-free, with time from the caller.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `LocalRateLimit` object as loaded: Envoy's `token_bucket` (`max_tokens`,
/// `tokens_per_fill`, `fill_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) max_tokens: u32,
    pub(crate) tokens_per_fill: u32,
    pub(crate) fill_interval: Duration,
}

/// A token bucket kept as a GCRA "theoretical arrival time": one atomic, updated with
/// compare-and-swap, so concurrent requests never take a lock and never over-admit.
///
/// Tokens come back continuously (one every `fill_interval / tokens_per_fill`) rather than in
/// steps of `tokens_per_fill`, as Envoy's atomic token bucket does; the bucket starts full.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// The first `now` seen; all later times are nanoseconds after it.
    epoch: OnceLock<Instant>,
    /// When the bucket will be full again, in nanoseconds after `epoch`.
    tat: AtomicU64,
    /// Nanoseconds per token.
    interval: u64,
    /// How far `tat` may run ahead of now: `max_tokens` tokens' worth.
    capacity: u64,
}

// === impl TokenBucket ===

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let per_fill = u128::from(limit.tokens_per_fill.max(1));
        let interval = (limit.fill_interval.as_nanos() / per_fill).clamp(1, u128::from(u64::MAX));
        let interval = interval as u64;
        TokenBucket {
            epoch: OnceLock::new(),
            tat: AtomicU64::new(0),
            interval,
            capacity: interval.saturating_mul(u64::from(limit.max_tokens)),
        }
    }

    /// Takes one token at `now`; false when the bucket is empty.
    pub(crate) fn try_acquire(&self, now: Instant) -> bool {
        let epoch = *self.epoch.get_or_init(|| now);
        // A caller whose clock reading predates the epoch (a race on first use) counts as at it.
        let now =
            u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            let next = current.max(now).saturating_add(self.interval);
            if next - now > self.capacity {
                return false;
            }
            match self.tat.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(max: u32, per_fill: u32, every: Duration) -> TokenBucket {
        TokenBucket::new(RateLimit {
            max_tokens: max,
            tokens_per_fill: per_fill,
            fill_interval: every,
        })
    }

    #[test]
    fn starts_full_and_refills_continuously() {
        let t0 = Instant::now();
        let b = bucket(3, 1, Duration::from_secs(1));
        assert!(b.try_acquire(t0));
        assert!(b.try_acquire(t0));
        assert!(b.try_acquire(t0));
        assert!(!b.try_acquire(t0));
        assert!(!b.try_acquire(t0 + Duration::from_millis(999)));
        assert!(b.try_acquire(t0 + Duration::from_secs(1)));
        assert!(!b.try_acquire(t0 + Duration::from_secs(1)));
        // A long idle period refills to max_tokens, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(b.try_acquire(later));
        }
        assert!(!b.try_acquire(later));
    }

    #[test]
    fn tokens_per_fill_sets_the_rate() {
        let t0 = Instant::now();
        let b = bucket(10, 10, Duration::from_secs(1));
        for _ in 0..10 {
            assert!(b.try_acquire(t0));
        }
        assert!(!b.try_acquire(t0));
        // 10 per second: one every 100 ms.
        assert!(b.try_acquire(t0 + Duration::from_millis(100)));
        assert!(!b.try_acquire(t0 + Duration::from_millis(150)));
        assert!(b.try_acquire(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn a_clock_reading_before_the_epoch_is_not_a_crash() {
        let t0 = Instant::now();
        let b = bucket(1, 1, Duration::from_secs(1));
        assert!(b.try_acquire(t0 + Duration::from_secs(5)));
        assert!(!b.try_acquire(t0));
    }
}
