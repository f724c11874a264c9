//! Backoff with full jitter, and which failures are worth another attempt.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1` (attempt counts from 1): a uniform random
    /// delay in `[0, min(max, initial * 2^(attempt-1))]`. Full jitter spreads the retries of
    /// many clients hitting the same failing server.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max);
        let nanos = cap.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.next() % (nanos + 1))
    }
}

/// Should a response with this status be retried? 408 and 429 ask for it; 5xx are the
/// server's own trouble. Everything else will fail the same way again.
pub fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// xorshift64*, seeded from the standard library's per-process random keys (which come from
/// the OS, or from `wasi:random` in WASM). Jitter needs no better.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        Rng(RandomState::new().hash_one(0x5EED_u64) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut rng = Rng::new();
        for attempt in 1..10 {
            let cap = Duration::from_millis((100u64 << (attempt - 1)).min(1000));
            for _ in 0..50 {
                assert!(p.delay(attempt, &mut rng) <= cap);
            }
        }
        let distinct: std::collections::HashSet<_> =
            (0..20).map(|_| p.delay(4, &mut rng)).collect();
        assert!(distinct.len() > 10, "jitter varies");
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status_is_retryable(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 409, 413, 416] {
            assert!(!status_is_retryable(s), "{s}");
        }
    }
}
