//! Split bookkeeping: the rebalance notes of [`SourceContext`] turned into split events, in
//! the order librdkafka delivered them, and the partitions they add, hand over or drop.

use super::hand_over::HandOver;
use super::position::{KafkaPosition, StartPosition};
use super::KafkaSource;
use crate::rebalance::{Change, SourceContext};
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as RdOffset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::{SourceEvent, SplitId, SplitRef};

/// An event ready to hand out, with the position it moves the partition to
/// (topic, partition, next offset), if it carries records.
pub(super) type Ready = (Option<(String, i32, i64)>, SourceEvent<Bytes>);

/// A partition this instance reads, with what its records name as their origin.
pub(super) struct Assigned {
    pub(super) split: SplitId,
    pub(super) source: Arc<SplitRef>,
}

impl KafkaSource {
    pub(super) fn split_id(topic: &str, partition: i32) -> SplitId {
        SplitId::new(format!("{topic}-{partition}"))
    }

    /// Turns rebalance notes into split events, in order.
    pub(super) fn apply_changes(&mut self) {
        Splits {
            consumer: &self.consumer,
            assigned: &mut self.assigned,
            ready: &mut self.ready,
            position: &mut self.position,
            start: self.start,
            hand_over: &mut self.hand_over,
            hand_over_timeout: self.hand_over_timeout,
        }
        .apply();
    }
}

/// The fields a rebalance note touches, borrowed apart from the consumer so notes can be applied
/// while a polled message still borrows it.
struct Splits<'a> {
    consumer: &'a BaseConsumer<SourceContext>,
    assigned: &'a mut HashMap<(String, i32), Assigned>,
    ready: &'a mut VecDeque<Ready>,
    position: &'a mut KafkaPosition,
    start: StartPosition,
    hand_over: &'a mut Option<HandOver>,
    hand_over_timeout: Duration,
}

impl Splits<'_> {
    fn apply(mut self) {
        let context = self.consumer.context();
        if !context.changed.swap(false, Ordering::Acquire) {
            return;
        }
        let changes = std::mem::take(&mut *context.changes.lock().expect("lock"));
        for change in changes {
            match change {
                Change::Assigned(parts) => self.assigned(parts),
                Change::Revoking(parts) => self.revoking(parts),
                Change::Revoked(parts) => self.revoked(parts),
            }
        }
    }

    /// Starts splits for newly assigned partitions; those starting at a time are sought there.
    fn assigned(&mut self, parts: Vec<(String, i32, Option<i64>)>) {
        let mut seek_by_time = TopicPartitionList::new();
        for (topic, partition, start) in parts {
            let split = KafkaSource::split_id(&topic, partition);
            // The position names where this partition resumes, so a checkpoint taken before
            // its first record neither regresses nor invents it.
            match start {
                Some(next) => self.position.set(topic.clone(), partition, next),
                None => {
                    if let Some(p) = self.position.offsets.get_mut(&topic) {
                        p.remove(&partition);
                    }
                    if let StartPosition::Timestamp(ts) = self.start {
                        let _ = seek_by_time.add_partition_offset(
                            &topic,
                            partition,
                            RdOffset::Offset(ts),
                        );
                    }
                }
            }
            self.assigned.insert(
                (topic.clone(), partition),
                Assigned {
                    split: split.clone(),
                    source: Arc::new(SplitRef {
                        stream: topic,
                        split: split.clone(),
                    }),
                },
            );
            self.ready.push_back((None, SourceEvent::SplitAdded(split)));
        }
        if seek_by_time.count() > 0 {
            crate::starts::seek_to_times(self.consumer, seek_by_time);
        }
    }

    /// Stops emitting partitions being revoked (cooperative protocol) and adds them to the
    /// hand-over, which asks for a checkpoint.
    fn revoking(&mut self, parts: Vec<(String, i32)>) {
        let hand_over = self
            .hand_over
            .get_or_insert_with(|| HandOver::new(Instant::now() + self.hand_over_timeout));
        // A checkpoint taken after this revocation covers every partition of the hand-over,
        // the earlier ones included.
        hand_over.request = true;
        for (topic, partition) in parts {
            let key = (topic, partition);
            if let Some(a) = self.assigned.remove(&key) {
                // Read but not yet handed out: the new owner reads them.
                self.ready.retain(|(moves_to, _)| {
                    !matches!(moves_to, Some((t, p, _)) if *t == key.0 && *p == key.1)
                });
                self.ready
                    .push_back((None, SourceEvent::SplitRemoved(a.split)));
            }
            let next = self.position.next_offset(&key.0, key.1);
            hand_over.parts.push((key.0, key.1, next));
        }
    }

    /// Drops partitions already taken away (eager protocol, lost partitions, closing source).
    fn revoked(&mut self, parts: Vec<(String, i32)>) {
        for (topic, partition) in parts {
            if let Some(a) = self.assigned.remove(&(topic.clone(), partition)) {
                // Its data since the last checkpoint is the new owner's to read.
                if let Some(p) = self.position.offsets.get_mut(&topic) {
                    p.remove(&partition);
                }
                self.ready
                    .push_back((None, SourceEvent::SplitRemoved(a.split)));
            }
        }
    }
}
