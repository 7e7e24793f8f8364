//! Where the Kafka source resumes after a restart, against a real Apache Kafka broker: at the
//! checkpointed offsets, or at a later group commit, never behind it. Start one with
//! `scripts/brokers up` (or run everything with `scripts/test.sh`).

mod common;

use common::*;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use std::time::{Duration, Instant};
use watershed_core::connectors::CollectSink;
use watershed_core::*;
use watershed_source_kafka::{KafkaSource, StartPosition};

fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
        .sum()
}

/// Rule: a position is the next offset to read. A pipeline stopped
/// after a checkpoint and restarted continues exactly at the checkpointed offsets — no gap, no
/// re-read — even in another consumer group that has no committed offsets; and the offsets it
/// commits to its group are last + 1.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn restart_resumes_exactly_at_the_checkpointed_offsets() {
    let topic = topic_with(
        "ws-resume",
        3,
        (0..3_000u64).map(|i| (format!("k{i}"), format!("a:{i}").into_bytes())),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path()).unwrap();
    let id = unique("resume");
    let out = CollectSink::<Bytes>::new();
    let run = |group: String, want: usize| {
        let source = KafkaSource::builder(brokers(), group)
            .topic(&topic)
            .start(StartPosition::Earliest)
            .build()
            .unwrap();
        run_into(&id, &store, source, &out, want)
    };
    let first_group = unique("group-a");
    let first = run(first_group.clone(), 3_000).await;
    assert_eq!(first.records_in, 3_000);
    // Offsets committed to the group at the final checkpoint name the next record to read.
    assert_eq!(committed_total(&first_group, &topic, 3), 3_000);

    produce(
        &topic,
        (0..2_000u64).map(|i| (format!("k{i}"), format!("b:{i}").into_bytes())),
    );
    // A new group has nothing committed: only the checkpoint can tell where to resume.
    let second = run(unique("group-b"), 5_000).await;
    assert_eq!(
        second.records_in, 2_000,
        "the restart re-read or skipped records"
    );
    let values = out.values();
    assert_eq!(values.len(), 5_000);
    let mut seen = std::collections::HashSet::new();
    for v in &values {
        assert!(seen.insert(v.clone()), "duplicate {v:?}");
    }
}

/// Rule: a restored checkpoint position never moves a partition back behind what its group
/// committed later. When another instance owned the partition after the checkpoint was taken
/// (it was handed over, then this instance restarted and regained it), the group's committed
/// offset is where that owner's processed output ends; resuming from the older checkpoint
/// offset would process those records twice.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_restored_position_behind_a_later_group_commit_resumes_at_the_commit() {
    let topic = topic_with(
        "ws-later-commit",
        1,
        (0..1_000u64).map(|i| (format!("k{i}"), format!("a:{i}").into_bytes())),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path()).unwrap();
    let id = unique("later-commit");
    let group = unique("group-later");
    let out = CollectSink::<Bytes>::new();
    let run = |want: usize| {
        let source = KafkaSource::builder(brokers(), &group)
            .topic(&topic)
            .build()
            .unwrap();
        run_into(&id, &store, source, &out, want)
    };
    assert_eq!(run(1_000).await.records_in, 1_000);
    // Another instance of the group processes the next 500 and commits after them.
    produce(
        &topic,
        (0..500u64).map(|i| (format!("k{i}"), format!("b:{i}").into_bytes())),
    );
    let other: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(1_500))
        .unwrap();
    let started = Instant::now();
    // The stopped pipeline's member may still be leaving the group: retry until it is empty.
    while let Err(e) = other.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
        assert!(started.elapsed() < Duration::from_secs(30), "commit: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    produce(
        &topic,
        (0..300u64).map(|i| (format!("k{i}"), format!("c:{i}").into_bytes())),
    );
    let second = run(1_300).await;
    assert_eq!(
        second.records_in, 300,
        "resumed from the checkpoint instead of the later commit"
    );
    assert!(out.values().iter().all(|v| !v.starts_with(b"b:")));
}
