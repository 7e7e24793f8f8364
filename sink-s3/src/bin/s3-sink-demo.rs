//! A small pipeline writing generated events to S3 (or a local directory) through the S3 sink,
//! exactly once: kill it at any moment (even with `kill -9`), run it again with the same
//! arguments, and every event is committed exactly once. The crash test runs it that way.
//!
//! ```text
//! s3-sink-demo --prefix PREFIX --checkpoints DIR [--records N] [--rate EVENTS_PER_S]
//!     [--interval-ms MS] [--compression none|gzip|zstd] [--local DIR]
//! ```
//!
//! Events are `{"split":s,"i":i}`, 2 splits, event time 100 ms apart from
//! 2025-11-25T17:00:00Z. Without `--local` the S3 client comes from the environment
//! (`WATERSHED_S3_ENDPOINT`, `WATERSHED_S3_BUCKET`, `AWS_*`).

use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::GeneratorSource;
use watershed_core::{
    CheckpointStore, EventTime, Pipeline, PipelineConfig, Record, WatermarkStrategy,
};
use watershed_sink_s3::{amazon_s3_from_env, Compression, S3Sink};

/// 2025-11-25T17:00:00Z.
const T0: i64 = 1_764_090_000_000;

#[derive(Serialize)]
struct Event {
    split: usize,
    i: u64,
}

struct Args {
    prefix: String,
    checkpoints: PathBuf,
    records: u64,
    rate: Option<f64>,
    interval: Duration,
    compression: Compression,
    local: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut prefix = None;
    let mut checkpoints = None;
    let mut args = Args {
        prefix: String::new(),
        checkpoints: PathBuf::new(),
        records: 200_000,
        rate: None,
        interval: Duration::from_millis(200),
        compression: Compression::Gzip,
        local: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--prefix" => prefix = Some(value("--prefix")?),
            "--checkpoints" => checkpoints = Some(PathBuf::from(value("--checkpoints")?)),
            "--records" => {
                args.records = value("--records")?
                    .parse()
                    .map_err(|e| format!("--records: {e}"))?
            }
            "--rate" => {
                args.rate = Some(
                    value("--rate")?
                        .parse()
                        .map_err(|e| format!("--rate: {e}"))?,
                )
            }
            "--interval-ms" => {
                args.interval = Duration::from_millis(
                    value("--interval-ms")?
                        .parse()
                        .map_err(|e| format!("--interval-ms: {e}"))?,
                )
            }
            "--compression" => {
                args.compression = match value("--compression")?.as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    other => return Err(format!("--compression: unknown `{other}`")),
                }
            }
            "--local" => args.local = Some(PathBuf::from(value("--local")?)),
            "-h" | "--help" => {
                println!(
                    "usage: s3-sink-demo --prefix PREFIX --checkpoints DIR [--records N] \
                     [--rate EVENTS_PER_S] [--interval-ms MS] [--compression none|gzip|zstd] \
                     [--local DIR]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    args.prefix = prefix.ok_or("--prefix is required")?;
    args.checkpoints = checkpoints.ok_or("--checkpoints is required")?;
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("s3-sink-demo: {e}");
            std::process::exit(2);
        }
    };
    let builder = match &args.local {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
            S3Sink::<Event>::builder(Arc::new(store), &args.prefix)
        }
        None => S3Sink::<Event>::s3(Arc::new(amazon_s3_from_env()?), &args.prefix),
    };
    let sink = builder.compression(args.compression).build()?;

    let config = PipelineConfig::new("s3-demo")
        .checkpoint_store(CheckpointStore::local(&args.checkpoints)?)
        .checkpoint_interval(args.interval);
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
