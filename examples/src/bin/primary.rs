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
//! Checkpoints every second to a local directory or S3; kill it and start it again to resume.
//!
//! ```text
//! scripts/brokers up
//! cargo run --release -p watershed-examples --bin loadgen -- kinesis --stream clicks --events 20000
//! cargo run --release -p watershed-examples --bin primary -- --stream clicks
//! ```
//! Options: `--stream`, `--endpoint` (default `$WATERSHED_KINESIS_ENDPOINT`, else the AWS
//! default), `--id`, `--s3-prefix`, `--categories KEY`, `--checkpoints DIR|s3://BUCKET/PREFIX`,
//! `--metrics 127.0.0.1:9465|off` (the status page: docs/status.md), `--describe` (print the
//! graph, exit). S3: see `observe::s3_client` (the AWS default chain; `scripts/run-example`
//! points both at the local servers). Logs: `RUST_LOG`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{Pipeline, PipelineConfig};
use watershed_examples::analytics::{
    analytics, click_watermarks, examples_page_categories, CategoryStats, ErrorRate, PageStats,
};
use watershed_examples::cli::MetricsAddr;
use watershed_examples::lifecycle;
use watershed_examples::observe;
use watershed_sink_s3::{Compression, Format, ParquetOptions, S3Sink};
use watershed_source_kinesis::{AwsOptions, KinesisSource, StartPosition};

/// Kinesis → the shared analytics → S3 (Parquet, a raw archive and dead letters), exactly
/// once. Kill it at any moment and start it again: it resumes from its last checkpoint.
#[derive(clap::Parser)]
#[command(version)]
struct Args {
    /// Kinesis stream of JSON clicks to read.
    #[arg(long, default_value = "clicks")]
    stream: String,
    /// Kinesis endpoint, for a local server (AWS's own otherwise).
    #[arg(long, env = "WATERSHED_KINESIS_ENDPOINT")]
    endpoint: Option<String>,
    /// This instance's id: names its checkpoints.
    #[arg(long, default_value = "primary")]
    id: String,
    /// S3 prefix of the outputs.
    #[arg(long, default_value = "primary")]
    s3_prefix: String,
    /// S3 key of the page-category reference table (default `<prefix>/reference/page-categories.csv`).
    #[arg(long)]
    categories: Option<String>,
    /// Checkpoint store: a local directory or s3://BUCKET/PREFIX.
    #[arg(long, default_value = "primary-output/checkpoints")]
    checkpoints: String,
    /// Status page address (the graph with live rates, lag and checkpoints at `/`,
    /// Prometheus metrics at `/metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9465")]
    metrics: MetricsAddr,
    /// Print the pipeline's graph (`Pipeline::describe`) and exit without running it.
    #[arg(long)]
    describe: bool,
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
async fn main() -> ExitCode {
    lifecycle::init_logging();
    let a = <Args as clap::Parser>::parse();
    if a.describe {
        let described = build(&a).await.map(|p| print!("{}", p.describe()));
        return lifecycle::exit_with("primary", described);
    }
    lifecycle::exit_with("primary", lifecycle::serve("primary", build(&a)).await)
}

/// Everything before the pipeline runs: metrics, S3, the reference table, the pipeline.
async fn build(a: &Args) -> Result<Pipeline, Box<dyn std::error::Error>> {
    // Recording starts before the set-up, which reports too; the page needs the built graph.
    let recorder = match a.metrics.0 {
        Some(addr) if !a.describe => Some((
            observe::bind_status(addr).await?,
            observe::install_recorder()?,
        )),
        _ => None,
    };
    let s3 = Arc::new(observe::s3_client()?);
    let categories =
        examples_page_categories(s3.clone(), &a.s3_prefix, a.categories.as_deref()).await?;
    let pipeline = Pipeline::new(
        PipelineConfig::new(&a.id)
            .checkpoint_store(observe::checkpoint_store(&a.checkpoints)?)
            .checkpoint_interval(Duration::from_secs(1))
            .parallelism(2)
            // Stop requests come through `Stop`, which also covers the set-up above.
            .handle_signals(false),
    );
    let mut aws = AwsOptions::new();
    if let Some(endpoint) = &a.endpoint {
        aws = aws.endpoint_url(endpoint);
    }
    let source = KinesisSource::builder(&a.stream)
        .aws(aws)
        .start_position(StartPosition::TrimHorizon)
        .build();
    let raw = pipeline.source(
        "clicks",
        source,
        click_watermarks().with_idleness(Duration::from_secs(10)),
    );
    let mut copies = raw.fan_out(2).into_iter();
    let (to_archive, to_analytics) = (copies.next().unwrap(), copies.next().unwrap());

    // The Firehose path: every raw event, as it came, gzip JSON lines by event hour.
    to_archive.sink(
        "raw-archive",
        S3Sink::<bytes::Bytes>::s3(s3.clone(), &format!("{}/raw", a.s3_prefix))
            // The sink ends each line itself.
            .encoder(|r, out| {
                out.extend_from_slice(&r.value);
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
    if let Some((listener, handle)) = recorder {
        observe::serve_status(listener, handle.clone(), &pipeline);
        observe::print_progress(handle, "primary");
    }
    Ok(pipeline)
}
