//! The fetch queue: where librdkafka puts the messages of the source's partitions, read in
//! batches.
//!
//! rust-rdkafka's `BaseConsumer::poll` returns one message per call through librdkafka's event
//! API, and every call pays for it: a clock read on each side of the FFI boundary, the queue
//! lock, an allocation for the event. At a million messages a second that was a fifth of the
//! source's CPU. Here each assigned partition's queue is forwarded (`rd_kafka_queue_forward`)
//! to one application queue, before the partition is assigned, so nothing of it reaches the
//! consumer queue; the source takes up to a batch from it in one call
//! (`rd_kafka_consume_batch_queue`, which also drops messages of an outdated fetch, as after a
//! seek or a re-assignment). The consumer queue still carries rebalances, errors and
//! statistics, and is polled as before. Both queues call back when they stop being empty, which
//! wakes the source's task: it never blocks a thread waiting for messages.
//!
//! The forwarding is librdkafka's own API for this (`rd_kafka_queue_get_partition` +
//! `rd_kafka_queue_forward`); it is set again before every assignment, and librdkafka keeps the
//! queue alive while a partition forwards to it.

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;
use tokio::sync::Notify;
use watershed_core::Headers;

/// An application queue of librdkafka that assigned partitions forward their messages to.
pub(crate) struct FetchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// A handle on the consumer queue, to see whether it still holds events.
    consumer_queue: NonNull<rd::rd_kafka_queue_t>,
    client: NonNull<rd::rd_kafka_t>,
    /// Notified (from librdkafka's threads) when the queue stops being empty; the callback
    /// holds a pointer to it until `drop` unregisters it.
    wake: Arc<Notify>,
}

// SAFETY: librdkafka queues are thread-safe (every operation takes the queue's lock), and the
// client handle is only passed to librdkafka's thread-safe `rd_kafka_queue_get_partition`.
unsafe impl Send for FetchQueue {}
// SAFETY: as above; the only Rust-side state is the `Notify`, which is `Sync`.
unsafe impl Sync for FetchQueue {}

/// librdkafka's callback for a queue that stopped being empty; `opaque` is the `Notify`.
unsafe extern "C" fn wake_up(_: *mut rd::rd_kafka_t, opaque: *mut std::ffi::c_void) {
    // SAFETY: registered with a pointer to a `Notify` that outlives the registration.
    let wake = unsafe { &*(opaque as *const Notify) };
    wake.notify_one();
}

impl FetchQueue {
    /// A new queue on `consumer`'s client, notifying `wake` whenever it stops being empty. It
    /// must be dropped before the consumer.
    pub(crate) fn new<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        wake: Arc<Notify>,
    ) -> Option<Self> {
        let client = NonNull::new(consumer.client().native_ptr())?;
        // SAFETY: `client` is a live consumer handle; the callback's `Notify` is kept alive by
        // `self.wake` until `drop` unregisters the callback.
        unsafe {
            let consumer_queue = NonNull::new(rd::rd_kafka_queue_get_consumer(client.as_ptr()))?;
            let Some(queue) = NonNull::new(rd::rd_kafka_queue_new(client.as_ptr())) else {
                rd::rd_kafka_queue_destroy(consumer_queue.as_ptr());
                return None;
            };
            rd::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(wake_up),
                Arc::as_ptr(&wake) as *mut std::ffi::c_void,
            );
            Some(FetchQueue {
                queue,
                consumer_queue,
                client,
                wake,
            })
        }
    }

    /// Forwards `topic`/`partition`'s messages here from now on. Called before each
    /// assignment of the partition, so none of its messages land on the consumer queue (a
    /// fetch stop removes the forwarding, and librdkafka, seeing it was the application's,
    /// does not forward to the consumer queue instead). `false` if librdkafka has no queue
    /// for the partition (it creates one on demand, so only for a name it cannot take).
    pub(crate) fn attach(&self, topic: &str, partition: i32) -> bool {
        let Ok(name) = CString::new(topic) else {
            return false;
        };
        // SAFETY: the client is alive while `self` is (it is dropped before the consumer);
        // the partition handle is released right after forwarding, which keeps a reference
        // of its own to this queue.
        unsafe {
            let pq =
                rd::rd_kafka_queue_get_partition(self.client.as_ptr(), name.as_ptr(), partition);
            if pq.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(pq, self.queue.as_ptr());
            rd::rd_kafka_queue_destroy(pq);
        }
        true
    }

    /// Takes up to `max` messages that are already there, without waiting.
    pub(crate) fn take(&self, max: usize, out: &mut Vec<FetchedMessage>) {
        if max == 0 {
            return;
        }
        let mut raw: Vec<*mut rd::rd_kafka_message_t> = Vec::with_capacity(max);
        // SAFETY: the queue is alive; librdkafka writes at most `max` message pointers into
        // the spare capacity, and returns how many (or -1 on error, with none written).
        let got = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, raw.as_mut_ptr(), max)
        };
        let got = usize::try_from(got).unwrap_or(0).min(max);
        // SAFETY: the first `got` slots were written by librdkafka.
        unsafe { raw.set_len(got) };
        out.extend(raw.into_iter().filter_map(NonNull::new).map(FetchedMessage));
    }

    /// Whether this queue or the consumer queue still holds something: librdkafka calls back
    /// only when a queue goes from empty to non-empty, so the source must not wait while
    /// either does (a drain can leave events behind: rust-rdkafka's `poll` returns after one
    /// rebalance or statistics event, and a batch may hold only notices).
    pub(crate) fn pending(&self) -> bool {
        // SAFETY: both handles are alive while `self` is.
        unsafe {
            rd::rd_kafka_queue_length(self.queue.as_ptr()) > 0
                || rd::rd_kafka_queue_length(self.consumer_queue.as_ptr()) > 0
        }
    }

    /// Resolves once the queue has stopped being empty since the last call (or now, if it
    /// did before): what the source awaits when nothing is prefetched.
    pub(crate) async fn ready(&self) {
        self.wake.notified().await
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once. Unregistering the callback takes the queue's
        // lock, which librdkafka holds while calling it, so no call is running after it
        // returns. Partitions still forwarding here keep the queue's memory alive; librdkafka
        // drops what they enqueue after this.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
            rd::rd_kafka_queue_destroy(self.consumer_queue.as_ptr());
        }
    }
}

