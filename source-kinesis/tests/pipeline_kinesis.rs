//! `KinesisSource` and `KinesisSink` in real pipelines against the local Kinesis-API server
//! (kinesis-mock): round trip, resume from a checkpoint, resharding, dead letters.
//! Start the server with `scripts/brokers up`; settings as in `broker_kinesis.rs`.

mod common;

use bytes::Bytes;
use common::*;
use std::collections::BTreeMap;
use std::future::Future;
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

/// SEMANTICS §7 property 8: a pipeline stopped at a checkpoint and restarted continues exactly
/// after the checkpointed sequence number of every shard: per shard, what the two runs read
/// is, concatenated, exactly the shard's content (no gap, no repeat at the boundary).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn property_8_restart_resumes_after_the_checkpointed_sequence_numbers() {
    const N: usize = 3_000;
    let stream = TestStream::create("ws-resume", 2).await;
    let records = keyed_records(N, 32, 0);
    assert_eq!(write(aws(), &stream.name, &records).await, N as u64);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("checkpoint store");
    let collected = CollectSink::new();
    // Small GetRecords calls so that the first run stops mid-shard.
    let slow = || {
        KinesisSource::builder(&stream.name)
            .aws(aws())
            .start_position(watershed_source_kinesis::StartPosition::TrimHorizon)
            .max_records_per_call(50)
            .build()
    };
    let first = read("resume", &store, slow(), &collected, |n| n >= 500).await;
    assert!(
        first.last_checkpoint.is_some(),
        "the stop took a checkpoint"
    );
    let first_run = collected.values();
    assert!(first_run.len() < N, "the first run stopped mid-stream");

    // The restart uses LATEST for shards without a position: if the checkpoint were not used,
    // it would read nothing and the test would time out.
    let restarted = KinesisSource::builder(&stream.name)
        .aws(aws())
        .max_records_per_call(50)
        .build();
    let second = read("resume", &store, restarted, &collected, |n| n >= N).await;
    assert_eq!(
        second.records_in as usize,
        N - first_run.len(),
        "the second run reads only what the first did not"
    );
    let all = collected.values();
    assert_once_and_ordered(&all, N);

    assert_each_shard_read_exactly(&stream, &all).await;
    stream.delete().await;
}

/// Per shard, the sequence numbers in `seen` are exactly the shard's content (no gap, no
/// repeat), as a raw GetRecords read from TRIM_HORIZON returns it.
async fn assert_each_shard_read_exactly(stream: &TestStream, seen: &[Seen]) {
    let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in seen {
        by_shard.entry(&s.0).or_default().push(&s.1);
    }
    for (shard, read) in by_shard {
        let raw: Vec<String> = read_shard_raw(&stream.client, &stream.name, shard)
            .await
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(
            read, raw,
            "shard {shard}: the runs together read the shard exactly"
        );
    }
}

/// Writes three phases of `PHASE` records to a one-shard stream: before a split of the shard,
/// between the split and a merge of its two children, and after the merge. `before_split` runs
/// between the first phase and the split.
async fn write_through_split_and_merge(
    stream: &TestStream,
    before_split: impl Future<Output = ()>,
) {
    write(aws(), &stream.name, &keyed_records(PHASE, 20, 0)).await;
    before_split.await;
    let parent = stream.open_shards().await.remove(0).0;
    stream
        .client
        .split_shard()
        .stream_name(&stream.name)
        .shard_to_split(&parent)
        // The middle of the 128-bit hash key space.
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard");
    stream.wait_active().await;
    write(aws(), &stream.name, &keyed_records(PHASE, 20, PHASE)).await;

    let children = stream.open_shards().await;
    assert_eq!(children.len(), 2, "the split made two open children");
    stream
        .client
        .merge_shards()
        .stream_name(&stream.name)
        .shard_to_merge(&children[0].0)
        .adjacent_shard_to_merge(&children[1].0)
        .send()
        .await
        .expect("MergeShards");
    stream.wait_active().await;
    write(aws(), &stream.name, &keyed_records(PHASE, 20, 2 * PHASE)).await;
}

const PHASE: usize = 400;

fn assert_resharded_read(seen: &[Seen], summary: &watershed_core::RunSummary) {
    assert_once_and_ordered(seen, 3 * PHASE);
    assert_eq!(summary.records_in, 3 * PHASE as u64);
    let shards: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        shards.len(),
        4,
        "parent, two children and the merged shard were read"
    );
}

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

