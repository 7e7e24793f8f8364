//! A small pipeline writing generated events to S3 (or a local directory) through the S3 sink,
//! exactly once: kill it at any moment (even with `kill -9`), run it again with the same
//! arguments, and every event is committed exactly once. The crash test
//! (examples/tests/s3_sink_demo_crash.rs) runs it that way.
//!
//! ```text
//! s3-sink-demo --prefix PREFIX --checkpoints DIR [--records N] [--rate EVENTS_PER_S]
//!     [--interval-ms MS] [--compression none|gzip|zstd] [--local DIR]
//! ```
//!
//! Events are `{"split":s,"i":i}`, 2 splits, event time 100 ms apart from
//! 2025-11-25T17:00:00Z. Without `--local` the S3 client comes from the environment
//! (`WATERSHED_S3_ENDPOINT`, `WATERSHED_S3_BUCKET`, `AWS_*`; the first two also as options).

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::GeneratorSource;
use watershed_core::{
    CheckpointStore, EventTime, Pipeline, PipelineConfig, Record, WatermarkStrategy,
};
use watershed_sink_s3::{amazon_s3_builder_from_env, Compression, S3Sink};

/// 2025-11-25T17:00:00Z.
const T0: i64 = 1_764_090_000_000;

#[derive(Serialize)]
struct Event {
    split: usize,
    i: u64,
}

/// Generated events → the S3 sink, exactly once: kill it at any moment, run it again with the
/// same arguments, and every event is committed exactly once.
#[derive(Parser)]
#[command(name = "s3-sink-demo", version)]
struct Args {
    /// Key prefix of the objects.
    #[arg(long)]
    prefix: String,
    /// Directory of the checkpoints; a restart with the same one resumes from the last.
    #[arg(long, value_name = "DIR")]
    checkpoints: PathBuf,
    /// Number of events, over 2 splits.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    records: u64,
    /// Events per second (default: as fast as the sink takes them).
    #[arg(long, value_name = "EVENTS_PER_S")]
    rate: Option<f64>,
    /// Milliseconds between checkpoints.
    #[arg(long = "interval-ms", value_name = "MS", default_value_t = 200)]
    interval_ms: u64,
    /// Compression of the objects.
    #[arg(long, value_enum, default_value_t = Codec::Gzip)]
    compression: Codec,
    /// Write to this local directory (staged commits) instead of S3.
    #[arg(long, value_name = "DIR")]
    local: Option<PathBuf>,
    /// S3 endpoint, for a local or S3-compatible server (default: AWS's, from the `AWS_*`
    /// settings). Ignored with `--local`.
    #[arg(long, env = "WATERSHED_S3_ENDPOINT", value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 bucket (default: `AWS_BUCKET`). Ignored with `--local`.
    #[arg(long, env = "WATERSHED_S3_BUCKET", value_name = "BUCKET")]
    s3_bucket: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Codec {
    /// Uncompressed.
    None,
    /// GZIP; objects end in `.gz`.
    Gzip,
    /// Zstandard; objects end in `.zst`.
    Zstd,
}

impl From<Codec> for Compression {
    fn from(codec: Codec) -> Self {
        match codec {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// The environment's S3 client with the options on top; an `http://` endpoint is addressed
/// path-style over plain HTTP, as local S3 servers need.
fn s3_client(args: &Args) -> Result<object_store::aws::AmazonS3, Box<dyn std::error::Error>> {
    let mut builder = amazon_s3_builder_from_env();
    if let Some(endpoint) = &args.s3_endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_endpoint(endpoint);
    }
    if let Some(bucket) = &args.s3_bucket {
        builder = builder.with_bucket_name(bucket);
    }
    Ok(builder
        .build()
        .map_err(|e| format!("S3 client from the environment: {e}"))?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let builder = match &args.local {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
            S3Sink::<Event>::builder(Arc::new(store), &args.prefix)
        }
        None => S3Sink::<Event>::s3(Arc::new(s3_client(&args)?), &args.prefix),
    };
    let sink = builder.compression(args.compression.into()).build()?;

    let config = PipelineConfig::new("s3-demo")
        .checkpoint_store(CheckpointStore::local(&args.checkpoints)?)
        .checkpoint_interval(Duration::from_millis(args.interval_ms));
    let pipeline = Pipeline::new(config);
    let per_split = args.records / 2;
    let mut source =
        GeneratorSource::sized(vec![per_split, args.records - per_split], |split, i| {
            Record::new(Event { split, i }, EventTime(T0 + i as i64 * 100))
        });
    if let Some(rate) = args.rate {
        source = source.rate(rate);
    }
    pipeline
        .source("events", source, WatermarkStrategy::monotonous())
        .sink("s3", sink);
    let summary = pipeline.run().await?;
    eprintln!(
        "s3-sink-demo: read {} events, {} checkpoints (last {:?})",
        summary.records_in, summary.checkpoints, summary.last_checkpoint
    );
    Ok(())
}
