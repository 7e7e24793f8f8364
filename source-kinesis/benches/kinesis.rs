//! Kinesis source and sink against raw aws-sdk-kinesis loops doing the same work, and the
//! source with enhanced fan-out against the same source polling, interleaved in one run, against
//! the local Kinesis-API server (`scripts/brokers up`). See docs/benchmarks.md.
//!
//! `cargo bench -p watershed-source-kinesis --bench kinesis [-- RECORDS_PER_SHARD PAIRS]`

use aws_config::retry::RetryConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ConsumerStatus, PutRecordsRequestEntry, ShardIteratorType, StreamStatus,
};
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use serde::Deserialize;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_source_kinesis::{AwsOptions, KinesisSink, KinesisSource, StartPosition};
use watershed_testkit::bench::{
    cpu_seconds, median, peak_rss_mb, print_bench, spread, DiscardSink,
};
use watershed_testkit::clients::kinesis_config;
use watershed_testkit::env::unique;

const SHARDS: i32 = 2;
/// Both sides: at most one GetRecords per 200 ms per shard (the Kinesis limit) and 10,000
/// records per call.
const SPACING: Duration = Duration::from_millis(200);
const LIMIT: i32 = 10_000;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Event {
    user: u64,
    page: String,
    pad: String,
}

/// Both sides use the same client (one connection pool, built once), so the comparison is
/// about reading and writing, not about building HTTP clients.
fn aws(client: &Client) -> AwsOptions {
    AwsOptions::new().client(client.clone())
}

async fn client() -> Client {
    let config = kinesis_config()
        // As the crate's own clients: retries are the caller's (here: none are needed), and a
        // client configured so is used by the source and sink as it is.
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    Client::new(&config)
}

