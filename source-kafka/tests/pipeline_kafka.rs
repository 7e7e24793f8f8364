//! The Kafka source and sink in real pipelines against a real Apache Kafka broker.
//! Start one with `scripts/brokers up` (or run everything with `scripts/test.sh`).

mod common;

use common::*;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_source_kafka::{KafkaSink, KafkaSource, StartPosition};

/// Produces `(key, value)` pairs and waits until all are acknowledged.
fn produce(topic: &str, records: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// A new topic named after `prefix`, with `partitions` partitions, holding `records`.
async fn topic_with(
    prefix: &str,
    partitions: i32,
    records: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> String {
    let topic = unique(prefix);
    create_topic(&topic, partitions).await;
    produce(&topic, records);
    topic
}

/// A source on `topic` in a group of its own, with the defaults.
fn source_on(topic: &str) -> KafkaSource {
    KafkaSource::builder(brokers(), unique("group"))
        .topic(topic)
        .build()
        .unwrap()
}

fn config(id: &str, store: &CheckpointStore) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(store.clone())
        .checkpoint_interval(Duration::from_millis(500))
        .handle_signals(false)
}

/// Runs `pipeline` until `done()` holds (or the deadline passes), then stops it gracefully.
async fn run_until(pipeline: Pipeline, deadline: Duration, done: impl Fn() -> bool) -> RunSummary {
    let stop = pipeline.shutdown_handle();
    let run = tokio::spawn(pipeline.run());
    let started = Instant::now();
    while !done() && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.shutdown();
    run.await.unwrap().unwrap()
}

/// Runs `source` into `out` as pipeline `id` (checkpoints in `store`) until `out` holds
/// `want` records (or two minutes pass).
fn run_into(
    id: &str,
    store: &CheckpointStore,
    source: KafkaSource,
    out: &CollectSink<Bytes>,
    want: usize,
) -> impl std::future::Future<Output = RunSummary> {
    let p = Pipeline::new(config(id, store));
    p.source("kafka", source, WatermarkStrategy::none())
        .sink("out", out.clone());
    let check = out.clone();
    run_until(p, Duration::from_secs(120), move || {
        check.values().len() >= want
    })
}

fn parse(v: &Bytes) -> (String, u64) {
    let s = std::str::from_utf8(v).unwrap();
    let (k, n) = s.split_once(':').unwrap();
    (k.to_string(), n.parse().unwrap())
}

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

fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
        .sum()
}

/// Rule (SEMANTICS K1, property 8): a position is the next offset to read. A pipeline stopped
/// after a checkpoint and restarted continues exactly at the checkpointed offsets — no gap, no
/// re-read — even in another consumer group that has no committed offsets; and the offsets it
/// commits to its group are last + 1.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn restart_resumes_exactly_at_the_checkpointed_offsets() {
    let topic = topic_with(
        "ws-resume",
        3,
        (0..3_000u64).map(|i| (format!("k{i}"), format!("a:{i}").into_bytes())),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path()).unwrap();
    let id = unique("resume");
    let out = CollectSink::<Bytes>::new();
    let run = |group: String, want: usize| {
        let source = KafkaSource::builder(brokers(), group)
            .topic(&topic)
            .start(StartPosition::Earliest)
            .build()
            .unwrap();
        run_into(&id, &store, source, &out, want)
    };
    let first_group = unique("group-a");
    let first = run(first_group.clone(), 3_000).await;
    assert_eq!(first.records_in, 3_000);
    // Offsets committed to the group at the final checkpoint name the next record to read.
    assert_eq!(committed_total(&first_group, &topic, 3), 3_000);

    produce(
        &topic,
        (0..2_000u64).map(|i| (format!("k{i}"), format!("b:{i}").into_bytes())),
    );
    // A new group has nothing committed: only the checkpoint can tell where to resume.
    let second = run(unique("group-b"), 5_000).await;
    assert_eq!(
        second.records_in, 2_000,
        "the restart re-read or skipped records"
    );
    let values = out.values();
    assert_eq!(values.len(), 5_000);
    let mut seen = std::collections::HashSet::new();
    for v in &values {
        assert!(seen.insert(v.clone()), "duplicate {v:?}");
    }
}

