//! Keys land on the partitions Java clients put them on.

mod common;

use bytes::Bytes;
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_source_kafka::KafkaSink;

/// (key, partition of 6, partition of 12) as Java's default partitioner chooses them:
/// `Utils.toPositive(Utils.murmur2(key.getBytes(UTF_8))) % partitions`, computed with the
/// kafka-clients 4.1.1 jar that `scripts/brokers` installs.
const JAVA: [(&str, i32, i32); 10] = [
    ("", 3, 9),
    ("a", 4, 4),
    ("user-1", 2, 8),
    ("user-42", 4, 4),
    ("/page/7", 0, 0),
    ("watershed", 4, 4),
    ("päge", 4, 10),
    ("0123456789abcdef", 0, 0),
    ("key with spaces", 0, 0),
    ("k", 2, 8),
];

/// Writes every key of `JAVA` through a `KafkaSink` and reads back where each landed.
async fn partitions_chosen(partitions: i32) -> BTreeMap<String, i32> {
    let topic = unique("murmur2");
    create_topic(&topic, partitions).await;
    let p = Pipeline::new(
        PipelineConfig::new(unique("murmur2-pipeline"))
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    let source = GeneratorSource::new(1, JAVA.len() as u64, |_, i| {
        let key = JAVA[i as usize].0;
        Record::new(Bytes::from(key), EventTime::now()).with_key(Bytes::from(key))
    });
    p.source("keys", source, WatermarkStrategy::none()).sink(
        "out",
        KafkaSink::builder(brokers(), &topic).build().unwrap(),
    );
    p.run().await.unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("murmur2-read"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = BTreeMap::new();
    let started = Instant::now();
    while seen.len() < JAVA.len() && started.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
            seen.insert(key, m.partition());
        }
    }
    seen
}

/// Rule: the sink's default partitioner is Java's (murmur2), so a key written by Watershed and
/// by a Java producer lands on the same partition, for 6 and for 12 partitions.
#[tokio::test]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn keys_land_on_the_partitions_java_producers_choose() {
    let six = partitions_chosen(6).await;
    let twelve = partitions_chosen(12).await;
    for (key, p6, p12) in JAVA {
        assert_eq!(six.get(key), Some(&p6), "key {key:?} of 6 partitions");
        assert_eq!(twelve.get(key), Some(&p12), "key {key:?} of 12 partitions");
    }
}
