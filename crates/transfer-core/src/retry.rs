use std::time::Duration;

use crate::TransferError;
use crate::op::{Failure, FailureKind};

/// How failed operations are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Smallest delay before a retry of a transient failure.
    pub base_delay: Duration,
    /// Largest delay before any retry.
    pub max_delay: Duration,
    /// Attempts per operation, the first included, for transient failures.
    pub max_attempts: u32,
    /// Smallest delay after the server asked us to slow down (503 SlowDown, 429).
    pub throttle_base_delay: Duration,
    /// Attempts per operation, the first included, while the server keeps throttling.
    /// Throttling says nothing is broken, so it gets a budget of its own.
    pub max_throttled_attempts: u32,
    /// A transfer that completes no operation for this long fails as stalled.
    pub stall_timeout: Duration,
    /// Seed of the jitter, so that the same inputs give the same schedule.
    pub seed: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(20),
            max_attempts: 10,
            throttle_base_delay: Duration::from_millis(500),
            max_throttled_attempts: 20,
            stall_timeout: Duration::from_secs(300),
            seed: 0x5eed_5eed,
        }
    }
}

/// Per-operation retry bookkeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Attempts {
    /// Failures counted against `max_attempts`.
    pub(crate) transient: u32,
    /// Failures counted against `max_throttled_attempts`.
    pub(crate) throttled: u32,
    /// The previous delay, which decorrelated jitter grows from.
    pub(crate) last_delay: Duration,
}

/// Decorrelated-jitter backoff with a seeded generator.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    cfg: RetryConfig,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new(cfg: RetryConfig) -> Self {
        let rng = fastrand::Rng::with_seed(cfg.seed);
        Backoff { cfg, rng }
    }

    pub(crate) fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    /// Records a failure of kind `kind` and returns the delay before the next attempt,
    /// or `None` when the failure is permanent or the budget is spent.
    pub(crate) fn next_delay(
        &mut self,
        attempts: &mut Attempts,
        kind: FailureKind,
    ) -> Option<Duration> {
        let base = match kind {
            FailureKind::Throttled => {
                attempts.throttled += 1;
                if attempts.throttled >= self.cfg.max_throttled_attempts {
                    return None;
                }
                self.cfg.throttle_base_delay
            }
            FailureKind::Transient | FailureKind::Transport | FailureKind::Timeout => {
                attempts.transient += 1;
                if attempts.transient >= self.cfg.max_attempts {
                    return None;
                }
                self.cfg.base_delay
            }
            _ => return None,
        };
        // Decorrelated jitter: uniform in [base, 3 × previous], capped.
        let upper = attempts.last_delay.saturating_mul(3).max(base);
        let lo = base.as_micros() as u64;
        let hi = (upper.as_micros() as u64).max(lo);
        let delay = Duration::from_micros(self.rng.u64(lo..=hi)).min(self.cfg.max_delay);
        attempts.last_delay = delay;
        Some(delay)
    }
}

/// The retries of one request that no machine drives (a listing, or an abort the user
/// asked for): the same classification, budgets and backoff as a transfer's operations,
/// so that a driver can ask "retry this failure, and after how long?" and decide nothing.
#[derive(Debug, Clone)]
pub struct RequestRetries {
    backoff: Backoff,
    attempts: Attempts,
}

impl RequestRetries {
    /// Retries under `cfg`; its seed makes the delays reproducible.
    pub fn new(cfg: RetryConfig) -> Self {
        RequestRetries {
            backoff: Backoff::new(cfg),
            attempts: Attempts::default(),
        }
    }

    /// Records that an attempt of `op` failed with `failure`: the delay before the next
    /// attempt, or the error that ends the request (a failure not worth another try, or
    /// a spent budget), as a machine would report it.
    pub fn next_attempt(
        &mut self,
        op: &'static str,
        failure: Failure,
    ) -> Result<Duration, TransferError> {
        if !failure.kind.is_retryable() {
            return Err(TransferError::Remote { op, failure });
        }
        self.backoff
            .next_delay(&mut self.attempts, failure.kind)
            .ok_or_else(|| TransferError::RetriesExhausted {
                op,
                attempts: self.attempts.transient + self.attempts.throttled,
                last: failure,
            })
    }

