//! What `KinesisSource` reads and `KinesisSink` writes in real pipelines against the local
//! Kinesis-API server (kinesis-mock): every record once and in order, KPL aggregates split into
//! their user records, undecodable records as dead letters, explicit hash keys placing records.
//! Start the server with `scripts/brokers up`; settings as in `broker_kinesis.rs`.

mod common;

use bytes::Bytes;
use common::*;
use watershed_core::connectors::CollectSink;
use watershed_core::{
    Batch, CheckpointStore, Collector, DeadLetter, FnOperator, Offset, Pipeline, WatermarkStrategy,
};
use watershed_source_kinesis::KinesisSource;

/// Rule (issue 6, test 1): records written with KinesisSink over two shards are all read by
/// KinesisSource exactly once, in sequence-number order per shard and write order per key.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn round_trip_over_two_shards_reads_every_record_once_in_shard_and_key_order() {
    const N: usize = 10_000;
    let stream = TestStream::create("ws-roundtrip", 2).await;
    let records = keyed_records(N, 64, 0);
    assert_eq!(write(aws(), &stream.name, &records).await, N as u64);

    let source = source(aws(), &stream.name);
    let stats = source.stats();
    let (summary, seen) = read_each_once("roundtrip", source, N).await;
    assert_eq!(summary.records_in, N as u64);
    let shards: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(shards.len(), 2, "both shards were read");
    assert_eq!(stats.throttled(), 0, "kinesis-mock does not throttle");
    assert_eq!(stats.subscriptions(), 0, "polling is the default");
    stream.delete().await;
}

/// Issue 6, test 5: a record that does not decode goes to the dead-letter sink with its
/// stream, shard and sequence number and the decoder's reason; the others go on.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn undecodable_record_goes_to_the_dead_letter_sink_with_shard_and_sequence_number() {
    let stream = TestStream::create("ws-deadletter", 1).await;
    let records: Vec<(String, String)> = [r#"{"id":1}"#, "not json", r#"{"id":2}"#, r#"{"id":3}"#]
        .iter()
        .map(|v| ("k".to_owned(), v.to_string()))
        .collect();
    write(aws(), &stream.name, &records).await;

    let good = CollectSink::<serde_json::Value>::new();
    let dead = CollectSink::<DeadLetter>::new();
    let p = Pipeline::new(pipeline_config("deadletter", &CheckpointStore::memory()));
    let shutdown = p.shutdown_handle();
    p.source(
        "kinesis",
        source(aws(), &stream.name),
        WatermarkStrategy::none(),
    )
    .apply(
        "decode",
        FnOperator::new(
            |batch: Batch<Bytes>, out: &mut Collector<serde_json::Value>| {
                for r in batch {
                    match serde_json::from_slice::<serde_json::Value>(&r.value) {
                        Ok(v) => out.emit(r.map(|_| v)),
                        Err(e) => out.reject(
                            DeadLetter::new(e.to_string(), r.value.clone())
                                .at(r.origin.clone(), r.timestamp),
                        ),
                    }
                }
            },
        ),
    )
    .sink("good", good.clone());
    p.dead_letter("dead", dead.clone());
    let summary = run_until(p.run(), shutdown, &good, |n| n >= 3).await;
    assert_eq!(summary.rejected, 1);
    assert_eq!(good.values().len(), 3);

    let letters = dead.values();
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    assert_eq!(letter.payload, Bytes::from_static(b"not json"));
    assert_eq!(letter.node, "decode");
    assert!(
        letter.reason.contains("expected"),
        "reason: {}",
        letter.reason
    );
    let origin = letter
        .origin
        .as_ref()
        .expect("the dead letter names its origin");
    assert_eq!(origin.stream(), stream.name);
    let shard = stream.open_shards().await.remove(0).0;
    assert_eq!(origin.split().as_str(), shard);
    let raw = read_shard_raw(&stream.client, &stream.name, &shard).await;
    let expected_seq = &raw
        .iter()
        .find(|(_, v)| v == "not json")
        .expect("written")
        .0;
    match &origin.offset {
        Offset::Sequence(s) => {
            assert_eq!(
                &s.number, expected_seq,
                "the dead letter names the record's sequence number"
            );
            assert_eq!(s.sub, 0);
        }
        other => panic!("expected a sequence number, got {other:?}"),
    }
    stream.delete().await;
}

/// (sequence, sub-sequence, key, payload) of a user record.
type Sub = (String, u32, String, String);

