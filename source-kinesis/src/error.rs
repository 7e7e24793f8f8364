//! The crate's one error type, carrying the stream, shard and sequence number concerned.

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::fmt;

/// Everything the Kinesis source and sink can fail with.
///
/// Each variant names where it happened (stream, and shard and sequence number when there is
/// one), because a Kinesis error message alone ("Rate exceeded for shard …") rarely says which
/// of a pipeline's many shards or requests it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KinesisError {
    /// The configuration is unusable (no stream, invalid limits, …).
    #[error("invalid Kinesis configuration: {0}")]
    Config(String),
    /// A stream-level call (ListShards, PutRecords as a whole) failed.
    #[error("{operation} on stream `{stream}` failed: {detail}")]
    Stream {
        /// The API call.
        operation: &'static str,
        /// Stream name or ARN.
        stream: String,
        /// The error as the SDK reported it, with its causes.
        detail: String,
    },
    /// A shard-level call (GetShardIterator, GetRecords) failed.
    #[error("{operation} on stream `{stream}` shard `{shard}`{} failed: {detail}", at(.sequence))]
    Shard {
        /// The API call.
        operation: &'static str,
        /// Stream name or ARN.
        stream: String,
        /// Shard id.
        shard: String,
        /// The last sequence number read from the shard (where reading resumes), if any.
        sequence: Option<String>,
        /// The error as the SDK reported it, with its causes.
        detail: String,
    },
    /// PutRecords kept rejecting some entries after every retry.
    #[error(
        "PutRecords to stream `{stream}`: {failed} of {total} records still failed after \
         {attempts} attempts (first failure: {error_code}: {error_message})"
    )]
    RecordsFailed {
        /// Stream name or ARN.
        stream: String,
        /// Entries that were never accepted.
        failed: usize,
        /// Entries in the flush.
        total: usize,
        /// PutRecords calls made.
        attempts: u32,
        /// `ErrorCode` of the first failed entry of the last attempt.
        error_code: String,
        /// `ErrorMessage` of that entry.
        error_message: String,
    },
    /// A record is larger than Kinesis accepts (1 MiB of data plus partition key).
    #[error(
        "record of {size} bytes (data + partition key `{partition_key}`) exceeds the \
         {limit}-byte Kinesis record limit (stream `{stream}`)"
    )]
    RecordTooLarge {
        /// Stream name or ARN.
        stream: String,
        /// The record's partition key.
        partition_key: String,
        /// Data plus partition key, in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The restored checkpoint position cannot be used.
    #[error("invalid restored Kinesis position for stream `{stream}`: {reason}")]
    Position {
        /// Stream name or ARN.
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn at(sequence: &Option<String>) -> String {
    sequence
        .as_ref()
        .map(|s| format!(" after sequence number {s}"))
        .unwrap_or_default()
}

/// How a failed call should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Throughput exceeded: back off and retry, count it.
    Throttled,
    /// The shard iterator expired (unused for 5 minutes): get a new one.
    ExpiredIterator,
    /// Network, timeout or server-side failure: retry a bounded number of times.
    Transient,
    /// Anything else (bad argument, missing stream, access denied): give up.
    Fatal,
}

/// Error codes Kinesis uses for throttling, on every operation.
pub(crate) fn is_throttle_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "ThrottlingException"
            | "KMSThrottlingException"
    )
}

pub(crate) fn classify<E: ProvideErrorMetadata, R: fmt::Debug>(err: &SdkError<E, R>) -> Failure {
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) if is_throttle_code(code) => Failure::Throttled,
            Some("ExpiredIteratorException") => Failure::ExpiredIterator,
            Some("InternalFailure" | "InternalFailureException" | "ServiceUnavailable") => {
                Failure::Transient
            }
            _ => Failure::Fatal,
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient
        }
        _ => Failure::Fatal,
    }
}

/// The SDK error with its whole cause chain (the SDK's own `Display` says only "service error").
pub(crate) fn detail<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    DisplayErrorContext(err).to_string()
}
