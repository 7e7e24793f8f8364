//! The runtime's guarantees, end to end through real pipelines (brokerless).

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::{
    CollectSink, GeneratorPosition, GeneratorSource, JsonLinesSource, LocalDirSink,
};
use watershed_core::*;

/// A source that fails after `crash_at` records, like a process killed mid-stream, and pauses
/// between polls so that checkpoints interleave with data.
struct CrashingSource {
    inner: GeneratorSource<u64>,
    crash_at: Option<u64>,
    emitted: u64,
}

#[async_trait]
impl Source for CrashingSource {
    type Item = u64;
    type Position = GeneratorPosition;

    async fn open(&mut self, restored: Option<GeneratorPosition>) -> Result<(), BoxError> {
        self.inner.open(restored).await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<u64>, BoxError> {
        if self.crash_at.is_some_and(|c| self.emitted >= c) {
            return Err("injected crash".into());
        }
        tokio::time::sleep(Duration::from_micros(300)).await;
        let e = self.inner.poll(max_wait).await?;
        if let SourceEvent::Batch { records, .. } = &e {
            self.emitted += records.len() as u64;
        }
        Ok(e)
    }

    fn position(&self) -> GeneratorPosition {
        self.inner.position()
    }
}

fn numbers(splits: usize, per_split: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(splits, per_split, |s, i| {
        Record::new(i * 10 + s as u64, EventTime(i as i64))
    })
    .batch_size(16)
}

/// Keyed running count: emits `(key, count so far)` for every record. Its output depends on
/// its state, so a lost or doubled record or state update shows up in the output.
#[derive(Default)]
struct RunningCount {
    counts: HashMap<u64, u64>,
}

impl Operator for RunningCount {
    type In = u64;
    type Out = (u64, u64);

    fn process(
        &mut self,
        batch: Batch<u64>,
        out: &mut Collector<(u64, u64)>,
    ) -> Result<(), BoxError> {
        for r in batch {
            let key = r.value % 7;
            let c = self.counts.entry(key).or_default();
            *c += 1;
            out.emit(r.with_value((key, *c)));
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(serde_json::to_vec(&self.counts)?))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.counts = serde_json::from_slice(state)?;
        Ok(())
    }
}

fn config(id: &str, store: &CheckpointStore) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(store.clone())
        .checkpoint_interval(Duration::from_millis(3))
        .parallelism(2)
        .handle_signals(false)
}

async fn run_counting(
    store: &CheckpointStore,
    sink: &CollectSink<(u64, u64)>,
    crash_at: Option<u64>,
) -> Result<RunSummary> {
    let p = Pipeline::new(config("running-count", store));
    let source = CrashingSource {
        inner: numbers(2, 300),
        crash_at,
        emitted: 0,
    };
    p.source("numbers", source, WatermarkStrategy::monotonous())
        .key_by(|v: &u64| v % 7)
        .process("running", |_| RunningCount::default())
        .sink("out", sink.clone());
    p.run().await
}

fn sorted(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// C2 + property 7: for any crash point, restoring the latest complete checkpoint and
    /// replaying from its positions commits exactly the output of a failure-free run.
    #[test]
    fn c2_restore_after_a_crash_at_any_point_gives_the_uninterrupted_output(cut in 1u64..600) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let reference = CollectSink::new();
            run_counting(&CheckpointStore::memory(), &reference, None).await.unwrap();

            let store = CheckpointStore::memory();
            let sink = CollectSink::new();
            let crashed = run_counting(&store, &sink, Some(cut)).await;
            prop_assert!(crashed.is_err(), "the injected crash must stop the run");
            run_counting(&store, &sink, None).await.unwrap();

            prop_assert_eq!(reference.values().len(), 600);
            prop_assert_eq!(sorted(sink.values()), sorted(reference.values()));
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn c6_rerunning_a_completed_pipeline_recommits_without_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path().join("chk")).unwrap();
    let out = dir.path().join("out");
    let run = || async {
        let p = Pipeline::new(config("recommit", &store));
        p.source("numbers", numbers(2, 500), WatermarkStrategy::monotonous())
            .sink("files", LocalDirSink::new(out.clone()));
        p.run().await.unwrap()
    };
    let first = run().await;
    assert_eq!(first.records_in, 1000);
    let read_all = || {
        let mut lines: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().unwrap().is_file())
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        lines
    };
    let before = read_all();
    assert_eq!(before.len(), 1000);
    // The second run restores the final checkpoint and commits its handles again.
    let second = run().await;
    assert_eq!(second.records_in, 0);
    assert_eq!(read_all(), before);
}

