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
