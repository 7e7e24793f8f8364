//! What flows on the channels between tasks: data batches interleaved with control messages.

use crate::checkpoint::CheckpointId;
use crate::record::Batch;
use crate::time::EventTime;

/// One item on a channel between two tasks.
///
/// Control messages travel in-band, so they keep their order relative to data: a barrier never
/// overtakes the records before it and a watermark follows the records it covers.
#[derive(Debug)]
pub enum Message<T> {
    /// A batch of records.
    Data(Batch<T>),
    /// No record with a timestamp `<=` this will follow on this channel.
    Watermark(EventTime),
    /// The sender is idle: exclude it from the minimum watermark until it sends again.
    Idle,
    /// Checkpoint barrier: everything before it belongs to this checkpoint.
    Barrier(CheckpointId),
}
