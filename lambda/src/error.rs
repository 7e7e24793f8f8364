//! The crate's one error type.

use watershed_core::BoxError;

/// Everything that can go wrong handling a Kinesis event batch in Lambda.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LambdaError {
    /// The invocation payload is not a Kinesis event (not JSON, or missing `Records`, or a
    /// record without its `kinesis` part or with data that is not base64).
    #[error("the invocation payload is not a Kinesis event: {reason}")]
    MalformedEvent {
        /// What serde said, with the JSON path.
        reason: String,
    },
    /// A record's `eventID` does not name its shard (`shardId-…:sequence`).
    #[error("record with sequence number {sequence} has eventID {event_id:?}, which names no shard (expected `shardId-…:<sequence>`)")]
    NoShard {
        /// The record's sequence number.
        sequence: String,
        /// The eventID as received.
        event_id: Option<String>,
    },
    /// A sequence number that is not a decimal number.
    #[error("shard {shard}: sequence number {sequence:?} is not a decimal number")]
    BadSequence {
        /// The shard.
        shard: String,
        /// The sequence number as received.
        sequence: String,
    },
    /// Records of one shard not in increasing sequence order: Lambda never sends that, so
    /// the batch was built by hand; a partial batch response could not name the right record.
    #[error("shard {shard}: sequence number {sequence} follows {previous}; records of a shard must come in sequence order")]
    OutOfOrder {
        /// The shard.
        shard: String,
        /// The record out of order.
        sequence: String,
        /// The record before it.
        previous: String,
    },
    /// The processing function failed on the batch (an operator error, a record rejected
    /// under `ErrorPolicy::Fail`, a panic). Lambda retries the whole batch.
    #[error("processing the batch of shard {shard} from sequence number {first_sequence} failed: {error}")]
    Pipeline {
        /// The first shard of the batch.
        shard: String,
        /// Its first sequence number.
        first_sequence: String,
        /// The runtime's error, naming the node.
        #[source]
        error: Box<watershed_core::Error>,
    },
    /// The window state to return exceeds Lambda's limit for tumbling-window state.
    #[error("shard {shard}: the window state is {size} bytes, above the limit of {limit} bytes Lambda carries between invocations; use fewer keys per window, a smaller aggregate, or a long-running pipeline")]
    StateTooLarge {
        /// The shard.
        shard: String,
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The window state in the event cannot be read back.
    #[error("shard {shard}: the window state in the event cannot be decoded: {reason}")]
    BadState {
        /// The shard.
        shard: String,
        /// Why.
        reason: String,
    },
    /// A target failed where a partial batch response cannot help (tumbling windows: the
    /// state must match what was delivered). Lambda retries the invocation.
    #[error("shard {shard}: delivering to {target} failed: {error}")]
    Delivery {
        /// Which target: `results` or `dead letters`.
        target: &'static str,
        /// The shard.
        shard: String,
        /// The cause.
        #[source]
        error: BoxError,
    },
}
