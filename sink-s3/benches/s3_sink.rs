//! S3 sink throughput against raw object_store multipart puts of the same bytes, on the local
//! S3 server (`scripts/brokers up`), following docs/BENCHMARKS rules: same-run ratios,
//! interleaved pairs, CPU-seconds of this process (the S3 server runs in another), peak RSS.
//!
//! ```text
//! cargo bench -p watershed-sink-s3 --bench s3_sink [-- RECORDS]
//! ```
//!
//! Two formats, each its own set of pairs:
//! - **gzip JSON lines.** Pipeline: `GeneratorSource` → `S3Sink` (gzip, multipart upload of 8 MiB
//!   parts, committed by the final checkpoint). Baseline: a plain loop making the same records
//!   with the same closure, serialising them with serde_json into the same gzip encoder, and
//!   uploading the output with object_store's `WriteMultipart` (8 MiB parts, 4 in flight).
//! - **Parquet.** The same, with `Format::Parquet` (schema derived from the record, Snappy); the
//!   baseline does what the sink does per record (serde_json, arrow-json decoding in batches of
//!   1024 rows, `ArrowWriter` with the same properties) and uploads the same way.
//!
//! Both sides upload exactly the same bytes (checked), so the ratio is the cost of the runtime
//! and the two-phase commit.

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
use watershed_sink_s3::{Compression, Format, ParquetOptions, S3Sink};

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

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    GzipJsonLines,
    Parquet,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::GzipJsonLines => "gzip_jsonl",
            Kind::Parquet => "parquet",
        }
    }
}

