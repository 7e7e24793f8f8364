//! Whether a failed call is tried again, and when: one policy for the shard readers, the
//! control-plane calls and the sink, so that throttling is waited out, transient failures get
//! a bounded number of retries, and an endpoint that does not answer at all is reported as
//! unreachable within `Backoff::unreachable_after` instead of after every attempt ran out.

use crate::backoff::{Backoff, Delays};
use crate::config::StreamRef;
use crate::error::{classify, detail, root_cause, Failure, KinesisError};
use crate::stats::KinesisStats;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// What to do after a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Wait this long, then call again.
    Retry(Duration),
    /// Give up: the failure is not retryable, or the attempts ran out.
    GiveUp,
    /// Give up: Kinesis did not answer for this long.
    Unreachable(Duration),
}

/// The retry state of one call (or of one reader's stream of calls).
#[derive(Debug)]
pub(crate) struct Retry {
    backoff: Backoff,
    /// The waits still to come, from the first retry after the last success on.
    delays: Delays,
    attempt: u32,
    unreachable_since: Option<Instant>,
}

impl Retry {
    pub(crate) fn new(backoff: &Backoff) -> Self {
        Retry {
            backoff: backoff.clone(),
            delays: backoff.delays(),
            attempt: 0,
            unreachable_since: None,
        }
    }

    /// A call succeeded: the next failure starts afresh.
    pub(crate) fn succeeded(&mut self) {
        self.delays = self.backoff.delays();
        self.attempt = 0;
        self.unreachable_since = None;
    }

    /// Retries made since the last success.
    #[cfg(test)]
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn after(&mut self, failure: Failure) -> Verdict {
        let window = self.backoff.unreachable_after;
        let delay = match failure {
            Failure::Unreachable => {
                let since = *self.unreachable_since.get_or_insert_with(Instant::now);
                let waited = since.elapsed();
                if waited >= window {
                    return Verdict::Unreachable(waited);
                }
                // Never sleep past the window: the verdict is due when it closes.
                self.next_delay().min(window - waited)
            }
            // An answer, even a refusal, means the endpoint is reachable.
            Failure::Throttled => {
                self.unreachable_since = None;
                self.next_delay()
            }
            // Throttles count towards the limit too: a call that keeps failing in either way
            // has had its chances.
            Failure::Transient if self.attempt < self.backoff.max_attempts => {
                self.unreachable_since = None;
                self.next_delay()
            }
            _ => return Verdict::GiveUp,
        };
        self.attempt = self.attempt.saturating_add(1);
        Verdict::Retry(delay)
    }

    fn next_delay(&mut self) -> Duration {
        // `Backoff::delays` does not end; the cap is its limit anyway.
        self.delays.next().unwrap_or(self.backoff.max)
    }
}

/// How a call finally failed.
#[derive(Debug)]
pub(crate) enum Failed<E, R> {
    /// Kinesis answered with an error that is not retried (or retried too often).
    Refused(SdkError<E, R>),
    /// Kinesis did not answer for this long.
    Unreachable(Duration, SdkError<E, R>),
}

impl<E, R> Failed<E, R>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    /// The SDK error.
    pub(crate) fn sdk(&self) -> &SdkError<E, R> {
        match self {
            Failed::Refused(e) | Failed::Unreachable(_, e) => e,
        }
    }

    /// The verdict that ended the retries.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Failed::Refused(_) => Verdict::GiveUp,
            Failed::Unreachable(waited, _) => Verdict::Unreachable(*waited),
        }
    }
}

/// One stream-level API call, named for errors and metrics.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) operation: &'static str,
    pub(crate) stream: &'a StreamRef,
    pub(crate) endpoint: &'a str,
    pub(crate) backoff: &'a Backoff,
    /// Where throttling and retries are counted, if anywhere.
    pub(crate) stats: Option<&'a KinesisStats>,
}

