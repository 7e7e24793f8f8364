//! Watershed quickstart: a brokerless pipeline.
//!
//! Generates a clickstream (1,000,000 page views over 10 minutes of event time, up to 5 s out of
//! order), counts views per page per one-minute tumbling window, and writes the results to
//! standard output and, exactly once, to `<out>/results/`. Checkpoints go to
//! `<out>/checkpoints/` every second: kill it (even with `kill -9`) and run it again, and it
//! resumes so that the committed results equal those of an uninterrupted run.
//!
//! ```text
//! cargo run --release -p watershed-examples --bin quickstart -- [--out DIR] [--events N]
//!     [--rate EVENTS_PER_S] [--parallelism N] [--fresh] [--quiet]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};
use watershed_core::connectors::{LocalDirSink, StdoutSink};
use watershed_core::{CheckpointStore, Pipeline, PipelineConfig, WatermarkStrategy};
use watershed_examples::clickstream::{page_counts, ClickstreamSpec};

struct Args {
    out: PathBuf,
    events: u64,
    rate: Option<f64>,
    parallelism: usize,
    fresh: bool,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::from("quickstart-output"),
        events: ClickstreamSpec::default().events,
        rate: None,
        parallelism: 2,
        fresh: false,
        quiet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--out" => args.out = value("--out")?.into(),
            "--events" => {
                args.events = value("--events")?
                    .parse()
                    .map_err(|e| format!("--events: {e}"))?
            }
            "--rate" => {
                args.rate = Some(
                    value("--rate")?
                        .parse()
                        .map_err(|e| format!("--rate: {e}"))?,
                )
            }
            "--parallelism" => {
                args.parallelism = value("--parallelism")?
                    .parse()
                    .map_err(|e| format!("--parallelism: {e}"))?
            }
            "--fresh" => args.fresh = true,
            "--quiet" => args.quiet = true,
            "-h" | "--help" => {
                println!("usage: quickstart [--out DIR] [--events N] [--rate EVENTS_PER_S] [--parallelism N] [--fresh] [--quiet]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("quickstart: {e}");
            std::process::exit(2);
        }
    };
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
