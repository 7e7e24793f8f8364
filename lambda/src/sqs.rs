//! An SQS queue as dead-letter and on-failure target.

use crate::failure::{rfc3339, FailedBatch};
use crate::target::{DeliveryFailure, Target};
use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine;
use serde_json::json;
use watershed_core::{DeadLetter, Offset, Record};

/// SQS's classic limit for one message, and for the sum of a `SendMessageBatch` (256 KiB).
pub const SQS_MESSAGE_LIMIT: usize = 262_144;

/// Longest reason or error text put in a message; the rest is cut.
const TEXT_LIMIT: usize = 8_192;

/// Sends dead letters and given-up batches to an SQS queue, one JSON message each.
///
/// - As `Target<DeadLetter>` (the handler's `.dead_letters`): per undecodable or rejected
///   record, `{"kind":"dead-letter","reason",…,"shardId","sequenceNumber","stream","node",
///   "eventTime","batchId","data" (base64),"dataBytes","dataTruncated"}`. Payloads too large
///   for the message limit are cut (`dataTruncated: true`; the record is still in the stream,
///   at `sequenceNumber`).
/// - As `Target<FailedBatch>` (the handler's `.on_failure`): Lambda's on-failure record
///   ([`FailedBatch::to_json`]).
///
/// Every message carries the string attributes `kind`, `shardId` and `sequenceNumber`. Messages
/// go in `SendMessageBatch` calls of up to 10 in order; when one is rejected, the target reports
/// the messages before it as delivered, and the retry sends the rest (a message accepted after
/// the rejected one in the same call is sent again: a standard queue is at least once). On a
/// FIFO queue (`….fifo`) the message group is the shard and the deduplication id is derived from
/// shard, sequence number and position, so retries within SQS's 5-minute deduplication window
/// are dropped by SQS.
#[derive(Clone, Debug)]
pub struct SqsTarget {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
    max_message_bytes: usize,
}

/// One message to send.
struct Message {
    body: String,
    kind: &'static str,
    shard: String,
    sequence: String,
    dedup: String,
}

impl Message {
    fn size(&self) -> usize {
        // Attribute names, their type ("String") and values count against the limit.
        self.body.len()
            + "kind".len()
            + self.kind.len()
            + "shardId".len()
            + self.shard.len()
            + "sequenceNumber".len()
            + self.sequence.len()
            + 3 * "String".len()
    }
}

impl SqsTarget {
    /// A target sending to `queue_url` with `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        SqsTarget {
            client,
            fifo: queue_url.ends_with(".fifo"),
            queue_url,
            max_message_bytes: SQS_MESSAGE_LIMIT,
        }
    }

    /// A target sending to `queue_url` with the SDK's default configuration (region and
    /// credentials from the environment, which Lambda sets; `AWS_ENDPOINT_URL_SQS` or
    /// `AWS_ENDPOINT_URL` for a local server).
    pub async fn from_env(queue_url: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(aws_sdk_sqs::Client::new(&config), queue_url)
    }

    /// The message size limit (default [`SQS_MESSAGE_LIMIT`]; raise it up to 1 MiB if the
    /// queue's `MaximumMessageSize` allows).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.max(4_096);
        self
    }

    /// The queue.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    fn dead_letter_message(&self, batch_id: &str, n: usize, d: &DeadLetter) -> Message {
        let (stream, shard, sequence) = match &d.origin {
            Some(o) => (
                o.stream().to_owned(),
                o.split().to_string(),
                match &o.offset {
                    Offset::Sequence(s) => s.number.clone(),
                    other => format!("{other:?}"),
                },
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let body = |data: &str, truncated: bool| {
            json!({
                "kind": "dead-letter",
                "reason": cut(&d.reason),
                "node": d.node,
                "stream": stream,
                "shardId": shard,
                "sequenceNumber": sequence,
                "eventTime": d.timestamp.0,
                "eventTimeIso": rfc3339(d.timestamp),
                "batchId": batch_id,
                "data": data,
                "dataBytes": d.payload.len(),
                "dataTruncated": truncated,
            })
            .to_string()
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut message = Message {
            body: body(&b64.encode(&d.payload), false),
            kind: "dead-letter",
            dedup: dedup_id(&format!("dl:{shard}:{sequence}:{n}")),
            shard: shard.clone(),
            sequence: sequence.clone(),
        };
        if message.size() > self.max_message_bytes {
            let room = self
                .max_message_bytes
                .saturating_sub(
                    Message {
                        body: body("", true),
                        ..message
                    }
                    .size(),
                )
                .saturating_sub(16);
            let keep = (room / 4 * 3).min(d.payload.len());
            message = Message {
                body: body(&b64.encode(&d.payload[..keep]), true),
                kind: "dead-letter",
                dedup: dedup_id(&format!("dl:{shard}:{sequence}:{n}")),
                shard,
                sequence,
            };
        }
        message
    }

    fn failed_batch_message(&self, f: &FailedBatch) -> Message {
        let mut f = f.clone();
        f.error = cut(&f.error).to_owned();
        Message {
            body: f.to_json().to_string(),
            kind: "failed-batch",
            dedup: dedup_id(&format!(
                "fb:{}:{}:{}",
                f.shard, f.start_sequence, f.end_sequence
            )),
            shard: f.shard,
            sequence: f.start_sequence,
        }
    }

    /// Sends `messages` in order; on a failure, says how many went.
    async fn send(&self, messages: Vec<Message>) -> Result<(), DeliveryFailure> {
        let mut sent = 0;
        let mut rest = messages.into_iter().peekable();
        while rest.peek().is_some() {
            let mut chunk: Vec<Message> = Vec::new();
            let mut bytes = 0;
            while let Some(m) = rest.peek() {
                let size = m.size();
                if chunk.len() == 10 || (!chunk.is_empty() && bytes + size > self.max_message_bytes)
                {
                    break;
                }
                bytes += size;
                chunk.push(rest.next().expect("peeked"));
            }
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| self.entry(i, m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DeliveryFailure {
                    delivered: sent,
                    error: e.into(),
                })?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| DeliveryFailure {
                    delivered: sent,
                    error: format!(
                        "SQS SendMessageBatch to {}: {}",
                        self.queue_url,
                        DisplayErrorContext(&e)
                    )
                    .into(),
                })?;
            let first_failed = out
                .failed()
                .iter()
                .filter_map(|f| f.id().parse::<usize>().ok().map(|i| (i, f)))
                .min_by_key(|(i, _)| *i);
            if let Some((i, f)) = first_failed {
                return Err(DeliveryFailure {
                    delivered: sent + i,
                    error: format!(
                        "SQS rejected a message to {}: {} {}",
                        self.queue_url,
                        f.code(),
                        f.message().unwrap_or_default()
                    )
                    .into(),
                });
            }
            sent += chunk.len();
        }
        Ok(())
    }

    fn entry(
        &self,
        i: usize,
        m: &Message,
    ) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
        let attribute = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                // SQS refuses empty string attributes.
                .string_value(if v.is_empty() { "-" } else { v })
                .build()
        };
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(&m.body)
            .message_attributes("kind", attribute(m.kind)?)
            .message_attributes("shardId", attribute(&m.shard)?)
            .message_attributes("sequenceNumber", attribute(&m.sequence)?);
        if self.fifo {
            let group = if m.shard.is_empty() { "none" } else { &m.shard };
            entry = entry
                .message_group_id(group)
                .message_deduplication_id(&m.dedup);
        }
        entry.build()
    }
}

