//! BigCommerce's request quota as its responses report it.
//!
//! Every REST response carries `X-Rate-Limit-Requests-Left` and `X-Rate-Limit-Time-Reset-Ms`
//! (milliseconds until the quota refills). All apps of a store share its quota (150 requests per
//! 30 s on the Standard and Plus plans), so the client cannot count for itself. It keeps what the
//! last response reported and, once nothing is left, waits for the refill before the next request.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

pub(crate) const REQUESTS_LEFT: &str = "x-rate-limit-requests-left";
pub(crate) const TIME_RESET_MS: &str = "x-rate-limit-time-reset-ms";

/// The quota state the last response reported.
#[derive(Debug, Default)]
pub(crate) struct RateBudget {
    last: Mutex<Option<Reported>>,
}

#[derive(Debug, Clone, Copy)]
struct Reported {
    requests_left: u64,
    resets_at: Instant,
}

impl RateBudget {
    /// Records the quota headers of a response, if it has them.
    pub(crate) fn observe(&self, headers: &HeaderMap, now: Instant) {
        let Some(requests_left) = header_number(headers, REQUESTS_LEFT) else {
            return;
        };
        let reset = reset_after(headers).unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = Some(Reported {
            requests_left,
            resets_at: now + reset,
        });
    }

    /// Returns how long to wait before the next request: until the reported refill when the last
    /// response left no request, never longer than `cap`, and zero otherwise.
    pub(crate) fn wait_before_request(&self, now: Instant, cap: Duration) -> Duration {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last {
            Some(reported) if reported.requests_left == 0 => reported.resets_at.saturating_duration_since(now).min(cap),
            _ => Duration::ZERO,
        }
    }
}

/// Reads `X-Rate-Limit-Time-Reset-Ms`.
pub(crate) fn reset_after(headers: &HeaderMap) -> Option<Duration> {
    header_number(headers, TIME_RESET_MS).map(Duration::from_millis)
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(left: &'static str, reset_ms: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUESTS_LEFT, HeaderValue::from_static(left));
        headers.insert(TIME_RESET_MS, HeaderValue::from_static(reset_ms));
        headers
    }

    #[test]
    fn exhausted_quota_waits_for_reset() {
        let budget = RateBudget::default();
        let now = Instant::now();
        budget.observe(&headers("0", "1500"), now);
        let wait = budget.wait_before_request(now, Duration::from_secs(30));
        assert_eq!(wait, Duration::from_millis(1500));
        assert_eq!(
            budget.wait_before_request(now + Duration::from_secs(2), Duration::from_secs(30)),
            Duration::ZERO
        );
    }

    #[test]
    fn wait_is_capped() {
        let budget = RateBudget::default();
        let now = Instant::now();
        budget.observe(&headers("0", "90000"), now);
        assert_eq!(
            budget.wait_before_request(now, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn remaining_quota_does_not_wait() {
        let budget = RateBudget::default();
        let now = Instant::now();
        assert_eq!(budget.wait_before_request(now, Duration::from_secs(30)), Duration::ZERO);
        budget.observe(&headers("3", "1500"), now);
        assert_eq!(budget.wait_before_request(now, Duration::from_secs(30)), Duration::ZERO);
    }
}
