//! Hand-over of partitions revoked from a live instance (cooperative protocol): held, no
//! longer emitted, until a checkpoint holding their final positions completes and those
//! offsets are committed, so the new owner starts exactly where this instance's output ends.

use super::commit::offsets_text;
use super::position::KafkaPosition;
use super::KafkaSource;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset as RdOffset, TopicPartitionList};
use std::time::Instant;

/// Partitions revoked and not yet released: their records are no longer emitted, and they are
/// released once a checkpoint holding their final positions completes.
pub(super) struct HandOver {
    /// (topic, partition, the next offset to read when revoked: what to commit). `None`: no
    /// record of it was read, nothing to commit.
    pub(super) parts: Vec<(String, i32, Option<i64>)>,
    pub(super) deadline: Instant,
    /// A checkpoint request is still to be returned by `poll`.
    pub(super) request: bool,
}

impl HandOver {
    pub(super) fn new(deadline: Instant) -> Self {
        HandOver {
            parts: Vec::new(),
            deadline,
            request: true,
        }
    }

    pub(super) fn covered_by(&self, position: &KafkaPosition) -> bool {
        self.parts
            .iter()
            .all(|(topic, partition, next)| match next {
                None => true,
                Some(n) => position.next_offset(topic, *partition) >= Some(*n),
            })
    }
}

impl KafkaSource {
    /// Releases the partitions of the pending hand-over: commits their final offsets first when
    /// `commit` (a checkpoint holding them has completed), then lets the group give them to
    /// their new owner. A failed commit still releases them: holding them would stall the
    /// group, and the new owner then starts at the previous commit (at-least-once).
    pub(super) fn release_hand_over(&mut self, commit: bool, outcome: &'static str) {
        let Some(hand_over) = self.hand_over.take() else {
            return;
        };
        let mut to_commit = TopicPartitionList::new();
        let mut all = TopicPartitionList::new();
        for (topic, partition, next) in &hand_over.parts {
            all.add_partition(topic, *partition);
            if let (true, Some(n)) = (commit, next) {
                let _ = to_commit.add_partition_offset(topic, *partition, RdOffset::Offset(*n));
            }
            if let Some(p) = self.position.offsets.get_mut(topic) {
                // From now on the new owner's: a later checkpoint of this instance must not
                // carry it, or a restart that regained it would resume from a stale offset.
                p.remove(partition);
                if p.is_empty() {
                    self.position.offsets.remove(topic);
                }
            }
        }
        let mut outcome = outcome;
        if to_commit.count() > 0 {
            if let Err(e) = self.commit_sync(&to_commit, "hand_over") {
                tracing::warn!(offsets = %offsets_text(&to_commit), error = %e, "kafka: committing handed-over partitions failed; releasing them anyway");
                outcome = "commit_failed";
            }
        }
        if let Err(e) = self.consumer.incremental_unassign(&all) {
            tracing::error!(error = %e, "kafka: unassigning handed-over partitions failed");
        }
        tracing::info!(partitions = %offsets_text(&all), outcome, "kafka: partitions handed over");
        metrics::counter!(crate::metric_catalogue::HAND_OVERS, "outcome" => outcome).increment(1);
    }

    /// Releases a hand-over that needs no commit, or whose checkpoint did not come in time.
    pub(super) fn check_hand_over(&mut self) {
        let Some(h) = &self.hand_over else {
            return;
        };
        if h.parts.iter().all(|(_, _, next)| next.is_none()) {
            self.release_hand_over(false, "nothing_read");
        } else if Instant::now() >= h.deadline {
            tracing::warn!(
                timeout = ?self.hand_over_timeout,
                "kafka: no checkpoint covered the revoked partitions in time; releasing them uncommitted (the new owner re-reads since the last commit)"
            );
            self.release_hand_over(false, "timeout");
        }
    }
}
