//! Conversion: how a fetched message of an assigned partition becomes a record.

use crate::fetch::Fetched;
use bytes::Bytes;
use std::sync::Arc;
use watershed_core::{EventTime, Offset, Origin, Record, SplitRef};

/// How messages become records.
pub(super) struct Convert {
    pub(super) event_time_from_kafka: bool,
    pub(super) read_headers: bool,
}

/// The record for a message of an assigned partition.
pub(super) fn to_record<M: Fetched>(
    convert: Convert,
    source: &Arc<SplitRef>,
    now: EventTime,
    message: &M,
) -> Record<Bytes> {
    let timestamp = if convert.event_time_from_kafka {
        message.timestamp_ms().map(EventTime).unwrap_or(now)
    } else {
        now
    };
    let mut record = Record::new(
        Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        timestamp,
    );
    record.key = message.key().map(Bytes::copy_from_slice);
    if convert.read_headers {
        record.headers = message.headers();
    }
    record.origin = Some(Origin {
        source: source.clone(),
        offset: Offset::Number(message.offset()),
    });
    record
}
