//! The S3 sink's metrics: names, types, units, labels and help text.
//!
//! The same form as core's catalogue ([`watershed_core::metric_catalogue`]): every metric this crate
//! emits is named by a constant here and described in [`CATALOGUE`], which exporters pass to
//! [`watershed_core::metric_catalogue::describe`].

use ::metrics::Unit;
use watershed_core::metric_catalogue::{MetricDef, MetricKind};

/// Counter: objects made visible, {node}.
pub const OBJECTS_COMMITTED: &str = "watershed_s3_objects_committed_total";

/// Counter: bytes uploaded, {node}.
pub const BYTES_UPLOADED: &str = "watershed_s3_bytes_uploaded_total";

/// Histogram: multipart part upload latency, {node}.
pub const PART_UPLOAD_SECONDS: &str = "watershed_s3_part_upload_seconds";

/// Gauge: bytes waiting for the next checkpoint, {node}.
pub const BUFFERED_BYTES: &str = "watershed_s3_buffered_bytes";

/// Gauge: age of the oldest record waiting for the next checkpoint, {node}.
pub const OLDEST_BUFFERED_RECORD_AGE: &str = "watershed_s3_oldest_buffered_record_age_seconds";

/// Every metric of this crate.
pub const CATALOGUE: &[MetricDef] = &[
    MetricDef {
        name: OBJECTS_COMMITTED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["node"],
        help: "Objects made visible.",
    },
    MetricDef {
        name: BYTES_UPLOADED,
        kind: MetricKind::Counter,
        unit: Unit::Bytes,
        labels: &["node"],
        help: "Bytes uploaded.",
    },
    MetricDef {
        name: PART_UPLOAD_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &["node"],
        help: "Multipart part upload latency.",
    },
    MetricDef {
        name: BUFFERED_BYTES,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        labels: &["node"],
        help: "Bytes waiting for the next checkpoint.",
    },
    MetricDef {
        name: OLDEST_BUFFERED_RECORD_AGE,
        kind: MetricKind::Gauge,
        unit: Unit::Seconds,
        labels: &["node"],
        help: "Age of the oldest record waiting for the next checkpoint.",
    },
];
