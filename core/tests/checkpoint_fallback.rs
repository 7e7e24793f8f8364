//! `on_corrupt_checkpoint(FallBack)`: a corrupt newest checkpoint is skipped, loudly, and the
//! newest intact one restored; ids go on above every checkpoint in the store.

mod checkpoint_common;

use checkpoint_common::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use watershed_core::checkpoint::CorruptCheckpoint;
use watershed_core::connectors::CollectSink;
use watershed_core::*;

fn falling_back(dir: &std::path::Path) -> PipelineConfig {
    config(dir).on_corrupt_checkpoint(CorruptCheckpoint::FallBack)
}

fn sorted(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    v
}

/// Rule: with FallBack, a corrupt state file in the newest checkpoint makes restore skip it
/// (with an error-level log naming it) and restore the previous checkpoint. The output is then
/// exact but for one stretch written twice: the records between the two checkpoints, which
/// the corrupt checkpoint had committed, are replayed from the previous checkpoint's state
/// and positions and committed again (at-least-once for that stretch, identical values).
#[tokio::test]
async fn fall_back_restores_the_previous_checkpoint_and_writes_its_stretch_again() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    two_checkpoints(dir.path(), &sink).await;
    flip_a_digit(&state_file(dir.path(), 2));

    let (run, logs) = logs_of(count_upto(falling_back(dir.path()), 300, &sink)).await;
    run.expect("falls back to checkpoint 1");
    let mut want = running_counts(0..300);
    want.extend(running_counts(100..200));
    assert_eq!(sorted(sink.values()), sorted(want));
    assert!(logs.contains("ERROR"), "{logs}");
    assert!(logs.contains("skipping a corrupt checkpoint"), "{logs}");
    assert!(logs.contains("checkpoint=2"), "{logs}");
}

/// Rule: after a FallBack (here past a garbage manifest), new checkpoint ids continue above the
/// corrupt checkpoint's id, because sinks recognise epochs they already committed by id; the
/// next start restores the new, intact checkpoint without falling back.
#[tokio::test]
async fn after_a_fall_back_ids_continue_above_the_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    two_checkpoints(dir.path(), &sink).await;
    std::fs::write(manifest_file(dir.path(), 2), b"\0\0garbage\xff").unwrap();

    let summary = count_upto(falling_back(dir.path()), 300, &sink)
        .await
        .expect("falls back to checkpoint 1");
    assert_eq!(summary.last_checkpoint, Some(CheckpointId(3)));

    let summary = count_upto(config(dir.path()), 400, &sink)
        .await
        .expect("checkpoint 3 is intact: no fall-back needed");
    assert_eq!(summary.last_checkpoint, Some(CheckpointId(4)));
    let mut want = running_counts(0..400);
    want.extend(running_counts(100..200));
    assert_eq!(sorted(sink.values()), sorted(want));
}

/// Rule: FallBack never starts from nothing: when no intact checkpoint is left, the start is
/// refused like under Refuse, saying that there is nothing to fall back to.
#[tokio::test]
async fn fall_back_refuses_when_no_intact_checkpoint_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    two_checkpoints(dir.path(), &sink).await;
    flip_a_digit(&state_file(dir.path(), 1));
    flip_a_digit(&state_file(dir.path(), 2));

    let err = count_upto(falling_back(dir.path()), 300, &sink)
        .await
        .expect_err("nothing intact to fall back to");
    assert!(
        matches!(
            err,
            Error::CorruptCheckpoint {
                id: CheckpointId(2),
                fallback: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("no older intact checkpoint is left to fall back to"));
    assert_eq!(sink.values().len(), 200, "nothing more was committed");
}

/// Counters recorded while a test runs, by name.
#[derive(Default)]
struct Counters(std::sync::Mutex<std::collections::HashMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, name: &str) -> u64 {
        let counters = self.0.lock().expect("counters lock");
        counters.get(name).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl metrics::Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.0.lock().expect("counters lock");
        Counter::from_arc(counters.entry(key.name().to_string()).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Rule: every corrupt checkpoint skipped at start is counted in
/// `watershed_checkpoints_corrupt_total`, so that a fall-back shows on a dashboard too.
#[test]
fn skipped_corrupt_checkpoints_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(two_checkpoints(dir.path(), &sink));
    flip_a_digit(&state_file(dir.path(), 2));

    let counters = Counters::default();
    metrics::with_local_recorder(&counters, || {
        runtime
            .block_on(count_upto(falling_back(dir.path()), 300, &sink))
            .expect("falls back to checkpoint 1")
    });
    assert_eq!(counters.get("watershed_checkpoints_corrupt_total"), 1);
}
