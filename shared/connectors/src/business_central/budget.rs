//! Business Central's request limits on the client side: at most 6,000 requests in any 5 minutes
//! and 100 at once, per user and environment. Staying inside them avoids the 429s that would
//! otherwise slow every integration sharing the environment.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Request limits of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Requests allowed in one `window`.
    pub requests_per_window: usize,
    pub window: Duration,
    /// Requests in flight at once.
    pub concurrent: usize,
}

impl Default for BudgetConfig {
    /// Business Central's documented limits for one user in one environment.
    fn default() -> Self {
        Self {
            requests_per_window: 6_000,
            window: Duration::from_secs(300),
            concurrent: 100,
        }
    }
}

/// A sliding window of request start times and a cap on requests in flight. The limits hold
/// within one process. Every reconciler instance has its own budget, so the SQS event source's
/// maximum concurrency times this budget must stay within the environment's limits.
#[derive(Debug, Clone)]
pub(crate) struct RequestBudget {
    config: BudgetConfig,
    started: Arc<Mutex<VecDeque<Instant>>>,
    in_flight: Arc<Semaphore>,
}

impl RequestBudget {
    pub(crate) fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            started: Arc::new(Mutex::new(VecDeque::new())),
            in_flight: Arc::new(Semaphore::new(config.concurrent)),
        }
    }

    /// Takes a slot for one request, or returns how long until one frees. The caller does not
    /// wait: a Lambda invocation that slept here would hold its batch, so the message is retried
    /// later instead.
    pub(crate) fn try_start(&self, now: Instant) -> Result<OwnedSemaphorePermit, Duration> {
        let permit = match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => return Err(Duration::from_millis(100)),
        };
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        while started
            .front()
            .is_some_and(|first| now.saturating_duration_since(*first) >= self.config.window)
        {
            started.pop_front();
        }
        if started.len() >= self.config.requests_per_window {
            let oldest = started.front().copied().unwrap_or(now);
            return Err(self.config.window.saturating_sub(now.saturating_duration_since(oldest)));
        }
        started.push_back(now);
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn window_limits_requests_until_oldest_expires() {
        let budget = RequestBudget::new(BudgetConfig {
            requests_per_window: 2,
            window: Duration::from_secs(10),
            concurrent: 5,
        });
        let start = Instant::now();
        let first = budget.try_start(start).unwrap();
        let second = budget.try_start(start + Duration::from_secs(4)).unwrap();
        drop((first, second));
        let wait = budget.try_start(start + Duration::from_secs(5)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5));
        assert!(budget.try_start(start + Duration::from_secs(10)).is_ok());
    }

    #[tokio::test]
    async fn concurrency_cap_holds_until_a_request_ends() {
        let budget = RequestBudget::new(BudgetConfig {
            requests_per_window: 100,
            window: Duration::from_secs(10),
            concurrent: 1,
        });
        let now = Instant::now();
        let held = budget.try_start(now).unwrap();
        assert!(budget.try_start(now).is_err());
        drop(held);
        assert!(budget.try_start(now).is_ok());
    }
}
