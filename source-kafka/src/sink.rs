//! The Kafka sink.

use crate::error::KafkaError;
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset as RdOffset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use watershed_core::{Batch, BoxError, CheckpointId, Headers, Record, Sink, SinkContext};

/// Remembers the first delivery failure; the delivery callback runs per message on librdkafka's
/// thread, so the happy path only reads an atomic.
#[derive(Default)]
struct DeliveryTracker {
    failed: AtomicBool,
    first: Mutex<Option<KafkaError>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            use rdkafka::message::Message;
            metrics::counter!("watershed_kafka_producer_errors_total").increment(1);
            let mut first = self.first.lock().expect("delivery lock");
            if first.is_none() {
                *first = Some(KafkaError::Delivery {
                    topic: message.topic().to_string(),
                    partition: Some(message.partition()),
                    error: error.clone(),
                });
            }
            self.failed.store(true, Ordering::Release);
        }
    }
}

/// Builds a [`KafkaSink`].
#[derive(Clone, Debug)]
pub struct KafkaSinkBuilder {
    brokers: String,
    topic: String,
    properties: Vec<(String, String)>,
    flush_timeout: Duration,
    transactional_id: Option<String>,
}

impl KafkaSinkBuilder {
    /// Any librdkafka producer property (security, batching, compression, …).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// How long a checkpoint waits for outstanding deliveries (default 60 s).
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Exactly-once output through Kafka transactions, with `transactional_id` identifying this
    /// sink across restarts (keep it stable and unique per sink instance). See [`KafkaSink`].
    pub fn exactly_once(mut self, transactional_id: impl Into<String>) -> Self {
        self.transactional_id = Some(transactional_id.into());
        self
    }

    /// Creates the producer.
    pub fn build(self) -> Result<KafkaSink, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            // No duplicates or reordering from the producer's own retries.
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        let marker = match &self.transactional_id {
            None => None,
            Some(id) => {
                config
                    .set("transactional.id", id)
                    .set("transaction.timeout.ms", "120000");
                // The group whose offset, committed inside each transaction, records the last
                // checkpoint whose output is in Kafka: that makes `commit` idempotent.
                let group = format!("watershed-sink-{id}");
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .set("isolation.level", "read_committed")
                    .create()
                    .map_err(KafkaError::Config)?;
                Some(Arc::new(consumer))
            }
        };
        let producer: ThreadedProducer<DeliveryTracker> = config
            .create_with_context(DeliveryTracker::default())
            .map_err(KafkaError::Config)?;
        Ok(KafkaSink {
            producer: ManuallyDrop::new(Arc::new(producer)),
            topic: self.topic,
            flush_timeout: self.flush_timeout,
            marker,
            epoch: Vec::new(),
        })
    }
}

/// Writes each record's value to a Kafka topic, with the record's key (which picks the
/// partition), headers and event time.
///
/// - **At-least-once** (default): records are produced as they come; every checkpoint waits
///   until all records before its barrier are acknowledged (idempotent producer, `acks=all`),
///   so nothing a completed checkpoint covers is lost; a restart may write some records again.
/// - **Exactly-once** ([`KafkaSinkBuilder::exactly_once`]): a checkpoint epoch's records are
///   kept (in memory, then in the checkpoint as the pre-commit handle) and produced in one Kafka
///   transaction when the checkpoint completes, together with a marker offset (the checkpoint
///   id) committed in the same transaction. A commit repeated after a crash reads the marker
///   and skips what is already in Kafka; one interrupted mid-way was aborted by the restarted
///   producer (`init_transactions` fences the old one) and is produced again. `read_committed`
///   consumers see each record once. librdkafka cannot resume another process's open
///   transaction, which is why the records travel in the checkpoint: output latency is the
///   checkpoint interval, and checkpoint size grows with records per interval
///   (docs/kafka.md).
pub struct KafkaSink {
    /// Taken out only in `drop` (see there).
    producer: ManuallyDrop<Arc<ThreadedProducer<DeliveryTracker>>>,
    topic: String,
    flush_timeout: Duration,
    marker: Option<Arc<BaseConsumer>>,
    epoch: Vec<PendingRecord>,
}

