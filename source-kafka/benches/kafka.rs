//! Kafka source and sink against raw rdkafka loops doing the same work, in one run, against the
//! local broker (`scripts/brokers up`). See docs/benchmarks.md.
//!
//! `cargo bench -p watershed-source-kafka --bench kafka [-- RECORDS PAIRS [source|sink]]`

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::Deserialize;
use std::hint::black_box;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_source_kafka::{KafkaSink, KafkaSource};
use watershed_testkit::bench::{self, cpu_of, print_bench, DiscardSink, Pairs};
use watershed_testkit::env::{kafka_brokers, unique};

#[derive(Deserialize)]
#[allow(dead_code)]
struct Event {
    user: u64,
    page: String,
    pad: String,
}

/// A 100-byte JSON record, built in place: the load generator should cost little next to
/// what is measured, and the same for both sides (no reallocation when the pipeline's
/// generator turns it into `Bytes`).
fn payload(i: u64) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(100);
    let _ = write!(
        s,
        r#"{{"user":{},"page":"/page/{}","pad":""#,
        i % 10_000,
        i % 50
    );
    let pad = 100 - s.len() - 2;
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// The 1,000 keys records are spread over, made once for both sides.
fn keys() -> Vec<Bytes> {
    (0..1000).map(|k| Bytes::from(format!("k{k}"))).collect()
}

/// A raw consumer with the client settings `KafkaSource` uses that bear on throughput, so the
/// comparison is of the loops, not of the configurations.
fn raw_consumer(topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", group())
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed")
        .set("fetch.queue.backoff.ms", "50")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// The hand-written consumer: poll, decode, drop — what the pipeline does, without it.
fn raw_consume(topic: &str, n: u64) -> Duration {
    let consumer = raw_consumer(topic);
    let t = Instant::now();
    let mut got = 0;
    while got < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let e: Event = serde_json::from_slice(m.payload().unwrap()).unwrap();
            black_box(e);
            got += 1;
        }
    }
    t.elapsed()
}

/// The same, written as the source reads: drain what is prefetched with non-blocking polls,
/// block in `poll` only when nothing is (per-message `poll` with a timeout costs more).
fn raw_drain(topic: &str, n: u64) -> Duration {
    let consumer = raw_consumer(topic);
    let t = Instant::now();
    let mut got = 0;
    while got < n {
        match consumer.poll(Duration::ZERO) {
            Some(Ok(m)) => {
                let e: Event = serde_json::from_slice(m.payload().unwrap()).unwrap();
                black_box(e);
                got += 1;
            }
            Some(Err(_)) => {}
            None => {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
                    let e: Event = serde_json::from_slice(m.payload().unwrap()).unwrap();
                    black_box(e);
                    got += 1;
                }
            }
        }
    }
    t.elapsed()
}

fn group() -> String {
    unique("bench")
}

/// The pipeline's and the raw loops' figures of one comparison, printed as a summary line and
/// `BENCH` lines (`events_per_cpu_s` only where `cpu` is a figure).
fn report(name: &str, runs: &Pairs, cpu: f64, n: u64, pairs: usize) {
    println!(
        "{name}: raw {:.0} rec/s, pipeline {:.0} rec/s, median ratio {:.3} (spread {:.1}%)",
        runs.baseline(),
        runs.candidate(),
        runs.ratio(),
        runs.spread() * 100.0
    );
    print_bench(&format!("{name}_raw"), "records_per_s", runs.baseline());
    print_bench(name, "records_per_s", runs.candidate());
    print_bench(name, "ratio", runs.ratio());
    if cpu.is_finite() {
        print_bench(
            name,
            "events_per_cpu_s",
            n as f64 * pairs as f64 / cpu.max(1e-9),
        );
    }
}

