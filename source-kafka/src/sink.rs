//! The Kafka sink.

use crate::connect::{connection_properties, topic_limits};
use crate::epoch::{KafkaEpoch, PendingRecord};
use crate::error::KafkaError;
use crate::limits::{
    Check, OutputTimestamp, TopicLimits, DEFAULT_PRODUCER_MAX_BYTES, NO_TIMESTAMP,
};
use crate::produce::{base_record, flush, owned_headers, Commit, DeliveryTracker, Target};
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{
    Batch, BoxError, CheckpointId, DeadLetter, EventTime, Record, Sink, SinkContext,
};

/// Builds a [`KafkaSink`].
#[derive(Clone, Debug)]
pub struct KafkaSinkBuilder {
    brokers: String,
    topic: String,
    properties: Vec<(String, String)>,
    flush_timeout: Duration,
    transactional_id: Option<String>,
    timestamps: OutputTimestamp,
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

    /// Which timestamp the records get (default [`OutputTimestamp::EventTime`]).
    pub fn timestamps(mut self, timestamps: OutputTimestamp) -> Self {
        self.timestamps = timestamps;
        self
    }

    /// Creates the producer. It connects when the pipeline opens the sink.
    pub fn build(self) -> Result<KafkaSink, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            // No duplicates or reordering from the producer's own retries.
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // Java's partitioner (murmur2 of the key; keyless records spread): a key lands on
            // the partition a Java producer, Kafka Streams or ksqlDB would put it on, so
            // per-key order and co-partitioning hold across them. librdkafka's own default
            // (CRC32) splits the same key elsewhere.
            .set("partitioner", "murmur2_random");
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
                let mut marker_config = ClientConfig::new();
                marker_config
                    .set("bootstrap.servers", &self.brokers)
                    .set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .set("isolation.level", "read_committed");
                // It reaches the same cluster as the producer: TLS and SASL settings too
                // (without them, a SASL_SSL cluster would refuse it).
                for (k, v) in connection_properties(&self.properties) {
                    marker_config.set(k, v);
                }
                let consumer: BaseConsumer = marker_config.create().map_err(KafkaError::Config)?;
                Some(Arc::new(consumer))
            }
        };
        let producer_max_bytes = self
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "message.max.bytes")
            .map(|(_, v)| {
                v.trim().parse::<usize>().map_err(|_| {
                    KafkaError::Invalid(format!("message.max.bytes `{v}` is not a number"))
                })
            })
            .transpose()?
            .unwrap_or(DEFAULT_PRODUCER_MAX_BYTES);
        let producer = create_producer(&config, &self.brokers)?;
        Ok(KafkaSink {
            producer: ManuallyDrop::new(producer),
            config,
            limits: TopicLimits::defaults(&self.topic, producer_max_bytes),
            target: Target {
                topic: self.topic,
                brokers: self.brokers,
            },
            properties: self.properties,
            flush_timeout: self.flush_timeout,
            marker,
            timestamps: self.timestamps,
            epoch: Vec::new(),
            rejected: Vec::new(),
        })
    }
}

/// Writes each record's value to a Kafka topic, with the record's key (which picks the
/// partition as Java's default partitioner does: murmur2 of the key bytes; override with the
/// `partitioner` property), headers and timestamp ([`OutputTimestamp`]: by default the event time).
///
/// When it opens, the sink reads the topic's limits (`message.timestamp.type`,
/// `message.timestamp.after.max.ms` / `before.max.ms`, `max.message.bytes`, and the producer's
/// `message.max.bytes`), and checks every record against them in `write`. A record Kafka would
/// refuse never enters an epoch nor is produced: it is handed to the pipeline's error policy
/// (dead letter, skip, or fail before the checkpoint) with a reason naming the topic, the value
/// and the limit, and counted in `watershed_kafka_records_refused_total{reason}`. So a
/// transaction at `commit` is never refused for what a record holds.
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
    /// The producer's configuration, to create it again for a topic with a smaller size limit.
    config: ClientConfig,
    target: Target,
    /// The user's properties, for the admin client that reads the topic's limits.
    properties: Vec<(String, String)>,
    /// Kafka's defaults until `open` reads the topic's own.
    limits: TopicLimits,
    flush_timeout: Duration,
    marker: Option<Arc<BaseConsumer>>,
    timestamps: OutputTimestamp,
    epoch: Vec<PendingRecord>,
    rejected: Vec<DeadLetter>,
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
            timestamps: OutputTimestamp::default(),
        }
    }

    fn check_deliveries(&self) -> Result<(), KafkaError> {
        match self.producer.context().take_failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Kafka applies a topic's `max.message.bytes` to a whole batch of records, and librdkafka
    /// batches up to its own `message.max.bytes` (1 MB): on a topic with a smaller limit, a
    /// batch of records that each fit would be refused. So the producer is created again with
    /// the topic's limit, before anything is sent.
    fn fit_batches_to_topic(&mut self) -> Result<(), KafkaError> {
        let topic_max = self.limits.topic_max_bytes;
        if topic_max >= self.limits.producer_max_bytes {
            return Ok(());
        }
        let mut config = self.config.clone();
        config
            .set("message.max.bytes", topic_max.to_string())
            .set("batch.size", topic_max.to_string());
        let producer = create_producer(&config, &self.target.brokers)?;
        let old = std::mem::replace(&mut *self.producer, producer);
        close_in_background(old);
        self.config = config;
        Ok(())
    }

    fn txn_error(&self, checkpoint: u64, error: RdError) -> KafkaError {
        KafkaError::Transaction {
            checkpoint,
            topic: self.target.topic.clone(),
            brokers: self.target.brokers.clone(),
            advice: String::new(),
            error: Box::new(error),
        }
    }
}