/// A record waiting for its checkpoint (exactly-once mode). Its bytes are the written record's,
/// shared, not copied.
#[derive(Clone, Debug)]
pub struct PendingRecord {
    key: Option<Bytes>,
    value: Bytes,
    timestamp: i64,
    headers: Headers,
}

impl From<Record<Bytes>> for PendingRecord {
    fn from(r: Record<Bytes>) -> Self {
        PendingRecord {
            key: r.key,
            value: r.value,
            timestamp: r.timestamp.millis(),
            headers: r.headers,
        }
    }
}

/// What a pre-commit hands to the checkpoint: in exactly-once mode, the epoch's records.
///
/// In memory the records share the written records' bytes. In the checkpoint they are one
/// string, `{"records": N, "packed": "<base64>"}`, each record length-prefixed (key, value,
/// timestamp, headers; see `pack`). With a JSON object per record instead, the benchmark's
/// transactional run (1 M records, 1 s checkpoints) peaked at 1.4 GiB and wrote 300–350 K
/// records/s; packed, 0.55 GiB and 470–490 K records/s. Checkpoints in that earlier form are
/// still read.
#[derive(Debug, Default)]
pub struct KafkaEpoch {
    records: Vec<PendingRecord>,
}

#[derive(Serialize)]
struct PackedEpoch {
    records: usize,
    packed: String,
}

/// An epoch as read from a checkpoint: packed, or written before packing existed (one JSON
/// object per record), so a pipeline restored from such a checkpoint still commits it.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredEpoch {
    Packed { records: usize, packed: String },
    PerRecord { records: Vec<JsonRecord> },
}

/// A record in the earlier, per-record checkpoint form.
#[derive(Deserialize)]
struct JsonRecord {
    key: Option<JsonBytes>,
    value: JsonBytes,
    timestamp: i64,
    #[serde(default)]
    headers: Vec<(String, Option<JsonBytes>)>,
}

/// Bytes in the earlier form: text when they were UTF-8, else an array of bytes.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonBytes {
    Text(String),
    Binary(Vec<u8>),
}

impl From<JsonBytes> for Bytes {
    fn from(b: JsonBytes) -> Bytes {
        match b {
            JsonBytes::Text(s) => Bytes::from(s),
            JsonBytes::Binary(v) => Bytes::from(v),
        }
    }
}

impl Serialize for KafkaEpoch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        PackedEpoch {
            records: self.records.len(),
            packed: base64::engine::general_purpose::STANDARD.encode(pack(&self.records)),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KafkaEpoch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        use serde::de::Error;
        let (announced, packed) = match StoredEpoch::deserialize(deserializer)? {
            StoredEpoch::Packed { records, packed } => (records, packed),
            StoredEpoch::PerRecord { records } => {
                let records = records
                    .into_iter()
                    .map(|r| {
                        let mut headers = Headers::new();
                        for (name, value) in r.headers {
                            headers.push(name, value.map(Bytes::from));
                        }
                        PendingRecord {
                            key: r.key.map(Bytes::from),
                            value: r.value.into(),
                            timestamp: r.timestamp,
                            headers,
                        }
                    })
                    .collect();
                return Ok(KafkaEpoch { records });
            }
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(packed)
            .map_err(D::Error::custom)?;
        let records = unpack(&bytes).map_err(D::Error::custom)?;
        if records.len() != announced {
            return Err(D::Error::custom(format!(
                "kafka epoch: {} records packed, {announced} announced",
                records.len()
            )));
        }
        Ok(KafkaEpoch { records })
    }
}

/// Packs records as, each: key length as i32 (-1: none), key, value length as u32, value,
/// timestamp as i64, header count as u32, then per header: name length as u32, name, value
/// length as i32 (-1: none), value. Little-endian.
fn pack(records: &[PendingRecord]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| 20 + r.key.as_ref().map_or(0, Bytes::len) + r.value.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    let opt = |out: &mut Vec<u8>, b: Option<&[u8]>| match b {
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_le_bytes());
            out.extend_from_slice(b);
        }
    };
    for r in records {
        opt(&mut out, r.key.as_deref());
        out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.value);
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
        for h in r.headers.iter() {
            out.extend_from_slice(&(h.name.len() as u32).to_le_bytes());
            out.extend_from_slice(h.name.as_bytes());
            opt(&mut out, h.value.as_deref());
        }
    }
    out
}

