//! Rescaling a keyed window pipeline from a checkpoint: stopped mid-stream at parallelism 4,
//! resumed at 3, stopped again, finished at 1, the committed windows are exactly those of one
//! uninterrupted run.

use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_operators::{prelude::*, Count, WindowResult};
use watershed_testkit::{FailAt, FailingSource, Fault};

const PIPELINE: &str = "rescale-windows";
const PER_SPLIT: u64 = 600;
const KEYS: u64 = 40;
/// Event-time disorder stays under the watermark delay: no element is late, so results do not
/// depend on how splits interleave or on where the run was stopped.
const DISORDER: u64 = 30;
const DELAY: Duration = Duration::from_millis(40);

type Out = WindowResult<u64, u64>;

fn events() -> GeneratorSource<u64> {
    GeneratorSource::new(2, PER_SPLIT, |s, i| {
        let v = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7 ^ s as u64;
        Record::new(v, EventTime((i * 5 + v % DISORDER) as i64))
    })
    .batch_size(8)
    // Slow enough that periodic checkpoints (with open windows) land before the stop.
    .rate(20_000.0)
}

/// Tumbling and session counts over 40 keys, keyed at `parallelism`; stopped by an injected
/// failure after `stop_after` records when given.
async fn run(
    parallelism: usize,
    store: &CheckpointStore,
    stop_after: Option<u64>,
    sink: &CollectSink<Out>,
) -> Result<RunSummary> {
    let p = Pipeline::new(
        PipelineConfig::new(PIPELINE)
            .checkpoint_store(store.clone())
            .checkpoint_interval(Duration::from_millis(4))
            .parallelism(parallelism)
            .handle_signals(false),
    );
    let source = match stop_after {
        Some(n) => FailingSource::new(events(), Fault::error(FailAt::AfterRecords(n))),
        // A fault past the end never fires.
        None => FailingSource::new(events(), Fault::error(FailAt::AfterRecords(u64::MAX))),
    };
    let mut streams = p
        .source(
            "events",
            source,
            WatermarkStrategy::bounded_out_of_orderness(DELAY),
        )
        .fan_out(2)
        .into_iter();
    let (a, b) = (streams.next().unwrap(), streams.next().unwrap());
    let tumbling = a
        .key_by(|v: &u64| v % KEYS)
        .window(TumblingWindows::of(Duration::from_millis(50)))
        .aggregate_named("tumbling", Count);
    let sessions = b
        .key_by(|v: &u64| v % KEYS)
        .window(SessionWindows::with_gap(Duration::from_millis(60)))
        .aggregate_named("sessions", Count);
    tumbling.union(sessions).sink("out", sink.clone());
    tokio::time::timeout(Duration::from_secs(60), p.run())
        .await
        .expect("run() must not hang")
}

fn sorted(v: Vec<Out>) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(|r| format!("{r:?}")).collect();
    s.sort();
    s
}

/// The instances the latest checkpoint holds the windows of `operator` in; checks that it
/// holds open windows, so that the restore has state to redistribute.
async fn instances(store: &CheckpointStore, operator: &str) -> usize {
    let m = store.latest(PIPELINE).await.unwrap().expect("a checkpoint");
    assert_eq!(m.max_parallelism, Some(128));
    let nodes = &m.key_groups[operator];
    let groups: usize = nodes.values().map(Vec::len).sum();
    // Each instance writes its first group even when empty: more groups means open windows.
    assert!(
        groups > nodes.len(),
        "{operator} has open windows in the checkpoint"
    );
    nodes.len()
}

/// Rule: window state checkpointed by key group at parallelism 4 restores at parallelism 3,
/// and that at parallelism 1; the committed windows (tumbling and merging sessions) equal an
/// uninterrupted run's, none missing, none twice, and the counts add up to the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_pipeline_stopped_at_4_resumed_at_3_then_1_equals_an_uninterrupted_run() {
    let reference = CollectSink::new();
    run(2, &CheckpointStore::memory(), None, &reference)
        .await
        .unwrap();

    let store = CheckpointStore::memory();
    let sink = CollectSink::new();
    let stopped = run(4, &store, Some(400), &sink).await;
    assert!(stopped.is_err(), "the injected failure stops the run");
    assert_eq!(instances(&store, "tumbling").await, 4);
    let stopped = run(3, &store, Some(400), &sink).await;
    assert!(stopped.is_err(), "the injected failure stops the run");
    assert_eq!(instances(&store, "sessions").await, 3);
    run(1, &store, None, &sink).await.unwrap();

    let got = sink.values();
    let tumbling_total: u64 = got
        .iter()
        .filter(|r| r.window.end.0 - r.window.start.0 == 50)
        .map(|r| r.value)
        .sum();
    assert_eq!(tumbling_total, 2 * PER_SPLIT, "every record counted once");
    assert_eq!(sorted(got), sorted(reference.values()));
}
