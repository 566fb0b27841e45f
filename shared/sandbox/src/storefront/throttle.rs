//! Shopify's calculated-cost leaky bucket, and forced HTTP 429 responses for tests.

use std::time::Instant;

use serde_json::{json, Value};

/// The size and restore rate of the cost bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    /// Points the bucket holds when full (`maximumAvailable`).
    pub bucket_size_points: f64,
    /// Points restored per second (`restoreRate`).
    pub restore_rate_points_per_sec: f64,
}

impl Default for ThrottleConfig {
    /// Returns a 1000-point bucket restored at 50 points per second, the figures of Shopify's
    /// long-standing `throttleStatus` examples. Current Shopify plans may use other figures.
    fn default() -> Self {
        Self {
            bucket_size_points: 1000.0,
            restore_rate_points_per_sec: 50.0,
        }
    }
}

/// The cost of one request, reported in `extensions.cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueryCost {
    pub(crate) requested: u32,
    /// `None` when the request was throttled and did not run.
    pub(crate) actual: Option<u32>,
}

/// A leaky bucket of query cost points: a request runs only if the bucket contains its requested
/// cost, then pays its actual cost, and the bucket refills continuously.
#[derive(Debug)]
pub(crate) struct CostBucket {
    config: ThrottleConfig,
    available: f64,
    refilled_at: Instant,
}

impl CostBucket {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            available: config.bucket_size_points,
            refilled_at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.available =
            (self.available + elapsed * self.config.restore_rate_points_per_sec).min(self.config.bucket_size_points);
        self.refilled_at = now;
    }

    /// Reserves `requested` points, or returns `false` when the bucket contains fewer.
    pub(crate) fn try_reserve(&mut self, requested: u32, now: Instant) -> bool {
        self.refill(now);
        if self.available < f64::from(requested) {
            return false;
        }
        self.available -= f64::from(requested);
        true
    }

    /// Gives back the points reserved beyond the actual cost.
    pub(crate) fn refund(&mut self, points: u32) {
        self.available = (self.available + f64::from(points)).min(self.config.bucket_size_points);
    }

    /// Empties the bucket, as after a burst of expensive queries.
    pub(crate) fn drain(&mut self, now: Instant) {
        self.refill(now);
        self.available = 0.0;
    }

    /// Builds the `extensions.cost` object of a response.
    pub(crate) fn cost_extension(&mut self, cost: QueryCost, now: Instant) -> Value {
        self.refill(now);
        json!({
            "cost": {
                "requestedQueryCost": cost.requested,
                "actualQueryCost": cost.actual,
                "throttleStatus": {
                    "maximumAvailable": self.config.bucket_size_points,
                    "currentlyAvailable": self.available.floor(),
                    "restoreRate": self.config.restore_rate_points_per_sec,
                }
            }
        })
    }
}

/// The number of upcoming requests to reject with HTTP 429, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Forced429 {
    pub(crate) remaining: u32,
    pub(crate) retry_after_secs: u64,
}

impl Forced429 {
    /// Uses up one forced 429 and returns its `Retry-After` seconds, if any remain.
    pub(crate) fn take(&mut self) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.retry_after_secs)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_rejects_until_restored() {
        let config = ThrottleConfig {
            bucket_size_points: 20.0,
            restore_rate_points_per_sec: 10.0,
        };
        let start = Instant::now();
        let mut bucket = CostBucket::new(config);
        assert!(bucket.try_reserve(10, start));
        assert!(bucket.try_reserve(10, start));
        assert!(!bucket.try_reserve(10, start));
        assert!(bucket.try_reserve(10, start + Duration::from_secs(1)));
    }

    #[test]
    fn refund_is_capped_at_bucket_size() {
        let mut bucket = CostBucket::new(ThrottleConfig::default());
        let now = Instant::now();
        assert!(bucket.try_reserve(100, now));
        bucket.refund(500);
        let cost = bucket.cost_extension(
            QueryCost {
                requested: 100,
                actual: Some(5),
            },
            now,
        );
        assert_eq!(cost["cost"]["throttleStatus"]["currentlyAvailable"], 1000.0);
    }
}
