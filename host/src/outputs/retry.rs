//! Retries of one object put, shared by the segment, playlist and image uploads.

use std::future::Future;
use std::time::Duration;

use crate::outputs::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay before the second attempt; doubled each time up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts over about 3 s: the store's own retries (the plugins' per-request retries
    /// and the host's whole-object attempts) come first, so this only rides out a short outage.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, failed_attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failed_attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Runs `put` until it succeeds, fails permanently, or the attempts are spent; returns the
    /// last error and how many attempts were made.
    pub async fn run<T, F, Fut>(&self, what: &str, mut put: F) -> Result<T, (StoreError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match put().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.retryable || attempt >= self.attempts.max(1) => {
                    return Err((e, attempt));
                }
                Err(e) => {
                    let delay = self.delay(attempt);
                    tracing::warn!(object = what, attempt, error = %e, ?delay, "upload failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 9,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        };
        let d: Vec<_> = (1..=5).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 5, 5]);
        assert_eq!(p.delay(200), Duration::from_secs(5), "no overflow");
    }
}
