//! Positions outside a partition's log.
//!
//! A position the source resumes from (its restored checkpoint, or the group's committed
//! offset) can point past the log's end (the topic was deleted and recreated, or truncated) or
//! before its start (retention deleted the records). librdkafka's answer is
//! `auto.offset.reset`: silently start again from the earliest or latest offset, which for a
//! recreated topic re-reads and re-emits everything. So the source compares each resumed
//! position with the partition's watermarks when the partition is assigned, and by default
//! fails, naming topic, partition, offset and log range.

use crate::error::KafkaError;
use crate::rebalance::SourceContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as RdOffset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a [`KafkaSource`](crate::KafkaSource) does when a position it resumes from (restored
/// checkpoint or group commit) is outside the partition's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutOfRange {
    /// Fail the source with an error naming topic, partition, the offset and the log's start
    /// and end (the default): nothing is read twice or skipped without a decision.
    #[default]
    Fail,
    /// Read the partition from its log start, with a warning, counted in
    /// `watershed_kafka_positions_out_of_range_total{action="earliest"}`.
    Earliest,
    /// Read only what arrives from now on, with a warning, counted likewise.
    Latest,
}

impl OutOfRange {
    /// librdkafka's `auto.offset.reset` for this policy. Every partition is given an explicit
    /// start when assigned (see `starts.rs`), so librdkafka resets only a position found out of
    /// range by a fetch, after the check here: with `Fail` it then reports an error instead of
    /// moving the position silently.
    pub(crate) fn auto_offset_reset(self) -> &'static str {
        match self {
            OutOfRange::Earliest => "earliest",
            OutOfRange::Latest => "latest",
            _ => "error",
        }
    }

    fn label(self) -> &'static str {
        match self {
            OutOfRange::Earliest => "earliest",
            OutOfRange::Latest => "latest",
            _ => "fail",
        }
    }
}

/// The log range (start, end) of each partition of `parts`, in two batched requests (the
/// earliest and the latest offsets) whatever the number of partitions, within `timeout`.
/// Partitions the brokers did not answer for are missing from the result.
pub(crate) fn watermarks(
    consumer: &BaseConsumer<SourceContext>,
    parts: &[(String, i32)],
    timeout: Duration,
) -> HashMap<(String, i32), (i64, i64)> {
    let deadline = Instant::now() + timeout;
    // ListOffsets takes timestamps; -2 and -1 (librdkafka's Beginning and End) ask for the
    // earliest and the latest offset, as librdkafka's own watermark query does.
    let ask = |at: RdOffset| {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in parts {
            let _ = tpl.add_partition_offset(topic, *partition, at);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        consumer.offsets_for_times(tpl, left)
    };
    let found = ask(RdOffset::Beginning).and_then(|low| ask(RdOffset::End).map(|high| (low, high)));
    let (low, high) = match found {
        Ok(both) => both,
        Err(e) => {
            tracing::warn!(error = %e, partitions = parts.len(), "kafka: reading the partitions' log ranges failed; resuming at the positions unchecked");
            return HashMap::new();
        }
    };
    let offset = |tpl: &TopicPartitionList, topic: &str, partition: i32| {
        tpl.find_partition(topic, partition)
            .filter(|e| e.error().is_ok())
            .and_then(|e| match e.offset() {
                RdOffset::Offset(o) => Some(o),
                _ => None,
            })
    };
    parts
        .iter()
        .filter_map(|(topic, partition)| {
            let range = (
                offset(&low, topic, *partition)?,
                offset(&high, topic, *partition)?,
            );
            Some(((topic.clone(), *partition), range))
        })
        .collect()
}

/// `next` (the offset to read next on `topic`/`partition`) if it lies within the log (`range`,
/// from [`watermarks`]), else what the policy makes of it: another offset, or `None` after
/// recording the failure in the context (the source's next poll returns it). An unknown range
/// keeps `next`: `auto.offset.reset=error` still stops a silent reset.
pub(crate) fn in_range(
    consumer: &BaseConsumer<SourceContext>,
    topic: &str,
    partition: i32,
    next: i64,
    range: Option<(i64, i64)>,
) -> Option<i64> {
    let context = consumer.context();
    let Some((low, high)) = range else {
        tracing::warn!(
            topic,
            partition,
            "kafka: the partition's log range is unknown; resuming at the position unchecked"
        );
        return Some(next);
    };
    if (low..=high).contains(&next) {
        return Some(next);
    }
    let policy = context.out_of_range;
    metrics::counter!(
        crate::metric_catalogue::POSITIONS_OUT_OF_RANGE,
        "topic" => topic.to_string(),
        "action" => policy.label()
    )
    .increment(1);
    let error = KafkaError::PositionOutOfRange {
        topic: topic.to_string(),
        partition,
        offset: next,
        low,
        high,
        brokers: context.brokers.clone(),
    };
    let to = match policy {
        OutOfRange::Earliest => low,
        OutOfRange::Latest => high,
        _ => {
            context.fail(error);
            return None;
        }
    };
    tracing::warn!(topic, partition, offset = next, log_start = low, log_end = high, resume_at = to, "kafka: position outside the log; resuming at the {} offset as configured (on_position_out_of_range)", policy.label());
    Some(to)
}
