//! The quickstart survives `kill -9` and a restart with exact totals.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_quickstart");
const EVENTS: &str = "200000";

/// (page, window start) → views, from the committed result files; panics on a duplicate key.
fn committed_totals(out: &Path) -> BTreeMap<(String, i64), u64> {
    let mut totals = BTreeMap::new();
    let results = out.join("results");
    for entry in std::fs::read_dir(&results).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_file() {
            continue; // .inprogress holds uncommitted epochs
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = (
                v["key"].as_str().unwrap().to_string(),
                v["window"]["start"].as_i64().unwrap(),
            );
            let count = v["value"].as_u64().unwrap();
            assert!(
                totals.insert(key.clone(), count).is_none(),
                "window {key:?} committed twice"
            );
        }
    }
    totals
}

fn run_to_end(out: &Path) {
    let status = Command::new(BIN)
        .args([
            "--out",
            out.to_str().unwrap(),
            "--events",
            EVENTS,
            "--quiet",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn quickstart_killed_three_times_and_restarted_commits_the_uninterrupted_totals() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    run_to_end(&reference);
    let expected = committed_totals(&reference);
    assert_eq!(expected.values().sum::<u64>(), 200_000);

    let crashed = dir.path().join("crashed");
    for kill_after_ms in [1300, 900, 1700] {
        let mut child = Command::new(BIN)
            .args([
                "--out",
                crashed.to_str().unwrap(),
                "--events",
                EVENTS,
                "--quiet",
            ])
            .args(["--rate", "60000"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
    }
    // At least one checkpoint completed before the kills, so the restarts resumed mid-stream.
    assert!(crashed.join("checkpoints/quickstart").exists());
    run_to_end(&crashed);
    assert_eq!(committed_totals(&crashed), expected);
}
