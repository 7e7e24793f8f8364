//! The Kafka sink in real pipelines against a real Apache Kafka broker: every record with its
//! key before the checkpoint completes, and a repeated transactional commit writing nothing
//! twice. Start one with `scripts/brokers up` (or run everything with `scripts/test.sh`).

mod common;

use common::*;

use bytes::Bytes;
use rdkafka::message::Message;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_source_kafka::KafkaSink;

/// Rule: the sink writes every record with its key, and a checkpoint completes only once Kafka
/// has acknowledged everything before its barrier.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sink_delivers_every_record_with_its_key_before_the_checkpoint_completes() {
    let topic = unique("ws-sink");
    create_topic(&topic, 3).await;
    let p = Pipeline::new(config(&unique("sink"), &CheckpointStore::memory()));
    let source = GeneratorSource::new(2, 5_000, |s, i| {
        Record::new(format!("{s}:{i}"), EventTime(i as i64)).with_key(format!("key-{}", i % 10))
    });
    p.source("gen", source, WatermarkStrategy::none())
        .map(|v: String| Bytes::from(v.into_bytes()))
        .sink(
            "kafka",
            KafkaSink::builder(brokers(), &topic).build().unwrap(),
        );
    let summary = p.run().await.unwrap();
    assert_eq!(summary.records_out, 10_000);

    let consumer = committed_consumer(&topic);
    let mut got = std::collections::HashSet::new();
    let started = Instant::now();
    while got.len() < 10_000 && started.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            let i: u64 = value.split_once(':').unwrap().1.parse().unwrap();
            assert_eq!(m.key().unwrap(), format!("key-{}", i % 10).as_bytes());
            got.insert(value);
        }
    }
    assert_eq!(got.len(), 10_000);
}

/// Rule: commit is idempotent. A transactional commit that already reached Kafka, repeated
/// by a restarted sink from the checkpoint's handle (as recovery does), writes nothing twice;
/// and the restarted sink fences the old producer.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn transactional_commit_repeated_after_a_restart_writes_nothing_twice() {
    let topic = unique("ws-txn-idem");
    create_topic(&topic, 1).await;
    let txn_id = unique("txn");
    let ctx = SinkContext::new("p", "out");
    let mut first = KafkaSink::builder(brokers(), &topic)
        .exactly_once(&txn_id)
        .build()
        .unwrap();
    first.open(&ctx).await.unwrap();
    let batch: Batch<Bytes> = (0..100)
        .map(|i| Record::new(Bytes::from(format!("v{i}")), EventTime(i)))
        .collect();
    first.write(batch).await.unwrap();
    let handle = first.pre_commit(CheckpointId(1)).await.unwrap();
    // The handle as the manifest stores it.
    let stored = serde_json::to_value(&handle).unwrap();
    first.commit(CheckpointId(1), handle).await.unwrap();

    let mut restarted = KafkaSink::builder(brokers(), &topic)
        .exactly_once(&txn_id)
        .build()
        .unwrap();
    restarted
        .open(&ctx.clone().restored_from(CheckpointId(1)))
        .await
        .unwrap();
    restarted
        .commit(CheckpointId(1), serde_json::from_value(stored).unwrap())
        .await
        .unwrap();

    let n = read_committed_to_end(&topic, Duration::from_secs(60)).len();
    assert_eq!(n, 100, "the repeated commit wrote the epoch again");

    // The first producer is fenced: its next transaction fails instead of writing.
    first
        .write(vec![Record::new(
            Bytes::from_static(b"zombie"),
            EventTime(0),
        )])
        .await
        .unwrap();
    let h = first.pre_commit(CheckpointId(2)).await.unwrap();
    assert!(first.commit(CheckpointId(2), h).await.is_err());
}
