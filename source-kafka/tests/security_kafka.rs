//! Managed Kafka (Amazon MSK, Confluent Cloud, Aiven) is reached over SASL_SSL and may hold
//! zstd-compressed topics. These tests use the SASL_SSL listener `scripts/brokers` starts
//! (TLS with a self-signed certificate, SCRAM-SHA-512 and PLAIN, user `watershed`).

mod common;

use bytes::Bytes;
use common::*;

use std::time::{Duration, Instant};
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_source_kafka::{KafkaSink, KafkaSource};

fn sasl_brokers() -> String {
    std::env::var("WATERSHED_KAFKA_SASL_BROKERS").unwrap_or_else(|_| "127.0.0.1:9094".into())
}

/// The local listener's certificate, which clients must trust (`ssl.ca.location`).
fn ca_location() -> String {
    std::env::var("WATERSHED_KAFKA_CA").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.local/kafka/tls/ca.pem").into()
    })
}

/// The client properties a managed cluster asks for, as a user would set them.
fn security(mechanism: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_SSL".into()),
        ("sasl.mechanism", mechanism.into()),
        ("sasl.username", "watershed".into()),
        ("sasl.password", password.into()),
        ("ssl.ca.location", ca_location()),
    ]
}

fn secured_source(topic: &str, mechanism: &str, password: &str) -> KafkaSource {
    let mut b = KafkaSource::builder(sasl_brokers(), unique("group")).topic(topic);
    for (k, v) in security(mechanism, password) {
        b = b.property(k, v);
    }
    b.build().unwrap()
}

/// Writes `n` records `v-<i>` to `topic` through an exactly-once sink over SASL_SSL with zstd.
async fn write_secured(topic: &str, mechanism: &str, n: u64) {
    let mut sink = KafkaSink::builder(sasl_brokers(), topic)
        .exactly_once(unique("tx"))
        .property("compression.type", "zstd");
    for (k, v) in security(mechanism, "watershed-secret") {
        sink = sink.property(k, v);
    }
    let p = Pipeline::new(config(&unique("secured-write"), &CheckpointStore::memory()));
    p.source(
        "gen",
        GeneratorSource::new(1, n, |_, i| {
            Record::new(Bytes::from(format!("v-{i}")), EventTime(i as i64))
        }),
        WatermarkStrategy::none(),
    )
    .sink("kafka", sink.build().unwrap());
    p.run().await.unwrap();
}

/// Rule: over SASL_SSL, with SCRAM-SHA-512 and with PLAIN, the exactly-once sink writes
/// zstd-compressed batches and the source reads every record back, once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sasl_ssl_scram_and_plain_carry_zstd_topics_both_ways() {
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let topic = unique("ws-secured");
        create_topic(&topic, 2).await;
        write_secured(&topic, mechanism, 500).await;
        let out = CollectSink::new();
        let source = secured_source(&topic, mechanism, "watershed-secret");
        run_into(
            &unique("secured-read"),
            &CheckpointStore::memory(),
            source,
            &out,
            500,
        )
        .await;
        let mut got: Vec<String> = out
            .values()
            .iter()
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .collect();
        got.sort();
        let mut want: Vec<String> = (0..500).map(|i| format!("v-{i}")).collect();
        want.sort();
        assert_eq!(got, want, "{mechanism}: every record once");
    }
}

/// Rule: a wrong password ends the source within seconds with an error that names the brokers
/// and says the credentials were refused, not an idle pipeline nor "cannot reach".
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_wrong_sasl_password_fails_the_source_promptly() {
    let topic = unique("ws-secured-denied");
    create_topic(&topic, 1).await;
    let p = Pipeline::new(config(&unique("denied"), &CheckpointStore::memory()));
    p.source(
        "kafka",
        secured_source(&topic, "SCRAM-SHA-512", "not-the-password"),
        WatermarkStrategy::none(),
    )
    .sink("out", CollectSink::<Bytes>::new());
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), p.run())
        .await
        .expect("fails within 20 s");
    let error = result.expect_err("refused credentials").to_string();
    assert!(error.contains(&sasl_brokers()), "{error}");
    assert!(
        error.contains("refused the client's credentials"),
        "{error}"
    );
    assert!(error.contains("sasl.password"), "says what to fix: {error}");
    // Reported as a refusal (not "cannot reach"), within 10 s even on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Rule: a broker certificate the client does not trust (here: only the system's public CAs)
/// ends the source within seconds with an error that names the brokers and the failed TLS
/// handshake, not an idle pipeline nor "cannot reach".
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn an_untrusted_broker_certificate_fails_the_source_promptly() {
    let topic = unique("ws-secured-untrusted");
    create_topic(&topic, 1).await;
    let mut b = KafkaSource::builder(sasl_brokers(), unique("group")).topic(&topic);
    for (k, v) in security("SCRAM-SHA-512", "watershed-secret") {
        b = b.property(k, v);
    }
    // librdkafka then verifies against the system's CA store, which knows no local certificate.
    let source = b.property("ssl.ca.location", "probe").build().unwrap();
    let p = Pipeline::new(config(&unique("untrusted"), &CheckpointStore::memory()));
    p.source("kafka", source, WatermarkStrategy::none())
        .sink("out", CollectSink::<Bytes>::new());
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), p.run())
        .await
        .expect("fails within 20 s");
    let error = result.expect_err("untrusted certificate").to_string();
    assert!(error.contains(&sasl_brokers()), "{error}");
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(
        error.contains("ssl.ca.location"),
        "says what to fix: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Rule: a sink given a wrong password fails when it opens, within seconds, with an error that
/// says the credentials were refused.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_wrong_sasl_password_fails_the_sink_promptly() {
    let topic = unique("ws-secured-denied-out");
    create_topic(&topic, 1).await;
    let mut sink = KafkaSink::builder(sasl_brokers(), &topic);
    for (k, v) in security("PLAIN", "not-the-password") {
        sink = sink.property(k, v);
    }
    let p = Pipeline::new(config(&unique("denied-out"), &CheckpointStore::memory()));
    p.source(
        "gen",
        GeneratorSource::new(1, 10, |_, i| {
            Record::new(Bytes::from(format!("v-{i}")), EventTime(i as i64))
        }),
        WatermarkStrategy::none(),
    )
    .sink("kafka", sink.build().unwrap());
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), p.run())
        .await
        .expect("fails within 20 s");
    let error = result.expect_err("refused credentials").to_string();
    assert!(
        error.contains("refused the client's credentials"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
