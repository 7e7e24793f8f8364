//! The hybrid and primary examples' graphs, as `Pipeline::describe` prints them, match the
//! committed expectations under tests/expected/: a change to an example's shape (a node
//! renamed, a chain broken, a parallelism changed) shows up in review as a diff of that file.
//! The examples build their pipelines against real clients (the output topic is created, the
//! reference table read from S3), so this needs the local brokers.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `binary --describe` with `args` and compares its output with `expected/<file>`. Set
/// `WATERSHED_UPDATE_EXPECTED=1` to rewrite the file instead (then review the diff).
fn matches_expectation(binary: &str, args: &[&str], file: &str) {
    let checkpoints = tempfile::tempdir().unwrap();
    let output = Command::new(binary)
        .args(args)
        .args(["--describe", "--checkpoints"])
        .arg(checkpoints.path().join("checkpoints"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{binary} --describe: {stderr}");
    let actual = String::from_utf8(output.stdout).unwrap();
    let expected_path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "expected", file]
        .iter()
        .collect();
    if std::env::var_os("WATERSHED_UPDATE_EXPECTED").is_some() {
        std::fs::write(&expected_path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if actual != expected {
        let written = Path::new(env!("CARGO_TARGET_TMPDIR")).join(file);
        std::fs::write(&written, &actual).unwrap();
        panic!(
            "{binary} --describe differs from {}:\n--- expected\n{expected}\n--- actual (also in {})\n{actual}\n\
             If the change is intended, rerun with WATERSHED_UPDATE_EXPECTED=1 and review the diff.",
            expected_path.display(),
            written.display()
        );
    }
}

/// Rule: the hybrid example's graph is the committed one (source, analytics, both page-stats
/// sinks, category and error-rate sinks, dead letters).
#[test]
#[ignore = "needs local brokers: scripts/brokers up"]
fn hybrid_graph_matches_the_committed_description() {
    let brokers = brokers();
    matches_expectation(
        env!("CARGO_BIN_EXE_hybrid"),
        &[
            "--brokers",
            &brokers,
            "--output",
            "describe-page-stats",
            "--s3-prefix",
            "describe-hybrid",
        ],
        "hybrid.describe.txt",
    );
}

/// Rule: the primary example's graph is the committed one (the raw archive beside the
/// analytics, Parquet page stats, category and error-rate sinks, dead letters).
#[test]
#[ignore = "needs local brokers: scripts/brokers up"]
fn primary_graph_matches_the_committed_description() {
    matches_expectation(
        env!("CARGO_BIN_EXE_primary"),
        &["--s3-prefix", "describe-primary"],
        "primary.describe.txt",
    );
}
