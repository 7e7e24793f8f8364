//! `KinesisSource` with enhanced fan-out (SubscribeToShard), against the local Kinesis-API
//! server (kinesis-mock): the round trip, the restart and resharding rules of the polling source
//! hold as well. Start the server with `scripts/brokers up`; settings as in `broker_kinesis.rs`.

mod common;

use common::*;
use watershed_core::connectors::CollectSink;
use watershed_core::CheckpointStore;
use watershed_source_kinesis::KinesisSource;

/// An enhanced fan-out source on `stream` (TRIM_HORIZON when there is no checkpoint).
fn efo_source(stream: &str) -> KinesisSource {
    KinesisSource::builder(stream)
        .aws(aws())
        .start_position(watershed_source_kinesis::StartPosition::TrimHorizon)
        .shard_discovery_interval(std::time::Duration::from_millis(500))
        .enhanced_fan_out("watershed-efo")
        .build()
}

/// The consumer `watershed-efo` is registered on the stream and ACTIVE: the source read
/// through SubscribeToShard, not GetRecords.
async fn assert_efo_consumer_active(stream: &TestStream) {
    let arn = stream.arn().await;
    let consumer = stream
        .client
        .describe_stream_consumer()
        .stream_arn(arn)
        .consumer_name("watershed-efo")
        .send()
        .await
        .expect("the source registered its consumer");
    assert_eq!(
        consumer.consumer_description().map(|c| c.consumer_status()),
        Some(&aws_sdk_kinesis::types::ConsumerStatus::Active)
    );
}

/// N8 (issue 6, test 1 with enhanced fan-out): records written over two shards are all read
/// through SubscribeToShard exactly once, in sequence-number order per shard and write order
/// per key.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n8_enhanced_fan_out_round_trip_over_two_shards_reads_every_record_once_in_order() {
    const N: usize = 6_000;
    let stream = TestStream::create("ws-efo-roundtrip", 2).await;
    assert_eq!(
        write(aws(), &stream.name, &keyed_records(N, 64, 0)).await,
        N as u64
    );
    let source = efo_source(&stream.name);
    let stats = source.stats();
    let (summary, seen) = read_each_once("efo-roundtrip", source, N).await;
    assert_eq!(summary.records_in, N as u64);
    let shards: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(shards.len(), 2, "both shards were read");
    assert_eq!(stats.records(), N as u64);
    assert!(stats.subscriptions() >= 2, "read through subscriptions");
    assert_eq!(stats.calls(), 0, "no GetRecords while shards are open");
    assert_efo_consumer_active(&stream).await;
    stream.delete().await;
}

/// N8 + property 8: an enhanced fan-out pipeline stopped at a checkpoint and restarted (the
/// consumer is reused; its old subscriptions may still be held for a moment, which the reader
/// waits out) subscribes AFTER_SEQUENCE_NUMBER of each shard's checkpointed record: per shard,
/// the two runs together read the shard exactly.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n8_enhanced_fan_out_restart_resumes_after_the_checkpointed_sequence_numbers() {
    const FIRST: usize = 1_000;
    const SECOND: usize = 1_000;
    let stream = TestStream::create("ws-efo-resume", 2).await;
    write(aws(), &stream.name, &keyed_records(FIRST, 32, 0)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("checkpoint store");
    let collected = CollectSink::new();
    let first = read(
        "efo-resume",
        &store,
        efo_source(&stream.name),
        &collected,
        |n| n >= FIRST,
    )
    .await;
    assert!(
        first.last_checkpoint.is_some(),
        "the stop took a checkpoint"
    );
    assert_eq!(first.records_in as usize, FIRST);

    // Written while down; a restart that ignored the checkpoint would read the first
    // records again from TRIM_HORIZON.
    write(aws(), &stream.name, &keyed_records(SECOND, 32, FIRST)).await;
    let restarted = efo_source(&stream.name);
    let stats = restarted.stats();
    let second = read("efo-resume", &store, restarted, &collected, |n| {
        n >= FIRST + SECOND
    })
    .await;
    assert_eq!(
        second.records_in as usize, SECOND,
        "the second run reads only what the first did not"
    );
    let all = collected.values();
    assert_once_and_ordered(&all, FIRST + SECOND);
    assert_each_shard_read_exactly(&stream, &all).await;
    assert!(
        stats.subscriptions() >= 2,
        "one subscription per shard at least"
    );
    stream.delete().await;
}

/// N8 + N5: with enhanced fan-out, a split then a merge (the lineage listed at start) is read
/// parents before children: every record once, each key in write order, all four shards read.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n8_enhanced_fan_out_reads_parents_to_their_end_before_children() {
    read_split_and_merged_stream("ws-efo-lineage", "efo-lineage", efo_source).await;
}

/// N8 + N5: with enhanced fan-out, a split then a merge while the pipeline reads (the parent is
/// being read through its subscription when it closes): the parent's end is found once
/// ListShards reports it closed, its children start after it, and every record is read once
/// with each key in write order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n8_enhanced_fan_out_split_then_merge_mid_stream_reads_once_and_keeps_per_key_order() {
    let stream = TestStream::create("ws-efo-reshard", 1).await;
    reshard_while_reading(&stream, efo_source(&stream.name), "efo-reshard", true).await;
    stream.delete().await;
}
