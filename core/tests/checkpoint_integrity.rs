//! Checkpoints are verified, not trusted: what restore refuses, and the errors that say why.

mod checkpoint_common;

use checkpoint_common::*;
use watershed_core::connectors::CollectSink;
use watershed_core::*;

/// The message of a run's error, which must have failed.
fn refusal(run: Result<RunSummary>) -> String {
    run.expect_err("the corrupt checkpoint must be refused")
        .to_string()
}

/// Rule: a state file altered after it was written (still valid JSON, a count changed) is
/// never restored; by default the pipeline refuses to start, naming the checkpoint, the file,
/// what is wrong and both ways out, and never suggests `allow_non_restored_state` (which would
/// drop pending output).
#[tokio::test]
async fn an_altered_state_file_is_refused_naming_the_checkpoint_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    two_checkpoints(dir.path(), &sink).await;
    let file = state_file(dir.path(), 2);
    flip_a_digit(&file);

    let message = refusal(count_upto(config(dir.path()), 300, &sink).await);
    assert!(message.contains("checkpoint 2 is corrupt"), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("does not match its checksum"), "{message}");
    assert!(message.contains("put back an intact copy"), "{message}");
    assert!(message.contains("CorruptCheckpoint::FallBack"), "{message}");
    assert!(
        message.contains("checkpoint 1 (the newest intact one)"),
        "{message}"
    );
    assert!(!message.contains("allow_non_restored_state"), "{message}");
    assert_eq!(sink.values().len(), 200, "nothing more was committed");
}

/// Rule: a manifest altered after it was written (still valid JSON, a source position
/// changed) fails its own checksum and is refused, naming the manifest.
#[tokio::test]
async fn an_altered_manifest_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    two_checkpoints(dir.path(), &sink).await;
    let file = manifest_file(dir.path(), 2);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(manifest["sources"]["numbers"]["next"][0], 200);
    manifest["sources"]["numbers"]["next"][0] = 150.into();
    std::fs::write(&file, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();

    let message = refusal(count_upto(config(dir.path()), 300, &sink).await);
    assert!(message.contains("checkpoint 2 is corrupt"), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(
        message.contains("does not match its own checksum"),
        "{message}"
    );
    assert_eq!(sink.values().len(), 200, "nothing more was committed");
}

/// Rule: a truncated latest manifest is a corrupt checkpoint, refused by default like any
/// other, naming the manifest.
#[tokio::test]
async fn a_truncated_latest_manifest_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    two_checkpoints(dir.path(), &sink).await;
    let file = manifest_file(dir.path(), 2);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();

    let message = refusal(count_upto(config(dir.path()), 300, &sink).await);
    assert!(message.contains("checkpoint 2 is corrupt"), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("is not a readable manifest"), "{message}");
    assert!(!message.contains("allow_non_restored_state"), "{message}");
}

/// Rule: a state file that is gone is a corrupt checkpoint, refused naming the file.
#[tokio::test]
async fn a_missing_state_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    two_checkpoints(dir.path(), &sink).await;
    let file = state_file(dir.path(), 2);
    std::fs::remove_file(&file).unwrap();

    let message = refusal(count_upto(config(dir.path()), 300, &sink).await);
    assert!(message.contains("checkpoint 2 is corrupt"), "{message}");
    assert!(
        message.contains(&format!("`{}` is missing", file.display())),
        "{message}"
    );
}

/// Rule: a checkpoint of manifest version 1 (written before checksums existed) is still
/// restored exactly, with a warning that it cannot be verified.
#[tokio::test]
async fn a_version_1_checkpoint_without_checksums_restores_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let chk = checkpoint_dir(dir.path(), 1);
    std::fs::create_dir_all(&chk).unwrap();
    // The state and manifest a version 1 pipeline wrote after counting records 0..100.
    let counts: std::collections::HashMap<u64, u64> = (0..7)
        .map(|k| (k, (0..100).filter(|i| i % 7 == k).count() as u64))
        .collect();
    std::fs::write(
        chk.join("count.0.state"),
        serde_json::to_vec(&counts).unwrap(),
    )
    .unwrap();
    let manifest = serde_json::json!({
        "version": 1,
        "pipeline": PIPELINE,
        "id": 1,
        "created_ms": 0,
        "sources": { "numbers": { "next": [100] } },
        "sinks": {},
        "operators": { "count.0": format!("{PIPELINE}/chk-{:020}/count.0.state", 1) },
    });
    std::fs::write(
        chk.join("_MANIFEST"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();

    let sink = CollectSink::new();
    let (run, logs) = logs_of(count_upto(config(dir.path()), 200, &sink)).await;
    let summary = run.expect("a version 1 checkpoint restores");
    assert_eq!(summary.last_checkpoint, Some(CheckpointId(2)));
    let mut got = sink.values();
    got.sort();
    let mut want = running_counts(100..200);
    want.sort();
    assert_eq!(got, want, "counting goes on from the restored state");
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("cannot be verified"), "{logs}");
}

/// Rule: a local checkpoint directory that cannot be created (its path runs through a regular
/// file) is an error naming the directory and what is in the way.
#[test]
fn a_local_store_under_a_regular_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "root:x:0:0\n").unwrap();
    let under = file.join("checkpoints");

    let message = CheckpointStore::local(&under)
        .expect_err("no directory can be created under a file")
        .to_string();
    assert!(message.contains(&under.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("`{}` is a file, not a directory", file.display())),
        "{message}"
    );
}

/// Rule: a checkpoint object that cannot be written is named in the error (here the
/// pipeline's checkpoint directory is a regular file, so nothing can be written under it).
#[tokio::test]
async fn a_checkpoint_object_that_cannot_be_written_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(PIPELINE), "not a directory").unwrap();
    let sink = CollectSink::new();

    let message = count_upto(config(dir.path()), 10, &sink)
        .await
        .expect_err("nothing can be written")
        .to_string();
    let under = dir.path().join(PIPELINE).display().to_string();
    assert!(message.contains(&format!("`{under}")), "{message}");
}
