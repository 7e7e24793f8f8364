//! The Kafka source's and sink's metrics, read from a Prometheus recorder installed for this
//! test binary, against a real broker.

mod common;

use common::*;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusBuilder;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_source_kafka::{KafkaSink, KafkaSource};

/// The value of the sample line of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find(|l| {
            let head = l.rsplit_once(' ').map(|(h, _)| h).unwrap_or(l);
            head[name.len()..].starts_with(['{', ' '])
                && labels
                    .iter()
                    .all(|(k, v)| head.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Rule: the source counts records in per partition (summing to what it read) and times its
/// offset commits; the transactional sink times its transaction commits.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn source_counts_records_per_partition_and_commits_are_timed() {
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let (input, output) = (unique("ws-metrics-in"), unique("ws-metrics-out"));
    create_topics(&[&input, &output], 2).await;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    // 300 records to partition 0, 200 to partition 1.
    for i in 0..500u32 {
        let v = format!("v{i}");
        let rec = BaseRecord::<(), _>::to(&input)
            .payload(&v)
            .partition(if i < 300 { 0 } else { 1 });
        producer.send(rec).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let p = Pipeline::new(
        PipelineConfig::new(unique("metrics"))
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_millis(300))
            .handle_signals(false),
    );
    let source = KafkaSource::builder(brokers(), unique("group"))
        .topic(&input)
        .build()
        .unwrap();
    let sink = KafkaSink::builder(brokers(), &output)
        .exactly_once(unique("metrics-sink"))
        .build()
        .unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let counter = read.clone();
    p.source("in", source, WatermarkStrategy::none())
        .map(move |v: Bytes| {
            counter.fetch_add(1, Ordering::Relaxed);
            v
        })
        .sink("out", sink);
    let stop = p.shutdown_handle();
    let run = tokio::spawn(p.run());
    let started = Instant::now();
    while read.load(Ordering::Relaxed) < 500 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a periodic checkpoint complete and its asynchronous offset commit come back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.shutdown();
    run.await.unwrap().unwrap();

    let text = prometheus.render();
    let per_partition = |p: &str| {
        sample(
            &text,
            "watershed_kafka_partition_records_in_total",
            &[("topic", &input), ("partition", p)],
        )
    };
    assert_eq!(per_partition("0"), Some(300.0), "{text}");
    assert_eq!(per_partition("1"), Some(200.0), "{text}");
    let commits = |kind: &str| {
        sample(
            &text,
            "watershed_kafka_commit_seconds_count",
            &[("kind", kind)],
        )
    };
    assert!(commits("offsets").is_some_and(|n| n >= 1.0), "{text}");
    assert!(commits("transaction").is_some_and(|n| n >= 1.0), "{text}");
}
