//! Integration tests against a real Apache Kafka broker.
//!
//! They check the guarantees the Kafka source and transactional sink will rely on:
//! per-partition order within a consumer group, and that `read_committed` consumers
//! never see an aborted transaction. Start a broker with `scripts/brokers up` (or run
//! everything with `scripts/test.sh`); the broker address comes from
//! `WATERSHED_KAFKA_BROKERS` (default `127.0.0.1:9092`).

mod common;

use common::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

fn config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers());
    config
}

fn consumer(group: &str, isolation: &str) -> StreamConsumer {
    config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer is created")
}

/// A consumer that reads partition 0 of `topic` from its first offset, outside any
/// group rebalance.
fn assigned_consumer(topic: &str, isolation: &str) -> StreamConsumer {
    let consumer = consumer(&unique("watershed-test-group"), isolation);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("offset is valid");
    consumer.assign(&assignment).expect("partition is assigned");
    consumer
}

/// Receives payloads until `done` says so, failing the test after [`TIMEOUT`].
async fn receive_until(
    consumer: &StreamConsumer,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut payloads = Vec::new();
    while !done(&payloads) {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} messages received", payloads.len()))
            .expect("consumer receives");
        let payload = message
            .payload_view::<str>()
            .expect("payload")
            .expect("utf-8");
        payloads.push(payload.to_owned());
    }
    payloads
}

/// Rule: within a consumer group, every record produced is delivered, and the records
/// of one partition arrive in the order of their offsets, which is the order in which
/// they were produced; so records with the same key (same partition) keep their order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_consumer_group_receives_every_record_in_per_partition_order() {
    const RECORDS: usize = 10_000;
    const KEYS: usize = 97;
    let topic = unique("watershed-test-order");
    create_topic(&topic, 3).await;

    // Idempotence keeps the produce order per partition even when batches are retried.
    let producer: FutureProducer = config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer is created");
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k}")).collect();
    let payloads: Vec<String> = (0..RECORDS)
        .map(|i| format!("{}:{}", keys[i % KEYS], i / KEYS))
        .collect();
    let deliveries = join_all((0..RECORDS).map(|i| {
        producer.send(
            FutureRecord::to(&topic)
                .key(&keys[i % KEYS])
                .payload(&payloads[i]),
            Duration::from_secs(30),
        )
    }))
    .await;
    // Where each record landed, according to the broker's acknowledgements.
    let mut produced: HashMap<(i32, i64), &str> = HashMap::new();
    let mut partition_of_key: HashMap<&str, i32> = HashMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivery = delivery.unwrap_or_else(|(e, _)| panic!("record {i} not acknowledged: {e}"));
        produced.insert((delivery.partition, delivery.offset), &payloads[i]);
        let partition = *partition_of_key
            .entry(&keys[i % KEYS])
            .or_insert(delivery.partition);
        assert_eq!(partition, delivery.partition, "one key, one partition");
    }
    assert_eq!(produced.len(), RECORDS, "every record got its own offset");
    let used: HashSet<i32> = partition_of_key.values().copied().collect();
    assert_eq!(used.len(), 3, "{KEYS} keys spread over all 3 partitions");

    let consumer = consumer(&unique("watershed-test-group"), "read_uncommitted");
    consumer.subscribe(&[&topic]).expect("subscribed");
    let deadline = Instant::now() + TIMEOUT;
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut next_seq_of_key: HashMap<String, usize> = HashMap::new();
    let mut received = 0;
    while received < RECORDS {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {received} of {RECORDS} records"))
            .expect("consumer receives");
        let (partition, offset) = (message.partition(), message.offset());
        if let Some(last) = last_offset.insert(partition, offset) {
            assert!(
                offset > last,
                "partition {partition}: offset {offset} arrived after {last}"
            );
        }
        let payload = message
            .payload_view::<str>()
            .expect("payload")
            .expect("utf-8");
        assert_eq!(
            Some(&payload),
            produced.get(&(partition, offset)),
            "partition {partition} offset {offset} holds what was produced there"
        );
        let key = std::str::from_utf8(message.key().expect("key")).expect("utf-8");
        let (payload_key, seq) = payload.split_once(':').expect("key:seq");
        assert_eq!(key, payload_key);
        let expected = next_seq_of_key.entry(key.to_owned()).or_insert(0);
        assert_eq!(
            seq.parse::<usize>().expect("seq"),
            *expected,
            "key {key}: records arrive in produce order"
        );
        *expected += 1;
        received += 1;
    }
    assert_eq!(
        next_seq_of_key.values().sum::<usize>(),
        RECORDS,
        "all {RECORDS} records received once"
    );
    assert_eq!(next_seq_of_key.len(), KEYS);
}

/// Rule: a `read_committed` consumer sees the records of a committed transaction and
/// never those of an aborted one, although the aborted records are in the log (a
/// `read_uncommitted` consumer sees them).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn read_committed_consumers_never_see_aborted_transactions() {
    const PER_TRANSACTION: usize = 100;
    let topic = unique("watershed-test-tx");
    create_topic(&topic, 1).await;

    let producer: FutureProducer = config()
        .set("transactional.id", unique("watershed-test-txid"))
        .create()
        .expect("transactional producer is created");
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .expect("init_transactions");

    let send_all = |label: &'static str| {
        join_all((0..PER_TRANSACTION).map(|i| {
            let (producer, topic) = (&producer, &topic);
            async move {
                let payload = format!("{label}-{i}");
                let record = FutureRecord::to(topic)
                    .key("k")
                    .payload(&payload)
                    .partition(0);
                producer.send(record, timeout).await
            }
        }))
    };

    // First an aborted transaction, its records flushed to the broker before the
    // abort, then a committed one: its records come after the aborted ones in the
    // log, so a consumer that has read them all has also gone past the aborted ones.
    producer.begin_transaction().expect("begin aborted");
    for delivery in send_all("aborted").await {
        delivery.expect("aborted-to-be record reaches the broker");
    }
    producer.abort_transaction(timeout).expect("abort");

    producer.begin_transaction().expect("begin committed");
    for delivery in send_all("committed").await {
        delivery.expect("committed record reaches the broker");
    }
    producer.commit_transaction(timeout).expect("commit");

    let committed = assigned_consumer(&topic, "read_committed");
    let seen = receive_until(&committed, |p| {
        p.iter().filter(|s| s.starts_with("committed-")).count() == PER_TRANSACTION
    })
    .await;
    let aborted_seen: Vec<&String> = seen.iter().filter(|s| s.starts_with("aborted-")).collect();
    assert!(
        aborted_seen.is_empty(),
        "read_committed saw aborted records: {aborted_seen:?}"
    );
    let expected: Vec<String> = (0..PER_TRANSACTION)
        .map(|i| format!("committed-{i}"))
        .collect();
    assert_eq!(seen, expected, "committed records, once each, in order");

    // The control: the aborted records really are in the log.
    let uncommitted = assigned_consumer(&topic, "read_uncommitted");
    let all = receive_until(&uncommitted, |p| p.len() == 2 * PER_TRANSACTION).await;
    assert_eq!(
        all.iter().filter(|s| s.starts_with("aborted-")).count(),
        PER_TRANSACTION,
        "read_uncommitted sees the aborted records"
    );
}
