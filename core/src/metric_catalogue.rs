//! The metrics catalogue: every metric core and `watershed-operators` emit, in one place —
//! its name, type, unit, labels and help text — plus the histogram bucket bounds exporters
//! should use.
//!
//! Code emits metrics only through the name constants here (`metrics::counter!(RECORDS_IN,
//! LABEL_NODE => ...)`), never through string literals, and a test runs a pipeline through a
//! recording recorder to check that everything emitted is in [`CATALOGUE`] with the declared
//! type and labels. Connector crates keep their own catalogues in the same form
//! (`watershed_source_kafka::metric_catalogue::CATALOGUE`, and likewise for Kinesis and S3).
//!
//! Exporters call [`describe_all`] once, after installing their recorder, so that the help
//! text and units appear in their output (Prometheus `# HELP` lines).
//!
//! Labels are uniform: every per-operator metric carries [`LABEL_NODE`] (the node name the
//! runtime gives the instance, `window-1.0`, as in [`OperatorContext::node`]); per-pipeline
//! metrics carry [`LABEL_PIPELINE`].
//!
//! [`OperatorContext::node`]: crate::operator::OperatorContext::node

use ::metrics::Unit;

/// What kind of instrument a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic counter.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// One metric of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// The metric's name, as exporters show it.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit of its values.
    pub unit: Unit,
    /// The label keys every series of the metric carries, in no particular order.
    pub labels: &'static [&'static str],
    /// What it measures, for `# HELP`.
    pub help: &'static str,
}

/// Label: the node (operator instance, source or sink) a series belongs to.
pub const LABEL_NODE: &str = "node";
/// Label: the pipeline id a series belongs to.
pub const LABEL_PIPELINE: &str = "pipeline";
/// Label: what happened to a late record, [`ACTION_DROPPED`] or [`ACTION_SIDE_OUTPUT`].
pub const LABEL_ACTION: &str = "action";
/// Label: the reference table (its object path) a series belongs to.
pub const LABEL_TABLE: &str = "table";
/// Label: a source's split (partition, shard, file).
pub const LABEL_SPLIT: &str = "split";

/// [`LABEL_ACTION`] value: the late record was dropped (counted only).
pub const ACTION_DROPPED: &str = "dropped";
/// [`LABEL_ACTION`] value: the late record was emitted on the late side output.
pub const ACTION_SIDE_OUTPUT: &str = "side_output";

/// The [`LABEL_NODE`] value of an operator used outside a pipeline (never given an
/// [`OperatorContext`](crate::operator::OperatorContext)).
pub const UNNAMED_NODE: &str = "unnamed";

/// Counter: records a source read, `{node}`.
pub const RECORDS_IN: &str = "watershed_records_in_total";
/// Counter: records a source refused for a timestamp too far in the future, `{node}`.
pub const RECORDS_FUTURE: &str = "watershed_records_future_total";
/// Counter: records a node rejected (to the error policy), `{node}`.
pub const RECORDS_REJECTED: &str = "watershed_records_rejected_total";
/// Counter: records a sink wrote, `{node}`.
pub const RECORDS_OUT: &str = "watershed_records_out_total";
/// Counter: records an operator received, `{node}`. Apart from [`RECORDS_IN`], which counts
/// the pipeline's input (error rates divide by it).
pub const OPERATOR_RECORDS_IN: &str = "watershed_operator_records_in_total";
/// Counter: records an operator emitted, `{node}`.
pub const OPERATOR_RECORDS_OUT: &str = "watershed_operator_records_out_total";
/// Counter: microseconds a node waited to hand a batch to the next task because its channel
/// was full (back-pressure from downstream), `{node}`.
pub const BACKPRESSURE: &str = "watershed_backpressure_microseconds_total";
/// Gauge: pre-committed epochs a sink holds until their checkpoints complete, `{node}`.
pub const SINK_PENDING_COMMITS: &str = "watershed_sink_pending_commits";
/// Gauge: seconds of event time between a source's most and least advanced active split,
/// `{node}`.
pub const EVENT_TIME_SKEW: &str = "watershed_event_time_skew_seconds";
/// Gauge: a split's watermark (Unix seconds; NaN once the source no longer reads it),
/// `{node, split}`.
pub const SPLIT_WATERMARK: &str = "watershed_split_watermark_seconds";
/// Histogram: seconds from a record's event time to its write by a sink, `{node}`.
pub const END_TO_END_LATENCY: &str = "watershed_end_to_end_latency_seconds";
/// Histogram: seconds from a checkpoint's trigger to its manifest being written, `{pipeline}`.
pub const CHECKPOINT_DURATION: &str = "watershed_checkpoint_duration_seconds";
/// Counter: checkpoints completed, `{pipeline}`.
pub const CHECKPOINTS: &str = "watershed_checkpoints_total";
/// Gauge: Unix time (seconds) the last checkpoint completed, `{pipeline}`.
pub const CHECKPOINT_LAST_COMPLETED: &str = "watershed_checkpoint_last_completed_seconds";
/// Counter: corrupt checkpoints found on restore, `{pipeline}`.
pub const CHECKPOINTS_CORRUPT: &str = "watershed_checkpoints_corrupt_total";

