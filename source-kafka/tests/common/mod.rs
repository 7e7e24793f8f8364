//! Helpers shared by the Kafka broker tests: the broker address, fresh names, topic creation,
//! producing and reading records, and running a pipeline until it has read enough.
#![allow(dead_code)]

use bytes::Bytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use watershed_core::connectors::CollectSink;
use watershed_core::{CheckpointStore, Pipeline, PipelineConfig, RunSummary, WatermarkStrategy};
use watershed_source_kafka::KafkaSource;

#[allow(unused_imports)] // each test file uses a part
pub use watershed_testkit::clients::{
    committed_consumer, create_topics, kafka_admin, read_committed_to_end,
};
#[allow(unused_imports)] // each test file uses a part
pub use watershed_testkit::env::{kafka_brokers as brokers, unique};

/// Creates `name` with `partitions` partitions, replication 1.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topics(&[name], partitions).await;
}

/// Creates `name` with one partition and the given topic configuration.
pub async fn create_topic_with_config(name: &str, config: &[(&str, &str)]) {
    let admin = kafka_admin();
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    // Right after a deletion of the same name the broker may still refuse: try for a while.
    let started = std::time::Instant::now();
    loop {
        let result = admin
            .create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("CreateTopics request answers")
            .remove(0);
        match result {
            Ok(_) => return,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("topic {name} is not created: {e:?}"),
        }
    }
}

/// Deletes `name` and waits until the broker no longer lists it.
pub async fn delete_topic(name: &str) {
    let admin = kafka_admin();
    admin
        .delete_topics(
            &[name],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("DeleteTopics request answers")
        .remove(0)
        .expect("topic is deleted");
}

/// Produces `values` (keyed by their index) to `topic` and waits until all are acknowledged.
pub fn produce_values(topic: &str, values: impl IntoIterator<Item = String>) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (i, value) in values.into_iter().enumerate() {
        let key = i.to_string();
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Every committed record of `topic` (read_committed) as (value, timestamp), read until `want`
/// have arrived and then `linger` longer (to see duplicates), or 30 s.
pub fn read_committed(topic: &str, want: usize, linger: Duration) -> Vec<(String, Option<i64>)> {
    use rdkafka::message::Message;
    let consumer = committed_consumer(topic);
    let mut got = Vec::new();
    let started = std::time::Instant::now();
    let mut complete: Option<std::time::Instant> = None;
    while started.elapsed() < Duration::from_secs(30)
        && complete.is_none_or(|t| t.elapsed() < linger)
    {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            got.push((value, m.timestamp().to_millis()));
        }
        if got.len() >= want && complete.is_none() {
            complete = Some(std::time::Instant::now());
        }
    }
    got
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Produces `(key, value)` pairs and waits until all are acknowledged.
pub fn produce(topic: &str, records: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// A new topic named after `prefix`, with `partitions` partitions, holding `records`.
pub async fn topic_with(
    prefix: &str,
    partitions: i32,
    records: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> String {
    let topic = unique(prefix);
    create_topic(&topic, partitions).await;
    produce(&topic, records);
    topic
}

/// A source on `topic` in a group of its own, with the defaults.
pub fn source_on(topic: &str) -> KafkaSource {
    KafkaSource::builder(brokers(), unique("group"))
        .topic(topic)
        .build()
        .unwrap()
}

/// A pipeline on `store` with a checkpoint every 500 ms.
pub fn config(id: &str, store: &CheckpointStore) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(store.clone())
        .checkpoint_interval(Duration::from_millis(500))
        .handle_signals(false)
}

/// Runs `pipeline` until `done()` holds (or the deadline passes), then stops it gracefully.
pub async fn run_until(
    pipeline: Pipeline,
    deadline: Duration,
    done: impl Fn() -> bool,
) -> RunSummary {
    let stop = pipeline.shutdown_handle();
    let run = tokio::spawn(pipeline.run());
    let started = Instant::now();
    while !done() && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.shutdown();
    run.await.unwrap().unwrap()
}

/// Runs `source` into `out` as pipeline `id` (checkpoints in `store`) until `out` holds
/// `want` records (or two minutes pass).
pub fn run_into(
    id: &str,
    store: &CheckpointStore,
    source: KafkaSource,
    out: &CollectSink<Bytes>,
    want: usize,
) -> impl std::future::Future<Output = RunSummary> {
    let p = Pipeline::new(config(id, store));
    p.source("kafka", source, WatermarkStrategy::none())
        .sink("out", out.clone());
    let check = out.clone();
    run_until(p, Duration::from_secs(120), move || {
        check.values().len() >= want
    })
}

/// The `(key, n)` of a `key:n` record.
pub fn parse(v: &Bytes) -> (String, u64) {
    let s = std::str::from_utf8(v).unwrap();
    let (k, n) = s.split_once(':').unwrap();
    (k.to_string(), n.parse().unwrap())
}