fn pipeline_consume(rt: &tokio::runtime::Runtime, topic: &str, n: u64, headers: bool) -> Duration {
    rt.block_on(async {
        let p = Pipeline::new(
            PipelineConfig::new(group())
                .checkpoint_store(CheckpointStore::memory())
                .handle_signals(false),
        );
        let discard = DiscardSink::<Event>::new();
        let mut source = KafkaSource::builder(kafka_brokers(), group()).topic(topic);
        if !headers {
            source = source.without_headers();
        }
        let source = source.build().unwrap();
        p.source("kafka", source, WatermarkStrategy::none())
            .decode_json::<Event>()
            .sink("discard", discard.clone());
        let stop = p.shutdown_handle();
        let t = Instant::now();
        let run = tokio::spawn(p.run());
        while discard.records() < n {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let took = t.elapsed();
        stop.shutdown();
        run.await.unwrap().unwrap();
        took
    })
}

/// The hand-written producer: send each record, then flush. `direct_flush`: flush with
/// librdkafka's own call, as `KafkaSink` does, instead of rust-rdkafka's `flush`, which waits in
/// steps of up to 100 ms with a `ThreadedProducer` (see `KafkaSink`'s flush).
fn raw_produce(topic: &str, n: u64, direct_flush: bool) -> Duration {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let keys = keys();
    let t = Instant::now();
    for i in 0..n {
        let v = payload(i);
        let k = &keys[(i % 1000) as usize][..];
        let mut rec = BaseRecord::to(topic).key(k).payload(&v);
        while let Err((_, r)) = producer.send(rec) {
            rec = r;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if direct_flush {
        // SAFETY: a live producer handle.
        let err =
            unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), 120_000) };
        assert_eq!(
            err,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
    } else {
        producer.flush(Duration::from_secs(120)).unwrap();
    }
    // Timed up to the last acknowledgement, as the pipeline is (`KafkaSink` leaves the
    // producer's drop, which can wait up to 100 ms for its polling thread, to a thread).
    t.elapsed()
}

fn pipeline_produce(
    rt: &tokio::runtime::Runtime,
    topic: &str,
    n: u64,
    transactional: bool,
) -> Duration {
    rt.block_on(async {
        let p = Pipeline::new(
            PipelineConfig::new(group())
                .checkpoint_store(CheckpointStore::memory())
                .checkpoint_interval(Duration::from_secs(if transactional { 1 } else { 10 }))
                .handle_signals(false),
        );
        let mut sink = KafkaSink::builder(kafka_brokers(), topic);
        if transactional {
            sink = sink.exactly_once(group());
        }
        let keys = keys();
        let source = GeneratorSource::new(1, n, move |_, i| {
            Record::new(Bytes::from(payload(i)), EventTime(i as i64))
                .with_key(keys[(i % 1000) as usize].clone())
        });
        p.source("gen", source, WatermarkStrategy::none())
            .sink("kafka", sink.build().unwrap());
        let t = Instant::now();
        let s = p.run().await.unwrap();
        assert_eq!(s.records_out, n);
        t.elapsed()
    })
}

/// Deletes the benchmark's topics when dropped.
struct DeleteTopics(Vec<String>);

impl Drop for DeleteTopics {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(admin) = ClientConfig::new()
                .set("bootstrap.servers", kafka_brokers())
                .create::<AdminClient<DefaultClientContext>>()
            else {
                return;
            };
            let names: Vec<&str> = self.0.iter().map(String::as_str).collect();
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
            match admin.delete_topics(&names, &opts).await {
                Ok(_) => println!("deleted topics {names:?}"),
                Err(e) => eprintln!("deleting topics {names:?}: {e}"),
            }
        });
    }
}

fn main() {
    let n: u64 = bench::arg_or(0, 1_000_000);
    let pairs: usize = bench::arg_or(1, 5);
    let only = bench::args().get(2).cloned();
    let only = only.as_deref();
    let rt = bench::runtime();
    let topic = unique("ws-bench");
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .create()
            .unwrap();
        for r in admin
            .create_topics(
                &[
                    NewTopic::new(&topic, 3, TopicReplication::Fixed(1)),
                    NewTopic::new(&format!("{topic}-out"), 3, TopicReplication::Fixed(1)),
                    NewTopic::new(&format!("{topic}-txn"), 3, TopicReplication::Fixed(1)),
                ],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("is the broker up? scripts/brokers up")
        {
            r.unwrap();
        }
    });
    // A run writes over a gigabyte (the sink topics take 2 x PAIRS x RECORDS): delete the
    // topics when the run ends, however it ends, or the broker's disk fills up.
    let _cleanup = DeleteTopics(vec![
        topic.clone(),
        format!("{topic}-out"),
        format!("{topic}-txn"),
    ]);
    println!("preloading {n} records of 100 bytes into {topic} (3 partitions)");
    raw_produce(&topic, n, true);

    if only != Some("sink") {
        consume_pairs(&rt, &topic, n, pairs);
    }
    if only != Some("source") {
        produce_pairs(&rt, &topic, n, pairs);
    }
    print_bench("kafka", "peak_rss_mb", bench::peak_rss_mb());
}

