//! From Prometheus samples to the views: which series belong to which node of the graph,
//! which are lag, which are checkpoints.

use crate::prometheus::Sample;
use crate::views::{
    Bucket, CheckpointsView, Distribution, NodeMetrics, SplitLag, SplitWatermark, Totals,
};
use std::collections::BTreeMap;
use watershed_core::metric_catalogue::{
    BACKPRESSURE, CHECKPOINTS, CHECKPOINTS_CORRUPT as CORRUPT, CHECKPOINT_DURATION as DURATION,
    CHECKPOINT_LAST_COMPLETED as LAST_COMPLETED, EVENT_TIME_SKEW, OPERATOR_RECORDS_IN,
    OPERATOR_RECORDS_OUT, RECORDS_IN, RECORDS_OUT, RECORDS_REJECTED as REJECTED,
    SINK_PENDING_COMMITS, SPLIT_WATERMARK,
};
use watershed_core::{NodeKind, PipelineDescription};

// The connectors' lag gauges (their catalogues: `watershed_source_kafka::metric_catalogue` and
// `watershed_source_kinesis::metric_catalogue`; this crate does not depend on the connectors).
const KAFKA_LAG: &str = "watershed_kafka_consumer_lag";
const KINESIS_BEHIND: &str = "watershed_kinesis_millis_behind_latest";

/// Every node of `graph` (zeros until it reports) and every other `node` label, with the
/// series labelled with it summed under the node's name.
pub(crate) fn node_metrics(
    samples: &[Sample],
    graph: &PipelineDescription,
) -> BTreeMap<String, NodeMetrics> {
    let mut nodes: BTreeMap<String, NodeMetrics> = graph
        .nodes
        .iter()
        .map(|n| (n.name.clone(), NodeMetrics::default()))
        .collect();
    for sample in samples {
        let Some(instance) = sample.label("node") else {
            continue;
        };
        // Buckets and quantiles do not add up across instances; `_sum` and `_count` do.
        // Watermarks do not add up across splits (they are listed per split), and a value
        // that is not a number (a split no longer read) has no sum.
        if sample.name.ends_with("_bucket")
            || sample.labels.contains_key("quantile")
            || sample.name == SPLIT_WATERMARK
            || !sample.value.is_finite()
        {
            continue;
        }
        let name = graph
            .node_of_instance(instance)
            .map_or(instance, |n| n.name.as_str());
        let node = nodes.entry(name.to_string()).or_default();
        *node.series.entry(sample.name.clone()).or_default() += sample.value;
        match sample.name.as_str() {
            RECORDS_IN | OPERATOR_RECORDS_IN => node.records_in += sample.value,
            RECORDS_OUT | OPERATOR_RECORDS_OUT => node.records_out += sample.value,
            REJECTED => node.rejected += sample.value,
            BACKPRESSURE => node.backpressure_seconds += sample.value / 1e6,
            SINK_PENDING_COMMITS => node.pending_commits += sample.value,
            EVENT_TIME_SKEW => {
                node.event_time_skew_seconds = node.event_time_skew_seconds.max(sample.value)
            }
            _ => {}
        }
    }
    nodes
}

/// Sums over `nodes`; what the dead-letter sink wrote counts apart from the output, and what
/// operators receive and emit is neither input nor output.
pub(crate) fn totals(nodes: &BTreeMap<String, NodeMetrics>, graph: &PipelineDescription) -> Totals {
    let mut totals = Totals::default();
    for (name, node) in nodes {
        let kind = graph.node(name).map(|n| n.kind);
        if matches!(kind, Some(NodeKind::Operator | NodeKind::KeyedOperator)) {
            totals.rejected += node.rejected;
            continue;
        }
        let dead_letter = kind == Some(NodeKind::DeadLetter);
        totals.records_in += node.records_in;
        totals.rejected += node.rejected;
        if dead_letter {
            totals.dead_letters += node.records_out;
        } else {
            totals.records_out += node.records_out;
        }
    }
    totals
}

/// Kafka consumer lag per partition and Kinesis iterator age per shard, in split order.
pub(crate) fn split_lags(samples: &[Sample]) -> Vec<SplitLag> {
    let mut lags: Vec<SplitLag> = samples
        .iter()
        .filter_map(|s| {
            let (source, split, unit) = match s.name.as_str() {
                KAFKA_LAG => ("kafka", split_name(s, "topic", "partition"), "records"),
                KINESIS_BEHIND => ("kinesis", split_name(s, "stream", "shard"), "milliseconds"),
                _ => return None,
            };
            Some(SplitLag {
                source: source.to_string(),
                split,
                lag: s.value,
                unit: unit.to_string(),
                metric: s.name.clone(),
            })
        })
        .collect();
    lags.sort_by(|a, b| (&a.source, &a.split).cmp(&(&b.source, &b.split)));
    lags
}

/// Each split's watermark, under its source's graph name, in node and split order; splits a
/// source no longer reads (NaN) are left out.
pub(crate) fn split_watermarks(
    samples: &[Sample],
    graph: &PipelineDescription,
) -> Vec<SplitWatermark> {
    let mut out: Vec<SplitWatermark> = samples
        .iter()
        .filter(|s| s.name == SPLIT_WATERMARK && s.value.is_finite())
        .map(|s| {
            let instance = s.label("node").unwrap_or("?");
            let node = graph
                .node_of_instance(instance)
                .map_or(instance, |n| n.name.as_str());
            SplitWatermark {
                node: node.to_string(),
                split: s.label("split").unwrap_or("?").to_string(),
                watermark_unix_seconds: s.value,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.node, &a.split).cmp(&(&b.node, &b.split)));
    out
}

fn split_name(sample: &Sample, group: &str, member: &str) -> String {
    format!(
        "{}/{}",
        sample.label(group).unwrap_or("?"),
        sample.label(member).unwrap_or("?")
    )
}

/// The checkpoints of `pipeline`; `last_duration_seconds` is left for the history to fill.
pub(crate) fn checkpoints(samples: &[Sample], pipeline: &str, now_unix: f64) -> CheckpointsView {
    let ours = |s: &&Sample| s.label("pipeline") == Some(pipeline);
    let value_of = |name: &str| {
        samples
            .iter()
            .filter(ours)
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum::<f64>()
    };
    let last_completed = samples
        .iter()
        .filter(ours)
        .filter(|s| s.name == LAST_COMPLETED && s.value > 0.0)
        .map(|s| s.value)
        .reduce(f64::max);
    CheckpointsView {
        pipeline: pipeline.to_string(),
        completed: value_of(CHECKPOINTS),
        corrupt: value_of(CORRUPT),
        last_completed_unix_seconds: last_completed,
        age_seconds: last_completed.map(|t| (now_unix - t).max(0.0)),
        last_duration_seconds: None,
        duration_seconds: distribution(samples.iter().filter(ours), DURATION),
    }
}

/// The histogram or summary `name` among `samples`.
fn distribution<'a>(samples: impl Iterator<Item = &'a Sample>, name: &str) -> Distribution {
    let mut d = Distribution::default();
    for s in samples {
        let Some(suffix) = s.name.strip_prefix(name) else {
            continue;
        };
        match (suffix, s.label("quantile"), s.label("le")) {
            ("_count", ..) => d.count += s.value,
            ("_sum", ..) => d.sum += s.value,
            ("_bucket", _, Some(le)) => d.buckets.push(Bucket {
                le: le.to_string(),
                count: s.value,
            }),
            ("", Some(q), _) => {
                d.quantiles.insert(q.to_string(), s.value);
            }
            _ => {}
        }
    }
    d
}
