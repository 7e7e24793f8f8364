//! Watershed reference-data enrichment: a brokerless pipeline.
//!
//! Generates a clickstream (200,000 page views over 10 minutes of event time), looks each
//! page's category up in a reference table — `<out>/reference/pages.csv`, read through
//! `object_store`'s `LocalFileSystem` exactly as it would be read from S3 — and counts views
//! per category per one-minute window. Halfway through, the program rewrites the CSV (pages
//! move between categories, unknown pages get one); the table's background refresh notices the
//! change and swaps the new table in atomically, so every batch is enriched from one version.
//! Pages the table does not know go on with the category `unknown`.
//!
//! Results are written to standard output and, exactly once, to `<out>/results/`; checkpoints
//! go to `<out>/checkpoints/`.
//!
//! ```text
//! cargo run --release -p watershed-examples --bin enrichment -- [--out DIR] [--events N]
//!     [--rate EVENTS_PER_S] [--refresh-ms MS] [--fresh] [--quiet]
//! ```

use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::connectors::{LocalDirSink, StdoutSink};
use watershed_core::{
    CheckpointStore, Pipeline, PipelineConfig, TumblingWindows, WatermarkStrategy,
};
use watershed_examples::clickstream::{ClickstreamSpec, PageView};
use watershed_operators::{prelude::*, Count, MissingKey, ReferenceTable};

/// Page views enriched with a reference table that changes while the pipeline runs.
#[derive(clap::Parser)]
#[command(version)]
struct Args {
    /// Output directory (results and checkpoints).
    #[arg(long, default_value = "enrichment-output")]
    out: PathBuf,
    /// Page views to generate.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Page views per second.
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// How often the reference table is checked for a new version, in milliseconds.
    #[arg(long = "refresh-ms", default_value = "200", value_parser = parse_millis)]
    refresh: Duration,
    /// Start over: delete the output directory first.
    #[arg(long)]
    fresh: bool,
    /// Print no results on stdout.
    #[arg(long)]
    quiet: bool,
}

fn parse_millis(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("`{s}`: {e}"))
}

/// One row of the reference table.
#[derive(serde::Deserialize)]
struct PageCategory {
    page: String,
    category: String,
}

const CATEGORIES: [&str; 5] = ["news", "sport", "shop", "docs", "blog"];

/// The reference table, version 1 or 2: version 1 knows pages 0..39, version 2 all 50 pages
/// and moves every page to the next category.
fn pages_csv(version: usize, pages: u64) -> String {
    let known = if version == 1 { pages * 4 / 5 } else { pages };
    let mut csv = String::from("page,category\n");
    for p in 0..known {
        let category = CATEGORIES[(p as usize + version - 1) % CATEGORIES.len()];
        csv.push_str(&format!("/page/{p},{category}\n"));
    }
    csv
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    watershed_examples::lifecycle::init_logging();
    watershed_examples::lifecycle::exit_with("enrichment", run().await)
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
    let reference = args.out.join("reference");
    std::fs::create_dir_all(&reference)?;
    let csv_path = reference.join("pages.csv");
    std::fs::write(&csv_path, pages_csv(1, spec.pages))?;

    // The same code reads S3: swap in `AmazonS3Builder::from_env().with_bucket_name(..).build()?`.
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&args.out)?);
    let categories = ReferenceTable::builder(store, "reference/pages.csv")
        .refresh_every(args.refresh)
        .load(|row: PageCategory| (row.page, row.category))
        .await?;
    eprintln!(
        "enrichment: loaded {} pages from {} (version {})",
        categories.current().len(),
        csv_path.display(),
        categories.current().version()
    );

    let config = PipelineConfig::new("enrichment")
        .checkpoint_store(CheckpointStore::local(args.out.join("checkpoints"))?)
        .checkpoint_interval(Duration::from_secs(1));
    let pipeline = Pipeline::new(config);
    let processed = Arc::new(AtomicU64::new(0));
    let counted = processed.clone();
    let views = pipeline.source(
        "clicks",
        spec.source().rate(args.rate),
        WatermarkStrategy::bounded_out_of_orderness(spec.max_disorder),
    );
    let per_category = views
        .enrich(
            &categories,
            |v: &PageView| v.page.clone(),
            MissingKey::PassThrough,
        )
        .inspect(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .map(|(_, category): (PageView, Option<String>)| {
            category.unwrap_or_else(|| "unknown".to_string())
        })
        .key_by(|category: &String| category.clone())
        .window(TumblingWindows::of(Duration::from_secs(60)))
        .aggregate_named("category-counts", Count);
    let mut outputs = per_category.fan_out(2).into_iter();
    let (to_dir, to_stdout) = (outputs.next().unwrap(), outputs.next().unwrap());
    to_dir.sink("results", LocalDirSink::new(args.out.join("results")));
    if args.quiet {
        drop(to_stdout);
    } else {
        to_stdout.sink("stdout", StdoutSink::new());
    }

    // Halfway through, publish version 2 of the table, as an upstream job would.
    let replace = {
        let (table, processed, pages, half) = (
            categories.clone(),
            processed.clone(),
            spec.pages,
            args.events / 2,
        );
        tokio::spawn(async move {
            while processed.load(Ordering::Relaxed) < half {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Write aside and rename: a reader never sees a half-written file (an S3 PUT is
            // atomic by itself).
            let staged = csv_path.with_extension("csv.tmp");
            let published = std::fs::write(&staged, pages_csv(2, pages))
                .and_then(|()| std::fs::rename(&staged, &csv_path));
            if let Err(e) = published {
                eprintln!("enrichment: could not rewrite {}: {e}", csv_path.display());
                return;
            }
            eprintln!(
                "enrichment: rewrote {} after {} views",
                csv_path.display(),
                processed.load(Ordering::Relaxed)
            );
            while table.current().version() < 2 && Arc::strong_count(&processed) > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            eprintln!(
                "enrichment: reference table swapped to version {} ({} pages) after {} views",
                table.current().version(),
                table.current().len(),
                processed.load(Ordering::Relaxed)
            );
        })
    };

    let started = Instant::now();
    let summary = pipeline.run().await?;
    replace.abort();
    if summary.records_in == 0 {
        eprintln!(
            "enrichment: the run in {} had already finished; nothing left to do (pass --fresh to start over)",
            args.out.display()
        );
    }
    eprintln!(
        "enrichment: read {} page views in {:.2?}, {} checkpoints; committed results in {}",
        summary.records_in,
        started.elapsed(),
        summary.checkpoints,
        args.out.join("results").display()
    );
    Ok(())
}
