//! Jittered exponential backoff, shared by the source's readers and the sink.

use std::time::Duration;

/// Default of [`Backoff::unreachable_after`]: well inside the 10 s in which a wrong endpoint
/// must be reported, yet longer than the SDK's 3.1 s connect timeout, so an endpoint that
/// drops packets gets a second try.
const DEFAULT_UNREACHABLE_AFTER: Duration = Duration::from_secs(5);

/// Retry timing: exponential backoff with full jitter, capped.
///
/// Full jitter (a uniform wait between half the exponential step and the step) spreads the
/// retries of many shard readers and sink tasks that were throttled at the same moment, which
/// a fixed delay would keep synchronised and throttled again.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// First retry delay (default 100 ms).
    pub base: Duration,
    /// Largest delay (default 5 s).
    pub max: Duration,
    /// Attempts for transient failures and PutRecords partial failures before giving up
    /// (default 10). Throttling of reads is retried without limit, as the KCL does: it is
    /// back-pressure, not failure.
    pub max_attempts: u32,
    /// How long calls keep being retried while Kinesis cannot be reached at all (connection
    /// refused, unknown host, connect timeout) before they fail with
    /// [`KinesisError::Unreachable`](crate::KinesisError::Unreachable), naming the endpoint
    /// (default 5 s). A wrong endpoint then fails the pipeline within seconds, while a
    /// pipeline with a restart policy rides out longer outages by restarting.
    pub unreachable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_attempts: 10,
            unreachable_after: DEFAULT_UNREACHABLE_AFTER,
        }
    }
}

impl Backoff {
    /// A policy with these bounds.
    pub fn new(base: Duration, max: Duration, max_attempts: u32) -> Self {
        Backoff {
            base,
            max: max.max(base),
            max_attempts: max_attempts.max(1),
            unreachable_after: DEFAULT_UNREACHABLE_AFTER,
        }
    }

    /// How long to retry while Kinesis cannot be reached (see the field of this name).
    pub fn unreachable_after(mut self, window: Duration) -> Self {
        self.unreachable_after = window;
        self
    }

    /// The wait before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let nanos = step.as_nanos() as u64;
        let low = nanos / 2;
        Duration::from_nanos(low + fastrand::u64(0..=nanos - low))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn n7_backoff_grows_exponentially_within_jitter_and_cap(attempt in 0u32..40) {
            let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 10);
            let step = Duration::from_millis(100)
                .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
                .min(Duration::from_secs(5));
            let d = b.delay(attempt);
            prop_assert!(d >= step / 2 && d <= step, "{d:?} outside [{:?}, {step:?}]", step / 2);
        }
    }

    #[test]
    fn n7_backoff_is_jittered() {
        let b = Backoff::default();
        let delays: std::collections::HashSet<Duration> = (0..50).map(|_| b.delay(5)).collect();
        assert!(
            delays.len() > 1,
            "50 delays for one attempt are not all equal"
        );
    }
}
