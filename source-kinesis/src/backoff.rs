//! The retry policy's configuration, shared by the source's readers and the sink; the delays
//! themselves come from `backon`.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// Default of [`Backoff::unreachable_after`]: well inside the 10 s in which a wrong endpoint
/// must be reported, yet longer than the SDK's 3.1 s connect timeout, so an endpoint that
/// drops packets gets a second try.
const DEFAULT_UNREACHABLE_AFTER: Duration = Duration::from_secs(5);

/// Retry timing: exponential backoff with equal jitter, capped.
///
/// Retry `n` (0-based) waits a uniformly random time in `[step / 2, step)`, where
/// `step = min(base × 2ⁿ, max)` ("equal jitter": half the step fixed, half random). The delays
/// are computed by `backon`'s [`ExponentialBuilder`] with jitter, whose jitter *adds* a random
/// fraction (`[0, 1)`) of the current delay to it; it is therefore given half of `base` and
/// half of `max`, which puts every wait in the range above and never above `max`.
///
/// The jitter spreads the retries of many shard readers and sink tasks that were throttled at
/// the same moment, which a fixed delay would keep synchronised and throttled again; the fixed
/// half keeps a throttled caller from retrying almost at once, as full jitter (`[0, step)`)
/// sometimes would.
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

/// Past this many doublings every step is `max`, whatever `base` and `max` are (a `Duration`
/// holds less than 2⁹⁵ ns), so [`Backoff::delay`] need not walk further.
const SATURATED_AFTER: u32 = 100;

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

    /// The wait before retry number `attempt` (0-based), drawn afresh on every call.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delays()
            .nth(attempt.min(SATURATED_AFTER) as usize)
            .unwrap_or(self.max)
    }

    /// The waits before retries 0, 1, 2, … without end: callers bound them (by attempts or by
    /// time) according to what failed.
    pub(crate) fn delays(&self) -> Delays {
        self.build(self.builder().without_max_times())
    }

    /// The waits between at most `attempts` calls: `attempts - 1` of them, then `None`.
    pub(crate) fn delays_between(&self, attempts: u32) -> Delays {
        let waits = attempts.saturating_sub(1) as usize;
        self.build(self.builder().with_max_times(waits))
    }

    fn builder(&self) -> ExponentialBuilder {
        // The fields are public, so `max` may have been set below `base`: the cap wins.
        let base = self.base.min(self.max);
        ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(base / 2)
            .with_max_delay(self.max / 2)
    }

    fn build(&self, builder: ExponentialBuilder) -> Delays {
        Delays {
            inner: builder.build(),
            max: self.max,
        }
    }
}

/// A sequence of retry waits, each at most [`Backoff::max`].
#[derive(Debug)]
pub(crate) struct Delays {
    /// Named through the builder: backon hides the type's own name from its documentation.
    inner: <ExponentialBuilder as BackoffBuilder>::Backoff,
    max: Duration,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // backon computes in `f32` seconds, which can round a wait a few nanoseconds past the
        // doubled half-cap.
        self.inner.next().map(|d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exponential step of retry `attempt`, computed exactly.
    fn step(b: &Backoff, attempt: u32) -> Duration {
        b.base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(b.max)
    }

    /// Whether `d` is a wait for this step: in `[step / 2, step]`, give or take backon's
    /// rounding (it computes in `f32` seconds, a relative 10⁻⁷).
    fn within(d: Duration, step: Duration) -> bool {
        d >= (step / 2).mul_f64(1.0 - 1e-6) && d <= step.mul_f64(1.0 + 1e-6)
    }

    proptest! {
        #[test]
        fn n7_backoff_grows_exponentially_within_jitter_and_cap(
            attempt in 0u32..40,
            base_ms in 1u64..2_000,
            max_ms in 1u64..60_000,
        ) {
            let b = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(max_ms), 10);
            let step = step(&b, attempt);
            let d = b.delay(attempt);
            prop_assert!(d <= b.max, "{d:?} above the cap {:?}", b.max);
            prop_assert!(within(d, step), "{d:?} outside [{:?}, {step:?}]", step / 2);
        }

        #[test]
        fn every_wait_of_a_sequence_is_within_its_step_and_the_cap(
            base_ms in 0u64..2_000,
            max_ms in 0u64..60_000,
        ) {
            // The public fields allow `max` below `base`, which `new` would correct.
            let b = Backoff {
                base: Duration::from_millis(base_ms),
                max: Duration::from_millis(max_ms),
                ..Backoff::default()
            };
            for (attempt, d) in b.delays().take(64).enumerate() {
                let step = step(&b, attempt as u32);
                prop_assert!(d <= b.max, "retry {attempt}: {d:?} above the cap {:?}", b.max);
                prop_assert!(within(d, step), "retry {attempt}: {d:?} vs {step:?}");
            }
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

    #[test]
    fn attempts_bound_the_waits_between_them() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(4), 3);
        assert_eq!(b.delays_between(b.max_attempts).count(), 2);
        assert_eq!(b.delays_between(1).count(), 0);
        assert_eq!(b.delays_between(0).count(), 0);
        // Throttling is not bounded by attempts: the endless sequence stays at the cap.
        let late: Vec<Duration> = b.delays().skip(1_000).take(10).collect();
        assert_eq!(late.len(), 10);
        assert!(
            late.iter().all(|d| within(*d, b.max) && *d <= b.max),
            "{late:?}"
        );
        assert!(b.delay(u32::MAX) <= b.max);
    }
}
