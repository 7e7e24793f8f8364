//! Exactly-once Kafka → map → Kafka across `kill -9`, against a real broker.
//!
//! The pipeline runs in a child process: this test binary re-executes itself with
//! `WATERSHED_EOS_CHILD` set, which makes `eos_child_pipeline` run the pipeline until killed.

mod common;

use common::*;

use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_source_kafka::{KafkaSink, KafkaSource};

const CHILD: &str = "WATERSHED_EOS_CHILD";

/// The child: Kafka `in` → uppercase → Kafka `out`, exactly once, checkpoints every 300 ms into
/// the directory the parent gives. Runs until killed. Does nothing in a normal test run.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn eos_child_pipeline() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (input, output, dir, id) = (parts[0], parts[1], parts[2], parts[3]);
    let p = Pipeline::new(
        PipelineConfig::new(id)
            .checkpoint_store(CheckpointStore::local(dir).unwrap())
            .checkpoint_interval(Duration::from_millis(300)),
    );
    // Static membership: a restarted instance takes its partitions back at once instead of
    // waiting for the killed one's session to time out.
    let source = KafkaSource::builder(brokers(), format!("{id}-group"))
        .topic(input)
        .property("group.instance.id", format!("{id}-0"))
        .property("session.timeout.ms", "10000")
        .build()
        .unwrap();
    let sink = KafkaSink::builder(brokers(), output)
        .exactly_once(format!("{id}-sink"))
        .build()
        .unwrap();
    p.source("in", source, WatermarkStrategy::none())
        .map(|v: bytes::Bytes| bytes::Bytes::from(v.to_ascii_uppercase()))
        .sink("out", sink);
    p.run().await.unwrap();
}

fn spawn_child(spec: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "eos_child_pipeline",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD, spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Counts of each value in `topic` as a `read_committed` consumer sees them, after reading
/// until `expected` values arrived and then 2 s more (to catch late duplicates).
fn committed_values(topic: &str, expected: usize, deadline: Duration) -> HashMap<String, u32> {
    let consumer = committed_consumer(topic);
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut total = 0;
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    while started.elapsed() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let v = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                *counts.entry(v).or_default() += 1;
                total += 1;
            }
            _ => {
                if total >= expected {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_secs(2) {
                        break;
                    }
                }
            }
        }
    }
    counts
}

/// Rule: with the transactional sink, killing the pipeline with SIGKILL at arbitrary
/// moments and restarting it leaves every input record exactly once in the output as a
/// `read_committed` consumer sees it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn kafka_to_kafka_is_exactly_once_across_kill_9() {
    let input = unique("ws-eos-in");
    let output = unique("ws-eos-out");
    create_topics(&[&input, &output], 3).await;
    const N: usize = 20_000;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    // Half now, half while the pipeline is being killed, so kills land mid-stream.
    let send = |range: std::ops::Range<usize>| {
        for i in range {
            let v = format!("event-{i}");
            let k = format!("k{}", i % 13);
            let mut rec = BaseRecord::to(&input).key(&k).payload(&v);
            while let Err((_, r)) = producer.send(rec) {
                rec = r;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    send(0..N / 2);
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "{input}|{output}|{}|{}",
        dir.path().display(),
        unique("eos")
    );
    for (round, kill_after_ms) in [1500u64, 2300, 1100].into_iter().enumerate() {
        let mut child = spawn_child(&spec);
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        if round == 1 {
            send(N / 2..N);
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut child = spawn_child(&spec);
    let counts = committed_values(&output, N, Duration::from_secs(120));
    child.kill().unwrap();
    child.wait().unwrap();

    let duplicated: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(duplicated.is_empty(), "duplicates: {duplicated:?}");
    assert_eq!(counts.len(), N, "missing records");
    assert!(counts.keys().all(|v| v.starts_with("EVENT-")));
}

/// Rule (C6, C7 across a rebalance; Kafka Streams' commit on revoke): a partition moved from a
/// live instance to another while its records are in flight is handed over at a checkpoint.
/// Instance A runs alone mid-stream (long checkpoint interval, so it always holds records read
/// since its last checkpoint), then B joins the group and takes some partitions; A releases
/// them only after a checkpoint covering what it read of them has completed and their offsets
/// are committed, so B starts exactly where A's committed output ends. A `read_committed`
/// consumer of the output sees every input exactly once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn partitions_moving_between_live_instances_are_handed_over_exactly_once() {
    let input = unique("ws-handover-in");
    let output = unique("ws-handover-out");
    create_topics(&[&input, &output], 6).await;
    const N: usize = 20_000;
    let group = unique("handover-group");
    let start = |name: &str| {
        let id = unique(name);
        let p = Pipeline::new(
            PipelineConfig::new(&id)
                .checkpoint_store(CheckpointStore::memory())
                .checkpoint_interval(Duration::from_secs(3))
                .handle_signals(false),
        );
        let source = KafkaSource::builder(brokers(), &group)
            .topic(&input)
            .build()
            .unwrap();
        let sink = KafkaSink::builder(brokers(), &output)
            .exactly_once(format!("{id}-sink"))
            .build()
            .unwrap();
        let read = Arc::new(AtomicU64::new(0));
        let counter = read.clone();
        p.source("in", source, WatermarkStrategy::none())
            .map(move |v: bytes::Bytes| {
                counter.fetch_add(1, Ordering::Relaxed);
                bytes::Bytes::from(v.to_ascii_uppercase())
            })
            .sink("out", sink);
        let stop = p.shutdown_handle();
        (stop, tokio::spawn(p.run()), read)
    };
    // Input arrives steadily for the whole test, so records are always in flight.
    let producer_input = input.clone();
    let producing = std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for i in 0..N {
            let v = format!("event-{i}");
            let k = format!("k{}", i % 101);
            let mut rec = BaseRecord::to(&producer_input).key(&k).payload(&v);
            while let Err((_, r)) = producer.send(rec) {
                rec = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(40)); // ~2,500 records/s
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    });
    let (a_stop, a_run, a_read) = start("a");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(a_read.load(Ordering::Relaxed) > 0, "A read nothing alone");
    let (b_stop, b_run, b_read) = start("b");
    let started = Instant::now();
    while (a_read.load(Ordering::Relaxed) + b_read.load(Ordering::Relaxed)) < N as u64
        && started.elapsed() < Duration::from_secs(90)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producing.join().unwrap();
    let b_share = b_read.load(Ordering::Relaxed);
    a_stop.shutdown();
    b_stop.shutdown();
    a_run.await.unwrap().unwrap();
    b_run.await.unwrap().unwrap();

    let counts = committed_values(&output, N, Duration::from_secs(60));
    let duplicated: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    let n_duplicated = counts.values().filter(|c| **c > 1).count();
    assert!(
        duplicated.is_empty(),
        "{n_duplicated} records duplicated, e.g. {duplicated:?}"
    );
    assert_eq!(counts.len(), N, "missing records");
    assert!(b_share > 0, "B got no partition");
}
