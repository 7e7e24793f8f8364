//! Producing: the records librdkafka sends, back-pressure on its queue, the flush a
//! checkpoint waits for, and the transaction that writes an exactly-once epoch.

use crate::epoch::PendingRecord;
use crate::error::KafkaError;
use crate::limits::{Check, TopicLimits, NO_TIMESTAMP};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset as RdOffset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use watershed_core::{CheckpointId, Headers};

/// Where records go: the topic and the cluster, for errors.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub topic: String,
    pub brokers: String,
}

/// Remembers the first delivery failure; the delivery callback runs per message on librdkafka's
/// thread, so the happy path only reads an atomic.
pub(crate) struct DeliveryTracker {
    brokers: String,
    failed: AtomicBool,
    first: Mutex<Option<KafkaError>>,
}

impl DeliveryTracker {
    pub(crate) fn new(brokers: &str) -> Self {
        DeliveryTracker {
            brokers: brokers.to_string(),
            failed: AtomicBool::new(false),
            first: Mutex::new(None),
        }
    }

    /// The first delivery failure since the last call, if any.
    pub(crate) fn take_failure(&self) -> Option<KafkaError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.first.lock().expect("delivery lock").take()
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            use rdkafka::message::Message;
            metrics::counter!(crate::metric_catalogue::PRODUCER_ERRORS).increment(1);
            let mut first = self.first.lock().expect("delivery lock");
            if first.is_none() {
                *first = Some(KafkaError::Delivery {
                    topic: message.topic().to_string(),
                    partition: Some(message.partition()),
                    brokers: self.brokers.clone(),
                    error: Box::new(error.clone()),
                });
            }
            self.failed.store(true, Ordering::Release);
        }
    }
}

/// The record librdkafka sends; built anew for every attempt because `send` consumes it.
pub(crate) fn base_record<'a>(
    topic: &'a str,
    value: &'a [u8],
    key: Option<&'a [u8]>,
    timestamp: i64,
    headers: Option<&OwnedHeaders>,
) -> BaseRecord<'a, [u8], [u8], ()> {
    let mut record = BaseRecord::to(topic).payload(value);
    if timestamp != NO_TIMESTAMP {
        record = record.timestamp(timestamp);
    }
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(h) = headers {
        record = record.headers(h.clone());
    }
    record
}

/// Produces `r`, waiting while librdkafka's queue is full (back-pressure). Blocking: call it
/// from a blocking thread.
fn send_blocking(
    producer: &ThreadedProducer<DeliveryTracker>,
    target: &Target,
    r: &PendingRecord,
) -> Result<(), KafkaError> {
    let headers = owned_headers(&r.headers);
    loop {
        let record = base_record(
            &target.topic,
            &r.value,
            r.key.as_deref(),
            r.timestamp,
            headers.as_ref(),
        );
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => {
                return Err(KafkaError::Delivery {
                    topic: target.topic.clone(),
                    partition: None,
                    brokers: target.brokers.clone(),
                    error: Box::new(error),
                })
            }
        }
    }
}

/// The record's headers for librdkafka, if it has any.
pub(crate) fn owned_headers(headers: &Headers) -> Option<OwnedHeaders> {
    (!headers.is_empty()).then(|| {
        headers.iter().fold(OwnedHeaders::new(), |hs, h| {
            hs.insert(Header {
                key: &h.name,
                value: h.value.as_deref(),
            })
        })
    })
}

/// Waits until every message sent is delivered (or has failed), up to `timeout`.
///
/// Not rust-rdkafka's `flush`: that calls librdkafka's flush without waiting, then polls the
/// delivery queue for up to 100 ms at a time, and with a `ThreadedProducer` the producer's own
/// thread takes the reports from that queue, so each such poll waited its whole 100 ms
/// (pipeline run times came in steps of 0.1 s). librdkafka's flush, in the event mode
/// rust-rdkafka uses, waits for the in-flight count to reach zero while that thread serves the
/// reports, and sends lingering batches at once while it waits.
pub(crate) fn flush(
    producer: &ThreadedProducer<DeliveryTracker>,
    timeout: Duration,
) -> Result<(), RdError> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: a live producer handle; rd_kafka_flush is thread-safe.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms) };
    match err {
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        e => Err(RdError::Flush(e.into())),
    }
}

fn marker_list(topic: &str, checkpoint: Option<CheckpointId>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    match checkpoint {
        Some(c) => {
            let _ = tpl.add_partition_offset(topic, 0, RdOffset::Offset(c.0 as i64));
        }
        None => {
            tpl.add_partition(topic, 0);
        }
    }
    tpl
}

/// An epoch to write in one transaction: what `commit` hands to its blocking thread.
pub(crate) struct Commit<'a> {
    pub producer: &'a ThreadedProducer<DeliveryTracker>,
    pub marker: &'a BaseConsumer,
    pub target: &'a Target,
    pub limits: Option<&'a TopicLimits>,
    pub checkpoint: CheckpointId,
    pub records: &'a [PendingRecord],
    pub timeout: Duration,
}

