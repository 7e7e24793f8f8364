//! SIGTERM stops the quickstart gracefully: final checkpoint, commit, exit 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quickstart");

#[test]
fn sigterm_takes_a_final_checkpoint_and_exits_cleanly_then_a_rerun_completes_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    let mut child = Command::new(BIN)
        .args([
            "--out",
            out.to_str().unwrap(),
            "--events",
            "100000",
            "--quiet",
        ])
        .args(["--rate", "40000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let asked = Instant::now();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    assert!(asked.elapsed() < Duration::from_secs(10));
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    // The run stopped early (the rate allows ~48k of 100k events in 1.2 s) and said so.
    let read: u64 = stderr
        .split("read ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {stderr}"));
    assert!(read > 0 && read < 100_000, "read {read}");
    // Nothing is left uncommitted after a graceful stop.
    let staged = std::fs::read_dir(out.join("results/.inprogress"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "a graceful stop commits every epoch");

    let status = Command::new(BIN)
        .args([
            "--out",
            out.to_str().unwrap(),
            "--events",
            "100000",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut total = 0;
    for e in std::fs::read_dir(out.join("results")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            for line in std::fs::read_to_string(e.path()).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                total += v["value"].as_u64().unwrap();
            }
        }
    }
    assert_eq!(total, 100_000);
}