/// Counter: records too late for all of their windows or join partners, `{node, action}`.
pub const LATE_RECORDS: &str = "watershed_late_records_total";
/// Counter: on-time records that fell in a gap between sliding windows, `{node}`.
pub const WINDOW_SKIPPED_RECORDS: &str = "watershed_window_skipped_records_total";
/// Counter: records dedupe dropped as duplicates, `{node}`.
pub const DEDUPE_DROPPED: &str = "watershed_dedupe_dropped_total";
/// Counter: reference table reloads, `{table}`.
pub const REFERENCE_RELOADS: &str = "watershed_reference_reloads_total";
/// Gauge: rows of the loaded reference table version, `{table}`.
pub const REFERENCE_ROWS: &str = "watershed_reference_rows";
/// Counter: failed reference table refreshes, `{table}`.
pub const REFERENCE_REFRESH_ERRORS: &str = "watershed_reference_refresh_errors_total";
/// Counter: records whose key the reference table did not hold, `{node, table}`.
pub const REFERENCE_MISSING_KEYS: &str = "watershed_reference_missing_keys_total";

/// Bounds (seconds) of [`END_TO_END_LATENCY`]: fine below a second, and the ADR's lag
/// thresholds, 30 s (warning) and 60 s (page), as bounds of their own so
/// `histogram_quantile` answers "above 30 s / 60 s?" exactly instead of interpolating.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0,
];

/// Bounds (seconds) of [`CHECKPOINT_DURATION`]: a checkpoint every second takes tens of
/// milliseconds; one of 30 s or 60 s holds back every sink's output as long as the lag
/// thresholds allow, so those are bounds too.
pub const CHECKPOINT_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Histograms with bucket bounds of their own: `(metric, bounds)`, for exporters that need
/// buckets set per metric (Prometheus).
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (END_TO_END_LATENCY, &LATENCY_BUCKETS),
    (CHECKPOINT_DURATION, &CHECKPOINT_BUCKETS),
];