impl Commit<'_> {
    /// Produces the epoch in one transaction, unless the marker shows it is in Kafka already.
    pub(crate) fn run(&self) -> Result<(), KafkaError> {
        let (topic, timeout) = (&self.target.topic, self.timeout);
        let committed = self
            .marker
            .committed_offsets(marker_list(topic, None), timeout)
            .map_err(|error| KafkaError::Unreachable {
                brokers: self.target.brokers.clone(),
                operation: format!(
                    "reading the marker of checkpoint {} for topic `{topic}`",
                    self.checkpoint.0
                ),
                timeout,
                error: Box::new(error),
            })?;
        let done = committed
            .find_partition(topic, 0)
            .and_then(|e| e.offset().to_raw())
            .is_some_and(|o| o >= self.checkpoint.0 as i64);
        if done {
            return Ok(()); // committed before a crash: commit is idempotent
        }
        let cgm = self
            .marker
            .group_metadata()
            .ok_or_else(|| KafkaError::Invalid("marker consumer has no group metadata".into()))?;
        let started = std::time::Instant::now();
        self.producer
            .begin_transaction()
            .map_err(|e| self.failed(e))?;
        let produced = self
            .records
            .iter()
            .try_for_each(|r| send_blocking(self.producer, self.target, r))
            .and_then(|_| {
                let marker = marker_list(topic, Some(self.checkpoint));
                self.producer
                    .send_offsets_to_transaction(&marker, &cgm, timeout)
                    .map_err(|e| self.failed(e))
            })
            .and_then(|_| {
                let committing = std::time::Instant::now();
                let r = self
                    .producer
                    .commit_transaction(timeout)
                    .map_err(|e| self.failed(e));
                metrics::histogram!(crate::metric_catalogue::COMMIT_SECONDS, "kind" => "transaction")
                    .record(committing.elapsed().as_secs_f64());
                r
            });
        if let Err(e) = produced {
            metrics::counter!(crate::metric_catalogue::TRANSACTION_ERRORS).increment(1);
            let _ = self.producer.abort_transaction(timeout);
            // A delivery failure says more than the transaction's own error.
            let e = self.producer.context().take_failure().unwrap_or(e);
            return Err(self.explained(e));
        }
        metrics::histogram!(crate::metric_catalogue::TRANSACTION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn failed(&self, error: RdError) -> KafkaError {
        KafkaError::Transaction {
            checkpoint: self.checkpoint.0,
            topic: self.target.topic.clone(),
            brokers: self.target.brokers.clone(),
            advice: String::new(),
            error: Box::new(error),
        }
    }

    /// The error as a transaction error that names the record Kafka refuses and the setting to
    /// change, when a record of the epoch is outside the topic's limits (an epoch saved by a
    /// version that did not check, or a topic whose limits were lowered since).
    fn explained(&self, e: KafkaError) -> KafkaError {
        let error = match e {
            KafkaError::Transaction { error, .. } | KafkaError::Delivery { error, .. } => error,
            other => return other,
        };
        let mut advice = String::new();
        if let Some(limits) = self.limits {
            let now = watershed_core::EventTime::now().0;
            let check = Check::new(limits, now);
            let refused = self
                .records
                .iter()
                .enumerate()
                .find_map(|(i, r)| check.refusal(r).map(|(why, text)| (i, r, why, text)));
            if let Some((i, r, why, text)) = refused {
                advice = format!(
                    ". Record {i} of the checkpoint's epoch of {} (key {}, timestamp {}) is the cause: {text}. \
                     Kafka refuses it for what it holds, so this commit fails until the limit \
                     allows it: {}. The record stays in the checkpoint",
                    self.records.len(),
                    r.key.as_ref().map_or("none".to_string(), |k| format!(
                        "{:?}",
                        String::from_utf8_lossy(k)
                    )),
                    r.timestamp,
                    check.fix(r, why, &self.target.brokers),
                );
            }
        }
        if advice.is_empty() && refuses_for_content(&error) {
            advice = format!(
                ". Kafka refuses a record of this epoch for what it holds (its timestamp or \
                 size): compare the topic's message.timestamp.after.max.ms, \
                 message.timestamp.before.max.ms and max.message.bytes (kafka-configs.sh \
                 --bootstrap-server {} --describe --entity-type topics --entity-name {}) with the \
                 records, and raise the limit; the records stay in the checkpoint",
                self.target.brokers, self.target.topic
            );
        }
        KafkaError::Transaction {
            checkpoint: self.checkpoint.0,
            topic: self.target.topic.clone(),
            brokers: self.target.brokers.clone(),
            advice,
            error,
        }
    }
}

/// Whether Kafka refused a record for its timestamp or size.
fn refuses_for_content(error: &RdError) -> bool {
    use RDKafkaErrorCode::*;
    let text = error.to_string();
    matches!(
        error.rdkafka_error_code(),
        Some(InvalidTimestamp | MessageSizeTooLarge | InvalidRecord)
    ) || text.contains("Invalid timestamp")
        || text.contains("too large")
}
