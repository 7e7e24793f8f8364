//! Watershed quickstart: a brokerless pipeline.
//!
//! Generates a clickstream (1,000,000 page views over 10 minutes of event time, up to 5 s out of
//! order), counts views per page per one-minute tumbling window, and writes the results to
//! standard output and, exactly once, to `<out>/results/`. Checkpoints go to
//! `<out>/checkpoints/` every second: kill it (even with `kill -9`) and run it again, and it
//! resumes so that the committed results equal those of an uninterrupted run.
//!
//! ```text
//! cargo run --release -p watershed-examples --no-default-features --bin quickstart -- [--out DIR] [--events N]
//!     [--rate EVENTS_PER_S] [--parallelism N] [--fresh] [--quiet]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};
use watershed_core::connectors::{LocalDirSink, StdoutSink};
use watershed_core::{CheckpointStore, Pipeline, PipelineConfig, WatermarkStrategy};
use watershed_examples::clickstream::{page_counts, ClickstreamSpec};

/// A brokerless pipeline: a generated clickstream → per-page one-minute view counts, written
/// exactly once. Kill it at any moment and run it again: it resumes from its last checkpoint.
#[derive(clap::Parser)]
#[command(version)]
struct Args {
    /// Output directory (results and checkpoints).
    #[arg(long, default_value = "quickstart-output")]
    out: PathBuf,
    /// Page views to generate.
    #[arg(long, default_value_t = ClickstreamSpec::default().events)]
    events: u64,
    /// Page views per second (default: as fast as it goes).
    #[arg(long)]
    rate: Option<f64>,
    /// Parallel instances of the keyed window.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Start over: delete the output directory first.
    #[arg(long)]
    fresh: bool,
    /// Print no results on stdout.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    watershed_examples::lifecycle::init_logging();
    watershed_examples::lifecycle::exit_with("quickstart", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = <Args as clap::Parser>::parse();
    if args.fresh && args.out.exists() {
        std::fs::remove_dir_all(&args.out)?;
    }
    let spec = ClickstreamSpec {
        events: args.events,
        ..Default::default()
    };
    let config = PipelineConfig::new("quickstart")
        .checkpoint_store(CheckpointStore::local(args.out.join("checkpoints"))?)
        .checkpoint_interval(Duration::from_secs(1))
        .parallelism(args.parallelism);
    let pipeline = Pipeline::new(config);

    let mut source = spec.source();
    if let Some(rate) = args.rate {
        source = source.rate(rate);
    }
    let views = pipeline.source(
        "clicks",
        source,
        WatermarkStrategy::bounded_out_of_orderness(spec.max_disorder),
    );
    let mut outputs = page_counts(views).fan_out(2).into_iter();
    let (to_dir, to_stdout) = (outputs.next().unwrap(), outputs.next().unwrap());
    to_dir.sink("results", LocalDirSink::new(args.out.join("results")));
    if args.quiet {
        drop(to_stdout);
    } else {
        to_stdout.sink("stdout", StdoutSink::new());
    }

    let started = Instant::now();
    let summary = pipeline.run().await?;
    if summary.records_in == 0 {
        eprintln!(
            "quickstart: the run in {} had already finished; nothing left to do (pass --fresh to start over)",
            args.out.display()
        );
    }
    eprintln!(
        "quickstart: read {} page views in {:.2?}, {} checkpoints (last {:?}); committed results in {}",
        summary.records_in,
        started.elapsed(),
        summary.checkpoints,
        summary.last_checkpoint,
        args.out.join("results").display()
    );
    Ok(())
}
