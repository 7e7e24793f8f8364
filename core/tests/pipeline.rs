//! The runtime's guarantees for the shape and flow of a pipeline, end to end (brokerless):
//! backpressure and graceful shutdown, unions, side outputs and fan-out, failing operators,
//! event time across a restart.

mod common;

use common::{config, numbers, sorted};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorPosition, GeneratorSource};
use watershed_core::*;

/// A sink that takes 5 ms per batch.
struct SlowSink {
    received: Arc<AtomicU64>,
}

#[async_trait]
impl Sink for SlowSink {
    type Item = u64;
    type Handle = ();
    async fn write(&mut self, batch: Batch<u64>) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.received
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    async fn pre_commit(&mut self, _: CheckpointId) -> Result<(), BoxError> {
        Ok(())
    }
    async fn commit(&mut self, _: CheckpointId, _: ()) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn bounded_channels_stop_a_fast_source_and_shutdown_drains_gracefully() {
    let generated = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let g = generated.clone();
    let source = GeneratorSource::new(1, 0, move |_, i| {
        g.fetch_add(1, Ordering::SeqCst);
        Record::new(i, EventTime(i as i64))
    })
    .unbounded()
    .batch_size(100);
    let p = Pipeline::new(
        config("backpressure", &CheckpointStore::memory())
            .channel_capacity(2)
            .checkpoint_interval(Duration::from_millis(50)),
    );
    let shutdown = p.shutdown_handle();
    p.source("fast", source, WatermarkStrategy::none())
        .start_new_chain()
        .apply(
            "identity",
            FnOperator::new(|b: Batch<u64>, out: &mut Collector<u64>| out.emit_all(b)),
        )
        .sink(
            "slow",
            SlowSink {
                received: received.clone(),
            },
        );
    let run = tokio::spawn(p.run());
    let mut max_in_flight = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let in_flight = generated.load(Ordering::SeqCst) - received.load(Ordering::SeqCst);
        max_in_flight = max_in_flight.max(in_flight);
    }
    // The source runs in its own task (start_new_chain) behind a channel of 2 batches; with
    // one batch in the sink's hands and one being sent, at most ~4 batches of 100 records are
    // between the source and the sink, however fast the source (700 leaves slack).
    assert!(max_in_flight <= 700, "{max_in_flight} records in flight");
    assert!(received.load(Ordering::SeqCst) > 0);
    shutdown.shutdown();
    let summary = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("graceful shutdown finishes")
        .unwrap()
        .unwrap();
    // Graceful: everything the source read was written, and a final checkpoint completed.
    assert_eq!(summary.records_in, received.load(Ordering::SeqCst));
    assert_eq!(summary.records_out, summary.records_in);
    assert!(summary.checkpoints >= 1);
}

#[tokio::test]
async fn union_of_two_sources_aligns_barriers_and_keeps_every_record() {
    let store = CheckpointStore::memory();
    let p = Pipeline::new(config("union", &store));
    let a = p.source("a", numbers(2, 200), WatermarkStrategy::monotonous());
    let b = p.source("b", numbers(3, 100), WatermarkStrategy::monotonous());
    let out = CollectSink::new();
    a.union(b).sink("out", out.clone());
    let summary = p.run().await.unwrap();
    assert_eq!(summary.records_in, 700);
    assert_eq!(out.values().len(), 700);
    let manifest = store.latest("union").await.unwrap().unwrap();
    assert!(manifest.sources.contains_key("a") && manifest.sources.contains_key("b"));
}

#[tokio::test]
async fn duplicate_node_names_are_a_configuration_error() {
    let p = Pipeline::new(config("dup", &CheckpointStore::memory()));
    p.source("x", numbers(1, 1), WatermarkStrategy::none())
        .sink("x", CollectSink::new());
    assert!(matches!(p.run().await, Err(Error::Config(_))));
}

#[tokio::test]
async fn split_separates_a_side_output_and_fan_out_feeds_every_sink() {
    let p = Pipeline::new(config("side-outputs", &CheckpointStore::memory()));
    let evens = CollectSink::new();
    let odds = CollectSink::new();
    let all_a = CollectSink::new();
    let all_b = CollectSink::new();
    let mut copies = p
        .source("n", numbers(2, 100), WatermarkStrategy::monotonous())
        .fan_out(2)
        .into_iter();
    let (to_split, to_both) = (copies.next().unwrap(), copies.next().unwrap());
    let (left, right) = to_split
        .apply(
            "classify",
            FnOperator::new(|b: Batch<u64>, out: &mut Collector<Either<u64, u64>>| {
                for r in b {
                    let v = r.value;
                    out.emit(r.with_value(if v % 2 == 0 {
                        Either::Left(v)
                    } else {
                        Either::Right(v)
                    }));
                }
            }),
        )
        .split();
    left.sink("evens", evens.clone());
    right.sink("odds", odds.clone());
    let mut both = to_both.fan_out(2).into_iter();
    both.next().unwrap().sink("all-a", all_a.clone());
    both.next().unwrap().sink("all-b", all_b.clone());
    p.run().await.unwrap();
    assert!(evens.values().iter().all(|v| v % 2 == 0));
    assert!(odds.values().iter().all(|v| v % 2 == 1));
    assert_eq!(evens.values().len() + odds.values().len(), 200);
    assert_eq!(all_a.values().len(), 200);
    assert_eq!(sorted(all_a.values()), sorted(all_b.values()));
}