impl Call<'_> {
    /// Runs `call` until it succeeds or the retry policy gives up.
    pub(crate) async fn run<T, E, R, F, Fut>(&self, call: F) -> Result<T, Failed<E, R>>
    where
        E: ProvideErrorMetadata,
        R: fmt::Debug,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
    {
        self.run_with(classify, call).await
    }

    /// [`run`](Self::run) for a call whose failures `classify` sorts (an operation with
    /// error codes of its own).
    pub(crate) async fn run_with<T, E, R, C, F, Fut>(
        &self,
        classify: C,
        mut call: F,
    ) -> Result<T, Failed<E, R>>
    where
        C: Fn(&SdkError<E, R>) -> Failure,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
    {
        let mut retry = Retry::new(self.backoff);
        loop {
            let e = match call().await {
                Ok(out) => return Ok(out),
                Err(e) => e,
            };
            let failure = classify(&e);
            match retry.after(failure) {
                Verdict::Retry(delay) => {
                    self.count(failure);
                    tokio::time::sleep(delay).await;
                }
                Verdict::GiveUp => return Err(Failed::Refused(e)),
                Verdict::Unreachable(waited) => return Err(Failed::Unreachable(waited, e)),
            }
        }
    }

    fn count(&self, failure: Failure) {
        if let Some(stats) = self.stats {
            if failure == Failure::Throttled {
                stats.add_throttled(1, self.stream.as_str(), self.operation);
            }
            stats.add_retry(self.stream.as_str(), self.operation);
        }
    }

    /// The crate error for a call that failed for good.
    pub(crate) fn error<E, R>(&self, failed: &Failed<E, R>) -> KinesisError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        match failed {
            Failed::Unreachable(waited, e) => self.unreachable(*waited, e),
            Failed::Refused(e) => KinesisError::Stream {
                operation: self.operation,
                stream: self.stream.as_str().to_owned(),
                endpoint: self.endpoint.to_owned(),
                detail: detail(e),
            },
        }
    }

    pub(crate) fn unreachable<E, R>(&self, waited: Duration, e: &SdkError<E, R>) -> KinesisError
    where
        E: std::error::Error + 'static,
        R: fmt::Debug,
    {
        KinesisError::Unreachable {
            endpoint: self.endpoint.to_owned(),
            operation: self.operation,
            stream: self.stream.as_str().to_owned(),
            waited,
            detail: root_cause(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::config::http::HttpResponse;
    use aws_sdk_kinesis::error::ErrorMetadata;
    use aws_sdk_kinesis::operation::get_records::GetRecordsError;
    use aws_smithy_types::body::SdkBody;

    type Error = SdkError<GetRecordsError, HttpResponse>;

    fn answer(code: &str) -> Error {
        let error = GetRecordsError::generic(ErrorMetadata::builder().code(code).build());
        let status = 400u16.try_into().expect("a status code");
        SdkError::service_error(error, HttpResponse::new(status, SdkBody::empty()))
    }

    fn no_answer() -> Error {
        SdkError::timeout_error("connect timeout")
    }

    /// Runs `Call::run` on a call that fails with `fail(n)` on its `n`th try (`None`:
    /// succeeds); returns the outcome and when each try was made.
    async fn run(
        backoff: &Backoff,
        mut fail: impl FnMut(usize) -> Option<Error>,
    ) -> (
        Result<(), Failed<GetRecordsError, HttpResponse>>,
        Vec<Instant>,
    ) {
        let stream = StreamRef::parse("s");
        let call = Call {
            operation: "GetRecords",
            stream: &stream,
            endpoint: "http://127.0.0.1:1",
            backoff,
            stats: None,
        };
        let mut tries = Vec::new();
        let outcome = call
            .run(|| {
                tries.push(Instant::now());
                std::future::ready(fail(tries.len()).map_or(Ok(()), Err))
            })
            .await;
        (outcome, tries)
    }

    /// Rule: retryable failures are retried with waits within `[base / 2, max]`; transient
    /// ones at most `max_attempts` times, throttling as long as it lasts; anything else is
    /// returned at once.
    #[tokio::test(start_paused = true)]
    async fn run_retries_within_the_bounds_of_the_policy() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(80), 4);
        let gaps_within_bounds = |tries: &[Instant]| {
            tries.windows(2).all(|w| {
                let gap = w[1] - w[0];
                gap >= Duration::from_millis(5) && gap <= backoff.max + Duration::from_millis(1)
            })
        };
        let (outcome, tries) = run(&backoff, |_| Some(answer("InternalFailure"))).await;
        assert!(matches!(outcome, Err(Failed::Refused(_))));
        assert_eq!(tries.len(), 5, "the first try and max_attempts retries");
        assert!(gaps_within_bounds(&tries), "{tries:?}");

        let (outcome, tries) = run(&backoff, |n| {
            (n <= 30).then(|| answer("ProvisionedThroughputExceededException"))
        })
        .await;
        assert!(outcome.is_ok(), "throttling is waited out");
        assert_eq!(tries.len(), 31);
        assert!(gaps_within_bounds(&tries), "{tries:?}");

        let (outcome, tries) = run(&backoff, |_| Some(answer("AccessDeniedException"))).await;
        assert!(matches!(outcome, Err(Failed::Refused(_))));
        assert_eq!(tries.len(), 1, "not retryable: returned at once");
    }

    /// Rule: a call that gets no answer fails as unreachable once the window closed, not
    /// before and not much later.
    #[tokio::test(start_paused = true)]
    async fn run_reports_an_unreachable_endpoint_when_the_window_closes() {
        let window = Duration::from_millis(700);
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(80), 3)
            .unreachable_after(window);
        let started = Instant::now();
        let (outcome, tries) = run(&backoff, |_| Some(no_answer())).await;
        let waited = started.elapsed();
        match outcome {
            Err(Failed::Unreachable(reported, _)) => assert_eq!(reported, waited),
            other => panic!("not reported unreachable: {other:?}"),
        }
        assert!(
            waited >= window && waited < window + Duration::from_millis(1),
            "{waited:?}"
        );
        assert!(
            tries.len() > 4,
            "the window, not max_attempts, bounds the tries"
        );
    }

    fn policy(window_ms: u64) -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 3)
            .unreachable_after(Duration::from_millis(window_ms))
    }

    /// Rule: an endpoint that never answers is given up on once the window closed, however
    /// many attempts that took; transient failures keep their attempt limit.
    #[tokio::test(start_paused = true)]
    async fn unreachable_is_bounded_by_time_transient_by_attempts() {
        let mut retry = Retry::new(&policy(50));
        loop {
            match retry.after(Failure::Unreachable) {
                Verdict::Retry(d) => tokio::time::advance(d).await,
                Verdict::Unreachable(w) => {
                    assert!(w >= Duration::from_millis(50), "{w:?}");
                    break;
                }
                Verdict::GiveUp => panic!("unreachable is not given up on before the window"),
            }
        }
        assert!(
            retry.attempt() > 3,
            "more attempts than max_attempts were allowed"
        );
        let mut retry = Retry::new(&policy(50));
        for _ in 0..3 {
            assert!(matches!(retry.after(Failure::Transient), Verdict::Retry(_)));
        }
        assert_eq!(retry.after(Failure::Transient), Verdict::GiveUp);
        assert_eq!(retry.after(Failure::NotFound), Verdict::GiveUp);
    }

    /// Rule: any answer (here a throttle) proves the endpoint reachable and restarts the
    /// unreachable window.
    #[tokio::test(start_paused = true)]
    async fn an_answer_restarts_the_unreachable_window() {
        let mut retry = Retry::new(&policy(50));
        assert!(matches!(
            retry.after(Failure::Unreachable),
            Verdict::Retry(_)
        ));
        tokio::time::advance(Duration::from_millis(40)).await;
        assert!(matches!(retry.after(Failure::Throttled), Verdict::Retry(_)));
        tokio::time::advance(Duration::from_millis(40)).await;
        assert!(matches!(
            retry.after(Failure::Unreachable),
            Verdict::Retry(_)
        ));
    }
}
