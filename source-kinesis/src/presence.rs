//! Whether the stream exists: ListShards (the source's view of the stream), what the source
//! does when the stream is missing at start or deleted while it reads ([`MissingStream`]),
//! and the wait for it to (re)appear.

use crate::config::with_stream;
use crate::error::{code, KinesisError};
use crate::retry::{Call, Failed};
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{Shard, StreamStatus};
use aws_sdk_kinesis::Client;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// How often a waiting source looks for its stream (one ListShards call).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often a waiting source says so in the log.
const WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// What the source does when its stream does not exist: at open, or because it was deleted
/// while the source read it (ResourceNotFoundException, or the stream DELETING).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingStream {
    /// Fail with [`KinesisError::StreamNotFound`] (at open) or [`KinesisError::StreamDeleted`]
    /// (while reading), naming the stream and the endpoint. The default: a misspelt name or
    /// wrong region is reported at once instead of idling.
    #[default]
    Fail,
    /// Wait for the stream to be created, checking every second, with a `warn!` naming the
    /// stream every 30 s and the gauge `watershed_kinesis_missing_streams{stream}` at 1 while
    /// waiting; reading starts when it appears. Positions read before a deletion are checked
    /// against the new stream like a restored checkpoint (see `OutOfRange`).
    Wait,
}

/// The error for a call that failed for good: [`KinesisError::StreamNotFound`] when Kinesis
/// said the stream does not exist, otherwise the call's own error.
pub(crate) fn not_found_or<E, R>(call: &Call<'_>, failed: &Failed<E, R>) -> KinesisError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match failed {
        Failed::Refused(e) if code(e) == Some("ResourceNotFoundException") => not_found(call),
        _ => call.error(failed),
    }
}

fn not_found(call: &Call<'_>) -> KinesisError {
    KinesisError::StreamNotFound {
        stream: call.stream.as_str().to_owned(),
        endpoint: call.endpoint.to_owned(),
        operation: call.operation,
    }
}

/// Every shard of the stream (ListShards, paginated), or [`KinesisError::StreamNotFound`]
/// when the stream does not exist or is being deleted.
pub(crate) async fn list_shards(
    client: &Client,
    call: &Call<'_>,
) -> Result<Vec<Shard>, KinesisError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // With a NextToken, ListShards refuses the stream name: the token carries it.
        let out = call
            .run(|| match &token {
                Some(t) => client.list_shards().next_token(t).send(),
                None => with_stream!(client.list_shards(), call.stream).send(),
            })
            .await;
        match out {
            Ok(out) => {
                shards.extend(out.shards().iter().cloned());
                match out.next_token() {
                    Some(t) => token = Some(t.to_owned()),
                    None => return Ok(shards),
                }
            }
            // A stream being deleted refuses ListShards with ResourceInUseException (some
            // servers without an error code): it is gone if it is DELETING.
            Err(Failed::Refused(e))
                if code(&e) != Some("ResourceNotFoundException")
                    && deleting(client, call).await =>
            {
                return Err(not_found(call))
            }
            Err(e) => return Err(not_found_or(call, &e)),
        }
    }
}

/// Checks at open that the stream exists and Kinesis answers, so that a sink with a wrong
/// endpoint or stream name fails at once, not at its first flush. A caller without the
/// DescribeStreamSummary permission (a producer-only policy) is not refused for that.
pub(crate) async fn check_stream(client: &Client, call: &Call<'_>) -> Result<(), KinesisError> {
    match call
        .run(|| with_stream!(client.describe_stream_summary(), call.stream).send())
        .await
    {
        Ok(_) => Ok(()),
        Err(Failed::Refused(e))
            if matches!(code(&e), Some("AccessDeniedException" | "AccessDenied")) =>
        {
            tracing::debug!(
                stream = call.stream.as_str(),
                "no permission to describe the stream: not checked"
            );
            Ok(())
        }
        Err(e) => Err(not_found_or(call, &e)),
    }
}

/// Whether DescribeStreamSummary reports the stream DELETING (or gone).
async fn deleting(client: &Client, call: &Call<'_>) -> bool {
    matches!(
        status(client, call).await,
        Ok(None | Some(StreamStatus::Deleting))
    )
}

/// The stream's status (DescribeStreamSummary); `None` when it does not exist.
pub(crate) async fn status(
    client: &Client,
    call: &Call<'_>,
) -> Result<Option<StreamStatus>, KinesisError> {
    let describe = Call {
        operation: "DescribeStreamSummary",
        ..*call
    };
    match describe
        .run(|| with_stream!(client.describe_stream_summary(), call.stream).send())
        .await
    {
        Ok(out) => Ok(out
            .stream_description_summary()
            .map(|s| s.stream_status().clone())),
        Err(Failed::Refused(e)) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(describe.error(&e)),
    }
}

/// Whether a stream in this status can be read: a waiting source waits on while the stream
/// is still being created (its shards refuse iterators until it is ACTIVE).
pub(crate) fn readable(status: Option<&StreamStatus>) -> bool {
    matches!(status, Some(StreamStatus::Active | StreamStatus::Updating))
}

/// A source waiting for its stream: when to look again and when to say so in the log. The
/// gauge is 1 while this lives.
#[derive(Debug)]
pub(crate) struct Absence {
    stream: String,
    since: Instant,
    next_check: Instant,
    next_warning: Instant,
    gauge: metrics::Gauge,
}

impl Absence {
    pub(crate) fn begin(stream: &str, why: &KinesisError) -> Self {
        tracing::warn!(stream, error = %why, "Kinesis stream missing: waiting for it");
        let gauge = metrics::gauge!(crate::metric_catalogue::MISSING_STREAMS, "stream" => stream.to_owned());
        gauge.set(1.0);
        let now = Instant::now();
        Absence {
            stream: stream.to_owned(),
            since: now,
            next_check: now + CHECK_INTERVAL,
            next_warning: now + WARNING_INTERVAL,
            gauge,
        }
    }

    /// When the stream is to be looked for next.
    pub(crate) fn next_check(&self) -> Instant {
        self.next_check
    }

    /// The stream is still missing: look again later, and remind the log now and then.
    pub(crate) fn still_missing(&mut self) {
        let now = Instant::now();
        self.next_check = now + CHECK_INTERVAL;
        if now >= self.next_warning {
            self.next_warning = now + WARNING_INTERVAL;
            tracing::warn!(
                stream = %self.stream,
                waited_s = self.since.elapsed().as_secs(),
                "Kinesis stream still missing: waiting for it"
            );
        }
    }
}

impl Drop for Absence {
    fn drop(&mut self) {
        self.gauge.set(0.0);
    }
}