/// Registers the enhanced fan-out consumer `name` and waits until it is ACTIVE, outside the
/// timed part (a fresh name per run: a consumer's subscriptions are held for a few seconds
/// after the previous run dropped them).
async fn register(client: &Client, stream: &str, name: &str) {
    let arn = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary()
        .expect("summary")
        .stream_arn()
        .to_owned();
    client
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name(name)
        .send()
        .await
        .expect("RegisterStreamConsumer");
    loop {
        let d = client
            .describe_stream_consumer()
            .stream_arn(&arn)
            .consumer_name(name)
            .send()
            .await
            .expect("DescribeStreamConsumer");
        if d.consumer_description().map(|c| c.consumer_status()) == Some(&ConsumerStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 100-byte JSON record.
fn payload(i: u64) -> String {
    let head = format!(
        r#"{{"user":{},"page":"/page/{}","pad":""#,
        i % 10_000,
        i % 50
    );
    let pad = 100 - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

async fn create_stream(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(SHARDS)
        .send()
        .await
        .expect("CreateStream");
    loop {
        let s = client
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        if s.stream_description_summary().map(|d| d.stream_status()) == Some(&StreamStatus::Active)
        {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn delete_stream(client: &Client, name: &str) {
    let _ = client.delete_stream().stream_name(name).send().await;
}

fn entries(n: u64) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(payload(i)))
                .partition_key(format!("user-{}", i % 10_000))
                .build()
                .expect("entry")
        })
        .collect()
}

/// The raw producer: PutRecords of 500, resending failed entries. Returns records per shard.
async fn raw_put(client: &Client, stream: &str, n: u64) -> HashMap<String, u64> {
    let mut per_shard = HashMap::new();
    for chunk in entries(n).chunks(500) {
        let mut pending = chunk.to_vec();
        while !pending.is_empty() {
            let out = client
                .put_records()
                .stream_name(stream)
                .set_records(Some(pending.clone()))
                .send()
                .await
                .expect("PutRecords");
            let mut failed = Vec::new();
            for (e, r) in pending.into_iter().zip(out.records()) {
                match r.shard_id() {
                    Some(shard) if r.error_code().is_none() => {
                        *per_shard.entry(shard.to_owned()).or_default() += 1
                    }
                    _ => failed.push(e),
                }
            }
            pending = failed;
        }
    }
    per_shard
}

/// The same records through a pipeline: bounded source → KinesisSink.
async fn sink_put(client: &Client, stream: &str, n: u64) {
    let p = Pipeline::new(
        PipelineConfig::new(unique("bench-sink"))
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    let source = GeneratorSource::sized(vec![n], |_, i| {
        Record::new(Bytes::from(payload(i)), EventTime(i as i64))
            .with_key(format!("user-{}", i % 10_000))
    })
    .batch_size(500);
    p.source("gen", source, WatermarkStrategy::none()).sink(
        "kinesis",
        KinesisSink::builder(stream).aws(aws(client)).build(),
    );
    p.run().await.expect("sink pipeline");
}

/// Wall seconds, CPU seconds, and CPU seconds until the first batch was being decoded (start-up
/// plus the deserialisation of the first GetRecords response).
type Measured = (f64, f64, f64);

/// The CPU time of the first call, kept once.
fn first_cpu(first: &std::sync::OnceLock<f64>) {
    if first.get().is_none() {
        let _ = first.set(cpu_seconds());
    }
}

/// The raw consumer: ListShards, then one task per shard from TRIM_HORIZON, GetRecords at most
/// every 200 ms, decode every record and keep it alive; timed (wall and CPU) until `total`
/// records were decoded, like the pipeline.
async fn raw_read(client: &Client, stream: &str, total: u64) -> Measured {
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let shards: Vec<String> = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards")
        .shards()
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();
    let decoded = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let first = Arc::new(std::sync::OnceLock::new());
    let tasks: Vec<_> = shards
        .into_iter()
        .map(|shard| {
            let client = client.clone();
            let stream = stream.to_owned();
            let decoded = decoded.clone();
            let done = done.clone();
            let first = first.clone();
            tokio::spawn(async move {
                let mut it = client
                    .get_shard_iterator()
                    .stream_name(&stream)
                    .shard_id(&shard)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .expect("GetShardIterator")
                    .shard_iterator()
                    .map(str::to_owned);
                let mut next = tokio::time::Instant::now();
                while decoded.load(Ordering::Relaxed) < total {
                    tokio::time::sleep_until(next).await;
                    next = tokio::time::Instant::now() + SPACING;
                    let out = client
                        .get_records()
                        .shard_iterator(it.take().expect("open shard"))
                        .limit(LIMIT)
                        .send()
                        .await
                        .expect("GetRecords");
                    if !out.records().is_empty() {
                        first_cpu(&first);
                    }
                    for r in out.records() {
                        let e: Event = serde_json::from_slice(r.data().as_ref()).expect("json");
                        black_box(e);
                    }
                    let n = out.records().len() as u64;
                    if decoded.fetch_add(n, Ordering::Relaxed) + n >= total {
                        done.notify_one();
                    }
                    it = out.next_shard_iterator().map(str::to_owned);
                }
            })
        })
        .collect();
    done.notified().await;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds());
    for t in tasks {
        t.abort();
    }
    (wall, cpu - c0, first.get().map_or(0.0, |f| f - c0))
}

/// KinesisSource → decode → discard; timed (wall and CPU) until every record was decoded, so
/// the final checkpoint of the graceful stop is not counted. With `consumer`, the source reads
/// with enhanced fan-out as that (registered) consumer.
async fn pipeline_read(
    client: &Client,
    stream: &str,
    total: u64,
    consumer: Option<&str>,
) -> Measured {
    let decoded = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let p = Pipeline::new(
        PipelineConfig::new(unique("bench-read"))
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    let shutdown = p.shutdown_handle();
    let mut source = KinesisSource::builder(stream)
        .aws(aws(client))
        .start_position(StartPosition::TrimHorizon)
        .poll_interval(SPACING)
        .max_records_per_call(LIMIT);
    if let Some(name) = consumer {
        source = source.enhanced_fan_out(name);
    }
    let source = source.build();
    let counter = decoded.clone();
    let notify = done.clone();
    let first = Arc::new(std::sync::OnceLock::new());
    let first_batch = first.clone();
    p.source("kinesis", source, WatermarkStrategy::none())
        .apply(
            "decode",
            FnOperator::new(move |batch: Batch<Bytes>, out: &mut Collector<Event>| {
                let n = batch.len() as u64;
                first_cpu(&first_batch);
                for r in batch {
                    let e: Event = serde_json::from_slice(&r.value).expect("json");
                    out.emit(r.map(|_| e));
                }
                if counter.fetch_add(n, Ordering::Relaxed) + n >= total {
                    notify.notify_one();
                }
            }),
        )
        .sink("discard", DiscardSink::new());
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let run = tokio::spawn(p.run());
    done.notified().await;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds());
    shutdown.shutdown();
    run.await.expect("task").expect("pipeline");
    (wall, cpu - c0, first.get().map_or(0.0, |f| f - c0))
}

/// kinesis-mock (one Node process) still serves the GetRecords a finished run left in flight
/// (the raw loop's tasks are aborted and the source's readers dropped mid-request): each of
/// them takes it ~100–200 ms. Without this pause they land in the next run's start-up (its
/// ListShards waited ~120 ms behind them), which penalised whichever side ran second.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    // kinesis-mock slows down as shards fill: a few thousand records per shard.
    let per_shard = args.first().copied().unwrap_or(4_000);
    let pairs = args.get(1).copied().unwrap_or(5) as usize;
    let n = per_shard * SHARDS as u64;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = client().await;
        let stream = create_stream(&client, "bench-read").await;
        println!("preloading {n} records of 100 bytes into {stream} ({SHARDS} shards)");
        raw_put(&client, &stream, n).await;
        // Warm-up of both sides (connections, allocator).
        raw_read(&client, &stream, n).await;
        pipeline_read(&client, &stream, n, None).await;
        register(&client, &stream, "bench-efo-warmup").await;
        pipeline_read(&client, &stream, n, Some("bench-efo-warmup")).await;

        let (mut read_ratios, mut read_cpu_ratios) = (Vec::new(), Vec::new());
        let mut raw_rates = Vec::new();
        let mut pipe_rates = Vec::new();
        let (mut efo_rates, mut efo_cpu_ratios) = (Vec::new(), Vec::new());
        let (mut raw_first, mut pipe_first) = (Vec::new(), Vec::new());
        let mut efo_rows = Vec::new();
        println!("| pair | raw GetRecords rec/s | source rec/s | ratio | raw rec/CPU-s | source rec/CPU-s | CPU ratio | raw CPU ms to 1st batch | source CPU ms to 1st batch |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for pair in 0..pairs {
            let consumer = format!("bench-efo-{pair}");
            register(&client, &stream, &consumer).await;
            settle().await;
            let (raw_t, raw_cpu, raw_f) = raw_read(&client, &stream, n).await;
            settle().await;
            let (pipe_t, pipe_cpu, pipe_f) = pipeline_read(&client, &stream, n, None).await;
            settle().await;
            let (efo_t, efo_cpu, _) = pipeline_read(&client, &stream, n, Some(&consumer)).await;
            let (r, p, e) = (n as f64 / raw_t, n as f64 / pipe_t, n as f64 / efo_t);
            let (rc, pc, ec) = (n as f64 / raw_cpu, n as f64 / pipe_cpu, n as f64 / efo_cpu);
            println!(
                "| {pair} | {r:.0} | {p:.0} | {:.3} | {rc:.0} | {pc:.0} | {:.3} | {:.1} | {:.1} |",
                p / r,
                pc / rc,
                raw_f * 1e3,
                pipe_f * 1e3
            );
            efo_rows.push(format!(
                "| {pair} | {p:.0} | {e:.0} | {pc:.0} | {ec:.0} | {:.3} |",
                ec / pc
            ));
            raw_rates.push(r);
            pipe_rates.push(p);
            read_ratios.push(p / r);
            read_cpu_ratios.push(pc / rc);
            raw_first.push(raw_f * 1e3);
            pipe_first.push(pipe_f * 1e3);
            efo_rates.push(e);
            efo_cpu_ratios.push(ec / pc);
        }
        println!();
        println!("| pair | polling source rec/s | EFO source rec/s | polling rec/CPU-s | EFO rec/CPU-s | EFO/polling CPU ratio |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for row in efo_rows {
            println!("{row}");
        }
        delete_stream(&client, &stream).await;

        let (mut sink_ratios, mut sink_rates) = (Vec::new(), Vec::new());
        let mut raw_put_rates = Vec::new();
        println!();
        println!("| pair | raw PutRecords rec/s | KinesisSink rec/s | ratio |");
        println!("| --- | --- | --- | --- |");
        for pair in 0..pairs {
            let a = create_stream(&client, "bench-put-raw").await;
            let t = Instant::now();
            raw_put(&client, &a, n).await;
            let raw_t = t.elapsed().as_secs_f64();
            delete_stream(&client, &a).await;
            let b = create_stream(&client, "bench-put-sink").await;
            let t = Instant::now();
            sink_put(&client, &b, n).await;
            let sink_t = t.elapsed().as_secs_f64();
            delete_stream(&client, &b).await;
            let (r, s) = (n as f64 / raw_t, n as f64 / sink_t);
            println!("| {pair} | {r:.0} | {s:.0} | {:.3} |", s / r);
            raw_put_rates.push(r);
            sink_rates.push(s);
            sink_ratios.push(s / r);
        }
        println!();
        println!(
            "read: median ratio {:.3} (spread {:.0}%), CPU ratio {:.3} (spread {:.0}%), \
             median CPU to the first batch raw {:.1} ms, source {:.1} ms; \
             EFO vs polling CPU ratio {:.3} (spread {:.0}%); \
             sink: median ratio {:.3} (spread {:.0}%); peak RSS {:.1} MiB",
            median(&read_ratios),
            spread(&read_ratios) * 100.0,
            median(&read_cpu_ratios),
            spread(&read_cpu_ratios) * 100.0,
            median(&raw_first),
            median(&pipe_first),
            median(&efo_cpu_ratios),
            spread(&efo_cpu_ratios) * 100.0,
            median(&sink_ratios),
            spread(&sink_ratios) * 100.0,
            peak_rss_mb()
        );
        print_bench("kinesis_raw_get_records", "records_per_s", median(&raw_rates));
        print_bench("kinesis_source", "records_per_s", median(&pipe_rates));
        print_bench("kinesis_source", "ratio", median(&read_ratios));
        print_bench("kinesis_source_cpu", "ratio", median(&read_cpu_ratios));
        print_bench("kinesis_source_efo", "records_per_s", median(&efo_rates));
        print_bench("kinesis_source_efo_vs_polling_cpu", "ratio", median(&efo_cpu_ratios));
        print_bench("kinesis_raw_put_records", "records_per_s", median(&raw_put_rates));
        print_bench("kinesis_sink", "records_per_s", median(&sink_rates));
        print_bench("kinesis_sink", "ratio", median(&sink_ratios));
        print_bench("kinesis", "peak_rss_mb", peak_rss_mb());
    });
}