/// N4: KPL aggregates written by a producer are split into their user records, each with the
/// aggregate's sequence number and its index as sub-sequence number, in order; a run stopped
/// at a checkpoint and restarted neither repeats nor skips a user record.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n4_kpl_aggregates_are_split_into_user_records_and_resume_without_repeats() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    use watershed_source_kinesis::{aggregate, cmp_positions, UserRecord};
    const AGGREGATES: usize = 20;
    const PER_AGGREGATE: usize = 50;
    let stream = TestStream::create("ws-kpl", 1).await;
    let entries: Vec<PutRecordsRequestEntry> = (0..AGGREGATES)
        .map(|a| {
            let users: Vec<UserRecord> = keyed_records(PER_AGGREGATE, 10, a * PER_AGGREGATE)
                .into_iter()
                .map(|(k, v)| UserRecord {
                    partition_key: k,
                    explicit_hash_key: None,
                    data: Bytes::from(v),
                })
                .collect();
            PutRecordsRequestEntry::builder()
                .data(Blob::new(aggregate(&users).to_vec()))
                .partition_key(format!("aggregate-{a}"))
                .build()
                .expect("entry")
        })
        .collect();
    let out = stream
        .client
        .put_records()
        .stream_name(&stream.name)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(out.failed_record_count(), Some(0));

    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("store");
    let collected = CollectSink::<Sub>::new();
    let run = |enough: usize| {
        let p = Pipeline::new(pipeline_config("kpl", &store));
        let shutdown = p.shutdown_handle();
        // Three aggregates per call, so the first run stops between aggregates.
        let source = KinesisSource::builder(&stream.name)
            .aws(aws())
            .start_position(watershed_source_kinesis::StartPosition::TrimHorizon)
            .max_records_per_call(3)
            .build();
        p.source("kinesis", source, WatermarkStrategy::none())
            .apply(
                "describe",
                FnOperator::new(|batch: Batch<Bytes>, out: &mut Collector<Sub>| {
                    for r in batch {
                        let (_, _, key, payload) = seen(&r);
                        let Some(Offset::Sequence(s)) = r.origin.as_ref().map(|o| &o.offset) else {
                            panic!("a sequence number");
                        };
                        let v = (s.number.clone(), s.sub, key, payload);
                        out.emit(r.map(|_| v));
                    }
                }),
            )
            .sink("collect", collected.clone());
        run_until(p.run(), shutdown, &collected, move |n| n >= enough)
    };
    run(300).await;
    let first = collected.values().len();
    assert!(
        first < AGGREGATES * PER_AGGREGATE,
        "the first run stopped mid-stream"
    );
    assert_eq!(first % PER_AGGREGATE, 0, "batches hold whole aggregates");
    run(AGGREGATES * PER_AGGREGATE).await;

    let all = collected.values();
    let payloads: std::collections::HashSet<&str> = all.iter().map(|s| s.3.as_str()).collect();
    assert_eq!(
        payloads.len(),
        AGGREGATES * PER_AGGREGATE,
        "every user record once"
    );
    assert_eq!(
        all.len(),
        AGGREGATES * PER_AGGREGATE,
        "no user record twice"
    );
    for pair in all.windows(2) {
        assert_eq!(
            cmp_positions((&pair[0].0, pair[0].1), (&pair[1].0, pair[1].1)),
            std::cmp::Ordering::Less,
            "(sequence, sub-sequence) increases"
        );
    }
    for (i, (_, sub, _, payload)) in all.iter().enumerate() {
        assert_eq!(
            *sub as usize,
            i % PER_AGGREGATE,
            "sub-sequence = index in the aggregate"
        );
        assert!(
            payload.ends_with(&format!("|{i}")),
            "user record {i} in write order"
        );
    }
    stream.delete().await;
}

/// Sink: an explicit hash key places a record on the shard owning that hash, whatever its
/// partition key (here every record on the shard whose range starts at 0).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sink_explicit_hash_key_chooses_the_shard() {
    const N: usize = 200;
    let stream = TestStream::create("ws-hashkey", 2).await;
    let sink = watershed_source_kinesis::KinesisSink::builder(&stream.name)
        .aws(aws())
        .explicit_hash_key(|_| Some("0".to_owned()))
        .build();
    assert_eq!(write_with(sink, &keyed_records(N, 50, 0)).await, N as u64);
    let shards = stream.open_shards().await;
    let (first, _, _) = shards
        .iter()
        .find(|(_, start, _)| start == "0")
        .expect("a shard owns hash 0");
    for (shard, _, _) in &shards {
        let count = read_shard_raw(&stream.client, &stream.name, shard)
            .await
            .len();
        let expected = if shard == first { N } else { 0 };
        assert_eq!(count, expected, "records on {shard}");
    }
    stream.delete().await;
}
