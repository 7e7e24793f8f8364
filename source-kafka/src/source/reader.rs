//! Reading: what librdkafka has prefetched, taken without waiting into per-partition batches,
//! and the consumer errors met on the way.

use super::convert::{to_record, Convert};
use super::KafkaSource;
use crate::error::KafkaError;
use crate::fetch::{Fetched, FetchedMessage};
use bytes::Bytes;
use rdkafka::error::KafkaError as RdError;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{EventTime, Offset, Origin, Record, SourceEvent, SplitId, SplitRef};

/// One partition's records of a drain.
struct Pending {
    topic: String,
    /// librdkafka's topic handle, when the messages come with one.
    topic_handle: Option<usize>,
    partition: i32,
    split: SplitId,
    source: Arc<SplitRef>,
    records: Vec<Record<Bytes>>,
}

impl KafkaSource {
    /// Takes what librdkafka has prefetched, up to one batch, into per-partition batches,
    /// without waiting. The consumer queue is served first: it carries rebalances and errors,
    /// and the messages of a partition whose fetch queue could not be attached (rare, so simply
    /// copied out). A partition's batch is found by comparing with the previous message's
    /// (messages come in runs per partition), and the topic name is copied once per partition
    /// per drain.
    pub(super) fn drain(&mut self) -> Result<usize, KafkaError> {
        let mut batches: Vec<Pending> = Vec::new();
        let now = EventTime::now();
        let mut n = self.drain_consumer_queue(&mut batches, now)?;
        n += self.drain_fetch_queue(&mut batches, now, self.batch_size - n)?;
        // A partition revoked during this drain: its records are the new owner's to read.
        self.apply_changes();
        self.hand_out(batches);
        Ok(n)
    }

    /// What the keeper polled while the pipeline did not, then the consumer queue, until the
    /// batch is full or the queue empty. Returns the number of records taken.
    fn drain_consumer_queue(
        &mut self,
        batches: &mut Vec<Pending>,
        now: EventTime,
    ) -> Result<usize, KafkaError> {
        let mut n = 0;
        for polled in std::mem::take(&mut self.stray) {
            match polled {
                Ok(m) => {
                    if self.push(batches, usize::MAX, now, &m).is_some() {
                        n += 1;
                    }
                }
                Err(e) => check_error(e, &self.brokers)?,
            }
        }
        while n < self.batch_size {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    let m = m.detach();
                    if self.push(batches, usize::MAX, now, &m).is_some() {
                        n += 1;
                    }
                }
                Some(Err(e)) => check_error(e, &self.brokers)?,
            }
        }
        Ok(n)
    }

    /// Up to `max` messages of the fetch queue. Returns the number of records taken.
    fn drain_fetch_queue(
        &mut self,
        batches: &mut Vec<Pending>,
        now: EventTime,
        max: usize,
    ) -> Result<usize, KafkaError> {
        let mut messages: Vec<FetchedMessage> = Vec::new();
        self.fetch.take(max, &mut messages);
        let mut n = 0;
        let mut last = usize::MAX;
        for m in &messages {
            if let Some(e) = m.error() {
                check_error(e, &self.brokers)?;
                continue;
            }
            if let Some(at) = self.push(batches, last, now, m) {
                last = at;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Queues the batches of partitions still assigned, each moving its partition's position
    /// past its last record once handed out.
    fn hand_out(&mut self, batches: Vec<Pending>) {
        for b in batches {
            if !self.assigned.contains_key(&(b.topic.clone(), b.partition)) {
                continue;
            }
            let Some(Origin {
                offset: Offset::Number(o),
                ..
            }) = b.records.last().and_then(|r| r.origin.as_ref())
            else {
                continue;
            };
            let next = o + 1;
            let bytes: usize = b
                .records
                .iter()
                .map(|r| r.value.len() + r.key.as_ref().map_or(0, |k| k.len()))
                .sum();
            self.count_in(&b.topic, b.partition, b.records.len(), bytes);
            self.ready.push_back((
                Some((b.topic, b.partition, next)),
                SourceEvent::Batch {
                    split: b.split,
                    records: b.records,
                },
            ));
        }
    }

    /// The batch of `message`'s partition among those of this drain, looking at `hint` first.
    fn find<M: Fetched>(batches: &[Pending], hint: usize, message: &M) -> Option<usize> {
        let partition = message.partition();
        let handle = message.topic_handle();
        let is = |b: &Pending| {
            b.partition == partition
                && ((handle.is_some() && b.topic_handle == handle) || b.topic == message.topic())
        };
        if batches.get(hint).is_some_and(is) {
            return Some(hint);
        }
        batches.iter().position(is)
    }

    /// Adds `message` to its partition's batch, starting the batch if needed. `None`: the
    /// partition is not assigned (revoked, or being handed over, between fetch and poll).
    fn push<M: Fetched>(
        &mut self,
        batches: &mut Vec<Pending>,
        hint: usize,
        now: EventTime,
        message: &M,
    ) -> Option<usize> {
        let at = match Self::find(batches, hint, message) {
            Some(at) => at,
            None => {
                let key = (message.topic().to_string(), message.partition());
                if !self.assigned.contains_key(&key) {
                    // Rebalance callbacks run inside poll: a newly assigned partition is
                    // known only once its notes are applied.
                    self.apply_changes();
                }
                let assigned = self.assigned.get(&key)?;
                let (split, source) = (assigned.split.clone(), assigned.source.clone());
                batches.push(Pending {
                    topic: key.0,
                    topic_handle: message.topic_handle(),
                    partition: key.1,
                    split,
                    source,
                    records: Vec::with_capacity(self.batch_size.min(256)),
                });
                batches.len() - 1
            }
        };
        let convert = Convert {
            event_time_from_kafka: self.event_time_from_kafka,
            read_headers: self.read_headers,
        };
        let b = &mut batches[at];
        b.records.push(to_record(convert, &b.source, now, message));
        Some(at)
    }

    /// Records and bytes (keys and values) in per partition, counted per batch: the load of
    /// each partition, and the skew between them (docs/utilisation.md).
    fn count_in(&mut self, topic: &str, partition: i32, n: usize, bytes: usize) {
        let key = (topic.to_string(), partition);
        let (records, size) = self.records_in.entry(key).or_insert_with(|| {
            let labels = [
                ("topic", topic.to_string()),
                ("partition", partition.to_string()),
            ];
            (
                metrics::counter!(crate::metric_catalogue::PARTITION_RECORDS_IN, &labels),
                metrics::counter!(crate::metric_catalogue::PARTITION_BYTES_IN, &labels),
            )
        });
        records.increment(n as u64);
        size.increment(bytes as u64);
    }
}

/// End-of-partition notices are not errors; fatal errors stop the source; the rest are logged
/// (librdkafka retries them itself).
fn check_error(e: RdError, brokers: &str) -> Result<(), KafkaError> {
    match e {
        RdError::PartitionEOF(_) => Ok(()),
        e if is_fatal(&e) => Err(KafkaError::Consume {
            brokers: brokers.to_string(),
            error: Box::new(e),
        }),
        e => {
            tracing::warn!(error = %e, "kafka: transient consumer error");
            Ok(())
        }
    }
}

fn is_fatal(e: &RdError) -> bool {
    use rdkafka::error::RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        // AutoOffsetReset: a fetch found a position out of range after the check at
        // assignment, and `auto.offset.reset=error` (OutOfRange::Fail) stopped librdkafka from
        // moving it.
        Some(
            Fatal
                | TopicAuthorizationFailed
                | GroupAuthorizationFailed
                | SaslAuthenticationFailed
                | AutoOffsetReset
        )
    )
}