#[tokio::test]
async fn c6_commit_after_a_crash_between_manifest_and_commit_makes_data_visible_once() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = |restored| {
        let mut c = SinkContext::clone(&sink_context());
        c.restored_checkpoint = restored;
        c
    };
    let mut sink = LocalDirSink::<u64>::new(dir.path());
    sink.open(&ctx(None)).await.unwrap();
    sink.write(vec![
        Record::new(1, EventTime(0)),
        Record::new(2, EventTime(0)),
    ])
    .await
    .unwrap();
    let handle = sink.pre_commit(CheckpointId(1)).await.unwrap();
    // Crash: the process dies before commit. The restarted sink gets the handle from the manifest.
    drop(sink);
    let mut restarted = LocalDirSink::<u64>::new(dir.path());
    restarted.open(&ctx(Some(CheckpointId(1)))).await.unwrap();
    restarted
        .commit(CheckpointId(1), handle.clone())
        .await
        .unwrap();
    // And once more, as a second recovery would.
    restarted.commit(CheckpointId(1), handle).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().unwrap().is_file())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read_to_string(files[0].path()).unwrap(), "1\n2\n");
}

fn sink_context() -> SinkContext {
    // SinkContext is non-exhaustive; get one the way the runtime makes it.
    static CTX: std::sync::OnceLock<SinkContext> = std::sync::OnceLock::new();
    CTX.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        struct Grab(std::sync::mpsc::Sender<SinkContext>);
        #[async_trait]
        impl Sink for Grab {
            type Item = u64;
            type Handle = ();
            async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
                self.0.send(ctx.clone()).unwrap();
                Ok(())
            }
            async fn write(&mut self, _: Batch<u64>) -> Result<(), BoxError> {
                Ok(())
            }
            async fn pre_commit(&mut self, _: CheckpointId) -> Result<(), BoxError> {
                Ok(())
            }
            async fn commit(&mut self, _: CheckpointId, _: ()) -> Result<(), BoxError> {
                Ok(())
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            rt.block_on(async {
                let p = Pipeline::new(config("ctx", &CheckpointStore::memory()));
                p.source("n", numbers(1, 1), WatermarkStrategy::none())
                    .sink("grab", Grab(tx));
                p.run().await.unwrap();
            })
        })
        .join()
        .unwrap();
        rx.recv().unwrap()
    })
    .clone()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Reading {
    id: u32,
}

#[tokio::test]
async fn malformed_record_reaches_the_dead_letter_sink_with_its_reason_and_the_pipeline_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(
        &path,
        "{\"id\":1}\nnot json\n{\"id\":2}\n{\"id\":\"three\"}\n{\"id\":4}\n",
    )
    .unwrap();
    let p = Pipeline::new(config("dlq", &CheckpointStore::memory()));
    let good = CollectSink::<Reading>::new();
    let dead = CollectSink::<DeadLetter>::new();
    p.source(
        "file",
        JsonLinesSource::new([&path]),
        WatermarkStrategy::none(),
    )
    .apply(
        "decode",
        FnOperator::new(|batch: Batch<bytes::Bytes>, out: &mut Collector<Reading>| {
            for r in batch {
                match serde_json::from_slice::<Reading>(&r.value) {
                    Ok(v) => out.emit(r.map(|_| v)),
                    Err(e) => out.reject(
                        DeadLetter::new(e.to_string(), r.value.clone())
                            .at(r.origin.clone(), r.timestamp),
                    ),
                }
            }
        }),
    )
    .sink("good", good.clone());
    p.dead_letter("dead", dead.clone());
    let summary = p.run().await.unwrap();
    assert_eq!(summary.rejected, 2);
    assert_eq!(
        good.values(),
        vec![Reading { id: 1 }, Reading { id: 2 }, Reading { id: 4 }]
    );
    let dead = dead.values();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload, bytes::Bytes::from_static(b"not json"));
    assert!(
        dead[0].reason.contains("expected"),
        "reason: {}",
        dead[0].reason
    );
    assert_eq!(dead[0].node, "decode");
    assert_eq!(dead[0].origin.as_ref().unwrap().offset, Offset::Number(9));
    assert!(
        dead[1].reason.contains("invalid type"),
        "reason: {}",
        dead[1].reason
    );
}

#[tokio::test]
async fn rejected_record_fails_the_pipeline_under_the_fail_policy() {
    let p =
        Pipeline::new(config("fail", &CheckpointStore::memory()).error_policy(ErrorPolicy::Fail));
    p.source("n", numbers(1, 10), WatermarkStrategy::none())
        .apply(
            "reject-five",
            FnOperator::new(|batch: Batch<u64>, out: &mut Collector<u64>| {
                for r in batch {
                    if r.value == 50 {
                        out.reject(DeadLetter::new("five is not allowed", "50"));
                    } else {
                        out.emit(r);
                    }
                }
            }),
        )
        .sink("out", CollectSink::new());
    match p.run().await {
        Err(Error::Record { node, reason, .. }) => {
            assert_eq!(node, "reject-five");
            assert_eq!(reason, "five is not allowed");
        }
        other => panic!("expected a record error, got {other:?}"),
    }
}

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
    assert_eq!(sorted_u64(all_a.values()), sorted_u64(all_b.values()));
}

fn sorted_u64(mut v: Vec<u64>) -> Vec<u64> {
    v.sort();
    v
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
