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
