//! Where the source stands in each shard: the positions stored in checkpoints.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far before the moment a shard was opened at LATEST its replayable start lies (ms).
///
/// The first run reads from Kinesis' own LATEST; a restore reads from `AT_TIMESTAMP` of this
/// host's clock at open, minus this allowance, so that a host clock running ahead of Kinesis by
/// up to a second still skips nothing. The price: a restore from a checkpoint taken before the
/// shard returned anything may also read records that arrived up to a second before the first
/// open — records no run returned before, so nothing is repeated.
pub const LATEST_CLOCK_ALLOWANCE_MS: i64 = 1_000;

/// Milliseconds since the epoch on this host.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The replayable form of "LATEST, as of now".
pub(crate) fn resolve_latest() -> ShardPosition {
    ShardPosition::Start(StartPosition::AtTimestamp(
        now_millis().saturating_sub(LATEST_CLOCK_ALLOWANCE_MS),
    ))
}

/// Where to start reading a shard that has no checkpointed position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records written after the source opened (closed shards are skipped). The moment a
    /// shard is first opened this way is kept in the position as `AtTimestamp` (minus
    /// [`LATEST_CLOCK_ALLOWANCE_MS`]), so a restore from a checkpoint taken before the shard
    /// returned a record resumes there instead of at a new LATEST, and skips nothing.
    Latest,
    /// The first record that arrived at or after this time (ms since the epoch).
    AtTimestamp(i64),
}

/// Where one shard stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ShardPosition {
    /// Nothing returned yet: reading starts (or restarts) at this position.
    Start(StartPosition),
    /// The last record returned (inclusive, as the KCL checkpoints): reading resumes with
    /// `AFTER_SEQUENCE_NUMBER`. `sub` is the KPL sub-sequence, always 0 for plain records.
    After {
        /// Sequence number of the last record returned.
        sequence: String,
        /// Sub-sequence of that record inside a KPL aggregate.
        sub: u32,
    },
    /// The shard is closed and was read to SHARD_END: it is never read again, and its
    /// children may start.
    Finished,
}

/// The source's position: one entry per shard it has seen. Stored in checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KinesisPosition {
    /// Shard id → position.
    pub shards: BTreeMap<String, ShardPosition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_stored_as_a_replayable_time_never_as_latest() {
        let before = now_millis();
        match resolve_latest() {
            ShardPosition::Start(StartPosition::AtTimestamp(t)) => {
                assert!(t <= before && t >= before - LATEST_CLOCK_ALLOWANCE_MS - 1_000);
            }
            other => panic!("LATEST resolved to {other:?}"),
        }
    }
}
