//! The crate's error type.

use std::time::Duration;

/// What can go wrong talking to Kafka, with the cluster, the operation and the
/// topic/partition/offset concerned. Client errors are boxed: they are large, and errors
/// travel through every `Result` of the crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The client could not be created (bad configuration).
    #[error("kafka client configuration: {0}")]
    Config(#[source] rdkafka::error::KafkaError),
    /// No broker of the cluster answered in time: a wrong address, a broker down, a firewall.
    #[error("cannot reach Kafka at {brokers} ({operation}) within {} s: {error}; check the bootstrap servers and that a broker listens there", timeout.as_secs())]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// What the client was doing, e.g. "fetching metadata for topic `x`".
        operation: String,
        /// How long it waited.
        timeout: Duration,
        /// The client error.
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// The cluster refused the client's credentials (SASL authentication failed).
    #[error("kafka at {brokers} refused the client's credentials: {reason}; check sasl.mechanism, sasl.username and sasl.password, and that the user exists for that mechanism")]
    CredentialsRefused {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's account of the refusal.
        reason: String,
    },
    /// The TLS handshake with the cluster failed (an untrusted certificate, say).
    #[error("TLS handshake with kafka at {brokers} failed: {reason}; check security.protocol and ssl.ca.location (the CA that signed the brokers' certificates)")]
    TlsFailed {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's account of the failure.
        reason: String,
    },
    /// Topics the pipeline reads or writes do not exist.
    #[error(
        "kafka topic(s) {} do not exist on {brokers} ({operation}); create them first{hint}",
        quoted(topics)
    )]
    MissingTopics {
        /// The missing topics.
        topics: Vec<String>,
        /// The bootstrap servers.
        brokers: String,
        /// What needed them.
        operation: String,
        /// How to get past it, when there is a way besides creating them.
        hint: String,
    },
    /// A topic the source was reading was deleted.
    #[error("kafka topic `{topic}` on {brokers} disappeared while the source was reading it (deleted?); recreate it, or read it with `missing_topics(MissingTopics::Wait)` to wait for it")]
    TopicVanished {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
    },
    /// A restored checkpoint position is outside the partition's log.
    #[error("restored position of {topic}/{partition} is offset {offset}, outside the log on {brokers} (log start {low}, log end {high}): the topic was recreated or truncated, or retention deleted the records; nothing was read. To resume anyway choose `on_position_out_of_range(OutOfRange::Earliest)` or `Latest`")]
    PositionOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The restored next offset to read.
        offset: i64,
        /// The log start offset (low watermark).
        low: i64,
        /// The log end offset (high watermark).
        high: i64,
        /// The bootstrap servers.
        brokers: String,
    },
    /// Subscribing to the topics failed.
    #[error("subscribing to {topics:?} on {brokers}: {error}")]
    Subscribe {
        /// The topics or pattern.
        topics: Vec<String>,
        /// The bootstrap servers.
        brokers: String,
        /// The client error.
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// The consumer reported a fatal error.
    #[error("consuming from {brokers}: {error}")]
    Consume {
        /// The bootstrap servers.
        brokers: String,
        /// The client error.
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// Committing offsets to the group failed.
    #[error("committing offsets {offsets}: {error}")]
    Commit {
        /// The offsets, as `topic/partition@next`.
        offsets: String,
        /// The client error.
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// A record could not be delivered after retries.
    #[error("delivering to {topic}/{partition:?} on {brokers}: {error}")]
    Delivery {
        /// Target topic.
        topic: String,
        /// Partition, when known.
        partition: Option<i32>,
        /// The bootstrap servers.
        brokers: String,
        /// The client error.
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// Flushing the producer did not finish in time.
    #[error("flushing the producer for {topic} on {brokers}: {error}")]
    Flush {
        /// Target topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
        /// The client error.
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// A transaction (init, begin, offsets, commit) failed.
    #[error(
        "transaction of checkpoint {checkpoint} writing {topic} on {brokers}: {error}{advice}"
    )]
    Transaction {
        /// The checkpoint whose output the transaction carries (0 for initialisation).
        checkpoint: u64,
        /// Target topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
        /// What the cause means and how to get past it, when known (else empty).
        advice: String,
        /// The client error.
        #[source]
        error: Box<rdkafka::error::KafkaError>,
    },
    /// The builder was given an invalid combination of settings.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn quoted(topics: &[String]) -> String {
    topics
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
