//! Helpers shared by the broker tests: a client for the local Kinesis-API server, fresh
//! streams, writing through `KinesisSink`, and running a pipeline until it collected enough.
#![allow(dead_code)]

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::config::{Credentials, Region};
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use watershed_core::connectors::CollectSink;
use watershed_core::connectors::GeneratorSource;
use watershed_core::{
    Batch, CheckpointStore, Collector, EventTime, FnOperator, Offset, Pipeline, PipelineConfig,
    Record, RunSummary, ShutdownHandle, WatermarkStrategy,
};
use watershed_source_kinesis::{AwsOptions, KinesisSink, KinesisSource, StartPosition};

pub const TIMEOUT: Duration = Duration::from_secs(120);

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn endpoint() -> String {
    env_or("WATERSHED_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
}

/// Connection settings for the local server at `endpoint`.
pub fn aws_at(endpoint: &str) -> AwsOptions {
    AwsOptions::new()
        .endpoint_url(endpoint)
        .region(env_or("AWS_REGION", "us-east-1"))
        .static_credentials(
            env_or("AWS_ACCESS_KEY_ID", "test"),
            env_or("AWS_SECRET_ACCESS_KEY", "test"),
        )
}

pub fn aws() -> AwsOptions {
    aws_at(&endpoint())
}

pub async fn client() -> Client {
    let credentials = Credentials::new(
        env_or("AWS_ACCESS_KEY_ID", "test"),
        env_or("AWS_SECRET_ACCESS_KEY", "test"),
        None,
        None,
        "watershed-test",
    );
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(env_or("AWS_REGION", "us-east-1")))
        .credentials_provider(credentials)
        .load()
        .await;
    Client::new(&config)
}

/// A name no earlier run used, so tests never see each other's data.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A fresh stream that is deleted when the guard drops (kinesis-mock holds 50 shards in all).
pub struct TestStream {
    pub client: Client,
    pub name: String,
}

impl TestStream {
    pub async fn create(prefix: &str, shards: i32) -> TestStream {
        let client = client().await;
        let name = unique(prefix);
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
