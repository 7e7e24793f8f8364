//! Delivering a batch's outputs and dead letters in input order, and answering a failure with
//! the first record not delivered.
//!
//! Outputs and dead letters go to two targets. Both are delivered in the order of the input
//! records they came from, in segments that alternate between the targets where the input
//! alternates: a failure in either stops everything after the failing record, so a retry from
//! it delivers nothing twice. (Delivering all dead letters first, then the outputs, would
//! deliver again on the retry the dead letters after a failing output.)

use crate::event::InputBatch;
use crate::handler::{BatchItemFailure, BatchResponse};
use crate::target::{DeliveryFailure, Target};
use std::collections::HashMap;
use watershed_core::{DeadLetter, Offset, Record};

/// One thing to deliver, with the input record it belongs to (`None`: the whole batch).
enum Item<T> {
    Output(Record<T>),
    DeadLetter(Record<DeadLetter>),
}

/// Delivers everything; returns the index of the input record to retry from and the error, if
/// any failed.
pub(crate) async fn deliver<T: Send>(
    batch: &InputBatch,
    outputs: Vec<Record<T>>,
    dead_letters: Vec<DeadLetter>,
    output_target: &mut dyn Target<T>,
    dead_letter_target: &mut dyn Target<DeadLetter>,
) -> Option<(usize, String)> {
    let index = Attribution::new(batch);
    let mut items: Vec<(Option<usize>, Item<T>)> = outputs
        .into_iter()
        .map(|r| (index.of(&r), Item::Output(r)))
        .chain(dead_letters.into_iter().map(|d| {
            let r = as_record(d);
            (index.of(&r), Item::DeadLetter(r))
        }))
        .collect();
    // An aggregate over several records has no origin and is only right over the whole batch.
    let whole_batch = items.iter().any(|(i, _)| i.is_none());
    // Stable: what one record produced keeps its order; whole-batch items go last.
    items.sort_by_key(|(i, _)| i.unwrap_or(usize::MAX));
    let mut items = items.into_iter().peekable();
    while let Some((first_at, first)) = items.next() {
        let mut attributed = vec![first_at];
        let failure = match first {
            Item::Output(r) => {
                let mut segment = vec![r];
                while let Some((at, Item::Output(_))) = items.peek() {
                    attributed.push(*at);
                    let Some((_, Item::Output(r))) = items.next() else {
                        unreachable!()
                    };
                    segment.push(r);
                }
                let id = segment_id(batch, first_at);
                output_target.deliver(&id, segment).await.err()
            }
            Item::DeadLetter(r) => {
                let mut segment = vec![r];
                while let Some((at, Item::DeadLetter(_))) = items.peek() {
                    attributed.push(*at);
                    let Some((_, Item::DeadLetter(r))) = items.next() else {
                        unreachable!()
                    };
                    segment.push(r);
                }
                let id = segment_id(batch, first_at);
                dead_letter_target.deliver(&id, segment).await.err()
            }
        };
        if let Some(DeliveryFailure { delivered, error }) = failure {
            let at = match attributed.get(delivered) {
                _ if whole_batch => 0,
                Some(Some(at)) => *at,
                Some(None) => 0,
                // Everything of the segment was delivered: go on with the next one.
                None => {
                    tracing::warn!(%error, "target failed after delivering its whole segment");
                    continue;
                }
            };
            let record = &batch.records()[at];
            tracing::error!(shard = %record.shard, sequence = %record.sequence, delivered, %error,
                "delivery failed; Lambda retries from this record");
            return Some((at, error.to_string()));
        }
    }
    None
}

/// A dead letter as a record, with the origin and time of the record it rejects.
pub(crate) fn as_record(d: DeadLetter) -> Record<DeadLetter> {
    let (origin, ts) = (d.origin.clone(), d.timestamp);
    let record = Record::new(d, ts);
    match origin {
        Some(o) => record.with_origin(o),
        None => record,
    }
}

/// `shard-sequence` of the segment's first input record: the same on every retry that starts
/// there, so a sink naming its output by it rewrites instead of duplicating.
fn segment_id(batch: &InputBatch, at: Option<usize>) -> String {
    let records = batch.records();
    match at.and_then(|i| records.get(i)) {
        Some(r) => format!("{}-{}", r.shard, r.sequence),
        None => format!("{}-{}-batch", records[0].shard, records[0].sequence),
    }
}

/// Which input record an output belongs to, by its origin (shard and sequence number).
struct Attribution {
    by_origin: HashMap<(String, String), usize>,
}

impl Attribution {
    fn new(batch: &InputBatch) -> Self {
        let by_origin = batch
            .records()
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.shard.to_string(), r.sequence.clone()), i))
            .collect();
        Attribution { by_origin }
    }

    fn of<T>(&self, record: &Record<T>) -> Option<usize> {
        let origin = record.origin.as_ref()?;
        let Offset::Sequence(seq) = &origin.offset else {
            return None;
        };
        self.by_origin
            .get(&(origin.split().to_string(), seq.number.clone()))
            .copied()
    }
}

/// Per shard, the first record at or after input `at`.
pub(crate) fn response_from(batch: &InputBatch, at: usize) -> BatchResponse {
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for r in &batch.records()[at.min(batch.records().len())..] {
        if !seen.contains(&&r.shard) {
            seen.push(&r.shard);
            failures.push(BatchItemFailure {
                item_identifier: r.sequence.clone(),
            });
        }
    }
    BatchResponse {
        batch_item_failures: failures,
    }
}
