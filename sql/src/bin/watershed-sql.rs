//! `watershed-sql`: runs a `.sql` script — `CREATE TABLE`s over JSON-lines files or the
//! generator, `INSERT INTO` a `'print'` table or bare `SELECT`s printed as JSON lines — on one
//! Watershed pipeline, or prints its plans.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use watershed_core::{CheckpointStore, ErrorPolicy, Pipeline, PipelineConfig};
use watershed_sql::{Outcome, SqlContext};

/// Run a streaming SQL script on Watershed.
#[derive(Parser, Debug)]
#[command(name = "watershed-sql", version, about, long_about = None)]
struct Args {
    /// The script: CREATE TABLE ... WITH ('connector' = 'json-lines', 'path' = ...) and
    /// INSERT INTO <print table> SELECT ... (or bare SELECTs, printed as JSON lines).
    script: PathBuf,
    /// Print the operator graph of every query instead of running them.
    #[arg(long)]
    explain: bool,
    /// Pipeline name (keys its checkpoints).
    #[arg(long, default_value = "watershed-sql")]
    name: String,
    /// Stop at the first row that fails (bad JSON, division by zero) instead of skipping and
    /// counting it.
    #[arg(long)]
    fail_on_error: bool,
    /// Parallelism of keyed operators (window aggregations).
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watershed-sql: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let sql = std::fs::read_to_string(&args.script)
        .map_err(|e| format!("{}: {e}", args.script.display()))?;
    let config = PipelineConfig::new(&args.name)
        .checkpoint_store(CheckpointStore::memory())
        .parallelism(args.parallelism.max(1))
        .error_policy(if args.fail_on_error {
            ErrorPolicy::Fail
        } else {
            ErrorPolicy::Skip
        });
    let pipeline = Pipeline::new(config);
    let mut ctx = SqlContext::new(&pipeline);
    if args.explain {
        for plan in ctx.explain_script(&sql)? {
            println!("{plan}");
        }
        return Ok(());
    }
    let mut queries = 0;
    for outcome in ctx.execute(&sql)? {
        match outcome {
            Outcome::Explained(plan) => println!("{plan}"),
            Outcome::Inserted(_) | Outcome::Printed => queries += 1,
            Outcome::Created(_) => {}
        }
    }
    if queries == 0 {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(pipeline.run())?;
    eprintln!(
        "watershed-sql: {} records in, {} rejected",
        summary.records_in, summary.rejected
    );
    Ok(())
}
