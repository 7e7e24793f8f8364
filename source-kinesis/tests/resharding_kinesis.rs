//! `KinesisSource` across resharding, against the local Kinesis-API server (kinesis-mock):
//! parents are read to their end before their children, so every record is read once and each
//! key stays in write order. Start the server with `scripts/brokers up`; settings as in
//! `broker_kinesis.rs`.

mod common;

use common::*;
use watershed_source_kinesis::KinesisSource;

/// N5 (issue 6, test 3): splitting a shard and later merging its children while the pipeline
/// reads: every record is read once, and each partition key's records come out in write order
/// across parent → children → merged child, because children (found through ChildShards at
/// SHARD_END and ListShards) start only after SHARD_END of all their parents.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n5_split_then_merge_mid_stream_reads_once_and_keeps_per_key_order() {
    let stream = TestStream::create("ws-reshard", 1).await;
    // Slow reads (25 records per call, 5 calls/s) keep the parent unfinished while its
    // children already receive records: the case the ordering rule exists for.
    let source = KinesisSource::builder(&stream.name)
        .aws(aws())
        .start_position(watershed_source_kinesis::StartPosition::TrimHorizon)
        .shard_discovery_interval(std::time::Duration::from_millis(500))
        .max_records_per_call(25)
        .build();
    reshard_while_reading(&stream, source, "reshard", false).await;
    stream.delete().await;
}

/// N5: the same lineage found all at once (the source starts after both reshards, from
/// TRIM_HORIZON, and ListShards returns parent, children and merged child together): the
/// children wait for the parent's SHARD_END and the merged child for both children's.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n5_children_listed_with_their_parents_wait_for_every_parent_to_end() {
    read_split_and_merged_stream("ws-lineage", "lineage", |name| source(aws(), name)).await;
}

/// Issue 23: UpdateShardCount with UNIFORM_SCALING (what `watershed-advisor autoscale` calls)
/// from 2 to 4 shards while a pipeline reads the stream: every record is read once and each
/// key's records come out in write order across the old shards and the new ones.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn reading_through_a_uniform_scaling_from_2_to_4_shards_reads_once_in_key_order() {
    use aws_sdk_kinesis::types::ScalingType;
    let stream = TestStream::create("ws-scale", 2).await;
    let collected = watershed_core::connectors::CollectSink::new();
    let running = start_reading("scale", source(aws(), &stream.name), &collected, |n| {
        n >= 3 * PHASE
    });
    write(aws(), &stream.name, &keyed_records(PHASE, 20, 0)).await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while collected.records().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing read before the scaling"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stream
        .client
        .update_shard_count()
        .stream_name(&stream.name)
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    stream.wait_active().await;
    assert_eq!(
        stream.open_shards().await.len(),
        4,
        "scaled to 4 open shards"
    );
    write(aws(), &stream.name, &keyed_records(2 * PHASE, 20, PHASE)).await;
    let summary = running.finish().await;
    let seen = collected.values();
    assert_once_and_ordered(&seen, 3 * PHASE);
    assert_eq!(summary.records_in, 3 * PHASE as u64);
    let read: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    for (open, ..) in stream.open_shards().await {
        assert!(
            read.contains(open.as_str()),
            "new shard {open} read: {read:?}"
        );
    }
    assert!(
        read.len() >= 6,
        "the 2 closed shards and the 4 new ones: {read:?}"
    );
    stream.delete().await;
}