/// Runs `source` while `stream` goes through a split and a merge, and checks the read. With
/// `read_before_split`, the split waits until the source returned a record of the first phase,
/// so the parent is open and being read when it closes.
async fn reshard_while_reading(
    stream: &TestStream,
    source: KinesisSource,
    id: &str,
    read_before_split: bool,
) {
    let collected = CollectSink::new();
    let running = start_reading(id, source, &collected, |n| n >= 3 * PHASE);
    let first_read = {
        let collected = collected.clone();
        async move {
            let deadline = std::time::Instant::now() + TIMEOUT;
            while read_before_split && collected.records().is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nothing read before the split"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    write_through_split_and_merge(stream, first_read).await;
    let summary = running.finish().await;
    assert_resharded_read(&collected.values(), &summary);
}

/// N5: the same lineage found all at once (the source starts after both reshards, from
/// TRIM_HORIZON, and ListShards returns parent, children and merged child together): the
/// children wait for the parent's SHARD_END and the merged child for both children's.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n5_children_listed_with_their_parents_wait_for_every_parent_to_end() {
    read_split_and_merged_stream("ws-lineage", "lineage", |name| source(aws(), name)).await;
}

/// Writes a split then a merge of a one-shard stream before any source starts (the whole
/// lineage is listed at the start), reads it with `make_source` and checks the resharded read.
async fn read_split_and_merged_stream(
    prefix: &str,
    id: &str,
    make_source: impl FnOnce(&str) -> KinesisSource,
) {
    let stream = TestStream::create(prefix, 1).await;
    write_through_split_and_merge(&stream, async {}).await;
    let collected = CollectSink::new();
    let summary = read(
        id,
        &CheckpointStore::memory(),
        make_source(&stream.name),
        &collected,
        |n| n >= 3 * PHASE,
    )
    .await;
    assert_resharded_read(&collected.values(), &summary);
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

/// Fails like a crashed process after `limit` records have been returned.
struct CrashAfter {
    inner: KinesisSource,
    limit: usize,
    returned: usize,
}

#[watershed_core::async_trait]
impl watershed_core::Source for CrashAfter {
    type Item = Bytes;
    type Position = watershed_source_kinesis::KinesisPosition;

    async fn open(
        &mut self,
        restored: Option<Self::Position>,
    ) -> Result<(), watershed_core::BoxError> {
        self.inner.open(restored).await
    }

    async fn poll(
        &mut self,
        max_wait: std::time::Duration,
    ) -> Result<watershed_core::SourceEvent<Bytes>, watershed_core::BoxError> {
        if self.returned >= self.limit {
            return Err("injected crash".into());
        }
        let event = self.inner.poll(max_wait).await?;
        if let watershed_core::SourceEvent::Batch { records, .. } = &event {
            self.returned += records.len();
        }
        Ok(event)
    }

    fn position(&self) -> Self::Position {
        self.inner.position()
    }
}

/// C2 with Kinesis: a run that fails mid-stream (records read after the last checkpoint are
/// lost with it) and a restart from the last complete checkpoint together deliver every record
/// exactly once to an exactly-once sink, and each shard exactly in order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn restart_after_a_failure_resumes_from_the_last_complete_checkpoint() {
    const N: usize = 2_000;
    let stream = TestStream::create("ws-crash", 2).await;
    write(aws(), &stream.name, &keyed_records(N, 16, 0)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("store");
    let collected = CollectSink::new();
    let reader = || {
        KinesisSource::builder(&stream.name)
            .aws(aws())
            .start_position(watershed_source_kinesis::StartPosition::TrimHorizon)
            .max_records_per_call(40)
            .build()
    };

    let p = Pipeline::new(pipeline_config("crash", &store));
    let crashing = CrashAfter {
        inner: reader(),
        limit: 700,
        returned: 0,
    };
    p.source("kinesis", crashing, WatermarkStrategy::none())
        .apply("describe", describe())
        .sink("collect", collected.clone());
    let failed = tokio::time::timeout(TIMEOUT, p.run())
        .await
        .expect("the crashing run ends");
    assert!(failed.is_err(), "the injected crash stops the run");
    let before = collected.values().len();
    assert!(before < N, "the crash happened mid-stream");

    read("crash", &store, reader(), &collected, |n| n >= N).await;
    let all = collected.values();
    assert_once_and_ordered(&all, N);
    let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &all {
        by_shard.entry(&s.0).or_default().push(&s.1);
    }
    for (shard, read) in by_shard {
        let raw: Vec<String> = read_shard_raw(&stream.client, &stream.name, shard)
            .await
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(read, raw, "shard {shard}: read exactly, across the failure");
    }
    stream.delete().await;
}

/// Reads `stream` from `start` while `later` is written after the source opened; returns the
/// payloads read once `expected` arrived.
async fn read_from(
    stream: &TestStream,
    start: watershed_source_kinesis::StartPosition,
    later: &[(String, String)],
    expected: usize,
) -> Vec<String> {
    let collected = CollectSink::new();
    let source = KinesisSource::builder(&stream.name)
        .aws(aws())
        .start_position(start)
        .build();
    let running = start_reading("start", source, &collected, move |n| n >= expected);
    // Give the source time to open and take its iterators before the new records arrive.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    write(aws(), &stream.name, later).await;
    running.finish().await;
    let mut payloads: Vec<String> = collected.values().into_iter().map(|s| s.3).collect();
    payloads.sort();
    payloads
}

/// N2: with no checkpoint, `Latest` reads only records written after the source opened, and
/// `AtTimestamp(t)` reads from the first record that arrived at or after `t`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n2_start_positions_latest_and_at_timestamp_skip_older_records() {
    let stream = TestStream::create("ws-start", 1).await;
    let old = keyed_records(100, 5, 0);
    write(aws(), &stream.name, &old).await;
    // ApproximateArrivalTimestamp has millisecond resolution; leave a clear gap around `t`.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let middle = keyed_records(100, 5, 100);
    write(aws(), &stream.name, &middle).await;

    let newest = keyed_records(100, 5, 200);
    let latest = read_from(
        &stream,
        watershed_source_kinesis::StartPosition::Latest,
        &newest,
        100,
    )
    .await;
    let mut expected: Vec<String> = newest.iter().map(|(_, v)| v.clone()).collect();
    expected.sort();
    assert_eq!(
        latest, expected,
        "LATEST reads only what was written after open"
    );

    let even_newer = keyed_records(100, 5, 300);
    let from_t = read_from(
        &stream,
        watershed_source_kinesis::StartPosition::AtTimestamp(t),
        &even_newer,
        300,
    )
    .await;
    let mut expected: Vec<String> = middle
        .iter()
        .chain(&newest)
        .chain(&even_newer)
        .map(|(_, v)| v.clone())
        .collect();
    expected.sort();
    assert_eq!(
        from_t, expected,
        "AT_TIMESTAMP skips records that arrived before t"
    );
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

/// N2 + property 8 with LATEST: a shard opened at LATEST whose checkpoint was taken before it
/// returned any record resumes, after a restore, from the moment it was first opened — not at
/// a new LATEST. Every record written while the pipeline was down is read, and none written
/// (well) before the first start, so the fix is not "restart at TRIM_HORIZON".
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn latest_checkpointed_before_any_record_resumes_from_the_first_open_not_a_new_latest() {
    use watershed_source_kinesis::{StartPosition, LATEST_CLOCK_ALLOWANCE_MS};
    let stream = TestStream::create("ws-latest-restore", 2).await;
    write(aws(), &stream.name, &keyed_records(50, 8, 0)).await;
    // Older than the resolved start minus its clock allowance.
    tokio::time::sleep(std::time::Duration::from_millis(
        LATEST_CLOCK_ALLOWANCE_MS as u64 + 1_500,
    ))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("checkpoint store");
    let collected = CollectSink::new();
    let latest = || {
        KinesisSource::builder(&stream.name)
            .aws(aws())
            .start_position(StartPosition::Latest)
            .build()
    };

    // First run: opens both shards at LATEST, checkpoints while nothing arrives, stops.
    let p = Pipeline::new(pipeline_config("latest-restore", &store));
    let shutdown = p.shutdown_handle();
    p.source("kinesis", latest(), WatermarkStrategy::none())
        .apply("describe", describe())
        .sink("collect", collected.clone());
    let first = tokio::spawn(p.run());
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    shutdown.shutdown();
    let first = tokio::time::timeout(TIMEOUT, first)
        .await
        .expect("graceful stop finishes")
        .expect("pipeline task")
        .expect("first run");
    assert!(
        first.last_checkpoint.is_some(),
        "the stop took a checkpoint"
    );
    assert_eq!(first.records_in, 0, "nothing was written after the open");

    // Written while the pipeline is down.
    let down = keyed_records(200, 8, 50);
    assert_eq!(write(aws(), &stream.name, &down).await, 200);
    let second = read("latest-restore", &store, latest(), &collected, |n| n >= 200).await;
    assert_eq!(second.records_in, 200);
    let seen = collected.values();
    assert_once_and_ordered(&seen, 200);
    let mut read: Vec<&str> = seen.iter().map(|s| s.3.as_str()).collect();
    read.sort_unstable();
    let mut expected: Vec<&str> = down.iter().map(|(_, v)| v.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(
        read, expected,
        "exactly the records written while down are read"
    );
    stream.delete().await;
}

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
