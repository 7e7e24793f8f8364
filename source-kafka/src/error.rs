//! The crate's error type.

/// What can go wrong talking to Kafka, with the topic/partition/offset concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The client could not be created (bad configuration).
    #[error("kafka client configuration: {0}")]
    Config(#[source] rdkafka::error::KafkaError),
    /// Subscribing to the topics failed.
    #[error("subscribing to {topics:?}: {error}")]
    Subscribe {
        /// The topics or pattern.
        topics: Vec<String>,
        /// The client error.
        #[source]
        error: rdkafka::error::KafkaError,
    },
    /// The consumer reported a fatal error.
    #[error("consuming: {0}")]
    Consume(#[source] rdkafka::error::KafkaError),
    /// Committing offsets to the group failed.
    #[error("committing offsets {offsets}: {error}")]
    Commit {
        /// The offsets, as `topic/partition@next`.
        offsets: String,
        /// The client error.
        #[source]
        error: rdkafka::error::KafkaError,
    },
    /// A record could not be delivered after retries.
    #[error("delivering to {topic}/{partition:?}: {error}")]
    Delivery {
        /// Target topic.
        topic: String,
        /// Partition, when known.
        partition: Option<i32>,
        /// The client error.
        #[source]
        error: rdkafka::error::KafkaError,
    },
    /// Flushing the producer did not finish in time.
    #[error("flushing the producer: {0}")]
    Flush(#[source] rdkafka::error::KafkaError),
    /// A transaction (init, begin, offsets, commit) failed.
    #[error("transaction of checkpoint {checkpoint}: {error}")]
    Transaction {
        /// The checkpoint whose output the transaction carries (0 for initialisation).
        checkpoint: u64,
        /// The client error.
        #[source]
        error: rdkafka::error::KafkaError,
    },
    /// The builder was given an invalid combination of settings.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}
