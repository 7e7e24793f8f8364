//! Records and where they came from.

use crate::time::EventTime;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Identifies a split of a source: a Kafka partition, a Kinesis shard, a file, a generator lane.
///
/// Cheap to clone (an `Arc<str>`), so records can carry it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SplitId(Arc<str>);

impl SplitId {
    /// A split id from any string.
    pub fn new(id: impl AsRef<str>) -> Self {
        SplitId(Arc::from(id.as_ref()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SplitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for SplitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SplitId {
    fn from(s: &str) -> Self {
        SplitId::new(s)
    }
}

/// A record's position within its split, in the broker's own terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Offset {
    /// A numeric offset: Kafka offset, byte offset in a file, index of a generated event.
    Number(i64),
    /// A Kinesis sequence number (decimal string of up to 129 digits) and KPL sub-sequence.
    Sequence {
        /// The sequence number as Kinesis returned it.
        number: Arc<str>,
        /// The sub-record index inside a KPL aggregate (0 for plain records).
        sub: u32,
    },
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offset::Number(n) => write!(f, "{n}"),
            Offset::Sequence { number, sub } => write!(f, "{number}/{sub}"),
        }
    }
}

/// Where a record came from: stream (topic, stream name, path), split and offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Topic, stream name or file path.
    pub stream: Arc<str>,
    /// Partition, shard or file.
    pub split: SplitId,
    /// Position of the record in its split.
    pub offset: Offset,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.stream, self.split, self.offset)
    }
}

/// A record header, as Kafka headers carry them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value, `None` for a null value.
    pub value: Option<Bytes>,
}

/// One element of a stream: a typed value with its key, event time, headers and origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<T> {
    /// The payload.
    pub value: T,
    /// The broker key (Kafka key, Kinesis partition key), if any.
    pub key: Option<Bytes>,
    /// Event time.
    pub timestamp: EventTime,
    /// Headers; empty (and allocation-free) for most records.
    pub headers: Vec<Header>,
    /// Where the record was read from; `None` for records an operator created.
    pub origin: Option<Origin>,
}

impl<T> Record<T> {
    /// A record with only a value and an event time.
    pub fn new(value: T, timestamp: EventTime) -> Self {
        Record {
            value,
            key: None,
            timestamp,
            headers: Vec::new(),
            origin: None,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the origin.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Replaces the value, keeping key, time, headers and origin.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Record<U> {
        Record {
            value: f(self.value),
            key: self.key,
            timestamp: self.timestamp,
            headers: self.headers,
            origin: self.origin,
        }
    }

    /// A record with `value` and all metadata of `self` (cloned).
    pub fn with_value<U>(&self, value: U) -> Record<U> {
        Record {
            value,
            key: self.key.clone(),
            timestamp: self.timestamp,
            headers: self.headers.clone(),
            origin: self.origin.clone(),
        }
    }
}

/// A batch of records: the unit that moves through the pipeline.
pub type Batch<T> = Vec<Record<T>>;
