//! Giving up on records that keep failing: what Lambda's `DestinationConfig.OnFailure` does
//! for a Kinesis event source mapping, done by the handler after a configured number of
//! failed attempts, with the same description of the skipped records.

use crate::event::{InputBatch, KinesisInput};
use crate::target::Target;
use serde_json::json;
use std::collections::HashMap;
use tokio::sync::Mutex;
use watershed_core::{EventTime, Record, SplitId};

/// Why the handler gave up on a range of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureCause {
    /// A target kept failing to take the records' outputs or dead letters (the invocation
    /// answered with a batch item failure each time).
    Delivery,
    /// The processing function kept failing on the batch (the invocation failed each time).
    Processing,
}

impl FailureCause {
    fn as_str(self) -> &'static str {
        match self {
            FailureCause::Delivery => "DeliveryFailed",
            FailureCause::Processing => "ProcessingFailed",
        }
    }
}

/// The description of records of one shard the handler gave up on: what an `OnFailure`
/// destination of a Kinesis event source mapping receives (shard, first and last sequence
/// number, arrival times, size), not the records themselves, plus the error. Replay the range
/// from the stream while it is retained.
///
/// Serialized ([`FailedBatch::to_json`], and through `Serialize`) in the shape of Lambda's
/// own on-failure record (`KinesisBatchInfo`, `requestContext`, `responseContext`), so tools
/// that read those read these too.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedBatch {
    /// The stream name (empty when the event did not say).
    pub stream: String,
    /// The shard.
    pub shard: String,
    /// The first sequence number given up on.
    pub start_sequence: String,
    /// The last sequence number given up on.
    pub end_sequence: String,
    /// Arrival time of the first record.
    pub first_arrival: EventTime,
    /// Arrival time of the last record.
    pub last_arrival: EventTime,
    /// How many records of the shard were given up on.
    pub batch_size: usize,
    /// Failed attempts this container counted before giving up.
    pub attempts: u32,
    /// Delivery or processing.
    pub cause: FailureCause,
    /// The last error.
    pub error: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`, when set.
    pub function_name: Option<String>,
}

impl FailedBatch {
    /// Per shard, the description of `records` (in event order).
    pub(crate) fn of(
        records: &[KinesisInput],
        attempts: u32,
        cause: FailureCause,
        error: &str,
    ) -> Vec<FailedBatch> {
        let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
        let mut shards: Vec<&SplitId> = Vec::new();
        for r in records {
            if !shards.contains(&&r.shard) {
                shards.push(&r.shard);
            }
        }
        shards
            .into_iter()
            .map(|shard| {
                let of_shard: Vec<&KinesisInput> =
                    records.iter().filter(|r| &r.shard == shard).collect();
                let (first, last) = (of_shard[0], of_shard[of_shard.len() - 1]);
                FailedBatch {
                    stream: first.stream.clone(),
                    shard: shard.to_string(),
                    start_sequence: first.sequence.clone(),
                    end_sequence: last.sequence.clone(),
                    first_arrival: first.arrival,
                    last_arrival: last.arrival,
                    batch_size: of_shard.len(),
                    attempts,
                    cause,
                    error: error.to_owned(),
                    function_name: function_name.clone(),
                }
            })
            .collect()
    }

    /// Lambda's on-failure record for a Kinesis batch, with the error added
    /// (`responseContext.errorMessage`) and `streamName` instead of `streamArn`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "version": "1.0",
            "timestamp": rfc3339(EventTime(now_millis())),
            "source": "watershed-lambda",
            "requestContext": {
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self.attempts,
                "functionName": self.function_name,
            },
            "responseContext": {
                "functionError": self.cause.as_str(),
                "errorMessage": self.error,
            },
            "KinesisBatchInfo": {
                "shardId": self.shard,
                "startSequenceNumber": self.start_sequence,
                "endSequenceNumber": self.end_sequence,
                "approximateArrivalOfFirstRecord": rfc3339(self.first_arrival),
                "approximateArrivalOfLastRecord": rfc3339(self.last_arrival),
                "batchSize": self.batch_size,
                "streamName": self.stream,
            }
        })
    }
}

impl serde::Serialize for FailedBatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2019-11-14T00:38:04.835Z`, as Lambda writes times in on-failure records.
pub(crate) fn rfc3339(t: EventTime) -> String {
    use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
    DateTime::from_millis(t.0)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| t.0.to_string())
}

/// The handler's give-up policy: an on-failure target, and per failing record the number of
/// failed attempts this container has seen.
pub(crate) struct GiveUp {
    after: u32,
    target: Mutex<Box<dyn Target<FailedBatch>>>,
    attempts: std::sync::Mutex<HashMap<(SplitId, String), u32>>,
}

/// Above this many tracked records the counts start over (more retries, never fewer).
const TRACKED: usize = 10_000;

impl GiveUp {
    pub(crate) fn new(target: Box<dyn Target<FailedBatch>>, after: u32) -> Self {
        GiveUp {
            after: after.max(1),
            target: Mutex::new(target),
            attempts: std::sync::Mutex::default(),
        }
    }

    /// Counts one more failed attempt at `record`; returns the count when it has reached the
    /// limit.
    pub(crate) fn failed(&self, record: &KinesisInput) -> Option<u32> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() >= TRACKED {
            attempts.clear();
        }
        let count = attempts
            .entry((record.shard.clone(), record.sequence.clone()))
            .or_insert(0);
        *count += 1;
        (*count >= self.after).then_some(*count)
    }

    /// Forgets the counts of `records` (they went through).
    pub(crate) fn succeeded(&self, records: &[KinesisInput]) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.is_empty() {
            return;
        }
        for r in records {
            attempts.remove(&(r.shard.clone(), r.sequence.clone()));
        }
    }

    /// Sends the description of the records of `batch` from index `from` on to the on-failure
    /// target. True when it took them: the handler then answers as if they were processed.
    pub(crate) async fn give_up(
        &self,
        batch: &InputBatch,
        from: usize,
        attempts: u32,
        cause: FailureCause,
        error: &str,
    ) -> bool {
        let records = &batch.records()[from..];
        let failed: Vec<Record<FailedBatch>> = FailedBatch::of(records, attempts, cause, error)
            .into_iter()
            .map(|f| {
                let at = f.first_arrival;
                Record::new(f, at)
            })
            .collect();
        let id = format!("{}-{}-failed", records[0].shard, records[0].sequence);
        let mut target = self.target.lock().await;
        match target.deliver(&id, failed).await {
            Ok(()) => {
                tracing::error!(shard = %records[0].shard, sequence = %records[0].sequence,
                    records = records.len(), attempts, cause = cause.as_str(), error,
                    "gave up on the records after repeated failures; their description went to the on-failure target");
                metrics::counter!(crate::emf::names::GIVEN_UP).increment(records.len() as u64);
                self.succeeded(&records[..1]);
                true
            }
            Err(e) => {
                tracing::error!(shard = %records[0].shard, sequence = %records[0].sequence,
                    error = %e, "the on-failure target failed; Lambda retries the records");
                false
            }
        }
    }
}
