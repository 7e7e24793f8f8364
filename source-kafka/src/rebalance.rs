//! Rebalances: the consumer's context, which seeks newly assigned partitions to where they
//! start inside librdkafka's rebalance callback (before any fetch), and notes what changed for
//! the source's poll loop. Also where failures found off the source's task wait for it.

use crate::error::KafkaError;
use crate::fetch::FetchQueue;
use crate::out_of_range::OutOfRange;
use crate::source::{KafkaPosition, StartPosition};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(crate) enum Change {
    /// With the offset each partition starts at, when it comes from the checkpoint (else the
    /// group's committed offset or the start position applies).
    Assigned(Vec<(String, i32, Option<i64>)>),
    /// Released at once (eager protocol, lost partitions, closing source).
    Revoked(Vec<(String, i32)>),
    /// Still assigned: to be released once a checkpoint covering them completes.
    Revoking(Vec<(String, i32)>),
}

/// Rebalance handling: seeks newly assigned partitions to their restored positions inside the
/// callback (before any fetch), and records what changed for the poll loop.
pub(crate) struct SourceContext {
    /// Positions from the restored checkpoint not yet applied: each applies to the first
    /// assignment of its partition only. A partition regained later (after it was handed over)
    /// starts from the group's committed offset, which its last owner committed.
    pub(crate) restored: Mutex<KafkaPosition>,
    pub(crate) changes: Mutex<Vec<Change>>,
    /// Whether cooperative revocations wait for a checkpoint; off while the source closes, as
    /// librdkafka's close waits for the unassign call and no checkpoint will come. Off also
    /// means "closing" to an assignment, which then is not resolved.
    pub(crate) hand_over: AtomicBool,
    /// Set when `changes` holds notes: the poll loop looks at the notes only then, without
    /// taking the lock on every poll.
    pub(crate) changed: AtomicBool,
    /// Where newly assigned partitions forward their messages; taken away before the
    /// consumer closes (the queue must go first).
    pub(crate) fetch: Mutex<Option<Arc<FetchQueue>>>,
    /// The bootstrap servers, for errors.
    pub(crate) brokers: String,
    pub(crate) start: StartPosition,
    pub(crate) out_of_range: OutOfRange,
    /// What must stop the source, found off its task (a rebalance callback, the topic
    /// watcher); `failed` is set with it, so the poll path reads an atomic.
    pub(crate) failure: Mutex<Option<KafkaError>>,
    pub(crate) failed: AtomicBool,
}

impl SourceContext {
    fn note(&self, change: Change) {
        self.changes.lock().expect("changes lock").push(change);
        self.changed.store(true, Ordering::Release);
    }

    /// Stops the source at its next poll with `error` (the first such error wins).
    pub(crate) fn fail(&self, error: KafkaError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(error);
        }
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn take_failure(&self) -> Option<KafkaError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl ClientContext for SourceContext {
    /// librdkafka's periodic statistics (`statistics.interval.ms`, 5 s by default here): the
    /// consumer lag per partition, high watermark − position, as a gauge.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue; // the internal "UA" partition, or not yet known
                }
                metrics::gauge!(
                    crate::metric_catalogue::CONSUMER_LAG,
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS if !self.hand_over.load(Ordering::Acquire) => {
                // The source is closing (a stop during the group join): nothing will read
                // these partitions, and the group coordinator no longer answers offset reads
                // of a leaving member, so resolving start positions would only hold up the
                // close by its full timeout. librdkafka still wants the assign call.
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "kafka: assigning partitions while closing failed");
                }
            }
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut restored = self.restored.lock().expect("restored lock");
                let mut starts: Vec<(String, i32, Option<i64>)> = parts
                    .iter()
                    .map(|(topic, partition)| {
                        let next = restored
                            .offsets
                            .get_mut(topic)
                            .and_then(|p| p.remove(partition));
                        (topic.clone(), *partition, next)
                    })
                    .collect();
                drop(restored);
                // Before the assignment starts fetching, so no message of these partitions
                // lands on the consumer queue.
                if let Some(fetch) = self.fetch.lock().expect("fetch lock").as_ref() {
                    for (topic, partition) in &parts {
                        if !fetch.attach(topic, *partition) {
                            tracing::error!(topic = %topic, partition = *partition, "kafka: librdkafka gave no queue for the partition, so its messages cannot be forwarded to the source; they may not be read");
                        }
                    }
                }
                crate::starts::resolve(consumer, self.start, &mut starts, tpl);
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "kafka: assigning partitions failed");
                }
                self.note(Change::Assigned(starts));
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                if cooperative
                    && !consumer.assignment_lost()
                    && self.hand_over.load(Ordering::Acquire) =>
            {
                // Not unassigned yet: librdkafka keeps the group from giving the partitions to
                // their new owner (and pauses fetching) until we call incremental_unassign,
                // which the source does once a checkpoint covering what it read of them has
                // completed and their offsets are committed (Kafka Streams' commit on revoke).
                self.note(Change::Revoking(parts));
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "kafka: unassigning partitions failed");
                }
                self.note(Change::Revoked(parts));
            }
            other => {
                tracing::error!(error = ?other, "kafka: rebalance error");
                let _ = consumer.unassign();
            }
        }
        metrics::counter!(crate::metric_catalogue::REBALANCES).increment(1);
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}
