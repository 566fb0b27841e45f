//! The ERP's request rate limit: a token bucket enforced with HTTP 429 and `Retry-After`.

use std::time::{Duration, Instant};

/// The size and refill rate of the request token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    /// Requests allowed in a burst, with a full bucket.
    pub burst_requests: u32,
    /// Tokens restored per second.
    pub refill_requests_per_sec: f64,
}

impl Default for RateLimitConfig {
    /// Generous enough that tests and demos never meet it unless they lower it.
    fn default() -> Self {
        Self {
            burst_requests: 1000,
            refill_requests_per_sec: 100.0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct TokenBucket {
    config: RateLimitConfig,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            tokens: f64::from(config.burst_requests),
            refilled_at: Instant::now(),
        }
    }

    /// Takes one token, or returns how long until one is available.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.config.refill_requests_per_sec).min(f64::from(self.config.burst_requests));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.config.refill_requests_per_sec <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.config.refill_requests_per_sec,
        ))
    }
}

/// Rounds a wait up to whole seconds for `Retry-After`, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_bursts_and_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(RateLimitConfig {
            burst_requests: 2,
            refill_requests_per_sec: 0.5,
        });
        assert!(bucket.try_take(start).is_ok());
        assert!(bucket.try_take(start).is_ok());
        let wait = bucket.try_take(start).unwrap_err();
        assert_eq!(retry_after_secs(wait), 2);
        assert!(bucket.try_take(start + Duration::from_secs(2)).is_ok());
    }
}
