//! S3 sink throughput against raw object_store multipart puts of the same bytes, on the local
//! S3 server (`scripts/brokers up`), following docs/BENCHMARKS rules: same-run ratios,
//! interleaved pairs, CPU-seconds of this process (the S3 server runs in another), peak RSS.
//!
//! ```text
//! cargo bench -p watershed-sink-s3 --bench s3_sink [-- RECORDS]
//! ```
//!
//! - **Pipeline**: `GeneratorSource` → `S3Sink` (gzip JSON lines, multipart upload of 8 MiB parts,
//!   committed by the final checkpoint).
//! - **Baseline**: a plain loop making the same records with the same closure, serialising them
//!   with serde_json into the same gzip encoder, and uploading the output with object_store's
//!   `WriteMultipart` (8 MiB parts, 4 in flight): the same bytes to S3, without the runtime and
//!   without the two-phase commit.

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use watershed_core::connectors::GeneratorSource;
use watershed_core::{
    CheckpointStore, EventTime, Pipeline, PipelineConfig, Record, WatermarkStrategy,
};
use watershed_sink_s3::{Compression, S3Sink};

const PART: usize = 8 * 1024 * 1024;
const PAIRS: usize = 5;
/// 2025-11-25T17:00:00Z.
const T0: i64 = 1_764_090_000_000;
const PAGES: [&str; 4] = ["/", "/cart", "/checkout", "/product/42"];

#[derive(Serialize)]
struct Click {
    id: u64,
    user: u64,
    page: &'static str,
    ms: u64,
}

fn make(i: u64) -> Record<Click> {
    Record::new(
        Click {
            id: i,
            user: i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100_000,
            page: PAGES[(i % 4) as usize],
            ms: i % 5000,
        },
        EventTime(T0 + (i / 100) as i64),
    )
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn s3() -> Arc<AmazonS3> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(env_or("WATERSHED_S3_ENDPOINT", "http://127.0.0.1:9000"))
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(env_or("WATERSHED_S3_BUCKET", "watershed-test"))
            .with_region(env_or("AWS_REGION", "us-east-1"))
            .with_access_key_id(env_or("AWS_ACCESS_KEY_ID", "test"))
            .with_secret_access_key(env_or("AWS_SECRET_ACCESS_KEY", "test"))
            .build()
            .expect("S3 client is configured"),
    )
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, 100 ticks per second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12.
    (tick(11) + tick(12)) / 100.0
}

/// Resets the peak-RSS mark (Linux ≥ 4.0), so each phase reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Run {
    seconds: f64,
    cpu: f64,
    bytes: u64,
}

async fn object_bytes(store: &AmazonS3, prefix: &str) -> u64 {
    let listed: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .expect("list");
    listed.iter().map(|m| m.size).sum()
}

async fn clean(store: &AmazonS3, prefix: &str) {
    let listed: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .expect("list");
    for m in listed {
        let _ = store.delete(&m.location).await;
    }
}

async fn pipeline(store: Arc<AmazonS3>, records: u64, prefix: &str) -> Run {
    let sink = S3Sink::s3(store.clone(), prefix)
        .compression(Compression::Gzip)
        .build()
        .expect("sink settings");
    let p = Pipeline::new(
        PipelineConfig::new("bench")
            .checkpoint_store(CheckpointStore::memory())
            .without_periodic_checkpoints()
            .handle_signals(false),
    );
    p.source(
        "clicks",
        GeneratorSource::new(1, records, |_, i| make(i)),
        WatermarkStrategy::none(),
    )
    .sink("s3", sink);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    p.run().await.expect("pipeline runs");
    let run = Run {
        seconds: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
        bytes: object_bytes(&store, prefix).await,
    };
    clean(&store, prefix).await;
    run
}

