//! `watershed-advisor`: shard utilisation, hot keys and shard-count advice for a Kinesis
//! stream; `watershed-advisor autoscale` changes the shard count (opt-in, `--dry-run`).

use clap::Parser;
use watershed_advisor::cli::{run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watershed-advisor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