/// Rule: a restored checkpoint position never moves a partition back behind what its group
/// committed later. When another instance owned the partition after the checkpoint was taken
/// (it was handed over, then this instance restarted and regained it), the group's committed
/// offset is where that owner's processed output ends; resuming from the older checkpoint
/// offset would process those records twice.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_restored_position_behind_a_later_group_commit_resumes_at_the_commit() {
    let topic = topic_with(
        "ws-later-commit",
        1,
        (0..1_000u64).map(|i| (format!("k{i}"), format!("a:{i}").into_bytes())),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path()).unwrap();
    let id = unique("later-commit");
    let group = unique("group-later");
    let out = CollectSink::<Bytes>::new();
    let run = |want: usize| {
        let source = KafkaSource::builder(brokers(), &group)
            .topic(&topic)
            .build()
            .unwrap();
        run_into(&id, &store, source, &out, want)
    };
    assert_eq!(run(1_000).await.records_in, 1_000);
    // Another instance of the group processes the next 500 and commits after them.
    produce(
        &topic,
        (0..500u64).map(|i| (format!("k{i}"), format!("b:{i}").into_bytes())),
    );
    let other: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(1_500))
        .unwrap();
    let started = Instant::now();
    // The stopped pipeline's member may still be leaving the group: retry until it is empty.
    while let Err(e) = other.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
        assert!(started.elapsed() < Duration::from_secs(30), "commit: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    produce(
        &topic,
        (0..300u64).map(|i| (format!("k{i}"), format!("c:{i}").into_bytes())),
    );
    let second = run(1_300).await;
    assert_eq!(
        second.records_in, 300,
        "resumed from the checkpoint instead of the later commit"
    );
    assert!(out.values().iter().all(|v| !v.starts_with(b"b:")));
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

/// Rule: the sink writes every record with its key, and a checkpoint completes only once Kafka
/// has acknowledged everything before its barrier.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sink_delivers_every_record_with_its_key_before_the_checkpoint_completes() {
    let topic = unique("ws-sink");
    create_topic(&topic, 3).await;
    let p = Pipeline::new(config(&unique("sink"), &CheckpointStore::memory()));
    let source = GeneratorSource::new(2, 5_000, |s, i| {
        Record::new(format!("{s}:{i}"), EventTime(i as i64)).with_key(format!("key-{}", i % 10))
    });
    p.source("gen", source, WatermarkStrategy::none())
        .map(|v: String| Bytes::from(v.into_bytes()))
        .sink(
            "kafka",
            KafkaSink::builder(brokers(), &topic).build().unwrap(),
        );
    let summary = p.run().await.unwrap();
    assert_eq!(summary.records_out, 10_000);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("check"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut got = std::collections::HashSet::new();
    let started = Instant::now();
    while got.len() < 10_000 && started.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            let i: u64 = value.split_once(':').unwrap().1.parse().unwrap();
            assert_eq!(m.key().unwrap(), format!("key-{}", i % 10).as_bytes());
            got.insert(value);
        }
    }
    assert_eq!(got.len(), 10_000);
}

/// Rule (C6): commit is idempotent. A transactional commit that already reached Kafka, repeated
/// by a restarted sink from the checkpoint's handle (as recovery does), writes nothing twice;
/// and the restarted sink fences the old producer.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn transactional_commit_repeated_after_a_restart_writes_nothing_twice() {
    let topic = unique("ws-txn-idem");
    create_topic(&topic, 1).await;
    let txn_id = unique("txn");
    let ctx = SinkContext::new("p", "out");
    let mut first = KafkaSink::builder(brokers(), &topic)
        .exactly_once(&txn_id)
        .build()
        .unwrap();
    first.open(&ctx).await.unwrap();
    let batch: Batch<Bytes> = (0..100)
        .map(|i| Record::new(Bytes::from(format!("v{i}")), EventTime(i)))
        .collect();
    first.write(batch).await.unwrap();
    let handle = first.pre_commit(CheckpointId(1)).await.unwrap();
    // The handle as the manifest stores it.
    let stored = serde_json::to_value(&handle).unwrap();
    first.commit(CheckpointId(1), handle).await.unwrap();

    let mut restarted = KafkaSink::builder(brokers(), &topic)
        .exactly_once(&txn_id)
        .build()
        .unwrap();
    restarted
        .open(&ctx.clone().restored_from(CheckpointId(1)))
        .await
        .unwrap();
    restarted
        .commit(CheckpointId(1), serde_json::from_value(stored).unwrap())
        .await
        .unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("check"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut n = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            n += 1;
        }
    }
    assert_eq!(n, 100, "the repeated commit wrote the epoch again");

    // The first producer is fenced: its next transaction fails instead of writing.
    first
        .write(vec![Record::new(
            Bytes::from_static(b"zombie"),
            EventTime(0),
        )])
        .await
        .unwrap();
    let h = first.pre_commit(CheckpointId(2)).await.unwrap();
    assert!(first.commit(CheckpointId(2), h).await.is_err());
}