async fn baseline(store: Arc<AmazonS3>, records: u64, prefix: &str) -> Run {
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let path = Path::from(format!("{prefix}/baseline.jsonl.gz"));
    let upload = store.put_multipart(&path).await.expect("upload starts");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let mut line = Vec::with_capacity(128);
    for i in 0..records {
        let r = make(i);
        line.clear();
        serde_json::to_writer(&mut line, &r.value).expect("serialises");
        line.push(b'\n');
        gz.write_all(&line).expect("compresses");
        if gz.get_ref().len() >= PART {
            writer.wait_for_capacity(4).await.expect("parts upload");
            writer.write(&std::mem::take(gz.get_mut()));
        }
    }
    writer.write(&gz.finish().expect("compresses"));
    writer.finish().await.expect("upload completes");
    let run = Run {
        seconds: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
        bytes: object_bytes(&store, prefix).await,
    };
    clean(&store, prefix).await;
    run
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let records: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let store = s3();
    let prefix =
        |what: &str, n: usize| format!("watershed-bench/s3-sink/{}-{what}-{n}", std::process::id());

    // Warm-up: connections, allocator, the server's first bucket access.
    baseline(store.clone(), records / 10, &prefix("warm-base", 0)).await;
    pipeline(store.clone(), records / 10, &prefix("warm-sink", 0)).await;

    // Uncompressed JSON-lines bytes of the input, outside the timed runs.
    let raw_bytes: u64 = (0..records)
        .map(|i| {
            serde_json::to_vec(&make(i).value)
                .expect("serialises")
                .len() as u64
                + 1
        })
        .sum();
    println!(
        "{records} records ({:.1} MB of JSON lines) per run, gzip, 8 MiB parts, local S3 server (moto)",
        raw_bytes as f64 / 1e6
    );
    println!(
        "{:>4} | {:>14} | {:>14} | {:>6} | {:>16} | {:>16} | {:>10}",
        "pair",
        "baseline MB/s",
        "sink MB/s",
        "ratio",
        "baseline rec/cpu-s",
        "sink rec/cpu-s",
        "object MB"
    );
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    let mut compressed_bytes = 0.0;
    let mut sink_rates = Vec::new();
    let mut base_rates = Vec::new();
    let mut sink_cpu = Vec::new();
    let mut base_cpu = Vec::new();
    for n in 0..PAIRS {
        let b = baseline(store.clone(), records, &prefix("base", n)).await;
        let s = pipeline(store.clone(), records, &prefix("sink", n)).await;
        assert_eq!(
            b.bytes, s.bytes,
            "the pipeline and the baseline upload the same bytes"
        );
        let (bm, sm) = (
            b.bytes as f64 / b.seconds / 1e6,
            s.bytes as f64 / s.seconds / 1e6,
        );
        let (bc, sc) = (
            records as f64 / b.cpu.max(0.01),
            records as f64 / s.cpu.max(0.01),
        );
        println!(
            "{n:>4} | {bm:>14.1} | {sm:>14.1} | {:>6.3} | {bc:>18.0} | {sc:>14.0} | {:>10.1}",
            sm / bm,
            s.bytes as f64 / 1e6
        );
        ratios.push(sm / bm);
        cpu_ratios.push(sc / bc);
        compressed_bytes = s.bytes as f64;
        sink_rates.push(sm);
        base_rates.push(bm);
        sink_cpu.push(sc);
        base_cpu.push(bc);
    }
    let raw_as_compressed = raw_bytes as f64 / compressed_bytes.max(1.0);
    let spread = (ratios.iter().cloned().fold(f64::MIN, f64::max)
        - ratios.iter().cloned().fold(f64::MAX, f64::min))
        / median(ratios.clone());

    // Peak RSS of the sink alone, at the input size and at 3× it: bounded by buffers, not input.
    reset_peak_rss();
    pipeline(store.clone(), records, &prefix("rss1", 0)).await;
    let rss_1x = peak_rss_mb();
    reset_peak_rss();
    pipeline(store.clone(), records * 3, &prefix("rss3", 0)).await;
    let rss_3x = peak_rss_mb();

    println!(
        "median ratio {:.3} (spread {:.0}%), peak RSS {rss_1x:.1} MiB at {records} records, {rss_3x:.1} MiB at {}",
        median(ratios.clone()),
        spread * 100.0,
        records * 3
    );
    let cpu_spread = (cpu_ratios.iter().cloned().fold(f64::MIN, f64::max)
        - cpu_ratios.iter().cloned().fold(f64::MAX, f64::min))
        / median(cpu_ratios.clone());
    println!(
        "median CPU-second ratio {:.3} (spread {:.0}%)",
        median(cpu_ratios.clone()),
        cpu_spread * 100.0
    );
    println!(
        "BENCH name=s3_sink_gzip_jsonl metric=bytes_per_s value={:.0}",
        median(sink_rates.clone()) * 1e6
    );
    println!(
        "BENCH name=s3_raw_put_gzip_jsonl metric=bytes_per_s value={:.0}",
        median(base_rates) * 1e6
    );
    println!(
        "BENCH name=s3_sink_gzip_jsonl_input metric=bytes_per_s value={:.0}",
        median(sink_rates.iter().map(|r| r * raw_as_compressed).collect()) * 1e6
    );
    println!(
        "BENCH name=s3_sink_gzip_jsonl metric=ratio value={:.3}",
        median(ratios)
    );
    println!(
        "BENCH name=s3_sink_gzip_jsonl_cpu metric=ratio value={:.3}",
        median(cpu_ratios)
    );
    println!(
        "BENCH name=s3_sink_gzip_jsonl metric=events_per_cpu_s value={:.0}",
        median(sink_cpu)
    );
    println!(
        "BENCH name=s3_raw_put_gzip_jsonl metric=events_per_cpu_s value={:.0}",
        median(base_cpu)
    );
    println!("BENCH name=s3_sink_gzip_jsonl metric=peak_rss_mb value={rss_1x:.1}");
    println!("BENCH name=s3_sink_gzip_jsonl_3x metric=peak_rss_mb value={rss_3x:.1}");
}
