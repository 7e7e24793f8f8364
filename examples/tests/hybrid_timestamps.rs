//! Timestamps Kafka refuses cannot crash-loop the hybrid example or split its sinks: the
//! window results Kafka would refuse go to the dead letters with their reason, the Kafka and
//! S3 outputs otherwise agree, and a restart runs on. Needs the local brokers.

mod common;

use common::*;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::process::Command;
use std::time::{Duration, Instant};
use watershed_core::EventTime;
use watershed_examples::analytics::{ClickEvent, PageStats};

/// The valid clicks' minute (in the past, as the examples' generated streams are).
const START: i64 = 1_795_564_800_000;
const VALID: u32 = 500;

fn click(user: u32, page: &str, ts: i64) -> Vec<u8> {
    serde_json::to_vec(&ClickEvent {
        user,
        page: page.into(),
        ts,
        status: 200,
        agent: "Mozilla/5.0".into(),
    })
    .unwrap()
}

async fn create(topic: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let mut t = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    for r in admin
        .create_topics(&[t], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// One partition, in this order: 5 clicks on `/neg` at negative times (their window's result
/// carries −1, which Kafka refuses), the valid clicks on `/p`, then clicks on `/future` 30 and
/// 40 minutes ahead of now (the 40-minute one moves event time past the 30-minute window,
/// whose result the output topic — allowing 10 minutes ahead — refuses).
fn produce(topic: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let now = EventTime::now().millis();
    let mut payloads: Vec<Vec<u8>> = (0..5)
        .map(|u| click(u, "/neg", -5_000 + u as i64))
        .collect();
    payloads.extend((0..VALID).map(|u| click(u, "/p", START + u as i64 * 10)));
    payloads.push(click(1, "/future", now + 30 * 60_000));
    payloads.push(click(2, "/future", now + 40 * 60_000));
    for p in &payloads {
        producer
            .send(BaseRecord::<(), [u8]>::to(topic).payload(p))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// What the topic holds once at least one row arrived and 3 s passed without another, or
/// whatever it holds after `limit`.
fn kafka_rows_within(topic: &str, limit: Duration) -> Vec<PageStats> {
    let consumer = committed_consumer(topic);
    let (started, mut quiet) = (Instant::now(), Instant::now());
    let mut rows = Vec::new();
    while started.elapsed() < limit {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            rows.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
            quiet = Instant::now();
        } else if !rows.is_empty() && quiet.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    rows
}

/// Everything committed to `topic`, read to the end of every partition.
fn kafka_rows(topic: &str) -> Vec<PageStats> {
    read_committed_to_end(topic, Duration::from_secs(60))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect()
}

/// Runs hybrid for `secs`, then stops it with SIGTERM; fails if it exited by itself.
fn run_for(args: &[String], log: &std::path::Path, secs: u64) {
    let mut child = spawn_hybrid(args, log);
    std::thread::sleep(Duration::from_secs(secs));
    let early = child.try_wait().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        early.is_none(),
        "hybrid exited by itself ({early:?}):\n{text}"
    );
    assert!(status.success(), "hybrid stopped with {status}:\n{text}");
}

/// Rule: window results with timestamps the output topic refuses (negative; beyond its
/// `message.timestamp.after.max.ms`) go to the dead letters with a reason naming the topic;
/// the pipeline neither fails nor crash-loops; the Kafka output holds every other row, and
/// the S3 output holds those rows plus the refused ones, each once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn timestamps_kafka_refuses_go_to_the_dead_letters_and_the_sinks_agree() {
    let input = unique("ts-clicks");
    let output = unique("ts-stats");
    create(&input, &[]).await;
    create(&output, &[("message.timestamp.after.max.ms", "600000")]).await;
    produce(&input);

    let dir = tempfile::tempdir().unwrap();
    let id = unique("ts-hybrid");
    let prefix = unique("ts-hybrid");
    let args = hybrid_args(&input, &output, &id, &prefix, dir.path());
    let log = dir.path().join("hybrid.log");
    // Until the valid window is in Kafka (start-up and the group join take a while on a busy
    // machine), then a graceful stop.
    let mut child = spawn_hybrid(&args, &log);
    let first = kafka_rows_within(&output, Duration::from_secs(90));
    let early = child.try_wait().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        early.is_none(),
        "hybrid exited by itself ({early:?}):\n{text}"
    );
    assert!(status.success(), "hybrid stopped with {status}:\n{text}");
    assert!(!first.is_empty(), "no Kafka output within 90 s:\n{text}");
    // A restart has nothing to re-commit that Kafka could refuse, and runs on.
    run_for(&args, &log, 5);

    let kafka = kafka_rows(&output);
    let pages: Vec<&str> = kafka.iter().map(|s| s.page.as_str()).collect();
    assert_eq!(pages, ["/p"], "kafka rows: {kafka:?}");
    assert_eq!(kafka[0].views, u64::from(VALID));

    let mut s3: Vec<PageStats> = s3_lines(&format!("{prefix}/page-stats"))
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    s3.sort_by(|a, b| a.page.cmp(&b.page));
    let s3_pages: Vec<&str> = s3.iter().map(|s| s.page.as_str()).collect();
    assert_eq!(s3_pages, ["/future", "/neg", "/p"], "s3 rows: {s3:?}");
    assert_eq!(s3[2], kafka[0], "the sinks agree on the rows Kafka accepts");

    let refused: Vec<serde_json::Value> = s3_lines(&format!("{prefix}/dead-letters"))
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["node"] == "page-stats-kafka")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    for letter in &refused {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains(&output),
            "the reason names the topic: {reason}"
        );
        let row: PageStats = serde_json::from_str(letter["payload"].as_str().unwrap()).unwrap();
        assert!(s3.contains(&row), "a refused row is one S3 holds: {row:?}");
        assert_ne!(row.page, "/p");
    }
}
