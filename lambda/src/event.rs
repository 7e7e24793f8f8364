//! Reading a Kinesis event from the invocation payload: shards, sequence numbers, data.

use crate::error::LambdaError;
use aws_lambda_events::event::kinesis::KinesisEvent;
use bytes::Bytes;
use std::cmp::Ordering;
use watershed_core::{EventTime, SplitId};

/// One record of a Kinesis event batch, as the processing function will see it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KinesisInput {
    /// The stream name (from `eventSourceARN`; empty when the event does not say).
    pub stream: String,
    /// The shard (from `eventID`).
    pub shard: SplitId,
    /// The sequence number: what a batch item failure names.
    pub sequence: String,
    /// The partition key.
    pub partition_key: String,
    /// The payload, base64-decoded.
    pub data: Bytes,
    /// `approximateArrivalTimestamp`, the default event time.
    pub arrival: EventTime,
}

/// The records of one invocation, in event order (per shard, in sequence order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputBatch {
    records: Vec<KinesisInput>,
}

impl InputBatch {
    /// Parses an invocation payload. Errors name what is wrong and where; nothing panics.
    pub fn from_json(payload: &serde_json::Value) -> Result<Self, LambdaError> {
        let event: KinesisEvent =
            serde_json::from_value(payload.clone()).map_err(|e| LambdaError::MalformedEvent {
                reason: e.to_string(),
            })?;
        Self::from_event(event)
    }

    /// Reads an already parsed event.
    pub fn from_event(event: KinesisEvent) -> Result<Self, LambdaError> {
        let mut records: Vec<KinesisInput> = Vec::with_capacity(event.records.len());
        for r in event.records {
            let sequence = r.kinesis.sequence_number;
            let shard = match r.event_id.as_deref().and_then(|id| id.split_once(':')) {
                Some((shard, _)) if !shard.is_empty() => SplitId::new(shard),
                _ => {
                    return Err(LambdaError::NoShard {
                        sequence,
                        event_id: r.event_id,
                    })
                }
            };
            if sequence.is_empty() || !sequence.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LambdaError::BadSequence {
                    shard: shard.to_string(),
                    sequence,
                });
            }
            if let Some(previous) = records.iter().rev().find(|p| p.shard == shard) {
                if compare_sequences(&previous.sequence, &sequence) != Ordering::Less {
                    return Err(LambdaError::OutOfOrder {
                        shard: shard.to_string(),
                        sequence,
                        previous: previous.sequence.clone(),
                    });
                }
            }
            let stream = r
                .event_source_arn
                .as_deref()
                .and_then(|arn| arn.rsplit_once(":stream/"))
                .map(|(_, name)| name.to_owned())
                .unwrap_or_default();
            records.push(KinesisInput {
                stream,
                shard,
                sequence,
                partition_key: r.kinesis.partition_key,
                data: Bytes::from(r.kinesis.data.0),
                arrival: EventTime(r.kinesis.approximate_arrival_timestamp.0.timestamp_millis()),
            });
        }
        Ok(InputBatch { records })
    }

    /// The records, in event order.
    pub fn records(&self) -> &[KinesisInput] {
        &self.records
    }

    /// True when the event holds no record (Lambda sends such events to close a tumbling
    /// window).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records from index `from` on: what Lambda redelivers after a partial failure
    /// naming record `from` (for tests and replay tools).
    pub fn suffix(&self, from: usize) -> InputBatch {
        InputBatch {
            records: self.records[from.min(self.records.len())..].to_vec(),
        }
    }

    /// The index of the record of `shard` with sequence number `sequence`.
    pub fn position_of(&self, shard: &SplitId, sequence: &str) -> Option<usize> {
        self.records
            .iter()
            .position(|r| &r.shard == shard && r.sequence == sequence)
    }
}

/// Orders Kinesis sequence numbers (decimal strings of up to 129 digits, too long for an
/// integer): the longer one is larger, equal lengths compare as text.
pub fn compare_sequences(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: sequence numbers longer than any integer still order numerically.
    #[test]
    fn sequence_numbers_order_numerically_beyond_u128() {
        let small = "49590338271490256608559692538361571095921575989136588898";
        let large = "149590338271490256608559692538361571095921575989136588898";
        assert_eq!(compare_sequences(small, large), Ordering::Less);
        assert_eq!(compare_sequences("9", "10"), Ordering::Less);
        assert_eq!(compare_sequences("010", "10"), Ordering::Equal);
    }
}
