//! Nexmark over Kafka: the loader that writes generated events as JSON into a topic, and a
//! bounded source that reads exactly N events of such a topic and then ends the run.

use crate::generator::NexmarkGenerator;
use crate::model::write_json;
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::Duration;
use watershed_core::{BoxError, CheckpointId, Source, SourceEvent};
use watershed_source_kafka::{KafkaPosition, KafkaSource, StartPosition};

/// What can go wrong loading a topic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A Kafka client could not be created or an admin request failed.
    #[error("kafka {what} for topic {topic}: {error}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// The topic.
        topic: String,
        /// The client error.
        #[source]
        error: RdError,
    },
    /// An event could not be encoded.
    #[error("encoding event {n}: {error}")]
    Encode {
        /// Event number.
        n: u64,
        /// The serde error.
        #[source]
        error: serde_json::Error,
    },
}

/// What to load. Builder-style; every setting has a default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadConfig {
    /// Bootstrap servers (default `127.0.0.1:9092`).
    pub brokers: String,
    /// Topic (default `nexmark-events`).
    pub topic: String,
    /// Partitions of the recreated topic (default 1); event `n` goes to partition `n % p`.
    pub partitions: i32,
    /// Events to write.
    pub events: u64,
}

impl LoadConfig {
    /// Loads `events` events into `nexmark-events` on the local broker.
    pub fn new(events: u64) -> Self {
        LoadConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "nexmark-events".into(),
            partitions: 1,
            events,
        }
    }

    /// Sets the brokers.
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = brokers.into();
        self
    }

    /// Sets the topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// Sets the partition count (at least 1).
    pub fn partitions(mut self, n: i32) -> Self {
        self.partitions = n.max(1);
        self
    }
}

fn kafka_err<'a>(what: &'static str, topic: &'a str) -> impl FnOnce(RdError) -> LoadError + 'a {
    move |error| LoadError::Kafka {
        what,
        topic: topic.to_string(),
        error,
    }
}

/// Deletes `topic`; a topic that does not exist is fine.
pub async fn delete_topic(brokers: &str, topic: &str) -> Result<(), LoadError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(kafka_err("admin client", topic))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let deleted = admin
        .delete_topics(&[topic], &opts)
        .await
        .map_err(kafka_err("delete", topic))?;
    for r in deleted {
        if let Err((_, code)) = r {
            if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                return Err(kafka_err("delete", topic)(RdError::AdminOp(code)));
            }
        }
    }
    Ok(())
}

/// Deletes and recreates the topic (retention unlimited: the events' timestamps are their
/// `dateTime`, which may be older than any retention), then writes the events as JSON with the
/// record timestamp set to the event's `dateTime`. Returns once every event is acknowledged.
pub async fn load(generator: &NexmarkGenerator, config: &LoadConfig) -> Result<u64, LoadError> {
    let topic = config.topic.as_str();
    delete_topic(&config.brokers, topic).await?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .map_err(kafka_err("admin client", topic))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    // Deletion completes asynchronously on the broker: retry creation while it finishes.
    let new_topic = || {
        NewTopic::new(topic, config.partitions, TopicReplication::Fixed(1))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1")
    };
    let mut attempts = 0;
    loop {
        let created = admin
            .create_topics(&[new_topic()], &opts)
            .await
            .map_err(kafka_err("create", topic))?;
        match created.into_iter().next() {
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(Err((_, code))) => return Err(kafka_err("create", topic)(RdError::AdminOp(code))),
            _ => break,
        }
    }
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(kafka_err("producer", topic))?;
    let mut buf = Vec::with_capacity(1024);
    for n in 0..config.events {
        let event = generator.event(n);
        buf.clear();
        write_json(&event, &mut buf).map_err(|error| LoadError::Encode { n, error })?;
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(&buf[..])
            .partition((n % config.partitions as u64) as i32)
            .timestamp(event.date_time());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(kafka_err("produce", topic)(e)),
            }
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(kafka_err("flush", topic))?;
    Ok(config.events)
}

/// Reads a topic from the beginning in a fresh consumer group and ends after exactly `events`
/// records, so the run ends with the final watermark (every window fires).
pub struct BoundedKafkaSource {
    inner: KafkaSource,
    remaining: u64,
}

impl BoundedKafkaSource {
    /// The first `events` records of `topic` (all partitions), read by a new consumer group.
    pub fn new(brokers: &str, topic: &str, events: u64) -> Result<Self, BoxError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let group = format!("watershed-nexmark-{}-{nanos}", std::process::id());
        let inner = KafkaSource::builder(brokers, group)
            .topic(topic)
            .start(StartPosition::Earliest)
            .batch_size(4096)
            .property("fetch.min.bytes", "1")
            .property("queued.max.messages.kbytes", "262144")
            .build()?;
        Ok(BoundedKafkaSource {
            inner,
            remaining: events,
        })
    }
}

#[async_trait]
impl Source for BoundedKafkaSource {
    type Item = Bytes;
    type Position = KafkaPosition;

    async fn open(&mut self, restored: Option<KafkaPosition>) -> Result<(), BoxError> {
        self.inner.open(restored).await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<Bytes>, BoxError> {
        if self.remaining == 0 {
            return Ok(SourceEvent::Finished);
        }
        match self.inner.poll(max_wait).await? {
            SourceEvent::Batch { split, mut records } => {
                // Records past the N-th are dropped; the inner position already counts them,
                // which only matters to a checkpoint taken after this batch, and the run ends
                // with it.
                if records.len() as u64 > self.remaining {
                    records.truncate(self.remaining as usize);
                }
                self.remaining -= records.len() as u64;
                Ok(SourceEvent::Batch { split, records })
            }
            other => Ok(other),
        }
    }

    fn position(&self) -> KafkaPosition {
        self.inner.position()
    }

    async fn checkpoint_complete(
        &mut self,
        id: CheckpointId,
        position: &KafkaPosition,
    ) -> Result<(), BoxError> {
        self.inner.checkpoint_complete(id, position).await
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.inner.close().await
    }
}
