//! The primary architecture: Kinesis → analytics → S3, plus the Firehose path.
//!
//! Reads JSON clicks from a Kinesis stream and runs the shared analytics (the same function the
//! Kafka example runs). Writes, exactly once:
//! - per-page statistics to S3 as Parquet, Hive-partitioned by event hour
//!   (`<prefix>/page-stats/dt=…/hour=…/`),
//! - views per page category and minute as gzip JSON lines (`<prefix>/category-stats/`), the
//!   category looked up in a reference table in S3 (`--categories KEY`, default
//!   `<prefix>/reference/page-categories.csv`, written with a default table when missing and
//!   re-read when it changes),
//! - error rates as gzip JSON lines,
//! - every raw event, archived as gzip JSON lines (what Firehose would deliver),
//! - undecodable events under a dead-letter prefix with their reason.
//!
//! Checkpoints every second to a local directory; kill it and start it again to resume.
//!
//! ```text
//! scripts/brokers up
//! cargo run --release -p watershed-examples --bin loadgen -- kinesis --stream clicks --events 20000
//! cargo run --release -p watershed-examples --bin primary -- --stream clicks
//! ```
//! Options: `--stream`, `--endpoint` (default `$WATERSHED_KINESIS_ENDPOINT` or
//! http://127.0.0.1:4568), `--id`, `--s3-prefix`, `--categories KEY`, `--checkpoints DIR`,
//! `--metrics 127.0.0.1:9465|off`. S3: see `observe::s3_client` (the local server by default).

use std::sync::Arc;
use std::time::Duration;
use watershed_core::{CheckpointStore, Pipeline, PipelineConfig, WatermarkStrategy};
use watershed_examples::analytics::{
    analytics, event_time_of, examples_page_categories, CategoryStats, ErrorRate, PageStats,
};
use watershed_examples::observe;
use watershed_sink_s3::{Compression, Format, ParquetOptions, S3Sink};
use watershed_source_kinesis::{AwsOptions, KinesisSource, StartPosition};

struct Args {
    stream: String,
    endpoint: String,
    id: String,
    s3_prefix: String,
    categories: Option<String>,
    checkpoints: String,
    metrics: Option<std::net::SocketAddr>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        stream: "clicks".into(),
        endpoint: std::env::var("WATERSHED_KINESIS_ENDPOINT")
            .unwrap_or("http://127.0.0.1:4568".into()),
        id: "primary".into(),
        s3_prefix: "primary".into(),
        categories: None,
        checkpoints: "primary-output/checkpoints".into(),
        metrics: Some("127.0.0.1:9465".parse().unwrap()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--stream" => a.stream = v()?,
            "--endpoint" => a.endpoint = v()?,
            "--id" => a.id = v()?,
            "--s3-prefix" => a.s3_prefix = v()?,
            "--categories" => a.categories = Some(v()?),
            "--checkpoints" => a.checkpoints = v()?,
            "--metrics" => {
                let m = v()?;
                a.metrics = if m == "off" {
                    None
                } else {
                    Some(m.parse().map_err(|e| format!("--metrics: {e}"))?)
                };
            }
            "-h" | "--help" => {
                println!("usage: primary [--stream S] [--endpoint URL] [--id ID] [--s3-prefix P] [--categories KEY] [--checkpoints DIR] [--metrics ADDR|off]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

/// A fixed sample, so the Parquet schema never depends on the data (a replay writes the same
/// files).
fn page_stats_sample() -> PageStats {
    PageStats {
        page: String::new(),
        window_start: 0,
        window_end: 0,
        views: 0,
        unique_users: 0,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args().unwrap_or_else(|e| {
        eprintln!("primary: {e}");
        std::process::exit(2)
    });
    if let Some(addr) = a.metrics {
        let handle = observe::serve_metrics(addr)?;
        observe::print_progress(handle, "primary");
    }
    let s3 = Arc::new(observe::s3_client()?);
    let categories =
        examples_page_categories(s3.clone(), &a.s3_prefix, a.categories.as_deref()).await?;
    let pipeline = Pipeline::new(
        PipelineConfig::new(&a.id)
            .checkpoint_store(CheckpointStore::local(&a.checkpoints)?)
            .checkpoint_interval(Duration::from_secs(1))
            .parallelism(2),
    );
    let region = std::env::var("AWS_REGION").unwrap_or("us-east-1".into());
    let source = KinesisSource::builder(&a.stream)
        .aws(AwsOptions::new().endpoint_url(&a.endpoint).region(region))
        .start_position(StartPosition::TrimHorizon)
        .build();
    let raw = pipeline.source(
        "clicks",
        source,
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(5))
            .with_timestamps(event_time_of)
            .with_idleness(Duration::from_secs(10)),
    );
    let mut copies = raw.fan_out(2).into_iter();
    let (to_archive, to_analytics) = (copies.next().unwrap(), copies.next().unwrap());

    // The Firehose path: every raw event, as it came, gzip JSON lines by event hour.
    to_archive.sink(
        "raw-archive",
        S3Sink::<bytes::Bytes>::s3(s3.clone(), &format!("{}/raw", a.s3_prefix))
            .encoder(|r, out| {
                out.extend_from_slice(&r.value);
                out.push(b'\n');
                Ok(())
            })
            .compression(Compression::Gzip)
            .build()?,
    );
    let out = analytics(to_analytics, &categories);
    out.page_stats.sink(
        "page-stats-s3",
        S3Sink::<PageStats>::s3(s3.clone(), &format!("{}/page-stats", a.s3_prefix))
            .format(Format::Parquet(ParquetOptions::derive_from(&[
                page_stats_sample(),
            ])?))
            .build()?,
    );
    out.category_stats.sink(
        "category-stats-s3",
        S3Sink::<CategoryStats>::s3(s3.clone(), &format!("{}/category-stats", a.s3_prefix))
            .compression(Compression::Gzip)
            .build()?,
    );
    out.error_rates.sink(
        "error-rates-s3",
        S3Sink::<ErrorRate>::s3(s3.clone(), &format!("{}/error-rates", a.s3_prefix))
            .compression(Compression::Gzip)
            .build()?,
    );
    pipeline.dead_letter(
        "dead-letters",
        S3Sink::s3_dead_letters(s3, &format!("{}/dead-letters", a.s3_prefix)).build()?,
    );
    let summary = pipeline.run().await?;
    eprintln!(
        "primary: stopped after {} records, {} checkpoints, {} rejected",
        summary.records_in, summary.checkpoints, summary.rejected
    );
    Ok(())
}
