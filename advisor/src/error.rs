//! Errors of the advisor, with the stream and shard they concern.

/// What went wrong while sampling a stream or changing its shard count.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdvisorError {
    /// ListShards failed.
    #[error("ListShards of stream {stream} failed: {detail}")]
    ListShards {
        /// The stream.
        stream: String,
        /// The service's message.
        detail: String,
    },
    /// GetShardIterator or GetRecords failed (other than throttling, which is retried).
    #[error("{operation} of stream {stream}, shard {shard} failed: {detail}")]
    Read {
        /// `GetShardIterator` or `GetRecords`.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// The shard.
        shard: String,
        /// The service's message.
        detail: String,
    },
    /// UpdateShardCount or the wait for the stream to become ACTIVE again failed.
    #[error("UpdateShardCount of stream {stream} to {target} shards failed: {detail}")]
    Scale {
        /// The stream.
        stream: String,
        /// The requested shard count.
        target: u32,
        /// The service's message.
        detail: String,
    },
    /// A sampling task panicked or was cancelled.
    #[error("sampling task of stream {stream}, shard {shard} did not finish: {detail}")]
    Task {
        /// The stream.
        stream: String,
        /// The shard.
        shard: String,
        /// Why.
        detail: String,
    },
}

/// The SDK error with its service code and message (the `Display` of an `SdkError` alone says
/// only "service error").
pub(crate) fn detail<E, R>(e: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_sdk_kinesis::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("unknown"),
            s.message().unwrap_or_default()
        ),
        None => format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(e)),
    }
}
