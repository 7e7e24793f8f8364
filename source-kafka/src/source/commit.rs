//! Committing offsets to the consumer group: only at completed checkpoints, only for
//! partitions this instance still owns, synchronously so the outcome is known.

use super::position::KafkaPosition;
use super::KafkaSource;
use crate::error::KafkaError;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::{Offset as RdOffset, TopicPartitionList};
use std::time::Instant;

impl KafkaSource {
    /// Runs blocking client calls (synchronous commit) without stalling other tasks.
    fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.can_block_in_place {
            tokio::task::block_in_place(f)
        } else {
            f()
        }
    }

    /// Commits `offsets` synchronously, timed as `watershed_kafka_commit_seconds{kind}` and
    /// counted in `watershed_kafka_commit_errors_total` when it fails.
    pub(super) fn commit_sync(
        &self,
        offsets: &TopicPartitionList,
        kind: &'static str,
    ) -> Result<(), RdError> {
        let started = Instant::now();
        let result = self.blocking(|| self.consumer.commit(offsets, CommitMode::Sync));
        metrics::histogram!(crate::metric_catalogue::COMMIT_SECONDS, "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!(crate::metric_catalogue::COMMIT_ERRORS).increment(1);
        }
        result
    }

    /// Commits a completed checkpoint's offsets of the partitions still assigned: a lost
    /// partition's offset belongs to its new owner.
    pub(super) fn commit_checkpoint(&self, position: &KafkaPosition) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, parts) in &position.offsets {
            for (partition, next) in parts {
                if self.assigned.contains_key(&(topic.clone(), *partition)) {
                    tpl.add_partition_offset(topic, *partition, RdOffset::Offset(*next))
                        .map_err(|error| KafkaError::Consume {
                            brokers: self.brokers.clone(),
                            error: Box::new(error),
                        })?;
                }
            }
        }
        if tpl.count() > 0 {
            // Synchronous, as Kafka Streams commits: one broker round trip per checkpoint, and
            // the outcome is known (librdkafka reports nothing back for an asynchronous manual
            // commit without a commit callback). A failure is logged and counted, not fatal:
            // this instance resumes from its checkpoint, and the next checkpoint commits later
            // offsets; only another instance taking the partition over would re-read from the
            // older commit.
            if let Err(error) = self.commit_sync(&tpl, "offsets") {
                let e = KafkaError::Commit {
                    offsets: offsets_text(&tpl),
                    error: Box::new(error),
                };
                tracing::warn!(error = %e, "kafka: committing a checkpoint's offsets failed");
            }
        }
        Ok(())
    }
}

/// `topic/partition@offset,…`, for logs and errors.
pub(super) fn offsets_text(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
        .collect::<Vec<_>>()
        .join(",")
}
