//! Failure-injecting wrappers: a pipeline that fails once at the chosen point and is run again
//! from its checkpoints delivers every record exactly once.

use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::{
    CheckpointStore, EventTime, Pipeline, PipelineConfig, Record, WatermarkStrategy,
};
use watershed_testkit::{FailAt, FailingSink, FailingSource, Fault};

const SPLITS: usize = 3;
const PER_SPLIT: u64 = 400;

fn generator() -> GeneratorSource<u64> {
    GeneratorSource::new(SPLITS, PER_SPLIT, |s, i| {
        Record::new(s as u64 * 10_000 + i, EventTime(i as i64))
    })
    .batch_size(10)
}

fn expected() -> Vec<u64> {
    let mut v: Vec<u64> = (0..SPLITS as u64)
        .flat_map(|s| (0..PER_SPLIT).map(move |i| s * 10_000 + i))
        .collect();
    v.sort_unstable();
    v
}

/// Runs the pipeline until a run succeeds (at most three runs), each run restoring the last
/// checkpoint of the one before; returns how many runs failed and the committed values.
async fn run_to_completion(
    source_fault: Option<Fault>,
    sink_fault: Option<Fault>,
) -> (usize, Vec<u64>) {
    let store = CheckpointStore::memory();
    let out = CollectSink::<u64>::new();
    for failed in 0..3 {
        let config = PipelineConfig::new("faults")
            .checkpoint_store(store.clone())
            // Checkpoints while the input is read, so that a failure falls between two.
            .checkpoint_interval(Duration::from_millis(2))
            .handle_signals(false);
        let pipeline = Pipeline::new(config);
        let numbers = match &source_fault {
            Some(f) => pipeline.source(
                "numbers",
                FailingSource::new(generator(), f.clone()),
                WatermarkStrategy::monotonous(),
            ),
            None => pipeline.source("numbers", generator(), WatermarkStrategy::monotonous()),
        };
        match &sink_fault {
            Some(f) => numbers.sink("out", FailingSink::new(out.clone(), f.clone())),
            None => numbers.sink("out", out.clone()),
        }
        if pipeline.run().await.is_ok() {
            let mut values = out.values();
            values.sort_unstable();
            return (failed, values);
        }
    }
    panic!("the pipeline failed three times");
}

/// Rule: a source that fails with an error after n records fails the run once; the next run
/// restores the checkpoint and every record is committed exactly once.
#[tokio::test]
async fn a_source_error_after_n_records_recovers_exactly_once() {
    let fault = Fault::error(FailAt::AfterRecords(600));
    let (failed, values) = run_to_completion(Some(fault.clone()), None).await;
    assert!(fault.fired());
    assert_eq!(failed, 1);
    assert_eq!(values, expected());
}

/// Rule: a source that panics after n records is a task error, not a crash of the test; the
/// restarted pipeline commits every record exactly once.
#[tokio::test]
async fn a_source_panic_after_n_records_recovers_exactly_once() {
    let fault = Fault::panic(FailAt::AfterRecords(300));
    let (failed, values) = run_to_completion(Some(fault.clone()), None).await;
    assert_eq!((fault.fired(), failed), (true, 1));
    assert_eq!(values, expected());
}

/// Rule: a sink that fails at a pre_commit loses nothing of that epoch: the next run
/// replays it from the previous checkpoint.
#[tokio::test]
async fn a_sink_failing_at_a_pre_commit_recovers_exactly_once() {
    let fault = Fault::error(FailAt::PreCommit(1));
    let (failed, values) = run_to_completion(None, Some(fault.clone())).await;
    assert_eq!((fault.fired(), failed), (true, 1));
    assert_eq!(values, expected());
}

/// Rule: a sink that fails before a commit, after the checkpoint completed, has that
/// epoch committed by the next run from the checkpointed handle.
#[tokio::test]
async fn a_sink_failing_before_a_commit_is_committed_on_recovery() {
    let fault = Fault::error(FailAt::Commit(1));
    let (failed, values) = run_to_completion(None, Some(fault.clone())).await;
    assert_eq!((fault.fired(), failed), (true, 1));
    assert_eq!(values, expected());
}

/// Rule: a sink that fails right after a commit succeeded is committed again on
/// recovery, and the repeated commit duplicates nothing.
#[tokio::test]
async fn a_sink_failing_after_a_commit_duplicates_nothing_on_recovery() {
    let fault = Fault::panic(FailAt::AfterCommit(1));
    let (failed, values) = run_to_completion(None, Some(fault.clone())).await;
    assert_eq!((fault.fired(), failed), (true, 1));
    assert_eq!(values, expected());
}

/// Rule: a fault fires once: clones share it, so the run after the failure passes through.
#[tokio::test]
async fn a_fault_fires_once_across_its_clones() {
    let fault = Fault::error(FailAt::AfterRecords(5));
    let mut first = FailingSink::new(CollectSink::<u64>::new(), fault.clone());
    let mut second = FailingSink::new(CollectSink::<u64>::new(), fault.clone());
    use watershed_core::Sink;
    let batch = |n: u64| (0..n).map(|i| Record::new(i, EventTime(0))).collect();
    assert!(first.write(batch(5)).await.is_ok());
    assert!(!fault.fired());
    let err = first.write(batch(1)).await.unwrap_err();
    assert!(err.to_string().contains("AfterRecords(5)"), "{err}");
    assert!(second.write(batch(100)).await.is_ok());
    assert!(fault.fired());
}