/// Rule: two pipeline instances in one consumer group split the partitions between them; when
/// one stops gracefully, its partitions move to the other, which resumes at the offsets the
/// stopped one committed at its final checkpoint: together they process every record once.
/// (Rebalances happen here while the topic is quiet; a partition moved while its records are in
/// flight is covered by `partitions_moving_between_live_instances_are_handed_over_exactly_once`.)
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn two_instances_share_partitions_and_take_over_on_stop_without_loss_or_duplicates() {
    two_instances_share_partitions(None).await;
}

/// The same with the eager protocol (`range`): every rebalance revokes all partitions and
/// assigns them again, most back to the instance that had them, so each partition's messages
/// must keep reaching the source's own fetch queue across re-assignments.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn with_the_eager_protocol_reassigned_partitions_keep_being_read_once() {
    two_instances_share_partitions(Some("range")).await;
}

async fn two_instances_share_partitions(assignment_strategy: Option<&str>) {
    let topic = unique("ws-scale");
    create_topic(&topic, 6).await;
    let group = unique("group-scale");
    let start = |name: &str, sink: CollectSink<Bytes>| {
        let p = Pipeline::new(config(&unique(name), &CheckpointStore::memory()));
        // Dynamic membership: a stopped instance leaves the group at once (a static member
        // would keep its partitions until its session timed out).
        let mut source = KafkaSource::builder(brokers(), &group).topic(&topic);
        if let Some(strategy) = assignment_strategy {
            source = source.property("partition.assignment.strategy", strategy);
        }
        let source = source.build().unwrap();
        p.source("kafka", source, WatermarkStrategy::none())
            .sink("out", sink);
        let stop = p.shutdown_handle();
        (stop, tokio::spawn(p.run()))
    };
    let wait_for = |a: &CollectSink<Bytes>, b: &CollectSink<Bytes>, n: usize| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let started = Instant::now();
            while a.values().len() + b.values().len() < n
                && started.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let batch = |tag: &str, n: u64| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("k{i}"), format!("{tag}:{i}").into_bytes()))
            .collect()
    };
    let (a_out, b_out) = (CollectSink::new(), CollectSink::new());
    produce(&topic, batch("one", 1_200));
    let (a_stop, a_run) = start("a", a_out.clone());
    wait_for(&a_out, &b_out, 1_200).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // a checkpoint commits a's offsets
    let (b_stop, b_run) = start("b", b_out.clone());
    tokio::time::sleep(Duration::from_secs(4)).await; // the group rebalances
    produce(&topic, batch("two", 1_200));
    wait_for(&a_out, &b_out, 2_400).await;
    let b_share = b_out.values().len();
    assert!(b_share > 0, "the second instance got no partition");
    assert!(
        a_out.values().len() > 1_200,
        "the first instance kept no partition"
    );

    a_stop.shutdown();
    a_run.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // b takes a's partitions
    produce(&topic, batch("three", 1_200));
    wait_for(&a_out, &b_out, 3_600).await;
    b_stop.shutdown();
    b_run.await.unwrap().unwrap();

    let mut all: Vec<Bytes> = a_out.values();
    all.extend(b_out.values());
    let distinct: std::collections::HashSet<_> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), 3_600, "records lost");
    assert_eq!(all.len(), 3_600, "records duplicated");
    assert!(
        b_out.values().len() >= b_share + 1_200,
        "b did not take over a's partitions"
    );
}

/// Rule: a pipeline that fails stops promptly, even with a Kafka source whose consumer is in a
/// group (dropping a subscribed consumer must not block the shutdown).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_failing_pipeline_with_a_kafka_source_stops_promptly() {
    let topic = topic_with(
        "ws-fail",
        3,
        (0..100u64).map(|i| (format!("k{i}"), format!("v{i}").into_bytes())),
    )
    .await;
    let p = Pipeline::new(config(&unique("fail"), &CheckpointStore::memory()));
    let source = source_on(&topic);
    p.source("kafka", source, WatermarkStrategy::none())
        .apply(
            "boom",
            FnOperator::new(|b: Batch<Bytes>, out: &mut Collector<Bytes>| {
                out.reject(DeadLetter::new("injected failure", Bytes::new()));
                out.emit_batch(b);
            }),
        )
        .sink("out", CollectSink::new());
    let result = tokio::time::timeout(Duration::from_secs(20), p.run()).await;
    let result = result.expect("the failed pipeline did not stop within 20 s");
    assert!(matches!(result, Err(Error::Record { .. })), "{result:?}");
}