#[tokio::test]
async fn a_failing_operator_stops_the_pipeline_with_its_node_name() {
    let p = Pipeline::new(config("op-fails", &CheckpointStore::memory()));
    struct Boom;
    impl Operator for Boom {
        type In = u64;
        type Out = u64;
        fn process(&mut self, _: Batch<u64>, _: &mut Collector<u64>) -> Result<(), BoxError> {
            Err("disk on fire".into())
        }
    }
    p.source("n", numbers(1, 10), WatermarkStrategy::none())
        .apply("boom", Boom)
        .sink("out", CollectSink::new());
    let err = p.run().await.unwrap_err();
    assert!(
        matches!(&err, Error::Operator { node, .. } if node == "boom"),
        "{err}"
    );
    assert!(err.to_string().contains("disk on fire"));
}

/// A finite input that, like a live stream that went quiet, never says it is finished.
struct QuietAfter(GeneratorSource<u64>);

#[async_trait]
impl Source for QuietAfter {
    type Item = u64;
    type Position = GeneratorPosition;

    async fn open(&mut self, restored: Option<GeneratorPosition>) -> Result<(), BoxError> {
        self.0.open(restored).await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<u64>, BoxError> {
        match self.0.poll(max_wait).await? {
            SourceEvent::Finished => {
                tokio::time::sleep(max_wait.min(Duration::from_millis(5))).await;
                Ok(SourceEvent::Idle)
            }
            e => Ok(e),
        }
    }

    fn position(&self) -> GeneratorPosition {
        self.0.position()
    }
}

/// Runs `QuietAfter` (split 0 up to t=10,000, split 1 up to t=3,000) into an operator that
/// writes down every watermark it is given; returns the first one, once there is one.
async fn first_watermark_seen(store: &CheckpointStore) -> Option<i64> {
    let source = GeneratorSource::sized(vec![10, 10], |s, i| {
        let step = if s == 0 { 1_000 } else { 300 };
        Record::new(i, EventTime((i as i64 + 1) * step))
    })
    .batch_size(3);
    let p = Pipeline::new(
        PipelineConfig::new("event-time")
            .checkpoint_store(store.clone())
            .checkpoint_interval(Duration::from_millis(5))
            .handle_signals(false),
    );
    let shutdown = p.shutdown_handle();
    let seen = CollectSink::new();
    p.source(
        "quiet",
        QuietAfter(source),
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(100)),
    )
    .apply("watermarks", WatermarkLog)
    .sink("seen", seen.clone());
    let run = tokio::spawn(p.run());
    // Once both splits' last records are read, the watermark is min(10,000, 3,000) − 100 − 1.
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if seen.values().contains(&2_899) {
            break;
        }
    }
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("graceful shutdown finishes")
        .unwrap()
        .unwrap();
    seen.values().first().copied()
}

struct WatermarkLog;

impl Operator for WatermarkLog {
    type In = u64;
    type Out = i64;

    fn process(&mut self, _: Batch<u64>, _: &mut Collector<i64>) -> Result<(), BoxError> {
        Ok(())
    }

    fn on_watermark(&mut self, w: EventTime, out: &mut Collector<i64>) -> Result<(), BoxError> {
        out.emit(Record::new(w.0, w));
        Ok(())
    }
}

#[tokio::test]
async fn event_time_resumes_from_the_checkpoint_when_a_restored_source_has_nothing_left_to_read() {
    let store = CheckpointStore::memory();
    let first_run = first_watermark_seen(&store).await;
    assert!(first_run.is_some_and(|w| w <= 2_899), "{first_run:?}");
    // Everything was read and checkpointed. Without the splits' event times in the checkpoint
    // the restored splits would hold the watermark at MIN forever, and windows restored open
    // would never fire; with them, event time resumes at min(10,000, 3,000) − 100 − 1.
    let second_run = first_watermark_seen(&store).await;
    assert_eq!(second_run, Some(2_899));
}
