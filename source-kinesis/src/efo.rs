//! Enhanced fan-out: registering the stream consumer, and the SubscribeToShard loop of a shard.

use crate::backoff::Backoff;
use crate::config::{with_stream, StreamRef};
use crate::error::{classify, detail, Failure, KinesisError};
use crate::reader::{ShardReader, StartAt, Stop};
use crate::retry::{Call, Retry, Verdict};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use aws_sdk_kinesis::Client;
use aws_smithy_types::DateTime;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// How long the consumer may stay CREATING before `open` gives up (AWS takes a few seconds).
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Least time between two SHARD_END checks of a closed shard (see `confirm_end`).
const END_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The consumer ARN of `name` on `stream`, registering the consumer when it does not exist and
/// waiting until it is ACTIVE. An existing consumer of that name is reused (a restart, or
/// several sources sharing one consumer name — which Kinesis then lets only one of subscribe).
pub(crate) async fn register_consumer(
    client: &Client,
    stream: &StreamRef,
    endpoint: &str,
    name: &str,
    backoff: &Backoff,
) -> Result<String, KinesisError> {
    let call = |operation| Call {
        operation,
        stream,
        endpoint,
        backoff,
        stats: None,
    };
    let stream_arn = stream_arn(client, &call("DescribeStreamSummary")).await?;
    let register = call("RegisterStreamConsumer");
    let registered = register
        .run(|| {
            client
                .register_stream_consumer()
                .stream_arn(&stream_arn)
                .consumer_name(name)
                .send()
        })
        .await;
    let mut consumer_arn = match registered {
        Ok(out) => out.consumer().map(|c| c.consumer_arn().to_owned()),
        // The consumer exists already (a restart): reuse it.
        Err(e)
            if e.sdk()
                .as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            None
        }
        Err(e) => return Err(crate::presence::not_found_or(&register, &e)),
    };
    let deadline = Instant::now() + REGISTRATION_TIMEOUT;
    loop {
        let describe = call("DescribeStreamConsumer");
        let out = describe
            .run(|| {
                let request = client.describe_stream_consumer();
                match &consumer_arn {
                    Some(arn) => request.consumer_arn(arn),
                    None => request.stream_arn(&stream_arn).consumer_name(name),
                }
                .send()
            })
            .await
            .map_err(|e| describe.error(&e))?;
        let Some(description) = out.consumer_description() else {
            return Err(KinesisError::Stream {
                operation: "DescribeStreamConsumer",
                stream: stream.as_str().to_owned(),
                endpoint: endpoint.to_owned(),
                detail: format!("no description of consumer `{name}`"),
            });
        };
        consumer_arn = Some(description.consumer_arn().to_owned());
        match description.consumer_status() {
            ConsumerStatus::Active => return Ok(description.consumer_arn().to_owned()),
            ConsumerStatus::Deleting => {
                return Err(KinesisError::Config(format!(
                    "enhanced fan-out consumer `{name}` of stream `{}` is being deleted; \
                     retry once it is gone, or use another consumer name",
                    stream.as_str()
                )))
            }
            _ if Instant::now() >= deadline => {
                return Err(KinesisError::Config(format!(
                    "enhanced fan-out consumer `{name}` of stream `{}` did not become ACTIVE \
                     within {REGISTRATION_TIMEOUT:?}",
                    stream.as_str()
                )))
            }
            // CREATING: DescribeStreamConsumer allows 20 calls/s per account, shared.
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The stream's ARN: RegisterStreamConsumer takes no name.
async fn stream_arn(client: &Client, describe: &Call<'_>) -> Result<String, KinesisError> {
    let stream = describe.stream;
    if let StreamRef::Arn(arn) = stream {
        return Ok(arn.clone());
    }
    let out = describe
        .run(|| with_stream!(client.describe_stream_summary(), stream).send())
        .await
        .map_err(|e| crate::presence::not_found_or(describe, &e))?;
    out.stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .ok_or_else(|| KinesisError::Stream {
            operation: "DescribeStreamSummary",
            stream: stream.as_str().to_owned(),
            endpoint: describe.endpoint.to_owned(),
            detail: "the response has no stream description".into(),
        })
}

/// How a failed subscription is handled: `classify`, plus the SubscribeToShard cases it does
/// not know. ResourceInUse means the previous subscription of this consumer to the shard is
/// still held (Kinesis refuses a new one for about 5 s, kinesis-mock until it notices the
/// closed connection): retried like a transient failure. Errors inside the event stream may
/// carry no error code, so they are recognised by variant.
fn subscription_failure<E, R>(e: &SdkError<E, R>, in_use_or_internal: bool) -> Failure
where
    E: ProvideErrorMetadata,
    R: fmt::Debug,
{
    match classify(e) {
        Failure::Fatal if in_use_or_internal => Failure::Transient,
        other => other,
    }
}

impl ShardReader {
    fn starting_position(&self, at: &StartAt) -> Result<StartingPosition, String> {
        let builder = StartingPosition::builder();
        match at {
            StartAt::After(seq) => builder
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            StartAt::Latest => builder.r#type(ShardIteratorType::Latest),
            StartAt::Timestamp(ms) => builder
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(*ms)),
            StartAt::TrimHorizon => builder.r#type(ShardIteratorType::TrimHorizon),
        }
        .build()
        .map_err(|e| e.to_string())
    }

    /// Waits before the next attempt, or stops the reader.
    async fn back_off<E, R>(
        &self,
        retry: &mut Retry,
        start: &StartAt,
        last: &Option<String>,
        e: &SdkError<E, R>,
        in_use_or_internal: bool,
    ) -> Result<(), Stop>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let failure = subscription_failure(e, in_use_or_internal);
        match retry.after(failure) {
            Verdict::Retry(delay) => {
                self.count(failure, "SubscribeToShard");
                tokio::time::sleep(delay).await;
                Ok(())
            }
            verdict => Err(self.stop("SubscribeToShard", Some(start), last, verdict, e)),
        }
    }

    /// The enhanced fan-out loop: subscribe, hand every event's records on (waiting while
    /// `read_ahead` batches are queued, which stops reading the HTTP stream and lets flow
    /// control push back on the server: nothing is buffered without bound), and subscribe
    /// again after the last record when a subscription ends (after 5 minutes) or fails.
    pub(crate) async fn subscribe(self) -> Result<(), Stop> {
        let Some(consumer) = self.consumer.clone() else {
            return Err(
                KinesisError::Config("enhanced fan-out reader without a consumer".into()).into(),
            );
        };
        let stream = self.stream.as_str().to_owned();
        let behind = metrics::gauge!(crate::metric_catalogue::MILLIS_BEHIND_LATEST, "stream" => stream.clone(), "shard" => self.shard.clone());
        let records_in = metrics::counter!(crate::metric_catalogue::RECORDS_IN, "stream" => stream.clone(), "shard" => self.shard.clone());
        let mut last: Option<String> = match &self.start {
            crate::source::ShardPosition::After { sequence, .. } => Some(sequence.clone()),
            _ => None,
        };
        let mut first = true;
        let mut retry = Retry::new(&self.options.backoff);
        let mut next_end_check = Instant::now();
        loop {
            let start = self.start_after(&last, first);
            let position = self
                .starting_position(&start)
                .map_err(|e| self.error("SubscribeToShard", &last, e))?;
            first = false;
            self.stats.add_subscription();
            let sent = self
                .client
                .subscribe_to_shard()
                .consumer_arn(&*consumer)
                .shard_id(&self.shard)
                .starting_position(position)
                .send()
                .await;
            let mut output = match sent {
                Ok(output) => output,
                Err(e) => {
                    let transient = e.as_service_error().is_some_and(|s| {
                        s.is_resource_in_use_exception() || s.is_internal_failure_exception()
                    });
                    self.back_off(&mut retry, &start, &last, &e, transient)
                        .await?;
                    continue;
                }
            };
            loop {
                let event = match output.event_stream.recv().await {
                    Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => event,
                    // An event type this SDK does not know: nothing to read from it.
                    Ok(Some(_)) => continue,
                    // The subscription ended (they last 5 minutes): subscribe again.
                    Ok(None) => break,
                    Err(e) => {
                        let transient = e.as_service_error().is_some_and(|s| {
                            s.is_resource_in_use_exception() || s.is_internal_failure_exception()
                        });
                        self.back_off(&mut retry, &start, &last, &e, transient)
                            .await?;
                        break;
                    }
                };
                retry.succeeded();
                behind.set(event.millis_behind_latest as f64);
                let caught_up = event.records.is_empty() && event.millis_behind_latest == 0;
                let children: Vec<(String, Vec<String>)> = event
                    .child_shards
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| (c.shard_id, c.parent_shards))
                    .collect();
                let ended = event.continuation_sequence_number.is_empty() || !children.is_empty();
                if !self.emit(event.records, &mut last, &records_in).await {
                    return Ok(());
                }
                if ended {
                    // SHARD_END as Kinesis signals it: no continuation, the children named.
                    return self.end(&behind, children).await;
                }
                if caught_up
                    && self.closed.load(Ordering::Relaxed)
                    && Instant::now() >= next_end_check
                {
                    next_end_check = Instant::now() + END_CHECK_INTERVAL;
                    if let Some(children) = self.confirm_end(&last).await {
                        return self.end(&behind, children).await;
                    }
                }
            }
        }
    }

    /// Whether a closed shard, caught up, has been read to its end: one GetRecords after the
    /// last record read. Some servers (kinesis-mock 0.6) keep a subscription to a closed shard
    /// open with empty events instead of ending it with its child shards, so without this check
    /// the children would never start. `Some(children)` at SHARD_END; `None` when records are
    /// left (the subscription delivers them) or the check failed (it is tried again later).
    async fn confirm_end(&self, last: &Option<String>) -> Option<Vec<(String, Vec<String>)>> {
        let iterator = match self.iterator(last, false).await {
            Ok(Some(iterator)) => iterator,
            Ok(None) => return Some(Vec::new()),
            Err(e) => {
                tracing::debug!(shard = %self.shard, error = ?e, "SHARD_END check failed");
                return None;
            }
        };
        self.stats.add_call();
        match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(1)
            .send()
            .await
        {
            Ok(out) if out.records().is_empty() && out.next_shard_iterator().is_none() => Some(
                out.child_shards()
                    .iter()
                    .map(|c| (c.shard_id().to_owned(), c.parent_shards().to_vec()))
                    .collect(),
            ),
            Ok(_) => None,
            Err(e) => {
                if classify(&e) == Failure::Throttled {
                    self.stats
                        .add_throttled(1, self.stream.as_str(), "GetRecords");
                }
                tracing::debug!(shard = %self.shard, error = %detail(&e), "SHARD_END check failed");
                None
            }
        }
    }
}
