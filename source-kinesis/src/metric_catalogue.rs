//! The Kinesis connector's metrics: names, types, units, labels and help text.
//!
//! The same form as core's catalogue ([`watershed_core::metric_catalogue`]): every metric this crate
//! emits is named by a constant here and described in [`CATALOGUE`], which exporters pass to
//! [`watershed_core::metric_catalogue::describe`].

use ::metrics::Unit;
use watershed_core::metric_catalogue::{MetricDef, MetricKind};

/// Gauge: iterator age (MillisBehindLatest), {stream, shard}.
pub const MILLIS_BEHIND_LATEST: &str = "watershed_kinesis_millis_behind_latest";

/// Counter: records the Kinesis source read, per shard, {stream, shard}.
pub const RECORDS_IN: &str = "watershed_kinesis_records_in_total";

/// Counter: records the Kinesis sink wrote, per shard, {stream, shard}.
pub const RECORDS_OUT: &str = "watershed_kinesis_records_out_total";

/// Histogram: getRecords latency, {stream}.
pub const GET_RECORDS_SECONDS: &str = "watershed_kinesis_get_records_seconds";

/// Counter: provisionedThroughputExceeded answers (retried with backoff), {stream, operation}.
pub const THROTTLED: &str = "watershed_throttled_total";

/// Counter: retried Kinesis calls, {stream, operation}.
pub const RETRIES: &str = "watershed_kinesis_retries_total";

/// Counter: restored positions outside the shard's retained range, {stream}.
pub const POSITIONS_OUT_OF_RANGE: &str = "watershed_kinesis_positions_out_of_range_total";

/// Gauge: write load over the last 10 s divided by the shard's limits, {stream, shard}.
pub const SHARD_WRITE_UTILISATION: &str = "watershed_kinesis_shard_write_utilisation";

/// Gauge: read load over the last 10 s divided by the shard's limits, {stream, shard}.
pub const SHARD_READ_UTILISATION: &str = "watershed_kinesis_shard_read_utilisation";

/// Gauge: 1 while a configured stream does not exist, {stream}.
pub const MISSING_STREAMS: &str = "watershed_kinesis_missing_streams";

/// Gauge: shard leases this worker holds, {table, worker}.
pub const LEASES_HELD: &str = "watershed_kinesis_leases_held";

/// Counter: shard leases taken, {table}.
pub const LEASES_TAKEN: &str = "watershed_kinesis_leases_taken_total";

/// Counter: expired shard leases taken over, {table}.
pub const LEASES_EXPIRED: &str = "watershed_kinesis_leases_expired_total";

/// Counter: shard leases stolen to balance workers, {table}.
pub const LEASES_STOLEN: &str = "watershed_kinesis_leases_stolen_total";

/// Counter: shard leases lost to another worker, {table}.
pub const LEASES_LOST: &str = "watershed_kinesis_leases_lost_total";

/// Counter: finished shard leases deleted once their children started, {table}.
pub const LEASES_DELETED: &str = "watershed_kinesis_leases_deleted_total";

/// Histogram: lease table calls, by operation, {table, operation}.
pub const LEASE_TABLE_SECONDS: &str = "watershed_kinesis_lease_table_seconds";

/// Every metric of this crate.
pub const CATALOGUE: &[MetricDef] = &[
    MetricDef {
        name: MILLIS_BEHIND_LATEST,
        kind: MetricKind::Gauge,
        unit: Unit::Milliseconds,
        labels: &["stream", "shard"],
        help: "Iterator age (MillisBehindLatest).",
    },
    MetricDef {
        name: RECORDS_IN,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["stream", "shard"],
        help: "Records the Kinesis source read, per shard.",
    },
    MetricDef {
        name: RECORDS_OUT,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["stream", "shard"],
        help: "Records the Kinesis sink wrote, per shard.",
    },
    MetricDef {
        name: GET_RECORDS_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &["stream"],
        help: "GetRecords latency.",
    },
    MetricDef {
        name: THROTTLED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["stream", "operation"],
        help: "ProvisionedThroughputExceeded answers (retried with backoff).",
    },
    MetricDef {
        name: RETRIES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["stream", "operation"],
        help: "Retried Kinesis calls.",
    },
    MetricDef {
        name: POSITIONS_OUT_OF_RANGE,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["stream"],
        help: "Restored positions outside the shard's retained range.",
    },
    MetricDef {
        name: SHARD_WRITE_UTILISATION,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &["stream", "shard"],
        help: "Write load over the last 10 s divided by the shard's limits.",
    },
    MetricDef {
        name: SHARD_READ_UTILISATION,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &["stream", "shard"],
        help: "Read load over the last 10 s divided by the shard's limits.",
    },
    MetricDef {
        name: MISSING_STREAMS,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &["stream"],
        help: "1 while a configured stream does not exist.",
    },
    MetricDef {
        name: LEASES_HELD,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &["table", "worker"],
        help: "Shard leases this worker holds.",
    },
    MetricDef {
        name: LEASES_TAKEN,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["table"],
        help: "Shard leases taken.",
    },
    MetricDef {
        name: LEASES_EXPIRED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["table"],
        help: "Expired shard leases taken over.",
    },
    MetricDef {
        name: LEASES_STOLEN,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["table"],
        help: "Shard leases stolen to balance workers.",
    },
    MetricDef {
        name: LEASES_LOST,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["table"],
        help: "Shard leases lost to another worker.",
    },
    MetricDef {
        name: LEASES_DELETED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["table"],
        help: "Finished shard leases deleted once their children started.",
    },
    MetricDef {
        name: LEASE_TABLE_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &["table", "operation"],
        help: "Lease table calls, by operation.",
    },
];
