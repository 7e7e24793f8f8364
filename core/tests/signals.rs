//! SIGINT stops a pipeline gracefully at any moment: a final checkpoint, then `run` returns.
//!
//! One test function only: the signals go to this whole test process, so nothing else may run
//! beside it.

use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;

fn interrupt_self() {
    let status = std::process::Command::new("kill")
        .args(["-INT", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// An endless, throttled input, checkpointed every `every` into a local directory.
fn pipeline(dir: &std::path::Path, every: Duration) -> (Pipeline, CollectSink<u64>) {
    let p = Pipeline::new(
        PipelineConfig::new("signals")
            .checkpoint_store(CheckpointStore::local(dir).unwrap())
            .checkpoint_interval(every),
    );
    let out = CollectSink::new();
    let source = GeneratorSource::new(1, 0, |_, i| Record::new(i, EventTime(i as i64)))
        .unbounded()
        .rate(50_000.0)
        .batch_size(50);
    p.source("n", source, WatermarkStrategy::none())
        .sink("out", out.clone());
    (p, out)
}

async fn stops_gracefully(p: Pipeline, out: &CollectSink<u64>, signal_after: Duration) {
    let mut run = Box::pin(p.run());
    // The first poll is the start of `run`, where it begins to listen; the signal may come
    // at any moment after that.
    assert!(futures::poll!(&mut run).is_pending());
    let run = tokio::spawn(run);
    tokio::time::sleep(signal_after).await;
    interrupt_self();
    let summary = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("SIGINT must stop the pipeline")
        .expect("no panic")
        .expect("a graceful stop is a success");
    assert!(
        summary.checkpoints >= 1,
        "the stop takes a final checkpoint"
    );
    let values = out.values();
    // Everything read before the final checkpoint was committed, once, in order.
    assert_eq!(values, (0..values.len() as u64).collect::<Vec<_>>());
}

/// Rule: SIGINT during start-up (while the checkpoint is restored and the tasks open) and
/// SIGINT while the coordinator is busy writing a checkpoint each stop the pipeline with a
/// final checkpoint; neither kills the process nor is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_at_any_moment_stops_the_pipeline_with_a_final_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // At start-up: the signal comes before the pipeline has done anything.
    let (p, out) = pipeline(&dir.path().join("start"), Duration::from_secs(1));
    stops_gracefully(p, &out, Duration::ZERO).await;

    // Mid-run, with a checkpoint every millisecond, so that the coordinator spends much of
    // its time writing manifests: a signal that arrived while it was not waiting for one
    // used to be lost, and the pipeline ran on.
    for round in 0..5u64 {
        let (p, out) = pipeline(
            &dir.path().join(format!("run-{round}")),
            Duration::from_millis(1),
        );
        stops_gracefully(p, &out, Duration::from_millis(150 + 37 * round)).await;
    }
}
