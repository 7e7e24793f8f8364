//! The error path: what happens to records that cannot be processed.

use crate::record::Origin;
use crate::time::EventTime;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What a pipeline does with a record an operator rejects (for example a malformed JSON payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// Stop the pipeline with [`Error::Record`](crate::Error::Record).
    Fail,
    /// Drop the record and count it (`watershed_records_rejected_total`).
    Skip,
    /// Send it, with its reason, to the dead-letter sink given to
    /// [`Pipeline::dead_letter`](crate::Pipeline::dead_letter). The default.
    #[default]
    DeadLetter,
}

/// A rejected record: its original bytes and why it was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why the record was rejected.
    pub reason: String,
    /// The record's original payload (for a decode failure, the undecodable bytes).
    pub payload: Bytes,
    /// Where the record came from, if known.
    pub origin: Option<Origin>,
    /// The record's event time.
    pub timestamp: EventTime,
    /// The node that rejected it; filled in by the runtime.
    pub node: String,
}

impl DeadLetter {
    /// A dead letter for `payload` rejected because of `reason`.
    pub fn new(reason: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        DeadLetter {
            reason: reason.into(),
            payload: payload.into(),
            origin: None,
            timestamp: EventTime::MIN,
            node: String::new(),
        }
    }

    /// Adds the origin and event time of the rejected record.
    pub fn at(mut self, origin: Option<Origin>, timestamp: EventTime) -> Self {
        self.origin = origin;
        self.timestamp = timestamp;
        self
    }
}

/// How many rejections [`RecentRejections`] keeps.
const RECENT_KEPT: usize = 20;
/// How many of one batch's rejections it records: a batch of thousands of bad records costs a
/// few entries, not thousands.
const RECENT_PER_BATCH: usize = 3;

/// One rejected record as [`RecentRejections`] remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rejection {
    /// When it was rejected, milliseconds since the Unix epoch.
    pub unix_millis: i64,
    /// The node (instance) that rejected it.
    pub node: String,
    /// Why.
    pub reason: String,
    /// Where the record came from (`stream/split@offset`), if known.
    pub origin: Option<String>,
}

/// The latest rejections of a pipeline, whatever its error policy, for a status page or a log:
/// the last 20, newest last, at most 3 from each rejected batch. Cloning shares the log. Written
/// only on the error path, never per record read.
#[derive(Clone, Debug, Default)]
pub struct RecentRejections {
    log: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Rejection>>>,
}

impl RecentRejections {
    /// The rejections kept, oldest first.
    pub fn latest(&self) -> Vec<Rejection> {
        self.lock().iter().cloned().collect()
    }

    pub(crate) fn record(&self, node: &str, rejected: &[DeadLetter]) {
        let now = EventTime::now().millis();
        let mut log = self.lock();
        for d in rejected.iter().take(RECENT_PER_BATCH) {
            if log.len() == RECENT_KEPT {
                log.pop_front();
            }
            log.push_back(Rejection {
                unix_millis: now,
                node: node.to_string(),
                reason: d.reason.clone(),
                origin: d.origin.as_ref().map(ToString::to_string),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Rejection>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_rejections_keep_the_last_twenty_and_a_few_per_batch() {
        let recent = RecentRejections::default();
        let batch: Vec<DeadLetter> = (0..10)
            .map(|i| DeadLetter::new(format!("bad {i}"), "x"))
            .collect();
        recent.record("decode", &batch);
        let reasons: Vec<String> = recent.latest().into_iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["bad 0", "bad 1", "bad 2"]);
        for i in 0..10 {
            recent.record("sink", &[DeadLetter::new(format!("late {i}"), "x")]);
        }
        let latest = recent.latest();
        assert_eq!(latest.len(), 13);
        for i in 10..20 {
            recent.record("sink", &[DeadLetter::new(format!("later {i}"), "x")]);
        }
        let latest = recent.latest();
        assert_eq!(latest.len(), 20);
        assert_eq!(latest[0].reason, "late 0", "the three oldest went first");
        assert_eq!(latest[19].reason, "later 19");
        assert_eq!(latest[19].node, "sink");
    }
}