/// At most [`TEXT_LIMIT`] bytes, cut at a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= TEXT_LIMIT {
        return text;
    }
    let mut end = TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A FIFO deduplication id (at most 128 characters) for `key`.
fn dedup_id(key: &str) -> String {
    if key.len() <= 128 {
        return key.to_owned();
    }
    // FNV-1a: stable across builds, unlike the standard hasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}{}", &key[key.len() - 100..])
}

#[async_trait]
impl Target<DeadLetter> for SqsTarget {
    async fn deliver(
        &mut self,
        batch_id: &str,
        records: Vec<Record<DeadLetter>>,
    ) -> Result<(), DeliveryFailure> {
        // The n-th dead letter of the same record in this segment: stable across retries that
        // start at or before it.
        let mut seen: Vec<(Option<String>, usize)> = Vec::new();
        let messages = records
            .iter()
            .map(|r| {
                let origin = r.value.origin.as_ref().map(|o| format!("{o:?}"));
                let n = match seen.iter_mut().find(|(o, _)| *o == origin) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        seen.push((origin, 0));
                        0
                    }
                };
                self.dead_letter_message(batch_id, n, &r.value)
            })
            .collect();
        self.send(messages).await
    }
}

#[async_trait]
impl Target<FailedBatch> for SqsTarget {
    async fn deliver(
        &mut self,
        _batch_id: &str,
        records: Vec<Record<FailedBatch>>,
    ) -> Result<(), DeliveryFailure> {
        let messages = records
            .iter()
            .map(|r| self.failed_batch_message(&r.value))
            .collect();
        self.send(messages).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: deduplication ids fit SQS's 128 characters and stay distinct.
    #[test]
    fn dedup_ids_fit_and_differ() {
        let long_a = format!("dl:shardId-000000000000:{}:0", "1".repeat(129));
        let long_b = format!("dl:shardId-000000000000:{}:1", "1".repeat(129));
        assert!(dedup_id(&long_a).len() <= 128);
        assert_ne!(dedup_id(&long_a), dedup_id(&long_b));
        assert_eq!(dedup_id("dl:s:1:0"), "dl:s:1:0");
    }

    /// Rule: reasons are cut at a character boundary.
    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let text = "é".repeat(TEXT_LIMIT);
        let cut = cut(&text);
        assert!(cut.len() <= TEXT_LIMIT && cut.chars().all(|c| c == 'é'));
    }
}