const fn def(
    name: &'static str,
    kind: MetricKind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric of core and `watershed-operators`.
pub const CATALOGUE: &[MetricDef] = &[
    def(
        RECORDS_IN,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "Records a source read.",
    ),
    def(
        OPERATOR_RECORDS_IN,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "Records an operator received.",
    ),
    def(
        OPERATOR_RECORDS_OUT,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "Records an operator emitted.",
    ),
    def(
        RECORDS_FUTURE,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "Records a source refused for a timestamp too far in the future.",
    ),
    def(
        RECORDS_REJECTED,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "Records a node rejected to the pipeline's error policy.",
    ),
    def(
        RECORDS_OUT,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "Records a sink wrote.",
    ),
    def(
        BACKPRESSURE,
        Counter,
        Unit::Microseconds,
        &[LABEL_NODE],
        "Microseconds the node waited on a full channel to the next task (back-pressure).",
    ),
    def(
        SINK_PENDING_COMMITS,
        Gauge,
        Unit::Count,
        &[LABEL_NODE],
        "Pre-committed epochs the sink holds until their checkpoints complete.",
    ),
    def(
        SPLIT_WATERMARK,
        Gauge,
        Unit::Seconds,
        &[LABEL_NODE, LABEL_SPLIT],
        "A split's watermark as Unix time; NaN once this source no longer reads the split.",
    ),
    def(
        EVENT_TIME_SKEW,
        Gauge,
        Unit::Seconds,
        &[LABEL_NODE],
        "Event time between the source's most and least advanced active split.",
    ),
    def(
        END_TO_END_LATENCY,
        Histogram,
        Unit::Seconds,
        &[LABEL_NODE],
        "Seconds from a record's event time to its write by a sink.",
    ),
    def(
        CHECKPOINT_DURATION,
        Histogram,
        Unit::Seconds,
        &[LABEL_PIPELINE],
        "Seconds from a checkpoint's trigger to its manifest being written.",
    ),
    def(
        CHECKPOINTS,
        Counter,
        Unit::Count,
        &[LABEL_PIPELINE],
        "Checkpoints completed.",
    ),
    def(
        CHECKPOINT_LAST_COMPLETED,
        Gauge,
        Unit::Seconds,
        &[LABEL_PIPELINE],
        "Unix time in seconds at which the last checkpoint completed.",
    ),
    def(
        CHECKPOINTS_CORRUPT,
        Counter,
        Unit::Count,
        &[LABEL_PIPELINE],
        "Corrupt checkpoints found on restore.",
    ),
    def(
        LATE_RECORDS,
        Counter,
        Unit::Count,
        &[LABEL_NODE, LABEL_ACTION],
        "Records too late for all of their windows or join partners, by what was done with them (dropped, side_output).",
    ),
    def(
        WINDOW_SKIPPED_RECORDS,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "On-time records that fell in a gap between sliding windows.",
    ),
    def(
        DEDUPE_DROPPED,
        Counter,
        Unit::Count,
        &[LABEL_NODE],
        "Records dedupe dropped as duplicates.",
    ),
    def(
        REFERENCE_RELOADS,
        Counter,
        Unit::Count,
        &[LABEL_TABLE],
        "Reference table reloads.",
    ),
    def(
        REFERENCE_ROWS,
        Gauge,
        Unit::Count,
        &[LABEL_TABLE],
        "Rows of the loaded reference table version.",
    ),
    def(
        REFERENCE_REFRESH_ERRORS,
        Counter,
        Unit::Count,
        &[LABEL_TABLE],
        "Failed reference table refreshes (the loaded version is kept).",
    ),
    def(
        REFERENCE_MISSING_KEYS,
        Counter,
        Unit::Count,
        &[LABEL_NODE, LABEL_TABLE],
        "Records whose key the reference table did not hold.",
    ),
];

/// The catalogue entry of `name`, if any.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|d| d.name == name)
}

/// Registers the description and unit of every metric of `defs` with the installed recorder.
pub fn describe(defs: &[MetricDef]) {
    for d in defs {
        match d.kind {
            MetricKind::Counter => ::metrics::describe_counter!(d.name, d.unit, d.help),
            MetricKind::Gauge => ::metrics::describe_gauge!(d.name, d.unit, d.help),
            MetricKind::Histogram => ::metrics::describe_histogram!(d.name, d.unit, d.help),
        }
    }
}

/// Registers the description and unit of every metric of [`CATALOGUE`] with the installed
/// recorder; exporters call it once, after installing the recorder.
pub fn describe_all() {
    describe(CATALOGUE);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: catalogue names are unique, and the ADR's lag thresholds (30 s, 60 s) are bucket
    /// bounds of both bucketed histograms, which are histograms of the catalogue.
    #[test]
    fn names_are_unique_and_thresholds_are_bucket_bounds() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for (name, bounds) in HISTOGRAM_BUCKETS {
            assert_eq!(find(name).map(|d| d.kind), Some(MetricKind::Histogram));
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{name}");
            for t in [30.0, 60.0] {
                assert!(bounds.contains(&t), "{name} lacks {t}");
            }
        }
    }
}