/// The inverse of [`pack`]; an error, never a panic, for bytes it did not write.
fn unpack(mut bytes: &[u8]) -> Result<Vec<PendingRecord>, String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err(format!(
                "kafka epoch: truncated ({n} bytes wanted, {} left)",
                bytes.len()
            ));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn word<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], String> {
        Ok(take(bytes, N)?.try_into().expect("N bytes"))
    }
    fn opt(bytes: &mut &[u8]) -> Result<Option<Bytes>, String> {
        let len = i32::from_le_bytes(word(bytes)?);
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(Bytes::copy_from_slice(take(bytes, len as usize)?)))
    }
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let key = opt(&mut bytes)?;
        let len = u32::from_le_bytes(word(&mut bytes)?) as usize;
        let value = Bytes::copy_from_slice(take(&mut bytes, len)?);
        let timestamp = i64::from_le_bytes(word(&mut bytes)?);
        let count = u32::from_le_bytes(word(&mut bytes)?);
        let mut headers = Headers::new();
        for _ in 0..count {
            let len = u32::from_le_bytes(word(&mut bytes)?) as usize;
            let name = std::str::from_utf8(take(&mut bytes, len)?)
                .map_err(|e| format!("kafka epoch: header name: {e}"))?
                .to_string();
            headers.push(name, opt(&mut bytes)?);
        }
        records.push(PendingRecord {
            key,
            value,
            timestamp,
            headers,
        });
    }
    Ok(records)
}

impl KafkaSink {
    /// A builder for a sink writing to `topic` on the cluster at `brokers`.
    pub fn builder(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSinkBuilder {
        KafkaSinkBuilder {
            brokers: brokers.into(),
            topic: topic.into(),
            properties: Vec::new(),
            flush_timeout: Duration::from_secs(60),
            transactional_id: None,
        }
    }

    fn check_deliveries(&self) -> Result<(), KafkaError> {
        let tracker = self.producer.context();
        if tracker.failed.load(Ordering::Acquire) {
            if let Some(e) = tracker.first.lock().expect("delivery lock").take() {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The record librdkafka sends; built anew for every attempt because `send` consumes it.
fn base_record<'a>(
    topic: &'a str,
    value: &'a [u8],
    key: Option<&'a [u8]>,
    timestamp: i64,
    headers: Option<&OwnedHeaders>,
) -> BaseRecord<'a, [u8], [u8], ()> {
    let mut record = BaseRecord::to(topic).payload(value).timestamp(timestamp);
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
    topic: &str,
    r: &PendingRecord,
) -> Result<(), KafkaError> {
    let headers = owned_headers(&r.headers);
    loop {
        let record = base_record(
            topic,
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
                    topic: topic.to_string(),
                    partition: None,
                    error,
                })
            }
        }
    }
}

