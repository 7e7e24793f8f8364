//! What the Kafka source reads, in real pipelines against a real Apache Kafka broker: every
//! record once and in per-partition order, with its key, headers, timestamp and origin, and an
//! undecodable record in the dead letters. Start one with `scripts/brokers up` (or run everything
//! with `scripts/test.sh`).

mod common;

use common::*;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use watershed_core::connectors::CollectSink;
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_source_kafka::KafkaSource;

/// Rule: every record of a 3-partition topic arrives exactly once, and records of one key
/// (hence one partition) arrive in the order they were produced.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn round_trip_of_100000_keyed_records_keeps_per_partition_order() {
    const N: u64 = 100_000;
    let topic = topic_with(
        "ws-roundtrip",
        3,
        (0..N).map(|i| {
            (
                format!("k{}", i % 17),
                format!("k{}:{i}", i % 17).into_bytes(),
            )
        }),
    )
    .await;
    let out = CollectSink::<Bytes>::new();
    let store = CheckpointStore::memory();
    let summary = run_into(
        &unique("roundtrip"),
        &store,
        source_on(&topic),
        &out,
        N as usize,
    )
    .await;
    assert_eq!(summary.records_in, N);
    let mut last: HashMap<String, u64> = HashMap::new();
    for v in out.values() {
        let (k, n) = parse(&v);
        if let Some(prev) = last.insert(k.clone(), n) {
            assert!(n > prev, "key {k}: {n} after {prev}");
        }
    }
    assert_eq!(out.values().len() as u64, N);
}

/// Rule: a record carries its Kafka key, headers (a null-valued one included), timestamp and
/// origin (topic, partition, offset); `without_headers()` leaves the headers out.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn records_carry_key_headers_timestamp_and_origin() {
    use rdkafka::message::{Header, OwnedHeaders};
    let topic = unique("ws-headers");
    create_topic(&topic, 1).await;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("abc"),
        })
        .insert(Header {
            key: "empty",
            value: None::<&[u8]>,
        });
    producer
        .send(
            BaseRecord::to(&topic)
                .key("user-7")
                .payload("v")
                .timestamp(1_700_000_000_123)
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    for with_headers in [true, false] {
        let p = Pipeline::new(config(&unique("headers"), &CheckpointStore::memory()));
        let mut source = KafkaSource::builder(brokers(), unique("group")).topic(&topic);
        if !with_headers {
            source = source.without_headers();
        }
        // The collecting sink keeps values only: look at the records on their way.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Record<Bytes>>::new()));
        let keep = seen.clone();
        p.source("kafka", source.build().unwrap(), WatermarkStrategy::none())
            .apply(
                "look",
                FnOperator::new(move |b: Batch<Bytes>, out: &mut Collector<Bytes>| {
                    keep.lock().unwrap().extend(b.iter().cloned());
                    out.emit_batch(b);
                }),
            )
            .sink("out", CollectSink::new());
        let check = seen.clone();
        run_until(p, Duration::from_secs(60), move || {
            !check.lock().unwrap().is_empty()
        })
        .await;
        let records = seen.lock().unwrap().clone();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.key.as_deref(), Some(&b"user-7"[..]));
        assert_eq!(r.timestamp, EventTime(1_700_000_000_123));
        let origin = r.origin.as_ref().unwrap();
        assert_eq!(origin.split().as_str(), format!("{topic}-0"));
        assert_eq!(origin.offset, Offset::Number(0));
        if with_headers {
            assert_eq!(r.headers.len(), 2);
            let trace = r.headers.get("trace").unwrap();
            assert_eq!(trace.value.as_deref(), Some(&b"abc"[..]));
            assert_eq!(r.headers.get("empty").unwrap().value, None);
        } else {
            assert!(r.headers.is_empty());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct View {
    page: String,
}

/// Rule: a record that fails to decode reaches the dead-letter sink with its topic, partition,
/// offset and reason, and the pipeline goes on with the next records.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn undecodable_record_goes_to_dead_letters_with_topic_partition_offset_and_reason() {
    let topic = topic_with(
        "ws-dlq",
        1,
        vec![
            ("a".to_string(), br#"{"page":"/a"}"#.to_vec()),
            ("b".to_string(), b"{not json".to_vec()),
            ("c".to_string(), br#"{"page":"/c"}"#.to_vec()),
        ],
    )
    .await;
    let p = Pipeline::new(config(&unique("dlq"), &CheckpointStore::memory()));
    let good = CollectSink::<View>::new();
    let dead = CollectSink::<DeadLetter>::new();
    let source = source_on(&topic);
    p.source("kafka", source, WatermarkStrategy::none())
        .decode_json::<View>()
        .sink("good", good.clone());
    p.dead_letter("dead", dead.clone());
    let (g, d) = (good.clone(), dead.clone());
    run_until(p, Duration::from_secs(60), move || {
        g.values().len() == 2 && d.values().len() == 1
    })
    .await;
    assert_eq!(
        good.values(),
        vec![View { page: "/a".into() }, View { page: "/c".into() }]
    );
    let dead = dead.values();
    assert_eq!(dead.len(), 1);
    let origin = dead[0].origin.as_ref().expect("origin");
    assert_eq!(origin.stream(), topic);
    assert_eq!(origin.split().as_str(), format!("{topic}-0"));
    assert_eq!(origin.offset, Offset::Number(1));
    assert!(
        dead[0].reason.contains("invalid JSON"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].payload, Bytes::from_static(b"{not json"));
}
