//! The per-shard utilisation gauges `KinesisSink` and `KinesisSource` export through the
//! `metrics` facade, read with `metrics-util`'s debugging recorder, against the local
//! Kinesis-API server (kinesis-mock). Start it with `scripts/brokers up`.

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::{
    CheckpointStore, EventTime, Pipeline, PipelineConfig, Record, WatermarkStrategy,
};
use watershed_source_kinesis::{AwsOptions, KinesisSink, KinesisSource, StartPosition};
use watershed_testkit::clients::kinesis_client;
use watershed_testkit::env::{
    aws_access_key_id, aws_region, aws_secret_access_key, kinesis_endpoint, unique,
};

const N: u64 = 1_000;

fn snapshotter() -> &'static Snapshotter {
    static S: OnceLock<Snapshotter> = OnceLock::new();
    S.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let s = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        s
    })
}

/// The gauge `name` per shard of `stream`.
fn gauges(name: &str, stream: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let labels: HashMap<&str, &str> =
            key.key().labels().map(|l| (l.key(), l.value())).collect();
        if key.key().name() == name && labels.get("stream") == Some(&stream) {
            if let DebugValue::Gauge(v) = value {
                out.insert(labels["shard"].to_owned(), v.into_inner());
            }
        }
    }
    out
}

fn aws() -> AwsOptions {
    AwsOptions::new()
        .endpoint_url(kinesis_endpoint())
        .region(aws_region())
        .static_credentials(aws_access_key_id(), aws_secret_access_key())
}

fn config(id: &str) -> PipelineConfig {
    PipelineConfig::new(unique(id))
        .checkpoint_store(CheckpointStore::memory())
        .checkpoint_interval(Duration::from_millis(200))
        .handle_signals(false)
}

/// Writes N records (half under one key) with the sink.
async fn write(stream: &str) {
    let input = GeneratorSource::sized(vec![N], |_, i| {
        let key = if i % 2 == 0 {
            "hot".to_owned()
        } else {
            format!("k{i}")
        };
        Record::new(Bytes::from(vec![b'x'; 200]), EventTime(i as i64)).with_key(key)
    })
    .batch_size(250);
    let p = Pipeline::new(config("gauge-writer"));
    p.source("input", input, WatermarkStrategy::none())
        .sink("kinesis", KinesisSink::builder(stream).aws(aws()).build());
    tokio::time::timeout(Duration::from_secs(120), p.run())
        .await
        .expect("writer finishes")
        .expect("writer");
}

/// Reads until N records arrived, then stops.
async fn read(stream: &str) {
    let source = KinesisSource::builder(stream)
        .aws(aws())
        .start_position(StartPosition::TrimHorizon)
        .build();
    let collected: CollectSink<Bytes> = CollectSink::new();
    let p = Pipeline::new(config("gauge-reader"));
    let shutdown = p.shutdown_handle();
    p.source("kinesis", source, WatermarkStrategy::none())
        .sink("collect", collected.clone());
    let task = tokio::spawn(p.run());
    let deadline = Instant::now() + Duration::from_secs(120);
    while (collected.records().len() as u64) < N {
        assert!(
            Instant::now() < deadline && !task.is_finished(),
            "read {} of {N}",
            collected.records().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.shutdown();
    task.await.expect("reader task").expect("reader");
}

/// Issue 23: after writing and reading, each shard has a write and a read utilisation gauge;
/// the hot key's shard has the larger write utilisation.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sink_and_source_export_per_shard_utilisation_gauges() {
    snapshotter();
    let client = kinesis_client().await;
    let stream = unique("ws-gauges");
    client
        .create_stream()
        .stream_name(&stream)
        .shard_count(2)
        .send()
        .await
        .expect("CreateStream");
    let deadline = Instant::now() + Duration::from_secs(60);
    while watershed_advisor::open_shards(&client, &stream)
        .await
        .map_or(0, |s| s.len())
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "stream {stream} never listed its shards"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let out = client
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let status = out
            .stream_description_summary()
            .expect("summary")
            .stream_status()
            .clone();
        if status == aws_sdk_kinesis::types::StreamStatus::Active {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream {stream} never became ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    write(&stream).await;
    let written = gauges("watershed_kinesis_shard_write_utilisation", &stream);
    assert_eq!(written.len(), 2, "{written:?}");
    let (low, high) = {
        let mut v: Vec<f64> = written.values().copied().collect();
        v.sort_by(f64::total_cmp);
        (v[0], v[1])
    };
    // At least half the records (all of "hot" plus its share of the rest) on one shard, in
    // at most the 10 s window: above 500 / 10 / 1,000.
    assert!(high > 0.05 && high > low, "{written:?}");
    read(&stream).await;
    let read = gauges("watershed_kinesis_shard_read_utilisation", &stream);
    assert_eq!(read.len(), 2, "{read:?}");
    assert!(read.values().all(|&u| u > 0.0 && u < 2.0), "{read:?}");
    let _ = client.delete_stream().stream_name(&stream).send().await;
}
