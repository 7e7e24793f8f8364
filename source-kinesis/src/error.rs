//! The crate's one error type, carrying the stream, shard and sequence number concerned.

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    #[error("{operation} on stream `{stream}` at {endpoint} failed: {detail}")]
    Stream {
        /// The API call.
        operation: &'static str,
        /// Stream name or ARN.
        stream: String,
        /// The Kinesis endpoint called.
        endpoint: String,
        /// The error as the SDK reported it, with its causes.
        detail: String,
    },
    /// A shard-level call (GetShardIterator, GetRecords) failed.
    #[error(
        "{operation} on stream `{stream}` shard `{shard}`{} at {endpoint} failed: {detail}",
        at(.sequence)
    )]
    Shard {
        /// The API call.
        operation: &'static str,
        /// Stream name or ARN (shared by the errors of all of a stream's shards).
        stream: Arc<str>,
        /// The Kinesis endpoint called.
        endpoint: Arc<str>,
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
    /// Kinesis could not be reached (connection refused, unknown host, connect timeout) for
    /// as long as [`Backoff::unreachable_after`](crate::Backoff::unreachable_after) allows.
    #[error(
        "cannot reach Kinesis at {endpoint} ({operation} on stream `{stream}`) within {}: {detail}",
        seconds(.waited)
    )]
    Unreachable {
        /// The Kinesis endpoint called.
        endpoint: String,
        /// The API call.
        operation: &'static str,
        /// Stream name or ARN.
        stream: String,
        /// How long calls were retried before giving up.
        waited: Duration,
        /// The innermost cause (e.g. "Connection refused (os error 111)").
        detail: String,
    },
    /// The stream does not exist (ResourceNotFoundException) when the source or sink opens.
    #[error(
        "stream `{stream}` does not exist at {endpoint} ({operation}): check the stream name, \
         account and region, or create the stream (a source can wait for it: \
         `missing_stream(MissingStream::Wait)`)"
    )]
    StreamNotFound {
        /// Stream name or ARN.
        stream: String,
        /// The Kinesis endpoint called.
        endpoint: String,
        /// The API call that found it missing.
        operation: &'static str,
    },
    /// The stream was deleted (or is being deleted) while the source read it.
    #[error(
        "stream `{stream}` at {endpoint} was deleted while being read ({operation}: {detail}); \
         `missing_stream(MissingStream::Wait)` waits for it to be re-created instead"
    )]
    StreamDeleted {
        /// Stream name or ARN.
        stream: String,
        /// The Kinesis endpoint called.
        endpoint: String,
        /// The API call that found it gone (and the shard, when there is one).
        operation: String,
        /// What Kinesis answered.
        detail: String,
    },
    /// Restored (or resumed) shard positions that the stream cannot serve: shards it no longer
    /// has, or sequence numbers outside a shard's range (typically a stream deleted and
    /// re-created with the same name since the checkpoint).
    #[error(
        "restored position of stream `{stream}` at {endpoint} is out of range: {}; \
         `on_position_out_of_range(OutOfRange::TrimHorizon)` (or `Latest`) reads such shards \
         from there instead",
        list(.shards)
    )]
    PositionOutOfRange {
        /// Stream name or ARN.
        stream: String,
        /// The Kinesis endpoint called.
        endpoint: String,
        /// Every shard position that cannot be used, and why.
        shards: Vec<ShardOutOfRange>,
    },
    /// The restored checkpoint position cannot be used.
    #[error("invalid restored Kinesis position for stream `{stream}`: {reason}")]
    Position {
        /// Stream name or ARN.
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A lease table (DynamoDB) call failed, or the table cannot be used.
    #[error(
        "{operation} on lease table `{table}`{} at {endpoint} failed: {detail}",
        lease_shard(.shard)
    )]
    LeaseTable {
        /// The DynamoDB call (CreateTable, Scan, UpdateItem, …).
        operation: &'static str,
        /// The lease table.
        table: String,
        /// The lease (shard id) concerned, if one.
        shard: Option<String>,
        /// The DynamoDB endpoint called.
        endpoint: String,
        /// The error as the SDK reported it, with its causes.
        detail: String,
    },
}