/// The batch's records as they are to be written, without those the topic would refuse: those
/// go to `rejected`. One clock read for the whole batch.
fn accepted<'a>(
    batch: Batch<Bytes>,
    limits: &'a TopicLimits,
    timestamps: OutputTimestamp,
    rejected: &'a mut Vec<DeadLetter>,
) -> impl Iterator<Item = PendingRecord> + 'a {
    let now = EventTime::now().0;
    let check = Check::new(limits, now);
    batch.into_iter().filter_map(move |r: Record<Bytes>| {
        let timestamp = match timestamps {
            OutputTimestamp::ProcessingTime => now,
            OutputTimestamp::Broker => NO_TIMESTAMP,
            _ => r.timestamp.millis(),
        };
        let pending = PendingRecord {
            key: r.key,
            value: r.value,
            timestamp,
            headers: r.headers,
        };
        match check.refusal(&pending) {
            None => Some(pending),
            Some((why, reason)) => {
                rejected.push(check.dead_letter(&pending, why, reason, r.origin, r.timestamp));
                None
            }
        }
    })
}

#[async_trait]
impl Sink for KafkaSink {
    type Item = Bytes;
    type Handle = KafkaEpoch;

    async fn open(&mut self, _ctx: &SinkContext) -> Result<(), BoxError> {
        self.limits = topic_limits(
            &self.target.brokers,
            &self.properties,
            &self.target.topic,
            self.limits.producer_max_bytes,
        )
        .await?;
        self.fit_batches_to_topic()?;
        if self.marker.is_some() {
            // Fences a previous instance with the same transactional id and aborts (or
            // completes) whatever transaction it left open.
            let producer = Arc::clone(&self.producer);
            let timeout = self.flush_timeout;
            tokio::task::spawn_blocking(move || producer.init_transactions(timeout))
                .await?
                .map_err(|e| self.txn_error(0, e))?;
        }
        Ok(())
    }

    async fn write(&mut self, batch: Batch<Bytes>) -> Result<(), BoxError> {
        let records = accepted(batch, &self.limits, self.timestamps, &mut self.rejected);
        if self.marker.is_some() {
            self.epoch.extend(records);
            return Ok(());
        }
        for r in records {
            let headers = owned_headers(&r.headers);
            loop {
                let record = base_record(
                    &self.target.topic,
                    &r.value,
                    r.key.as_deref(),
                    r.timestamp,
                    headers.as_ref(),
                );
                match self.producer.send(record) {
                    Ok(()) => break,
                    // librdkafka's queue is full: wait for deliveries to drain it
                    // (back-pressure), then try again.
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        metrics::counter!(crate::metric_catalogue::QUEUE_FULL).increment(1);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((error, _)) => {
                        return Err(KafkaError::Delivery {
                            topic: self.target.topic.clone(),
                            partition: None,
                            brokers: self.target.brokers.clone(),
                            error: Box::new(error),
                        }
                        .into())
                    }
                }
            }
        }
        self.check_deliveries()?;
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
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
            .map_err(|error| KafkaError::Flush {
                topic: self.target.topic.clone(),
                brokers: self.target.brokers.clone(),
                error: Box::new(error),
            })?;
        // At-least-once, the checkpoint's commit is this wait for every delivery.
        metrics::histogram!(crate::metric_catalogue::COMMIT_SECONDS, "kind" => "flush")
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
        let target = self.target.clone();
        let limits = self.limits.clone();
        let timeout = self.flush_timeout;
        tokio::task::spawn_blocking(move || {
            Commit {
                producer: &producer,
                marker: &marker,
                target: &target,
                limits: Some(&limits),
                checkpoint,
                records: &epoch.records,
                timeout,
            }
            .run()
        })
        .await??;
        metrics::counter!(crate::metric_catalogue::TRANSACTIONS).increment(1);
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
        close_in_background(producer);
    }
}

/// Drops the producer on a thread of its own (see `KafkaSink::drop`).
fn close_in_background(producer: Arc<ThreadedProducer<DeliveryTracker>>) {
    let _ = std::thread::Builder::new()
        .name("kafka-sink-close".into())
        .spawn(move || drop(producer));
}

fn create_producer(
    config: &ClientConfig,
    brokers: &str,
) -> Result<Arc<ThreadedProducer<DeliveryTracker>>, KafkaError> {
    let producer: ThreadedProducer<DeliveryTracker> = config
        .create_with_context(DeliveryTracker::new(brokers))
        .map_err(KafkaError::Config)?;
    Ok(Arc::new(producer))
}
