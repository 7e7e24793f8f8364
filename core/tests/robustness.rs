//! Configurations that once hung, panicked or lost data (found in review), held as rules.

use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_testkit::{FailAt, FailingSink, Fault};

fn cfg(id: &str) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(CheckpointStore::memory())
        .checkpoint_interval(Duration::from_millis(20))
        .handle_signals(false)
}

fn gen(n: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(1, n, |_, i| Record::new(i, EventTime(i as i64))).batch_size(8)
}

async fn finishes(p: Pipeline) -> Result<RunSummary> {
    tokio::time::timeout(Duration::from_secs(10), p.run())
        .await
        .expect("run() must not hang")
}

#[tokio::test]
async fn a_dead_letter_sink_that_nothing_feeds_does_not_block_checkpoints() {
    let p = Pipeline::new(cfg("dlq-unfed"));
    let out = CollectSink::new();
    p.source("n", gen(100), WatermarkStrategy::none())
        .sink("out", out.clone());
    p.dead_letter("dead", CollectSink::<DeadLetter>::new());
    let s = finishes(p).await.unwrap();
    assert!(s.checkpoints >= 1);
    assert_eq!(out.values().len(), 100);
}

#[tokio::test]
async fn a_dead_letter_sink_under_the_skip_policy_does_not_block_checkpoints() {
    let p = Pipeline::new(cfg("dlq-skip").error_policy(ErrorPolicy::Skip));
    let out = CollectSink::new();
    p.source("n", gen(100), WatermarkStrategy::none())
        .apply(
            "id",
            FnOperator::new(|b: Batch<u64>, o: &mut Collector<u64>| o.emit_batch(b)),
        )
        .sink("out", out.clone());
    p.dead_letter("dead", CollectSink::<DeadLetter>::new());
    let s = finishes(p).await.unwrap();
    assert!(s.checkpoints >= 1);
    assert_eq!(out.values().len(), 100);
}

#[tokio::test]
async fn a_stream_still_alive_at_run_is_a_configuration_error_not_a_hang() {
    let p = Pipeline::new(cfg("live-branch"));
    let s = p.source("n", gen(1000), WatermarkStrategy::none()).apply(
        "classify",
        FnOperator::new(|b: Batch<u64>, o: &mut Collector<Either<u64, u64>>| {
            for r in b {
                let v = r.value;
                o.emit(r.with_value(if v % 2 == 0 {
                    Either::Left(v)
                } else {
                    Either::Right(v)
                }));
            }
        }),
    );
    let (evens, _odds) = s.split(); // `_odds` lives until the end of the scope
    evens.sink("evens", CollectSink::new());
    assert!(matches!(finishes(p).await, Err(Error::Config(_))));
}

#[tokio::test]
async fn a_zero_checkpoint_interval_is_a_configuration_error() {
    let p = Pipeline::new(cfg("zero").checkpoint_interval(Duration::ZERO));
    p.source("n", gen(10), WatermarkStrategy::none())
        .sink("out", CollectSink::new());
    assert!(matches!(finishes(p).await, Err(Error::Config(_))));
}

#[tokio::test]
async fn a_tiny_generator_rate_waits_instead_of_panicking() {
    let mut g = gen(10).rate(1e-30);
    g.open(None).await.unwrap();
    for _ in 0..3 {
        let e = g.poll(Duration::from_millis(5)).await.unwrap();
        assert!(!matches!(e, SourceEvent::Finished));
    }
}

#[tokio::test]
async fn restoring_a_checkpoint_with_pending_output_of_a_renamed_sink_is_refused() {
    let store = CheckpointStore::memory();
    let out = CollectSink::<u64>::new();
    let c = PipelineConfig::new("rename")
        .checkpoint_store(store.clone())
        .without_periodic_checkpoints()
        .handle_signals(false);
    let p = Pipeline::new(c.clone());
    p.source("n", gen(50), WatermarkStrategy::none())
        // The first commit fails, as if the process died after the manifest was written.
        .sink(
            "out",
            FailingSink::new(out.clone(), Fault::error(FailAt::Commit(1))),
        );
    assert!(finishes(p).await.is_err());
    assert!(store
        .latest("rename")
        .await
        .unwrap()
        .unwrap()
        .sinks
        .contains_key("out"));

    let p = Pipeline::new(c.clone());
    p.source("n", gen(50), WatermarkStrategy::none())
        .sink("out-v2", out.clone());
    assert!(matches!(finishes(p).await, Err(Error::Config(_))));

    // Under its old name the sink commits the pending output on restore: nothing was lost.
    let p = Pipeline::new(c);
    p.source("n", gen(50), WatermarkStrategy::none())
        .sink("out", out.clone());
    finishes(p).await.unwrap();
    assert_eq!(out.values().len(), 50);
}