/// One shard position the stream cannot serve (see [`KinesisError::PositionOutOfRange`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardOutOfRange {
    /// Shard id.
    pub shard: String,
    /// The position's sequence number (reading would resume after it), if it has one.
    pub sequence: Option<String>,
    /// Why it cannot be used.
    pub reason: String,
}

impl ShardOutOfRange {
    pub(crate) fn new(shard: &str, sequence: Option<&str>, reason: impl Into<String>) -> Self {
        ShardOutOfRange {
            shard: shard.to_owned(),
            sequence: sequence.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ShardOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard `{}`{}: {}",
            self.shard,
            at(&self.sequence),
            self.reason
        )
    }
}

fn list(shards: &[ShardOutOfRange]) -> String {
    let all: Vec<String> = shards.iter().map(ToString::to_string).collect();
    all.join("; ")
}

fn lease_shard(shard: &Option<String>) -> String {
    shard
        .as_ref()
        .map(|s| format!(" (lease `{s}`)"))
        .unwrap_or_default()
}

fn seconds(d: &Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
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
    /// A broken or cut-off response, or a server-side failure: retry a bounded number of times.
    Transient,
    /// No answer at all (connection refused, unknown host, connect or call timeout): retry
    /// for at most `Backoff::unreachable_after`, then report the endpoint unreachable.
    Unreachable,
    /// ResourceNotFoundException: the stream (or shard, or sequence number) does not exist.
    NotFound,
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
            Some("ResourceNotFoundException") => Failure::NotFound,
            Some("InternalFailure" | "InternalFailureException" | "ServiceUnavailable") => {
                Failure::Transient
            }
            _ => Failure::Fatal,
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Failure::Unreachable,
        SdkError::ResponseError(_) => Failure::Transient,
        _ => Failure::Fatal,
    }
}

/// The error code of a service error (`None` for network failures).
pub(crate) fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// What went wrong, readably: `Code: message` for a service error, otherwise the chain of
/// causes (the SDK's own `Display` says only "service error" or "dispatch failure", and its
/// `Debug` dumps the whole raw response).
pub(crate) fn detail<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    if let SdkError::ServiceError(service) = err {
        let e = service.err();
        return match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(err).to_string(),
        };
    }
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The innermost cause of a failure ("Connection refused (os error 111)").
pub(crate) fn root_cause<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    let Some(mut last) = std::error::Error::source(err) else {
        return err.to_string();
    };
    while let Some(cause) = last.source() {
        last = cause;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "http://127.0.0.1:1";

    /// Rule: every error that comes from a service call names the endpoint it called (and
    /// keeps its stream, shard and sequence number context).
    #[test]
    fn service_call_errors_name_the_endpoint() {
        let errors = [
            KinesisError::Stream {
                operation: "ListShards",
                stream: "clicks".into(),
                endpoint: AT.into(),
                detail: "d".into(),
            },
            KinesisError::Shard {
                operation: "GetRecords",
                stream: "clicks".into(),
                endpoint: AT.into(),
                shard: "shardId-0".into(),
                sequence: Some("42".into()),
                detail: "d".into(),
            },
            KinesisError::Unreachable {
                endpoint: AT.into(),
                operation: "ListShards",
                stream: "clicks".into(),
                waited: Duration::from_secs(5),
                detail: "Connection refused (os error 111)".into(),
            },
            KinesisError::StreamNotFound {
                stream: "clicks".into(),
                endpoint: AT.into(),
                operation: "ListShards",
            },
            KinesisError::StreamDeleted {
                stream: "clicks".into(),
                endpoint: AT.into(),
                operation: "GetRecords on shard `shardId-0`".into(),
                detail: "d".into(),
            },
            KinesisError::PositionOutOfRange {
                stream: "clicks".into(),
                endpoint: AT.into(),
                shards: vec![ShardOutOfRange::new("shardId-0", Some("42"), "gone")],
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.contains(AT), "{text}");
            assert!(text.contains("`clicks`"), "{text}");
        }
        let unreachable = KinesisError::Unreachable {
            endpoint: AT.into(),
            operation: "ListShards",
            stream: "clicks".into(),
            waited: Duration::from_secs(5),
            detail: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            unreachable.to_string(),
            "cannot reach Kinesis at http://127.0.0.1:1 (ListShards on stream `clicks`) within \
             5.0 s: Connection refused (os error 111)"
        );
    }
}
