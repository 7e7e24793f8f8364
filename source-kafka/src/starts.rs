//! Where an assigned partition starts reading: the restored checkpoint's position, else the
//! group's committed offset, else the configured start position, always given to librdkafka
//! explicitly and checked against the partition's log (`out_of_range.rs`).

use crate::out_of_range::{in_range, watermarks};
use crate::rebalance::SourceContext;
use crate::source::StartPosition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as RdOffset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sets in `tpl` where each of `starts` (topic, partition, restored next offset) begins, and
/// raises or moves the restored offsets in `starts` as that decides.
///
/// A restored checkpoint position is raised to the group's committed offset when that is
/// further: another instance of the group owned the partition after this checkpoint was taken
/// (it was handed over, then this instance restarted) and committed what it processed. This
/// instance's own commits never pass its latest checkpoint, which is written before them.
///
/// A partition with neither starts at the start position, named explicitly: librdkafka's
/// `auto.offset.reset` is kept for positions found out of range (see `OutOfRange`).
pub(crate) fn resolve(
    consumer: &BaseConsumer<SourceContext>,
    start: StartPosition,
    starts: &mut [(String, i32, Option<i64>)],
    tpl: &mut TopicPartitionList,
) {
    let began = Instant::now();
    let parts: Vec<(String, i32)> = starts.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
    let committed = committed_offsets(consumer, &parts);
    let commit_of = |topic: &str, partition: i32| {
        committed.as_ref().and_then(|c| {
            match c.find_partition(topic, partition).map(|e| e.offset()) {
                Some(RdOffset::Offset(o)) => Some(o),
                _ => None,
            }
        })
    };
    let resumed: Vec<(String, i32)> = starts
        .iter()
        .filter(|(t, p, next)| next.is_some() || commit_of(t, *p).is_some())
        .map(|(t, p, _)| (t.clone(), *p))
        .collect();
    let ranges = if resumed.is_empty() {
        HashMap::new()
    } else {
        watermarks(consumer, &resumed, WATERMARKS_BUDGET)
    };
    for (topic, partition, next) in starts.iter_mut() {
        let commit = commit_of(topic, *partition);
        if let (Some(n), Some(c)) = (next.as_mut(), commit) {
            if c > *n {
                tracing::info!(topic = %topic, partition = *partition, checkpoint = *n, committed = c, "kafka: resuming after the group's later commit");
                *n = c;
            }
        }
        let range = ranges.get(&(topic.clone(), *partition)).copied();
        let offset = match (*next, commit) {
            (Some(n), _) => {
                let checked = in_range(consumer, topic, *partition, n, range);
                if let Some(c) = checked {
                    *next = Some(c);
                }
                RdOffset::Offset(checked.unwrap_or(n))
            }
            (None, Some(c)) => {
                RdOffset::Offset(in_range(consumer, topic, *partition, c, range).unwrap_or(c))
            }
            (None, None) if committed.is_none() => continue,
            (None, None) => match start {
                StartPosition::Latest => RdOffset::End,
                _ => RdOffset::Beginning,
            },
        };
        let _ = tpl.set_partition_offset(topic, *partition, offset);
    }
    tracing::debug!(partitions = starts.len(), took = ?began.elapsed(), "kafka: start positions resolved");
}

/// How long reading the group's committed offsets may take in all, over its attempts.
const COMMITTED_BUDGET: Duration = Duration::from_secs(10);
/// How long reading the log ranges of the resumed partitions may take in all.
const WATERMARKS_BUDGET: Duration = Duration::from_secs(5);

/// The group's committed offsets of `parts`, or `None` when the group coordinator did not
/// answer within [`COMMITTED_BUDGET`].
///
/// This runs inside the rebalance callback, which holds up the consumer (and a stop request)
/// while it waits: the wait is bounded whatever happens. A request lost while the coordinator
/// is still loading the group is asked again rather than waited out: attempts of 2 s, then
/// 4 s, then what is left.
fn committed_offsets(
    consumer: &BaseConsumer<SourceContext>,
    parts: &[(String, i32)],
) -> Option<TopicPartitionList> {
    let deadline = Instant::now() + COMMITTED_BUDGET;
    let mut attempt = Duration::from_secs(2);
    loop {
        let mut query = TopicPartitionList::new();
        for (topic, partition) in parts {
            query.add_partition(topic, *partition);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.committed_offsets(query, attempt.min(left)) {
            Ok(c) => return Some(c),
            Err(e) if left <= attempt => {
                tracing::warn!(error = %e, waited = ?COMMITTED_BUDGET, "kafka: reading committed offsets failed; resuming from the checkpoint, else from the group's offset as librdkafka finds it");
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "kafka: reading committed offsets failed; asking again");
                attempt *= 2;
            }
        }
    }
}

/// Seeks partitions started by time (`StartPosition::Timestamp`) to their first record at or
/// after it, unless the group has a committed offset for them: a committed offset wins.
pub(crate) fn seek_to_times(consumer: &BaseConsumer<SourceContext>, tpl: TopicPartitionList) {
    let parts: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    let committed = committed_offsets(consumer, &parts).unwrap_or_default();
    let mut by_time = TopicPartitionList::new();
    for e in tpl.elements() {
        let has_committed = committed
            .find_partition(e.topic(), e.partition())
            .is_some_and(|c| matches!(c.offset(), RdOffset::Offset(_)));
        if !has_committed {
            let _ = by_time.add_partition_offset(e.topic(), e.partition(), e.offset());
        }
    }
    if by_time.count() == 0 {
        return;
    }
    match consumer.offsets_for_times(by_time, Duration::from_secs(10)) {
        Ok(found) => {
            for e in found.elements() {
                let offset = match e.offset() {
                    RdOffset::Offset(o) => RdOffset::Offset(o),
                    _ => RdOffset::End,
                };
                if let Err(err) =
                    consumer.seek(e.topic(), e.partition(), offset, Duration::from_secs(10))
                {
                    tracing::warn!(topic = e.topic(), partition = e.partition(), error = %err, "kafka: seek by time failed");
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "kafka: offsets_for_times failed"),
    }
}
