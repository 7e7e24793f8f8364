//! The Kafka sink.

use crate::error::KafkaError;
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use watershed_core::{Batch, BoxError, CheckpointId, Sink};

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
        let producer: ThreadedProducer<DeliveryTracker> = config
            .create_with_context(DeliveryTracker::default())
            .map_err(KafkaError::Config)?;
        Ok(KafkaSink {
            producer: Arc::new(producer),
            topic: self.topic,
            flush_timeout: self.flush_timeout,
        })
    }
}

/// Writes each record's value to a Kafka topic, with the record's key (which picks the
/// partition), headers and event time.
///
/// Delivery is **at-least-once**: every checkpoint waits until all records written before its
/// barrier are acknowledged by Kafka (idempotent producer, `acks=all`), so nothing a completed
/// checkpoint covers is lost; a restart replays records after the checkpoint, which may be
/// written again. Transactional exactly-once output is not offered yet (see docs/kafka.md).
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<DeliveryTracker>>,
    topic: String,
    flush_timeout: Duration,
}

impl KafkaSink {
    /// A builder for a sink writing to `topic` on the cluster at `brokers`.
    pub fn builder(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSinkBuilder {
        KafkaSinkBuilder {
            brokers: brokers.into(),
            topic: topic.into(),
            properties: Vec::new(),
            flush_timeout: Duration::from_secs(60),
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

#[async_trait]
impl Sink for KafkaSink {
    type Item = Bytes;
    type Handle = ();

    async fn write(&mut self, batch: Batch<Bytes>) -> Result<(), BoxError> {
        for r in &batch {
            let headers = (!r.headers.is_empty()).then(|| {
                r.headers.iter().fold(OwnedHeaders::new(), |hs, h| {
                    hs.insert(Header {
                        key: &h.name,
                        value: h.value.as_deref(),
                    })
                })
            });
            loop {
                let mut record = BaseRecord::<[u8], [u8], ()>::to(&self.topic)
                    .payload(&r.value[..])
                    .timestamp(r.timestamp.millis());
                if let Some(k) = &r.key {
                    record = record.key(&k[..]);
                }
                if let Some(h) = &headers {
                    record = record.headers(h.clone());
                }
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

    async fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<(), BoxError> {
        let producer = self.producer.clone();
        let timeout = self.flush_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await?
            .map_err(KafkaError::Flush)?;
        self.check_deliveries()?;
        Ok(())
    }

    async fn commit(&mut self, _checkpoint: CheckpointId, _handle: ()) -> Result<(), BoxError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.pre_commit(CheckpointId(0)).await
    }
}
