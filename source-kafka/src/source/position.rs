//! Positions: where a partition with no history starts, and what a checkpoint records.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where to start reading a partition that has neither a Watershed checkpoint position nor a
/// committed group offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced after the source starts.
    Latest,
    /// The first record with a timestamp at or after this time (ms since epoch).
    Timestamp(i64),
}

/// Checkpointed position of a [`KafkaSource`](crate::KafkaSource): for each topic and
/// partition, the **next** offset to read (last processed + 1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPosition {
    /// topic → partition → next offset.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl KafkaPosition {
    /// The next offset of `topic`/`partition`, if known.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic)?.get(&partition).copied()
    }

    /// Records that `topic`/`partition` resumes at `next`.
    pub(super) fn set(&mut self, topic: String, partition: i32, next: i64) {
        self.offsets
            .entry(topic)
            .or_default()
            .insert(partition, next);
    }
}