fn parquet_options() -> ParquetOptions {
    ParquetOptions::derive_from(&[make(0).value]).expect("schema derives from the record")
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

async fn pipeline(store: Arc<AmazonS3>, kind: Kind, records: u64, prefix: &str) -> Run {
    // One object per run, like the baseline (which does not roll).
    let builder = S3Sink::s3(store.clone(), prefix).max_object_bytes(4 << 30);
    let sink = match kind {
        Kind::GzipJsonLines => builder.compression(Compression::Gzip),
        Kind::Parquet => builder.format(Format::Parquet(parquet_options())),
    }
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

async fn baseline(store: Arc<AmazonS3>, kind: Kind, records: u64, prefix: &str) -> Run {
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let path = Path::from(format!("{prefix}/baseline"));
    let upload = store.put_multipart(&path).await.expect("upload starts");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut line = Vec::with_capacity(128);
    match kind {
        Kind::GzipJsonLines => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
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
        }
        Kind::Parquet => {
            let schema = parquet_options().schema().clone();
            let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
                .with_batch_size(1024)
                .build_decoder()
                .expect("decoder");
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .set_max_row_group_row_count(Some(1024 * 1024))
                .build();
            let mut pq = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, Some(props))
                .expect("writer");
            for i in 0..records {
                let r = make(i);
                line.clear();
                serde_json::to_writer(&mut line, &r.value).expect("serialises");
                line.push(b'\n');
                decoder.decode(&line).expect("decodes");
                if decoder.len() >= 1024 {
                    let batch = decoder.flush().expect("decodes").expect("rows");
                    pq.write(&batch).expect("encodes");
                    if pq.inner_mut().len() >= PART {
                        writer.wait_for_capacity(4).await.expect("parts upload");
                        writer.write(&std::mem::take(pq.inner_mut()));
                    }
                }
            }
            if let Some(batch) = decoder.flush().expect("decodes") {
                pq.write(&batch).expect("encodes");
            }
            pq.finish().expect("footer");
            writer.write(&std::mem::take(pq.inner_mut()));
        }
    }
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

/// Interleaved pairs for one format: prints its table, returns its BENCH lines.
async fn measure(store: &Arc<AmazonS3>, kind: Kind, records: u64, raw_bytes: u64) -> Vec<String> {
    let prefix = |what: &str, n: usize| {
        format!(
            "watershed-bench/s3-sink/{}-{}-{what}-{n}",
            std::process::id(),
            kind.name()
        )
    };
    // Warm-up: connections, allocator, the server's first bucket access.
    baseline(store.clone(), kind, records / 10, &prefix("warm-base", 0)).await;
    pipeline(store.clone(), kind, records / 10, &prefix("warm-sink", 0)).await;

    println!();
    println!(
        "{}: {records} records ({:.1} MB of JSON) per run, 8 MiB parts, local S3 server (moto)",
        kind.name(),
        raw_bytes as f64 / 1e6
    );
    println!(
        "{:>4} | {:>14} | {:>14} | {:>6} | {:>18} | {:>14} | {:>9}",
        "pair",
        "baseline MB/s",
        "sink MB/s",
        "ratio",
        "baseline rec/cpu-s",
        "sink rec/cpu-s",
        "object MB"
    );
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    let (mut sink_rates, mut base_rates) = (Vec::new(), Vec::new());
    let (mut sink_cpu, mut base_cpu) = (Vec::new(), Vec::new());
    let mut object_bytes = 0u64;
    for n in 0..PAIRS {
        let b = baseline(store.clone(), kind, records, &prefix("base", n)).await;
        let s = pipeline(store.clone(), kind, records, &prefix("sink", n)).await;
        assert_eq!(
            b.bytes, s.bytes,
            "the pipeline and the baseline upload the same bytes"
        );
        object_bytes = s.bytes;
        let (bm, sm) = (
            b.bytes as f64 / b.seconds / 1e6,
            s.bytes as f64 / s.seconds / 1e6,
        );
        let (bc, sc) = (
            records as f64 / b.cpu.max(0.01),
            records as f64 / s.cpu.max(0.01),
        );
        println!(
            "{n:>4} | {bm:>14.1} | {sm:>14.1} | {:>6.3} | {bc:>18.0} | {sc:>14.0} | {:>9.1}",
            sm / bm,
            s.bytes as f64 / 1e6
        );
        ratios.push(sm / bm);
        cpu_ratios.push(sc / bc);
        sink_rates.push(sm);
        base_rates.push(bm);
        sink_cpu.push(sc);
        base_cpu.push(bc);
    }
    // Peak RSS of the sink alone, at the input size and at 3× it: bounded by buffers, not input.
    reset_peak_rss();
    pipeline(store.clone(), kind, records, &prefix("rss1", 0)).await;
    let rss_1x = peak_rss_mb();
    reset_peak_rss();
    pipeline(store.clone(), kind, records * 3, &prefix("rss3", 0)).await;
    let rss_3x = peak_rss_mb();
    println!(
        "median ratio {:.3} (spread {:.0}%); median CPU-second ratio {:.3} (spread {:.0}%)",
        median(ratios.clone()),
        spread(&ratios) * 100.0,
        median(cpu_ratios.clone()),
        spread(&cpu_ratios) * 100.0
    );
    println!(
        "peak RSS {rss_1x:.1} MiB at {records} records, {rss_3x:.1} MiB at {}",
        records * 3
    );
    let input_per_object = raw_bytes as f64 / object_bytes.max(1) as f64;
    let name = kind.name();
    vec![
        format!(
            "BENCH name=s3_sink_{name} metric=bytes_per_s value={:.0}",
            median(sink_rates.clone()) * 1e6
        ),
        format!(
            "BENCH name=s3_raw_put_{name} metric=bytes_per_s value={:.0}",
            median(base_rates) * 1e6
        ),
        format!(
            "BENCH name=s3_sink_{name}_input metric=bytes_per_s value={:.0}",
            median(sink_rates) * 1e6 * input_per_object
        ),
        format!(
            "BENCH name=s3_sink_{name} metric=ratio value={:.3}",
            median(ratios)
        ),
        format!(
            "BENCH name=s3_sink_{name}_cpu metric=ratio value={:.3}",
            median(cpu_ratios)
        ),
        format!(
            "BENCH name=s3_sink_{name} metric=events_per_cpu_s value={:.0}",
            median(sink_cpu)
        ),
        format!(
            "BENCH name=s3_raw_put_{name} metric=events_per_cpu_s value={:.0}",
            median(base_cpu)
        ),
        format!("BENCH name=s3_sink_{name} metric=peak_rss_mb value={rss_1x:.1}"),
        format!("BENCH name=s3_sink_{name}_3x metric=peak_rss_mb value={rss_3x:.1}"),
    ]
}

fn spread(v: &[f64]) -> f64 {
    let max = v.iter().cloned().fold(f64::MIN, f64::max);
    let min = v.iter().cloned().fold(f64::MAX, f64::min);
    (max - min) / median(v.to_vec())
}

#[tokio::main]
async fn main() {
    let records: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let store = s3();
    let mut lines = Vec::new();
    // Parquet costs a fifth of gzip per record: 4× the records keeps its runs long enough for
    // the 10 ms resolution of the CPU-time counters.
    for (kind, n) in [(Kind::GzipJsonLines, records), (Kind::Parquet, records * 4)] {
        // Uncompressed JSON bytes of the input (what both sides serialise), outside timed runs.
        let raw_bytes: u64 = (0..n)
            .map(|i| {
                serde_json::to_vec(&make(i).value)
                    .expect("serialises")
                    .len() as u64
                    + 1
            })
            .sum();
        lines.extend(measure(&store, kind, n, raw_bytes).await);
    }
    println!();
    for line in lines {
        println!("{line}");
    }
}