    /// Whether an AbortMultipartUpload that fails with `failure` has in fact succeeded:
    /// the upload is gone after an earlier attempt, whose answer was lost after the
    /// server acted on it (as the upload machine treats NoSuchUpload on its abort).
    pub fn abort_already_done(&self, failure: &Failure) -> bool {
        let retried = self.attempts.transient + self.attempts.throttled > 0;
        let gone = failure.has_code("NoSuchUpload")
            || (failure.kind == crate::FailureKind::NotFound && failure.code.is_none());
        retried && gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abort_that_finds_the_upload_gone_after_a_retry_is_done() {
        let gone = Failure {
            kind: crate::FailureKind::NotFound,
            status: Some(404),
            code: Some("NoSuchUpload".into()),
            message: "gone".into(),
        };
        let mut r = RequestRetries::new(RetryConfig::default());
        assert!(
            !r.abort_already_done(&gone),
            "a first attempt proves nothing"
        );
        let lost = Failure::new(crate::FailureKind::Transport, "connection reset");
        r.next_attempt("AbortMultipartUpload", lost)
            .expect("retried");
        assert!(r.abort_already_done(&gone));
        let denied = Failure {
            kind: crate::FailureKind::Denied,
            status: Some(403),
            code: Some("AccessDenied".into()),
            message: "no".into(),
        };
        assert!(!r.abort_already_done(&denied));
    }

    #[test]
    fn delays_grow_within_bounds_and_budget_ends() {
        let cfg = RetryConfig::default();
        let mut b = Backoff::new(cfg.clone());
        let mut a = Attempts::default();
        let mut delays = vec![];
        while let Some(d) = b.next_delay(&mut a, FailureKind::Transient) {
            assert!(d >= cfg.base_delay && d <= cfg.max_delay, "{d:?}");
            delays.push(d);
        }
        assert_eq!(delays.len() as u32, cfg.max_attempts - 1);
        assert!(delays.last() > delays.first());
    }

    #[test]
    fn same_seed_same_schedule() {
        let run = || {
            let mut b = Backoff::new(RetryConfig::default());
            let mut a = Attempts::default();
            (0..5)
                .map(|_| b.next_delay(&mut a, FailureKind::Throttled))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let mut b = Backoff::new(RetryConfig::default());
        let mut a = Attempts::default();
        assert_eq!(b.next_delay(&mut a, FailureKind::Denied), None);
        assert_eq!(b.next_delay(&mut a, FailureKind::InvalidRequest), None);
    }

    #[test]
    fn a_request_retries_what_an_operation_would_and_ends_as_one() {
        let cfg = RetryConfig::default();
        let failure = |kind| Failure::new(kind, "no");
        let mut r = RequestRetries::new(cfg.clone());
        let mut delays = vec![];
        let end = loop {
            match r.next_attempt("request", failure(FailureKind::Throttled)) {
                Ok(d) => delays.push(d),
                Err(e) => break e,
            }
        };
        assert_eq!(delays.len() as u32, cfg.max_throttled_attempts - 1);
        assert!(
            delays
                .iter()
                .all(|d| *d >= cfg.throttle_base_delay && *d <= cfg.max_delay)
        );
        assert!(matches!(
            end,
            TransferError::RetriesExhausted { attempts, .. } if attempts == cfg.max_throttled_attempts
        ));
        // The same seed, the same schedule.
        let mut again = RequestRetries::new(cfg.clone());
        let replay: Vec<_> = (0..delays.len())
            .map(|_| again.next_attempt("request", failure(FailureKind::Throttled)))
            .collect();
        assert_eq!(replay, delays.into_iter().map(Ok).collect::<Vec<_>>());
        // A permanent failure ends it at once, as the server said it.
        let mut r = RequestRetries::new(cfg);
        assert!(
            r.next_attempt("request", failure(FailureKind::Transient))
                .is_ok()
        );
        assert!(matches!(
            r.next_attempt("request", failure(FailureKind::Denied)),
            Err(TransferError::Remote { op: "request", .. })
        ));
    }
}
