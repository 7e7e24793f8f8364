//! The JSON the status page reads: what `/api/metrics` and `/api/checkpoints` answer.
//! docs/status.md documents the same shapes for other clients.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `/api/metrics`: per-node counters and rates, per-split lag and totals, from one rendering
/// of the Prometheus metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricsView {
    /// The pipeline the graph describes.
    pub pipeline: String,
    /// When the metrics were read (Unix seconds).
    pub unix_seconds: f64,
    /// Every node of the graph (with zeros until it reports), and any other `node` label the
    /// metrics carry, by node name. A keyed operator's instances are summed under its name.
    pub nodes: BTreeMap<String, NodeMetrics>,
    /// Lag of every split the sources read.
    pub splits: Vec<SplitLag>,
    /// Watermark of every split the sources read (`watershed_split_watermark_seconds`).
    #[serde(default)]
    pub watermarks: Vec<SplitWatermark>,
    /// Sums over every node.
    pub totals: Totals,
    /// The latest rejected records (node, reason, origin), oldest first; empty unless the page
    /// was given [`with_rejections`](crate::StatusPage::with_rejections).
    #[serde(default)]
    pub latest_rejections: Vec<watershed_core::Rejection>,
}

/// The counters of one node, summed over its instances.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeMetrics {
    /// Records read by a source (`watershed_records_in_total`) or received by an operator
    /// (`watershed_operator_records_in_total`).
    pub records_in: f64,
    /// Records written by a sink (`watershed_records_out_total`) or emitted by an operator
    /// (`watershed_operator_records_out_total`).
    pub records_out: f64,
    /// Records sent to the error path (`watershed_records_rejected_total`).
    pub rejected: f64,
    /// `records_in` per second over the last few seconds; `null` until the server has an
    /// earlier reading to compare with.
    pub records_in_per_second: Option<f64>,
    /// `records_out` per second, likewise.
    pub records_out_per_second: Option<f64>,
    /// `rejected` per second, likewise.
    pub rejected_per_second: Option<f64>,
    /// Seconds the node waited on a full channel to the next task, summed over its instances
    /// (`watershed_backpressure_microseconds_total`): back-pressure from downstream.
    pub backpressure_seconds: f64,
    /// `backpressure_seconds` per second over the last few seconds: the share of the time the
    /// node was held back (per instance summed, so up to its parallelism); `null` until the
    /// server has an earlier reading.
    pub backpressure_per_second: Option<f64>,
    /// Pre-committed epochs a sink holds until their checkpoints complete
    /// (`watershed_sink_pending_commits`).
    pub pending_commits: f64,
    /// Event time between a source's most and least advanced active split, in seconds
    /// (`watershed_event_time_skew_seconds`; the largest over the node's instances).
    pub event_time_skew_seconds: f64,
    /// Every series labelled with this node, by metric name, summed over its other labels
    /// (histograms and summaries as `_sum` and `_count`).
    pub series: BTreeMap<String, f64>,
}

/// How far a source is behind on one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SplitLag {
    /// `kafka` or `kinesis`.
    pub source: String,
    /// `topic/partition` or `stream/shard`.
    pub split: String,
    /// The gauge's value.
    pub lag: f64,
    /// `records` (Kafka: high watermark − position) or `milliseconds` (Kinesis:
    /// MillisBehindLatest).
    pub unit: String,
    /// The metric it comes from.
    pub metric: String,
}

/// Event time on one split of a source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SplitWatermark {
    /// The source node (graph name).
    pub node: String,
    /// The split, as the source names it.
    pub split: String,
    /// The split's watermark, Unix seconds.
    pub watermark_unix_seconds: f64,
}

/// Sums over every node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Records read by every source (operators' `records_in` are not input).
    pub records_in: f64,
    /// Records written by every sink but the dead-letter sink.
    pub records_out: f64,
    /// Records rejected anywhere.
    pub rejected: f64,
    /// Records the dead-letter sink wrote.
    pub dead_letters: f64,
}

/// `/api/checkpoints`: the pipeline's checkpoints, from the metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckpointsView {
    /// The pipeline (the `pipeline` label of the checkpoint metrics).
    pub pipeline: String,
    /// Checkpoints completed since the process started (`watershed_checkpoints_total`).
    pub completed: f64,
    /// Corrupt checkpoints found at start (`watershed_checkpoints_corrupt_total`).
    pub corrupt: f64,
    /// When the last one completed (`watershed_checkpoint_last_completed_seconds`); `null`
    /// before the first.
    pub last_completed_unix_seconds: Option<f64>,
    /// Seconds since then; `null` before the first.
    pub age_seconds: Option<f64>,
    /// Duration of the checkpoints completed since the server's previous reading (the last
    /// one's when checkpoints are slower than readings); `null` before the first.
    pub last_duration_seconds: Option<f64>,
    /// `watershed_checkpoint_duration_seconds`, trigger to manifest written.
    pub duration_seconds: Distribution,
}

/// A histogram or summary as the exporter rendered it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Distribution {
    /// Observations.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// Quantile → value, when rendered as a summary (the exporter's default).
    pub quantiles: BTreeMap<String, f64>,
    /// Cumulative buckets, when rendered as a histogram (buckets configured).
    pub buckets: Vec<Bucket>,
}

/// One cumulative histogram bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bucket {
    /// Upper bound, as rendered (`"+Inf"` for the last: JSON has no infinity).
    pub le: String,
    /// Observations at or below it.
    pub count: f64,
}
