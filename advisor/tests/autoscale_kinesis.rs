//! The autoscaler end to end against the local Kinesis-API server (kinesis-mock): load held
//! above the threshold makes it scale a 2-shard stream to 4 (UpdateShardCount), while a
//! pipeline reads the stream throughout. Start the server with `scripts/brokers up`.

use aws_sdk_kinesis::Client;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use watershed_advisor::{
    advise, open_shards, sample, scale, AutoscaleConfig, Autoscaler, Decision, From, Observation,
};
use watershed_core::connectors::CollectSink;
use watershed_core::{CheckpointStore, Pipeline, PipelineConfig, WatermarkStrategy};
use watershed_source_kinesis::{AwsOptions, KinesisSource, StartPosition};
use watershed_testkit::clients::{kinesis_client, put_records};
use watershed_testkit::env::{
    aws_access_key_id, aws_region, aws_secret_access_key, kinesis_endpoint, unique,
};

const KEYS: usize = 20;

fn aws() -> AwsOptions {
    AwsOptions::new()
        .endpoint_url(kinesis_endpoint())
        .region(aws_region())
        .static_credentials(aws_access_key_id(), aws_secret_access_key())
}

/// Writes records `from..to` as `key-<i % KEYS>|<i>`, keyed by `key-<i % KEYS>`.
async fn write(client: &Client, stream: &str, from: usize, to: usize) {
    for chunk in (from..to).collect::<Vec<_>>().chunks(200) {
        let records: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|i| {
                let key = format!("key-{}", i % KEYS);
                let data = format!("{key}|{i}").into_bytes();
                (key, data)
            })
            .collect();
        put_records(client, stream, &records).await;
    }
}

/// An observation of the stream now: its open shards and mean write utilisation, sampled
/// from the trim horizon as `watershed-advisor autoscale` does.
async fn observe(client: &Client, stream: &str, at: Duration) -> Observation {
    let sampled = sample(client, stream, From::TrimHorizon, Duration::from_secs(10))
        .await
        .expect("sample");
    let advice = advise(&sampled, 0.6);
    let shards = advice.current_shards as u32;
    Observation {
        at,
        shards,
        mean_utilisation: advice.shard_equivalents / f64::from(shards),
        max_utilisation: advice
            .shards
            .iter()
            .map(|s| s.utilisation)
            .fold(0.0, f64::max),
    }
}

/// Issue 23: with the load held above the threshold for the sustain period, the autoscaler
/// decides 2 → 4 shards and UpdateShardCount carries it out; a pipeline reading the stream
/// throughout reads every record once, each key's records in write order. (The thresholds
/// are scaled down to the few hundred records/s the local server takes.)
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sustained_load_scales_2_to_4_and_a_reading_pipeline_sees_every_record_once() {
    let client = kinesis_client().await;
    let stream = unique("ws-autoscaled");
    client
        .create_stream()
        .stream_name(&stream)
        .shard_count(2)
        .send()
        .await
        .expect("CreateStream");
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let status = summary
            .stream_description_summary()
            .map(|d| d.stream_status());
        if status == Some(&aws_sdk_kinesis::types::StreamStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let collected: CollectSink<Bytes> = CollectSink::new();
    let pipeline = Pipeline::new(
        PipelineConfig::new(unique("autoscaled"))
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_millis(200))
            .handle_signals(false),
    );
    let shutdown = pipeline.shutdown_handle();
    let source = KinesisSource::builder(&stream)
        .aws(aws())
        .start_position(StartPosition::TrimHorizon)
        .shard_discovery_interval(Duration::from_millis(500))
        .build();
    pipeline
        .source("kinesis", source, WatermarkStrategy::none())
        .sink("collect", collected.clone());
    let reading = tokio::spawn(pipeline.run());

    let mut scaler = Autoscaler::new(AutoscaleConfig {
        high: 0.0005,
        low: 0.0001,
        target: 0.0001,
        sustain: Duration::from_secs(5),
        cooldown: Duration::from_secs(60),
        min_shards: 1,
        max_shards: 8,
    });
    write(&client, &stream, 0, 600).await;
    let first = scaler.decide(observe(&client, &stream, Duration::ZERO).await);
    assert!(
        matches!(first, Decision::Hold(_)),
        "not yet sustained: {first:?}"
    );
    write(&client, &stream, 600, 1_200).await;
    let later = observe(&client, &stream, Duration::from_secs(6)).await;
    let Decision::Scale { from, to, .. } = scaler.decide(later) else {
        panic!("held above the threshold for the sustain period: scale")
    };
    assert_eq!((from, to), (2, 4), "at most doubling per call");
    scale(&client, &stream, to, Duration::from_secs(60))
        .await
        .expect("UpdateShardCount");
    assert_eq!(
        open_shards(&client, &stream)
            .await
            .expect("ListShards")
            .len(),
        4
    );
    write(&client, &stream, 1_200, 2_000).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    while collected.records().len() < 2_000 {
        assert!(
            Instant::now() < deadline && !reading.is_finished(),
            "read {} of 2000",
            collected.records().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.shutdown();
    reading.await.expect("reader task").expect("reader");
    let values = collected.values();
    let payloads: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let unique_payloads: HashSet<&String> = payloads.iter().collect();
    assert_eq!(payloads.len(), 2_000, "every record once");
    assert_eq!(unique_payloads.len(), 2_000, "none twice");
    let mut last: HashMap<&str, usize> = HashMap::new();
    for p in &payloads {
        let (key, index) = p.split_once('|').expect("key|index");
        let index: usize = index.parse().expect("index");
        if let Some(before) = last.insert(key, index) {
            assert!(before < index, "{key}: {index} read after {before}");
        }
    }
    let _ = client.delete_stream().stream_name(&stream).send().await;
}
