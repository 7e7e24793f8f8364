//! Three `KinesisSource` workers (separate pipelines, one lease table) share a 4-shard stream
//! on kinesis-mock and moto: leases spread over the workers, a worker stopping mid-run hands
//! its shards over, and every record is seen exactly once across the workers. Run with
//! `scripts/brokers up` and `cargo test -p watershed-source-kinesis --test lease_workers --
//! --include-ignored`.

mod lease_support;

use bytes::Bytes;
use lease_support::{config, create_stream, delete_table, kinesis, kinesis_endpoint, put, unique};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use watershed_core::connectors::CollectSink;
use watershed_core::{
    CheckpointStore, Pipeline, PipelineConfig, RunSummary, ShutdownHandle, WatermarkStrategy,
};
use watershed_source_kinesis::{AwsOptions, KinesisSource, StartPosition};

const TIMEOUT: Duration = Duration::from_secs(120);

struct Worker {
    name: String,
    sink: CollectSink<Bytes>,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<watershed_core::Result<RunSummary>>,
}

fn start(stream: &str, table: &str, name: &str) -> Worker {
    let aws = AwsOptions::new()
        .endpoint_url(kinesis_endpoint())
        .region(lease_support::env_or("AWS_REGION", "us-east-1"))
        .static_credentials(
            lease_support::env_or("AWS_ACCESS_KEY_ID", "test"),
            lease_support::env_or("AWS_SECRET_ACCESS_KEY", "test"),
        );
    let source = KinesisSource::builder(stream)
        .aws(aws)
        .start_position(StartPosition::TrimHorizon)
        .shard_discovery_interval(Duration::from_secs(2))
        .leases(
            config(table, name)
                .lease_duration(Duration::from_secs(3))
                .take_interval(Duration::from_millis(500)),
        )
        .build();
    let sink = CollectSink::new();
    // Each worker is its own pipeline with its own checkpoints, as separate processes are.
    let p = Pipeline::new(
        PipelineConfig::new(unique(name))
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_millis(300))
            .handle_signals(false),
    );
    let shutdown = p.shutdown_handle();
    p.source("kinesis", source, WatermarkStrategy::none())
        .sink("collect", sink.clone());
    Worker {
        name: name.to_owned(),
        sink,
        shutdown,
        task: tokio::spawn(p.run()),
    }
}

impl Worker {
    fn count(&self) -> usize {
        self.sink.records().len()
    }

    async fn stop(self) -> (String, Vec<Bytes>) {
        self.shutdown.shutdown();
        let summary = tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("graceful stop finishes")
            .expect("pipeline task");
        summary.unwrap_or_else(|e| panic!("worker {} failed: {e}", self.name));
        (self.name, self.sink.values())
    }
}

/// The workers' log (lease decisions are logged at info), kept in memory and shown when the
/// test fails: libtest does not capture what the runtime's threads print.
#[derive(Clone, Default)]
struct LeaseLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LeaseLog {
    fn install() -> LeaseLog {
        let log = LeaseLog::default();
        let writer = log.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        log
    }

    fn tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl std::io::Write for LeaseLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn workers_share_a_stream_and_take_over_a_stopped_worker_s_shards() {
    // At most this many records (kinesis-mock slows down as shards fill), 50 every 250 ms.
    const MAX: usize = 6_000;
    const CHUNK: usize = 50;
    let log = LeaseLog::install();
    let client = kinesis().await;
    let stream = unique("leased");
    let table = unique("leased-app");
    create_stream(&client, &stream, 4).await;

    let a = start(&stream, &table, "worker-a");
    let b = start(&stream, &table, "worker-b");
    let c = start(&stream, &table, "worker-c");
    // Records keep arriving while the workers balance (the first to open takes every lease,
    // the others steal towards 2, 1, 1), while c stops, and for a while after.
    let (stop_writing, mut stop) = tokio::sync::watch::channel(false);
    let writer = {
        let (client, stream) = (client.clone(), stream.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while !*stop.borrow_and_update() {
                if written < MAX {
                    put(&client, &stream, written, written + CHUNK).await;
                    written += CHUNK;
                }
                let _ = tokio::time::timeout(Duration::from_millis(250), stop.changed()).await;
            }
            written
        })
    };
    let deadline = Instant::now() + TIMEOUT;
    while a.count() == 0 || b.count() == 0 || c.count() == 0 {
        if Instant::now() > deadline {
            let leases = lease_support::coordinator(&table, "observer")
                .await
                .table()
                .scan()
                .await;
            panic!(
                "not every worker read: a {}, b {}, c {}; leases {leases:#?}\nlog:\n{}",
                a.count(),
                b.count(),
                c.count(),
                log.tail(300)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // c stops gracefully mid-run: its final checkpoint goes into its leases, which it releases.
    let (_, from_c) = c.stop().await;
    // a and b take c's shards over while records still arrive.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_writing.send(true).expect("writer runs");
    let total = tokio::time::timeout(TIMEOUT, writer)
        .await
        .expect("writer finishes")
        .expect("writer");
    wait_for("every record", || {
        a.count() + b.count() + from_c.len() >= total
    })
    .await;
    // A little longer, so that a duplicate would show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, from_a) = a.stop().await;
    let (_, from_b) = b.stop().await;

    assert_each_once(&from_a, &from_b, &from_c, total);

    let _ = client
        .delete_stream()
        .stream_name(&stream)
        .enforce_consumer_deletion(true)
        .send()
        .await;
    delete_table(&table).await;
}

/// Every payload `0..total` exactly once over the three workers, and each worker read some.
fn assert_each_once(from_a: &[Bytes], from_b: &[Bytes], from_c: &[Bytes], total: usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for v in from_a.iter().chain(from_b).chain(from_c) {
        *seen
            .entry(String::from_utf8(v.to_vec()).expect("utf-8"))
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "read more than once: {twice:?}");
    assert_eq!(seen.len(), total, "every record is read");
    assert!(!from_c.is_empty() && !from_a.is_empty() && !from_b.is_empty());
    eprintln!(
        "{total} records; per worker: a {}, b {}, c {} (stopped)",
        from_a.len(),
        from_b.len(),
        from_c.len()
    );
}
