//! Helpers shared by the broker tests: a client for the local Kinesis-API server, fresh
//! streams, writing through `KinesisSink`, running a pipeline until it collected enough, and
//! resharding a stream while it is read.
#![allow(dead_code)]

use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::connectors::CollectSink;
use watershed_core::connectors::GeneratorSource;
use watershed_core::{
    Batch, CheckpointStore, Collector, EventTime, FnOperator, Offset, Pipeline, PipelineConfig,
    Record, RunSummary, ShutdownHandle, WatermarkStrategy,
};
use watershed_source_kinesis::{AwsOptions, KinesisSink, KinesisSource, StartPosition};
use watershed_testkit::clients::kinesis_client;
use watershed_testkit::env::{aws_access_key_id, aws_region, aws_secret_access_key};

pub const TIMEOUT: Duration = Duration::from_secs(120);

#[allow(unused_imports)] // each test file uses a part
pub use watershed_testkit::env::{env_or, kinesis_endpoint as endpoint, unique};

/// Connection settings for the local server at `endpoint`.
pub fn aws_at(endpoint: &str) -> AwsOptions {
    AwsOptions::new()
        .endpoint_url(endpoint)
        .region(aws_region())
        .static_credentials(aws_access_key_id(), aws_secret_access_key())
}

pub fn aws() -> AwsOptions {
    aws_at(&endpoint())
}

/// A client of the local Kinesis-API server.
pub async fn client() -> Client {
    kinesis_client().await
}

/// A fresh stream that is deleted when the guard drops (kinesis-mock holds 50 shards in all).
pub struct TestStream {
    pub client: Client,
    pub name: String,
}

impl TestStream {
    pub async fn create(prefix: &str, shards: i32) -> TestStream {
        TestStream::create_named(&unique(prefix), shards).await
    }

