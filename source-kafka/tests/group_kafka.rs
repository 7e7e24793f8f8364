//! Kafka sources of several pipeline instances in one consumer group, against a real Apache
//! Kafka broker: they share the partitions, and take over a stopped instance's partitions at its
//! committed offsets. Start one with `scripts/brokers up` (or run everything with
//! `scripts/test.sh`).

mod common;

use common::*;

use bytes::Bytes;
use std::time::{Duration, Instant};
use watershed_core::connectors::CollectSink;
use watershed_core::*;
use watershed_source_kafka::KafkaSource;

/// Rule: two pipeline instances in one consumer group split the partitions between them; when
/// one stops gracefully, its partitions move to the other, which resumes at the offsets the
/// stopped one committed at its final checkpoint: together they process every record once.
/// (Rebalances happen here while the topic is quiet; a partition moved while its records are in
/// flight is covered by `partitions_moving_between_live_instances_are_handed_over_exactly_once`.)
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn two_instances_share_partitions_and_take_over_on_stop_without_loss_or_duplicates() {
    two_instances_share_partitions(None).await;
}

/// The same with the eager protocol (`range`): every rebalance revokes all partitions and
/// assigns them again, most back to the instance that had them, so each partition's messages
/// must keep reaching the source's own fetch queue across re-assignments.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn with_the_eager_protocol_reassigned_partitions_keep_being_read_once() {
    two_instances_share_partitions(Some("range")).await;
}

async fn two_instances_share_partitions(assignment_strategy: Option<&str>) {
    let topic = unique("ws-scale");
    create_topic(&topic, 6).await;
    let group = unique("group-scale");
    let start = |name: &str, sink: CollectSink<Bytes>| {
        let p = Pipeline::new(config(&unique(name), &CheckpointStore::memory()));
        // Dynamic membership: a stopped instance leaves the group at once (a static member
        // would keep its partitions until its session timed out).
        let mut source = KafkaSource::builder(brokers(), &group).topic(&topic);
        if let Some(strategy) = assignment_strategy {
            source = source.property("partition.assignment.strategy", strategy);
        }
        let source = source.build().unwrap();
        p.source("kafka", source, WatermarkStrategy::none())
            .sink("out", sink);
        let stop = p.shutdown_handle();
        (stop, tokio::spawn(p.run()))
    };
    let wait_for = |a: &CollectSink<Bytes>, b: &CollectSink<Bytes>, n: usize| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let started = Instant::now();
            while a.values().len() + b.values().len() < n
                && started.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let batch = |tag: &str, n: u64| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("k{i}"), format!("{tag}:{i}").into_bytes()))
            .collect()
    };
    let (a_out, b_out) = (CollectSink::new(), CollectSink::new());
    produce(&topic, batch("one", 1_200));
    let (a_stop, a_run) = start("a", a_out.clone());
    wait_for(&a_out, &b_out, 1_200).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // a checkpoint commits a's offsets
    let (b_stop, b_run) = start("b", b_out.clone());
    tokio::time::sleep(Duration::from_secs(4)).await; // the group rebalances
    produce(&topic, batch("two", 1_200));
    wait_for(&a_out, &b_out, 2_400).await;
    let b_share = b_out.values().len();
    assert!(b_share > 0, "the second instance got no partition");
    assert!(
        a_out.values().len() > 1_200,
        "the first instance kept no partition"
    );

    a_stop.shutdown();
    a_run.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // b takes a's partitions
    produce(&topic, batch("three", 1_200));
    wait_for(&a_out, &b_out, 3_600).await;
    b_stop.shutdown();
    b_run.await.unwrap().unwrap();

    let mut all: Vec<Bytes> = a_out.values();
    all.extend(b_out.values());
    let distinct: std::collections::HashSet<_> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), 3_600, "records lost");
    assert_eq!(all.len(), 3_600, "records duplicated");
    assert!(
        b_out.values().len() >= b_share + 1_200,
        "b did not take over a's partitions"
    );
}