/// Each round runs the two raw loops and the pipeline with and without headers, one after the
/// other on the same topic; ratios are taken within a round (the machine's load drifts).
fn consume_pairs(rt: &tokio::runtime::Runtime, topic: &str, n: u64, pairs: usize) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (mut source, mut vs_drain, mut without_headers) =
        (Pairs::new(), Pairs::new(), Pairs::new());
    let (mut cpu_raw, mut cpu_pipe) = (0.0, 0.0);
    for pair in 0..pairs {
        let ((b, d), raw_cpu) = cpu_of(|| (raw_consume(topic, n), raw_drain(topic, n)));
        let (p, pipe_cpu) = cpu_of(|| pipeline_consume(rt, topic, n, true));
        let h = pipeline_consume(rt, topic, n, false);
        cpu_raw += raw_cpu;
        cpu_pipe += pipe_cpu;
        println!(
            "source round {pair}: raw poll loop {b:.2?}, raw drain loop {d:.2?}, pipeline {p:.2?}, pipeline without headers {h:.2?}"
        );
        source.push(rate(b), rate(p));
        vs_drain.push(rate(d), rate(p));
        without_headers.push(rate(b), rate(h));
    }
    print_bench(
        "kafka_source_raw",
        "events_per_cpu_s",
        2.0 * n as f64 * pairs as f64 / cpu_raw.max(1e-9),
    );
    report("kafka_source", &source, cpu_pipe, n, pairs);
    report("kafka_source_vs_drain", &vs_drain, cpu_pipe, n, pairs);
    report(
        "kafka_source_without_headers",
        &without_headers,
        f64::NAN,
        n,
        pairs,
    );
}

fn produce_pairs(rt: &tokio::runtime::Runtime, topic: &str, n: u64, pairs: usize) {
    let out = format!("{topic}-out");
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (mut sink, mut vs_direct_flush) = (Pairs::new(), Pairs::new());
    let (mut cpu_raw, mut cpu_pipe) = (0.0, 0.0);
    for pair in 0..pairs {
        // The three runs take turns going first: the broker is still writing out the previous
        // run's data when the next one starts.
        let mut took = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (pair + k) % 3;
            let (t, used) = cpu_of(|| match which {
                0 => raw_produce(&out, n, false),
                1 => raw_produce(&out, n, true),
                _ => pipeline_produce(rt, &out, n, false),
            });
            took[which] = t;
            if which == 2 {
                cpu_pipe += used;
            } else if which == 1 {
                cpu_raw += used;
            }
        }
        let [b, d, p] = took;
        println!(
            "sink round {pair}: raw {b:.2?}, raw with librdkafka's flush {d:.2?}, pipeline {p:.2?}"
        );
        sink.push(rate(b), rate(p));
        vs_direct_flush.push(rate(d), rate(p));
    }
    print_bench(
        "kafka_sink_raw",
        "events_per_cpu_s",
        n as f64 * pairs as f64 / cpu_raw.max(1e-9),
    );
    report("kafka_sink", &sink, cpu_pipe, n, pairs);
    report(
        "kafka_sink_vs_direct_flush",
        &vs_direct_flush,
        f64::NAN,
        n,
        pairs,
    );

    let t = pipeline_produce(rt, &format!("{topic}-txn"), n, true);
    print_bench(
        "kafka_sink_transactional",
        "records_per_s",
        n as f64 / t.as_secs_f64(),
    );
}
