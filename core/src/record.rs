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

/// A Kinesis sequence number (a decimal string of up to 129 digits) and the KPL sub-sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceNumber {
    /// The sequence number as Kinesis returned it.
    pub number: String,
    /// The sub-record index inside a KPL aggregate (0 for plain records).
    pub sub: u32,
}

/// A record's position within its split, in the broker's own terms.
///
/// Kept to 16 bytes (the sequence number behind an `Arc`) because every record carries one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Offset {
    /// A numeric offset: Kafka offset, byte offset in a file, index of a generated event.
    Number(i64),
    /// A Kinesis sequence number.
    Sequence(Arc<SequenceNumber>),
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offset::Number(n) => write!(f, "{n}"),
            Offset::Sequence(s) => write!(f, "{}/{}", s.number, s.sub),
        }
    }
}

/// The stream and split a record was read from; shared by all records of the split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRef {
    /// Topic, stream name or file path.
    pub stream: String,
    /// Partition, shard or file.
    pub split: SplitId,
}

/// Where a record came from: stream (topic, stream name, path), split and offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Stream and split, shared by the split's records (cloning is a reference-count increment).
    pub source: Arc<SplitRef>,
    /// Position of the record in its split.
    pub offset: Offset,
}

impl Origin {
    /// The topic, stream or path.
    pub fn stream(&self) -> &str {
        &self.source.stream
    }

    /// The split.
    pub fn split(&self) -> &SplitId {
        &self.source.split
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{}",
            self.source.stream, self.source.split, self.offset
        )
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

/// A record's headers. Most records have none, so they cost one pointer until used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
// The box keeps an absent header list at 8 bytes instead of a Vec's 24 in every record.
#[allow(clippy::box_collection)]
pub struct Headers(Option<Box<Vec<Header>>>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers(None)
    }

    /// Appends a header.
    pub fn push(&mut self, name: impl Into<String>, value: Option<Bytes>) {
        self.0.get_or_insert_with(Default::default).push(Header {
            name: name.into(),
            value,
        });
    }

    /// The first header named `name`.
    pub fn get(&self, name: &str) -> Option<&Header> {
        self.iter().find(|h| h.name == name)
    }

    /// All headers, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.as_deref().map(|v| v.iter()).unwrap_or_default()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        let v: Vec<Header> = iter.into_iter().collect();
        Headers(if v.is_empty() {
            None
        } else {
            Some(Box::new(v))
        })
    }
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
    pub headers: Headers,
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
            headers: Headers::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_u64_fits_in_80_bytes() {
        // Batches are copied between stages; every byte per record costs throughput.
        assert!(std::mem::size_of::<Record<u64>>() <= 80);
    }
}
