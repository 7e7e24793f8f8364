//! The hybrid example starts and stops as a service should: SIGINT at any moment, including
//! during start-up, ends it cleanly; a wrong broker address ends it within seconds with an
//! error that names the address. Needs the local brokers.

mod common;

use common::*;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Waits up to `limit` for the child to exit; kills it and fails if it does not.
fn exits_within(
    child: &mut Child,
    limit: Duration,
    log: &std::path::Path,
) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "still running after {limit:?}; its stderr:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt(child: &Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
}

/// Rule: SIGINT 0.2 s after start (during start-up) and SIGINT while running each stop the
/// example cleanly (exit status 0, no panic); the second run resumes from what the first left.
#[test]
#[ignore = "needs local brokers: scripts/brokers up"]
fn sigint_during_start_up_or_while_running_stops_hybrid_cleanly() {
    let input = unique("life-clicks");
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["kafka", "--topic", &input, "--events", "2000"])
        .status()
        .unwrap();
    assert!(status.success());
    let dir = tempfile::tempdir().unwrap();
    let id = unique("life");
    let output = unique("life-stats");
    let prefix = unique("life-hybrid");
    let checkpoints = dir.path().join("checkpoints");
    let args = hybrid_args(&input, &output, &id, &prefix, &checkpoints);
    for (round, after) in [(0, 200u64), (1, 4_000)] {
        let log = dir.path().join(format!("hybrid-{round}.log"));
        let mut child = spawn_hybrid(&args, &log);
        std::thread::sleep(Duration::from_millis(after));
        interrupt(&child);
        let status = exits_within(&mut child, Duration::from_secs(30), &log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success(),
            "SIGINT after {after} ms: {status}; stderr:\n{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
}

/// Rule: a wrong broker address ends the example within 15 s (not after a minute of
/// retries) with an error that names the address.
#[test]
#[ignore = "needs local brokers: scripts/brokers up"]
fn a_wrong_broker_address_fails_fast_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hybrid.log");
    let checkpoints = dir.path().join("checkpoints");
    let mut child = spawn_hybrid(
        &[
            "--brokers",
            "127.0.0.1:1",
            "--input",
            "nowhere",
            "--checkpoints",
            checkpoints.to_str().unwrap(),
            "--metrics",
            "off",
        ],
        &log,
    );
    let status = exits_within(&mut child, Duration::from_secs(15), &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("127.0.0.1:1"),
        "the error names the address:\n{text}"
    );
}
