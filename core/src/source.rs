//! The `Source` trait: where records enter a pipeline.

use crate::checkpoint::CheckpointId;
use crate::error::BoxError;
use crate::record::{Batch, SplitId};
use crate::time::EventTime;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// What one [`Source::poll`] produced.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceEvent<T> {
    /// Records read from one split, in split order.
    Batch {
        /// The split the records come from.
        split: SplitId,
        /// The records.
        records: Batch<T>,
    },
    /// A split was assigned or discovered (partition assigned, new shard). Until its first record
    /// it holds the watermark back, unless it goes idle.
    SplitAdded(SplitId),
    /// A split is fully read (Kinesis SHARD_END, end of a file) or was revoked; it no longer
    /// takes part in the watermark.
    SplitRemoved(SplitId),
    /// Event time of `split` reached `time` without a record: the split will bring no record
    /// older than `time` (a source that knows its progress, such as a test driver or a broker
    /// that carries time markers). The split's watermark moves as a record at `time` would
    /// move it.
    Progress {
        /// The split whose event time advanced.
        split: SplitId,
        /// How far it advanced.
        time: EventTime,
    },
    /// Nothing arrived within the wait.
    Idle,
    /// The input is bounded and fully read.
    Finished,
    /// The source needs a checkpoint soon (e.g. a Kafka source asked to hand a partition over,
    /// which it may release only once a checkpoint covering what it read of that partition has
    /// completed). The runtime triggers one as soon as no other checkpoint is in flight, without
    /// waiting for the interval; the source learns of it through
    /// [`checkpoint_complete`](Source::checkpoint_complete). Requests made while a checkpoint is
    /// in flight are served by one more checkpoint after it, so the requested one is triggered
    /// after the request; repeated requests before it starts coalesce.
    CheckpointRequested,
}

/// A source of records, split into independently ordered splits (partitions, shards, files).
///
/// The runtime drives every source through one shared control loop: it polls, assigns
/// watermarks per split, injects checkpoint barriers between polls, and tells the source when a
/// checkpoint it took part in is complete. Sources therefore contain only broker logic.
///
/// Contract:
/// - [`poll`](Source::poll) returns within about `max_wait` (it is not cancelled, so it may
///   hold state across awaits safely; returning late only delays checkpoints and shutdown).
/// - [`position`](Source::position) describes exactly the records returned so far: restoring it
///   resumes with the first record not yet returned, never skipping or repeating one.
/// - Commit to the broker (Kafka offsets, Kinesis checkpoint) only in
///   [`checkpoint_complete`](Source::checkpoint_complete), which may be skipped or arrive for a
///   later checkpoint only; the position passed is the one to commit.
#[async_trait]
pub trait Source: Send + 'static {
    /// The record payload this source produces (raw `Bytes` for brokers).
    type Item: Send + 'static;
    /// Serializable position of every split, as stored in checkpoints.
    type Position: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Connects and seeks. `restored` is the position from the latest complete checkpoint, or
    /// `None` on a fresh start (then the source's configured start position applies).
    async fn open(&mut self, restored: Option<Self::Position>) -> Result<(), BoxError>;

    /// Reads the next batch, waiting at most about `max_wait` for data.
    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<Self::Item>, BoxError>;

    /// The position after the last record returned by `poll`.
    fn position(&self) -> Self::Position;

    /// Checkpoint `id`, which holds `position`, is durable: commit it to the broker if the
    /// broker tracks consumers. Later checkpoints subsume earlier ones.
    async fn checkpoint_complete(
        &mut self,
        id: CheckpointId,
        position: &Self::Position,
    ) -> Result<(), BoxError> {
        let _ = (id, position);
        Ok(())
    }

    /// Releases connections; called once, after the last poll.
    async fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
