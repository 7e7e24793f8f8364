//! The examples keep their checkpoints in S3 when given `--checkpoints s3://BUCKET/PREFIX`,
//! as a deployment whose machines are replaceable must. Needs the local brokers.

mod common;

use common::*;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::CheckpointStore;

fn interrupt_and_wait(child: &mut std::process::Child, log: &std::path::Path) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{status}; stderr:\n{text}");
}

/// Waits until the pipeline `id` has a complete checkpoint under `prefix` in the bucket.
async fn wait_for_checkpoint(store: &CheckpointStore, id: &str, log: &std::path::Path) -> u64 {
    let started = Instant::now();
    loop {
        if let Some(m) = store.latest(id).await.unwrap() {
            return m.id.0;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no checkpoint in S3 after 90 s; stderr:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Rule: with `--checkpoints s3://bucket/prefix` the hybrid example writes its checkpoints to
/// that bucket and prefix, and a restarted process restores from the latest of them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn hybrid_checkpoints_to_s3_and_restores_from_there() {
    let bucket = std::env::var("WATERSHED_S3_BUCKET").unwrap_or_else(|_| "watershed-test".into());
    let input = unique("s3ckpt-clicks");
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["kafka", "--topic", &input, "--events", "3000"])
        .status()
        .unwrap();
    assert!(status.success());
    let id = unique("s3ckpt");
    let prefix = format!("{id}/checkpoints");
    let spec = format!("s3://{bucket}/{prefix}");
    let (output, s3_prefix) = (unique("s3ckpt-stats"), unique("s3ckpt-out"));
    let args = [
        "--input",
        &input,
        "--output",
        &output,
        "--group",
        &id,
        "--id",
        &id,
        "--s3-prefix",
        &s3_prefix,
        "--checkpoints",
        &spec,
        "--metrics",
        "off",
    ];
    let store = CheckpointStore::new(
        Arc::new(watershed_sink_s3::amazon_s3_from_env().unwrap()),
        prefix.as_str(),
    );
    let dir = tempfile::tempdir().unwrap();

    let first_log = dir.path().join("first.log");
    let mut first = spawn_hybrid(&args, &first_log);
    let checkpoint = wait_for_checkpoint(&store, &id, &first_log).await;
    interrupt_and_wait(&mut first, &first_log);

    let second_log = dir.path().join("second.log");
    let mut second = spawn_hybrid(&args, &second_log);
    let started = Instant::now();
    let restored = loop {
        let text = std::fs::read_to_string(&second_log).unwrap_or_default();
        if text.contains("restoring") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second run did not restore within 60 s; stderr:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    interrupt_and_wait(&mut second, &second_log);
    let line = restored.lines().find(|l| l.contains("restoring")).unwrap();
    let restored_id: u64 = line
        .split("checkpoint=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint id in {line:?}"));
    assert!(
        restored_id >= checkpoint,
        "restored checkpoint {restored_id}, but S3 already held {checkpoint}"
    );
}