/// Rule: a source with nothing to read is woken by librdkafka when records arrive, not by its
/// poll deadline; also on a current-thread runtime, where it must not block the thread.
#[tokio::test]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn an_idle_source_wakes_when_records_arrive_not_at_its_poll_deadline() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let topic = unique("ws-wake");
    create_topic(&topic, 1).await;
    let poll_deadline = Duration::from_secs(30);
    let p = Pipeline::new(
        PipelineConfig::new(unique("wake"))
            .checkpoint_store(CheckpointStore::memory())
            .without_periodic_checkpoints()
            .max_poll_wait(poll_deadline)
            .handle_signals(false),
    );
    let seen = Arc::new(AtomicU64::new(0));
    let count = seen.clone();
    let source = source_on(&topic);
    p.source("kafka", source, WatermarkStrategy::none())
        .apply(
            "count",
            FnOperator::new(move |b: Batch<Bytes>, out: &mut Collector<Bytes>| {
                count.fetch_add(b.len() as u64, Ordering::Relaxed);
                out.emit_batch(b);
            }),
        )
        .sink("out", CollectSink::new());
    let run = tokio::spawn(p.run());
    let wait_for = |n: u64, limit: Duration| {
        let seen = seen.clone();
        async move {
            let started = Instant::now();
            while seen.load(Ordering::Relaxed) < n && started.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            started.elapsed()
        }
    };
    let send = |value: &'static str| {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || produce(&topic, [("k".into(), value.into())]))
    };
    send("first").await.unwrap();
    wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(
        seen.load(Ordering::Relaxed),
        1,
        "the first record never arrived"
    );
    // The source has read everything and waits in `poll`, up to its 30 s deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    send("second").await.unwrap();
    let took = wait_for(2, poll_deadline + Duration::from_secs(5)).await;
    assert_eq!(
        seen.load(Ordering::Relaxed),
        2,
        "the second record never arrived"
    );
    assert!(
        took < Duration::from_secs(10),
        "the second record took {took:?}: the source waited for its poll deadline ({poll_deadline:?})"
    );
    run.abort();
}

/// A sink that stalls on its first write: back-pressure for the whole pipeline.
struct Stalling<S> {
    inner: S,
    stall: Option<Duration>,
}

#[async_trait]
impl<S: Sink> Sink for Stalling<S> {
    type Item = S::Item;
    type Handle = S::Handle;
    async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
        self.inner.open(ctx).await
    }
    async fn write(&mut self, batch: Batch<S::Item>) -> Result<(), BoxError> {
        if let Some(stall) = self.stall.take() {
            tokio::time::sleep(stall).await;
        }
        self.inner.write(batch).await
    }
    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<S::Handle, BoxError> {
        self.inner.pre_commit(checkpoint).await
    }
    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: S::Handle,
    ) -> Result<(), BoxError> {
        self.inner.commit(checkpoint, handle).await
    }
    async fn abort(&mut self) -> Result<(), BoxError> {
        self.inner.abort().await
    }
    async fn close(&mut self) -> Result<(), BoxError> {
        self.inner.close().await
    }
}

/// Rule (K5, liveness): a pipeline back-pressured for longer than `max.poll.interval.ms` keeps
/// its consumer in the group (the source pauses its partitions and a thread of its own keeps
/// polling), so when it catches up nothing is read twice. Put out of the group, the source
/// would lose its partitions and read them again from the last commit.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_pipeline_stalled_longer_than_the_poll_interval_keeps_its_partitions() {
    const N: usize = 20_000;
    let topic = topic_with(
        "ws-stall",
        2,
        (0..N).map(|i| (format!("k{i}"), format!("v:{i}").into_bytes())),
    )
    .await;
    let p = Pipeline::new(config(&unique("stall"), &CheckpointStore::memory()));
    let source = KafkaSource::builder(brokers(), unique("group"))
        .topic(&topic)
        // The smallest interval the broker's session-timeout bounds allow.
        .property("max.poll.interval.ms", "8000")
        .property("session.timeout.ms", "6000")
        .batch_size(100)
        .build()
        .unwrap();
    let out = CollectSink::new();
    p.source("kafka", source, WatermarkStrategy::none()).sink(
        "out",
        Stalling {
            inner: out.clone(),
            stall: Some(Duration::from_secs(20)),
        },
    );
    let seen = out.clone();
    run_until(p, Duration::from_secs(120), move || {
        seen.values().len() >= N
    })
    .await;
    let values = out.values();
    let distinct: std::collections::HashSet<_> = values.iter().cloned().collect();
    assert_eq!(distinct.len(), N, "records lost");
    assert_eq!(
        values.len(),
        N,
        "records read twice: the consumer was put out of its group while the pipeline stalled"
    );
}