/// The record's headers for librdkafka, if it has any.
fn owned_headers(headers: &Headers) -> Option<OwnedHeaders> {
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
fn flush(producer: &ThreadedProducer<DeliveryTracker>, timeout: Duration) -> Result<(), RdError> {
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

/// Produces one epoch in one transaction, unless the marker shows it is in Kafka already.
fn commit_epoch(
    producer: &ThreadedProducer<DeliveryTracker>,
    marker: &BaseConsumer,
    topic: &str,
    checkpoint: CheckpointId,
    records: &[PendingRecord],
    timeout: Duration,
) -> Result<(), KafkaError> {
    let committed = marker
        .committed_offsets(marker_list(topic, None), timeout)
        .map_err(KafkaError::Consume)?;
    let done = committed
        .find_partition(topic, 0)
        .and_then(|e| e.offset().to_raw())
        .is_some_and(|o| o >= checkpoint.0 as i64);
    if done {
        return Ok(()); // committed before a crash: commit is idempotent
    }
    let cgm = marker
        .group_metadata()
        .ok_or_else(|| KafkaError::Invalid("marker consumer has no group metadata".into()))?;
    let txn = |e| KafkaError::Transaction {
        checkpoint: checkpoint.0,
        error: e,
    };
    let started = std::time::Instant::now();
    producer.begin_transaction().map_err(txn)?;
    let produced = records
        .iter()
        .try_for_each(|r| send_blocking(producer, topic, r))
        .and_then(|_| {
            producer
                .send_offsets_to_transaction(&marker_list(topic, Some(checkpoint)), &cgm, timeout)
                .map_err(txn)
        })
        .and_then(|_| {
            let committing = std::time::Instant::now();
            let r = producer.commit_transaction(timeout).map_err(txn);
            metrics::histogram!("watershed_kafka_commit_seconds", "kind" => "transaction")
                .record(committing.elapsed().as_secs_f64());
            r
        });
    if let Err(e) = produced {
        metrics::counter!("watershed_kafka_transaction_errors_total").increment(1);
        let _ = producer.abort_transaction(timeout);
        return Err(e);
    }
    metrics::histogram!("watershed_kafka_transaction_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(())
}

#[async_trait]
impl Sink for KafkaSink {
    type Item = Bytes;
    type Handle = KafkaEpoch;

    async fn open(&mut self, _ctx: &SinkContext) -> Result<(), BoxError> {
        if self.marker.is_some() {
            // Fences a previous instance with the same transactional id and aborts (or
            // completes) whatever transaction it left open.
            let producer = Arc::clone(&self.producer);
            let timeout = self.flush_timeout;
            tokio::task::spawn_blocking(move || producer.init_transactions(timeout))
                .await?
                .map_err(|e| KafkaError::Transaction {
                    checkpoint: 0,
                    error: e,
                })?;
        }
        Ok(())
    }

    async fn write(&mut self, batch: Batch<Bytes>) -> Result<(), BoxError> {
        if self.marker.is_some() {
            self.epoch
                .extend(batch.into_iter().map(PendingRecord::from));
            return Ok(());
        }
        for r in &batch {
            let headers = owned_headers(&r.headers);
            loop {
                let record = base_record(
                    &self.topic,
                    &r.value,
                    r.key.as_deref(),
                    r.timestamp.millis(),
                    headers.as_ref(),
                );
                match self.producer.send(record) {
                    Ok(()) => break,
                    // librdkafka's queue is full: wait for deliveries to drain it
                    // (back-pressure), then try again.
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        metrics::counter!("watershed_kafka_queue_full_total").increment(1);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((error, _)) => {
                        return Err(KafkaError::Delivery {
                            topic: self.topic.clone(),
                            partition: None,
                            error,
                        }
                        .into())
                    }
                }
            }
        }
        self.check_deliveries()?;
        Ok(())
    }

    async fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<KafkaEpoch, BoxError> {
        if self.marker.is_some() {
            return Ok(KafkaEpoch {
                records: std::mem::take(&mut self.epoch),
            });
        }
        let producer = Arc::clone(&self.producer);
        let timeout = self.flush_timeout;
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || flush(&producer, timeout))
            .await?
            .map_err(KafkaError::Flush)?;
        // At-least-once, the checkpoint's commit is this wait for every delivery.
        metrics::histogram!("watershed_kafka_commit_seconds", "kind" => "flush")
            .record(started.elapsed().as_secs_f64());
        self.check_deliveries()?;
        Ok(KafkaEpoch::default())
    }

    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        epoch: KafkaEpoch,
    ) -> Result<(), BoxError> {
        let Some(marker) = self.marker.clone() else {
            return Ok(());
        };
        if epoch.records.is_empty() {
            return Ok(());
        }
        let producer = Arc::clone(&self.producer);
        let topic = self.topic.clone();
        let timeout = self.flush_timeout;
        tokio::task::spawn_blocking(move || {
            commit_epoch(
                &producer,
                &marker,
                &topic,
                checkpoint,
                &epoch.records,
                timeout,
            )
        })
        .await??;
        metrics::counter!("watershed_kafka_transactions_total").increment(1);
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        self.epoch.clear();
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        if self.marker.is_some() {
            return Ok(());
        }
        self.pre_commit(CheckpointId(0)).await.map(|_| ())
    }
}

impl Drop for KafkaSink {
    /// rust-rdkafka's `ThreadedProducer` joins its polling thread when dropped, and that thread
    /// may be in a 100 ms poll that does not end early: up to 100 ms of every pipeline's
    /// shutdown. The wait is left to a thread of its own. Nothing is lost by it: `close` has
    /// flushed everything sent, and after a failure the restart replays from the checkpoint.
    fn drop(&mut self) {
        // SAFETY: taken once, here; `self.producer` is not used after this, and `ManuallyDrop`
        // keeps the field from being dropped again.
        let producer = unsafe { ManuallyDrop::take(&mut self.producer) };
        let _ = std::thread::Builder::new()
            .name("kafka-sink-close".into())
            .spawn(move || drop(producer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = PendingRecord> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        (
            proptest::option::of(bytes()),
            bytes(),
            any::<i64>(),
            proptest::collection::vec(("[a-z-]{0,12}", proptest::option::of(bytes())), 0..4),
        )
            .prop_map(|(key, value, timestamp, hs)| {
                let mut headers = Headers::new();
                for (name, value) in hs {
                    headers.push(name, value);
                }
                PendingRecord {
                    key,
                    value,
                    timestamp,
                    headers,
                }
            })
    }

    fn same(a: &PendingRecord, b: &PendingRecord) -> bool {
        a.key == b.key
            && a.value == b.value
            && a.timestamp == b.timestamp
            && a.headers.len() == b.headers.len()
            && a.headers
                .iter()
                .zip(b.headers.iter())
                .all(|(x, y)| x.name == y.name && x.value == y.value)
    }

    proptest! {
        /// An epoch read back from its checkpoint form holds the same records in the same
        /// order: keys and header values absent or empty, binary or text, kept apart.
        #[test]
        fn an_epoch_survives_its_checkpoint_form(records in proptest::collection::vec(record(), 0..20)) {
            let epoch = KafkaEpoch { records: records.clone() };
            let value = serde_json::to_value(&epoch).unwrap();
            let back: KafkaEpoch = serde_json::from_value(value).unwrap();
            prop_assert_eq!(back.records.len(), records.len());
            for (a, b) in back.records.iter().zip(&records) {
                prop_assert!(same(a, b), "{a:?} != {b:?}");
            }
        }

        /// Bytes the sink did not write are an error, never a panic.
        #[test]
        fn a_damaged_epoch_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = unpack(&bytes);
        }
    }

    /// Rule: a checkpoint written before epochs were packed (one JSON object per record, text
    /// as strings, other bytes as arrays) is still read, so its epoch can be committed.
    #[test]
    fn an_epoch_in_the_earlier_per_record_form_is_still_read() {
        let old = serde_json::json!({"records": [
            {"key": "k1", "value": "{\"a\":1}", "timestamp": 5,
             "headers": [["trace", "abc"], ["none", null]]},
            {"key": null, "value": [255, 0, 1], "timestamp": 6}
        ]});
        let epoch: KafkaEpoch = serde_json::from_value(old).unwrap();
        assert_eq!(epoch.records.len(), 2);
        let (a, b) = (&epoch.records[0], &epoch.records[1]);
        assert_eq!(a.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(&a.value[..], b"{\"a\":1}");
        assert_eq!(a.timestamp, 5);
        assert_eq!(
            a.headers.get("trace").unwrap().value.as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(a.headers.get("none").unwrap().value, None);
        assert_eq!(b.key, None);
        assert_eq!(&b.value[..], &[255, 0, 1]);
        assert!(b.headers.is_empty());
    }

    #[test]
    fn a_truncated_or_miscounted_epoch_is_refused() {
        use base64::Engine as _;
        let r = PendingRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"{\"a\":1}"),
            timestamp: 7,
            headers: Headers::new(),
        };
        let packed = pack(&[r.clone(), r]);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let truncated =
            serde_json::json!({"records": 2, "packed": b64(&packed[..packed.len() - 1])});
        let err = serde_json::from_value::<KafkaEpoch>(truncated).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let miscounted = serde_json::json!({"records": 3, "packed": b64(&packed)});
        let err = serde_json::from_value::<KafkaEpoch>(miscounted).unwrap_err();
        assert!(err.to_string().contains("3 announced"), "{err}");
    }
}