    /// A stream of exactly this name (which must not exist).
    pub async fn create_named(name: &str, shards: i32) -> TestStream {
        let client = client().await;
        let name = name.to_owned();
        client
            .create_stream()
            .stream_name(&name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        let stream = TestStream { client, name };
        stream.wait_active().await;
        stream
    }

    pub async fn wait_active(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let summary = self
                .client
                .describe_stream_summary()
                .stream_name(&self.name)
                .send()
                .await
                .expect("DescribeStreamSummary");
            let summary = summary.stream_description_summary().expect("summary");
            if summary.stream_status() == &StreamStatus::Active {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stream {} never became ACTIVE",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stream's ARN.
    pub async fn arn(&self) -> String {
        self.client
            .describe_stream_summary()
            .stream_name(&self.name)
            .send()
            .await
            .expect("DescribeStreamSummary")
            .stream_description_summary()
            .expect("summary")
            .stream_arn()
            .to_owned()
    }

    /// Open shard ids, in ListShards order.
    pub async fn open_shards(&self) -> Vec<(String, String, String)> {
        let out = self
            .client
            .list_shards()
            .stream_name(&self.name)
            .send()
            .await
            .expect("ListShards");
        out.shards()
            .iter()
            .filter(|s| {
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none()
            })
            .map(|s| {
                let range = s.hash_key_range().expect("hash key range");
                (
                    s.shard_id().to_owned(),
                    range.starting_hash_key().to_owned(),
                    range.ending_hash_key().to_owned(),
                )
            })
            .collect()
    }

    pub async fn delete(self) {
        let _ = self
            .client
            .delete_stream()
            .stream_name(&self.name)
            .enforce_consumer_deletion(true)
            .send()
            .await;
    }
}

/// Writes `(key, payload)` records with the crate's sink, through a pipeline whose bounded
/// source ends after them (the final checkpoint's pre-commit flushes). Returns the records
/// Kinesis acknowledged.
pub async fn write(aws: AwsOptions, stream: &str, records: &[(String, String)]) -> u64 {
    let sink = KinesisSink::builder(stream).aws(aws).build();
    write_with(sink, records).await
}

pub async fn write_with(sink: KinesisSink, records: &[(String, String)]) -> u64 {
    let stats = sink.stats();
    let records: Arc<Vec<(String, String)>> = Arc::new(records.to_vec());
    let n = records.len() as u64;
    let input = GeneratorSource::sized(vec![n], move |_, i| {
        let (k, v) = &records[i as usize];
        Record::new(Bytes::from(v.clone()), EventTime(i as i64)).with_key(k.clone())
    })
    .batch_size(700);
    let p = Pipeline::new(
        PipelineConfig::new(unique("writer"))
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    p.source("input", input, WatermarkStrategy::none())
        .sink("kinesis", sink);
    tokio::time::timeout(TIMEOUT, p.run())
        .await
        .expect("writer finishes")
        .expect("writer pipeline");
    stats.records()
}

/// What the tests collect per record: shard, sequence number, partition key, payload.
pub type Seen = (String, String, String, String);

pub fn seen(r: &Record<Bytes>) -> Seen {
    let origin = r
        .origin
        .as_ref()
        .expect("kinesis records carry their origin");
    let sequence = match &origin.offset {
        Offset::Sequence(s) => s.number.clone(),
        other => panic!("a Kinesis offset is a sequence number, got {other:?}"),
    };
    (
        origin.split().to_string(),
        sequence,
        String::from_utf8(r.key.clone().unwrap_or_default().to_vec()).expect("utf-8 key"),
        String::from_utf8(r.value.to_vec()).expect("utf-8 payload"),
    )
}

/// Maps raw Kinesis records to (shard, sequence, key, payload), which CollectSink keeps.
pub fn describe() -> FnOperator<Bytes, Seen, impl FnMut(Batch<Bytes>, &mut Collector<Seen>)> {
    FnOperator::new(|batch: Batch<Bytes>, out: &mut Collector<Seen>| {
        for r in batch {
            let s = seen(&r);
            out.emit(r.map(|_| s));
        }
    })
}

/// Reads with `source` into `collected` until `enough`, then stops gracefully.
pub async fn read(
    id: &str,
    store: &CheckpointStore,
    source: KinesisSource,
    collected: &CollectSink<Seen>,
    enough: impl Fn(usize) -> bool,
) -> RunSummary {
    let p = Pipeline::new(pipeline_config(id, store));
    let shutdown = p.shutdown_handle();
    p.source("kinesis", source, WatermarkStrategy::none())
        .apply("describe", describe())
        .sink("collect", collected.clone());
    run_until(p.run(), shutdown, collected, enough).await
}

/// Reads `expected` records with `source` into a fresh sink (in-memory checkpoints), checks
/// that each arrived once and in order per shard and key, and returns the run's summary and
/// what arrived.
pub async fn read_each_once(
    id: &str,
    source: KinesisSource,
    expected: usize,
) -> (RunSummary, Vec<Seen>) {
    let collected = CollectSink::new();
    let summary = read(id, &CheckpointStore::memory(), source, &collected, |n| {
        n >= expected
    })
    .await;
    let seen = collected.values();
    assert_once_and_ordered(&seen, expected);
    (summary, seen)
}

/// [`read`] (in-memory checkpoints), started in a task of its own so the test can act on the
/// stream meanwhile; [`Reading::finish`] waits for it.
pub fn start_reading(
    id: &str,
    source: KinesisSource,
    collected: &CollectSink<Seen>,
    enough: impl Fn(usize) -> bool + Send + 'static,
) -> Reading {
    let (id, collected) = (id.to_owned(), collected.clone());
    Reading(tokio::spawn(async move {
        read(&id, &CheckpointStore::memory(), source, &collected, enough).await
    }))
}

/// A read started by [`start_reading`].
pub struct Reading(tokio::task::JoinHandle<RunSummary>);

impl Reading {
    /// Waits for the read to collect enough and stop.
    pub async fn finish(self) -> RunSummary {
        tokio::time::timeout(TIMEOUT, self.0)
            .await
            .expect("reader finishes")
            .expect("reader task")
    }
}

pub fn source(aws: AwsOptions, stream: &str) -> KinesisSource {
    KinesisSource::builder(stream)
        .aws(aws)
        .start_position(StartPosition::TrimHorizon)
        .shard_discovery_interval(Duration::from_millis(500))
        .build()
}

pub fn pipeline_config(id: &str, store: &CheckpointStore) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(store.clone())
        .checkpoint_interval(Duration::from_millis(200))
        .handle_signals(false)
}

/// Runs `run` until `sink` committed at least `until(count)` records, then stops it gracefully.
pub async fn run_until<T, F>(
    run: F,
    shutdown: ShutdownHandle,
    sink: &CollectSink<T>,
    enough: impl Fn(usize) -> bool,
) -> RunSummary
where
    T: Clone + Send + 'static,
    F: Future<Output = watershed_core::Result<RunSummary>> + Send + 'static,
{
    let task = tokio::spawn(run);
    let deadline = Instant::now() + TIMEOUT;
    while !enough(sink.records().len()) {
        if task.is_finished() {
            let r = task.await.expect("pipeline task");
            panic!("pipeline ended early: {r:?}");
        }
        assert!(
            Instant::now() < deadline,
            "only {} records collected",
            sink.records().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.shutdown();
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("graceful stop finishes")
        .expect("pipeline task")
        .expect("pipeline ran")
}

/// Every record of `shard` as (sequence number, payload), read directly with GetRecords from
/// TRIM_HORIZON until the shard end or an empty response.
pub async fn read_shard_raw(client: &Client, stream: &str, shard: &str) -> Vec<(String, String)> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator()
        .map(str::to_owned);
    let mut out = Vec::new();
    while let Some(it) = iterator {
        let response = client
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .expect("GetRecords");
        for r in response.records() {
            out.push((
                r.sequence_number().to_owned(),
                String::from_utf8(r.data().as_ref().to_vec()).expect("utf-8"),
            ));
        }
        if response.records().is_empty() {
            break;
        }
        iterator = response.next_shard_iterator().map(str::to_owned);
    }
    out
}

/// `n` records over `keys` partition keys; the payload `key|i` carries the global index, so
/// per-key order can be checked on the read side.
pub fn keyed_records(n: usize, keys: usize, offset: usize) -> Vec<(String, String)> {
    (offset..offset + n)
        .map(|i| {
            let key = format!("key-{}", i % keys);
            let payload = format!("{key}|{i}");
            (key, payload)
        })
        .collect()
}

/// Checks, over what a pipeline collected: every expected payload exactly once, sequence
/// numbers strictly increasing within each shard, payload indices increasing within each key.
pub fn assert_once_and_ordered(seen: &[Seen], expected: usize) {
    use std::collections::{HashMap, HashSet};
    let payloads: HashSet<&str> = seen.iter().map(|s| s.3.as_str()).collect();
    assert_eq!(payloads.len(), seen.len(), "no record is read twice");
    assert_eq!(seen.len(), expected, "every record is read");
    let mut last_seq: HashMap<&str, &str> = HashMap::new();
    let mut last_index: HashMap<&str, usize> = HashMap::new();
    for (shard, seq, key, payload) in seen {
        if let Some(prev) = last_seq.insert(shard, seq) {
            assert_eq!(
                watershed_source_kinesis::cmp_sequence_numbers(prev, seq),
                std::cmp::Ordering::Less,
                "shard {shard}: sequence numbers increase ({prev} then {seq})"
            );
        }
        let index: usize = payload
            .rsplit('|')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("payload key|index");
        if let Some(prev) = last_index.insert(key, index) {
            assert!(prev < index, "key {key}: record {index} read after {prev}");
        }
    }
}

/// Per shard, the sequence numbers in `seen` are exactly the shard's content (no gap, no
/// repeat), as a raw GetRecords read from TRIM_HORIZON returns it.
pub async fn assert_each_shard_read_exactly(stream: &TestStream, seen: &[Seen]) {
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
pub async fn write_through_split_and_merge(
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

/// Records written in each phase of [`write_through_split_and_merge`].
pub const PHASE: usize = 400;

/// Every record of the three phases read once, in order, from all four shards.
pub fn assert_resharded_read(seen: &[Seen], summary: &watershed_core::RunSummary) {
    assert_once_and_ordered(seen, 3 * PHASE);
    assert_eq!(summary.records_in, 3 * PHASE as u64);
    let shards: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        shards.len(),
        4,
        "parent, two children and the merged shard were read"
    );
}

/// Runs `source` while `stream` goes through a split and a merge, and checks the read. With
/// `read_before_split`, the split waits until the source returned a record of the first phase,
/// so the parent is open and being read when it closes.
pub async fn reshard_while_reading(
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

/// Writes a split then a merge of a one-shard stream before any source starts (the whole
/// lineage is listed at the start), reads it with `make_source` and checks the resharded read.
pub async fn read_split_and_merged_stream(
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