/// A message taken from the fetch queue, returned to librdkafka when dropped.
pub(crate) struct FetchedMessage(NonNull<rd::rd_kafka_message_t>);

impl FetchedMessage {
    fn raw(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: valid until destroyed in `drop`.
        unsafe { self.0.as_ref() }
    }

    /// The consumer error this message carries instead of data, if any.
    pub(crate) fn error(&self) -> Option<RdError> {
        let m = self.raw();
        match m.err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Some(RdError::PartitionEOF(m.partition))
            }
            e => Some(RdError::MessageConsumption(RDKafkaErrorCode::from(e))),
        }
    }
}

/// Bytes `len` long at `ptr`, if any.
///
/// # Safety
/// `ptr` must be null or valid for `len` bytes while the returned slice lives.
unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(ptr.cast::<u8>(), len))
    }
}

impl Drop for FetchedMessage {
    fn drop(&mut self) {
        // SAFETY: taken from `rd_kafka_consume_batch_queue`, destroyed once.
        unsafe { rd::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

/// What the source reads from a message, whichever queue it came from.
pub(crate) trait Fetched {
    /// Topic name.
    fn topic(&self) -> &str;
    /// Partition.
    fn partition(&self) -> i32;
    /// Offset.
    fn offset(&self) -> i64;
    /// Value bytes.
    fn payload(&self) -> Option<&[u8]>;
    /// Key bytes.
    fn key(&self) -> Option<&[u8]>;
    /// Kafka timestamp (create or log-append time), ms since the epoch.
    fn timestamp_ms(&self) -> Option<i64>;
    /// The headers, copied.
    fn headers(&self) -> Headers;
    /// librdkafka's handle of the topic, if the message has one: the same for all messages of
    /// a topic, and cheaper to compare than its name.
    fn topic_handle(&self) -> Option<usize> {
        None
    }
}

impl Fetched for FetchedMessage {
    fn topic(&self) -> &str {
        // SAFETY: a message's topic handle and its name live as long as the message.
        unsafe {
            let name = rd::rd_kafka_topic_name(self.raw().rkt);
            if name.is_null() {
                return "";
            }
            CStr::from_ptr(name).to_str().unwrap_or("")
        }
    }

    fn partition(&self) -> i32 {
        self.raw().partition
    }

    fn topic_handle(&self) -> Option<usize> {
        Some(self.raw().rkt as usize)
    }

    fn offset(&self) -> i64 {
        self.raw().offset
    }

    fn payload(&self) -> Option<&[u8]> {
        let m = self.raw();
        // SAFETY: librdkafka's payload pointer and length, valid while the message is.
        unsafe { bytes(m.payload, m.len) }
    }

    fn key(&self) -> Option<&[u8]> {
        let m = self.raw();
        // SAFETY: as for the payload.
        unsafe { bytes(m.key, m.key_len) }
    }

    fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: valid message; `kind` is written.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.0.as_ptr(), &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0)
            .then_some(ts)
    }

    fn headers(&self) -> Headers {
        let mut headers = Headers::new();
        let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the headers belong to the message and live as long as it; each name is a
        // NUL-terminated string and each value `size` bytes (or null), per librdkafka's API.
        unsafe {
            if rd::rd_kafka_message_headers(self.0.as_ptr(), &mut hdrs)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || hdrs.is_null()
            {
                return headers;
            }
            let mut i = 0;
            loop {
                let mut name: *const std::ffi::c_char = std::ptr::null();
                let mut value: *const std::ffi::c_void = std::ptr::null();
                let mut size = 0usize;
                if rd::rd_kafka_header_get_all(hdrs, i, &mut name, &mut value, &mut size)
                    != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    break;
                }
                let name = CStr::from_ptr(name).to_string_lossy();
                headers.push(name, bytes(value, size).map(bytes::Bytes::copy_from_slice));
                i += 1;
            }
        }
        headers
    }
}

impl Fetched for rdkafka::message::OwnedMessage {
    fn topic(&self) -> &str {
        rdkafka::Message::topic(self)
    }
    fn partition(&self) -> i32 {
        rdkafka::Message::partition(self)
    }
    fn offset(&self) -> i64 {
        rdkafka::Message::offset(self)
    }
    fn payload(&self) -> Option<&[u8]> {
        rdkafka::Message::payload(self)
    }
    fn key(&self) -> Option<&[u8]> {
        rdkafka::Message::key(self)
    }
    fn timestamp_ms(&self) -> Option<i64> {
        rdkafka::Message::timestamp(self).to_millis()
    }
    fn headers(&self) -> Headers {
        use rdkafka::message::Headers as _;
        let mut headers = Headers::new();
        if let Some(hs) = rdkafka::Message::headers(self) {
            for h in hs.iter() {
                headers.push(h.key, h.value.map(bytes::Bytes::copy_from_slice));
            }
        }
        headers
    }
}
