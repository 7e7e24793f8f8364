//! The Kafka connector's metrics: names, types, units, labels and help text.
//!
//! The same form as core's catalogue ([`watershed_core::metric_catalogue`]): every metric this crate
//! emits is named by a constant here and described in [`CATALOGUE`], which exporters pass to
//! [`watershed_core::metric_catalogue::describe`].

use ::metrics::Unit;
use watershed_core::metric_catalogue::{MetricDef, MetricKind};

/// Counter: records the Kafka source read, per partition, {topic, partition}.
pub const PARTITION_RECORDS_IN: &str = "watershed_kafka_partition_records_in_total";

/// Counter: bytes (keys and values) the Kafka source read, per partition, {topic, partition}.
pub const PARTITION_BYTES_IN: &str = "watershed_kafka_partition_bytes_in_total";

/// Gauge: high watermark minus position (librdkafka statistics), {topic, partition}.
pub const CONSUMER_LAG: &str = "watershed_kafka_consumer_lag";

/// Counter: consumer-group rebalances.
pub const REBALANCES: &str = "watershed_kafka_rebalances_total";

/// Counter: times the source paused its partitions to stay in its group while the pipeline stalled.
pub const BACKPRESSURE_PAUSES: &str = "watershed_kafka_backpressure_pauses_total";

/// Counter: revoked partitions released, by outcome, {outcome}.
pub const HAND_OVERS: &str = "watershed_kafka_hand_overs_total";

/// Histogram: offset commits, transaction commits and sink flushes, by kind, {kind}.
pub const COMMIT_SECONDS: &str = "watershed_kafka_commit_seconds";

/// Counter: failed offset commits.
pub const COMMIT_ERRORS: &str = "watershed_kafka_commit_errors_total";

/// Counter: delivery failures.
pub const PRODUCER_ERRORS: &str = "watershed_kafka_producer_errors_total";

/// Counter: times the producer queue was full (producer back-pressure).
pub const QUEUE_FULL: &str = "watershed_kafka_queue_full_total";

/// Counter: exactly-once epochs committed.
pub const TRANSACTIONS: &str = "watershed_kafka_transactions_total";

/// Counter: exactly-once epochs that failed.
pub const TRANSACTION_ERRORS: &str = "watershed_kafka_transaction_errors_total";

/// Histogram: one exactly-once epoch, begin to commit.
pub const TRANSACTION_SECONDS: &str = "watershed_kafka_transaction_seconds";

/// Gauge: subscribed topics the cluster does not have.
pub const MISSING_TOPICS: &str = "watershed_kafka_missing_topics";

/// Counter: records the sink refused before producing them, by reason, {topic, reason}.
pub const RECORDS_REFUSED: &str = "watershed_kafka_records_refused_total";

/// Counter: restored positions outside the partition's retained range, by action taken, {topic, action}.
pub const POSITIONS_OUT_OF_RANGE: &str = "watershed_kafka_positions_out_of_range_total";

/// Every metric of this crate.
pub const CATALOGUE: &[MetricDef] = &[

    MetricDef {
        name: PARTITION_RECORDS_IN,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["topic", "partition"],
        help: "Records the Kafka source read, per partition.",
    },
    MetricDef {
        name: PARTITION_BYTES_IN,
        kind: MetricKind::Counter,
        unit: Unit::Bytes,
        labels: &["topic", "partition"],
        help: "Bytes (keys and values) the Kafka source read, per partition.",
    },

    MetricDef {
        name: CONSUMER_LAG,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &["topic", "partition"],
        help: "High watermark minus position (librdkafka statistics).",
    },

    MetricDef {
        name: REBALANCES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Consumer-group rebalances.",
    },

    MetricDef {
        name: BACKPRESSURE_PAUSES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Times the source paused its partitions to stay in its group while the pipeline stalled.",
    },

    MetricDef {
        name: HAND_OVERS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Revoked partitions released, by outcome.",
    },

    MetricDef {
        name: COMMIT_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &["kind"],
        help: "Offset commits, transaction commits and sink flushes, by kind.",
    },

    MetricDef {
        name: COMMIT_ERRORS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Failed offset commits.",
    },

    MetricDef {
        name: PRODUCER_ERRORS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Delivery failures.",
    },

    MetricDef {
        name: QUEUE_FULL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Times the producer queue was full (producer back-pressure).",
    },

    MetricDef {
        name: TRANSACTIONS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Exactly-once epochs committed.",
    },

    MetricDef {
        name: TRANSACTION_ERRORS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Exactly-once epochs that failed.",
    },

    MetricDef {
        name: TRANSACTION_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &[],
        help: "One exactly-once epoch, begin to commit.",
    },

    MetricDef {
        name: MISSING_TOPICS,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Subscribed topics the cluster does not have.",
    },

    MetricDef {
        name: RECORDS_REFUSED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["topic", "reason"],
        help: "Records the sink refused before producing them, by reason.",
    },

    MetricDef {
        name: POSITIONS_OUT_OF_RANGE,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["topic", "action"],
        help: "Restored positions outside the partition's retained range, by action taken.",
    },

];
