//! Properties 5 (parallelism) and 6 (checkpoint/restore) once more, through real pipelines:
//! hash shuffle, chained tasks, aligned-barrier checkpoints, a crash and a restart whose
//! watermark starts again at MIN. Fewer cases than the operator-level properties in
//! window_properties.rs (which carry the 1,000 cases each), because every case runs pipelines.

use proptest::prelude::*;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_operators::{prelude::*, Count, WindowResult};
use watershed_testkit::{FailAt, FailingSource, Fault};

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 31)
}

const PER_SPLIT: u64 = 200;
/// Event time disorder within a split stays under the watermark delay, so no element is late
/// and results do not depend on how batches of different splits interleave.
const DISORDER: u64 = 40;
const DELAY: Duration = Duration::from_millis(50);

fn events(seed: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(3, PER_SPLIT, move |s, i| {
        let v = mix(seed ^ (i << 8) ^ s as u64);
        Record::new(v, EventTime((i * 7 + v % DISORDER) as i64))
    })
    .batch_size(8)
}

type Out = WindowResult<u64, u64>;

/// Sliding and session counts over 5 keys, keyed with `parallelism`, into one sink.
async fn run(
    seed: u64,
    parallelism: usize,
    store: &CheckpointStore,
    crash_at: Option<u64>,
    sink: &CollectSink<Out>,
) -> Result<RunSummary> {
    let p = Pipeline::new(
        PipelineConfig::new("windows")
            .checkpoint_store(store.clone())
            .checkpoint_interval(Duration::from_millis(3))
            .parallelism(parallelism)
            .handle_signals(false),
    );
    // Fails after `crash_at` records, like a killed process; pauses between polls so
    // checkpoints interleave with data.
    let fault = crash_at.map_or_else(Fault::never, |n| Fault::error(FailAt::AfterRecords(n)));
    let source =
        FailingSource::new(events(seed), fault).pause_before_polls(Duration::from_micros(200));
    let mut streams = p
        .source(
            "events",
            source,
            WatermarkStrategy::bounded_out_of_orderness(DELAY),
        )
        .fan_out(2)
        .into_iter();
    let (a, b) = (streams.next().unwrap(), streams.next().unwrap());
    let sliding = a
        .key_by(|v: &u64| v % 5)
        .window(SlidingWindows::of(
            Duration::from_millis(100),
            Duration::from_millis(30),
        ))
        .allowed_lateness(Duration::from_millis(20))
        .aggregate_named("sliding", Count);
    let sessions = b
        .key_by(|v: &u64| v % 5)
        .window(SessionWindows::with_gap(Duration::from_millis(3)))
        .aggregate_named("sessions", Count);
    sliding.union(sessions).sink("out", sink.clone());
    p.run().await
}

fn sorted(v: Vec<Out>) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(|r| format!("{r:?}")).collect();
    s.sort();
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// 5. Through a real pipeline, parallelism 3 (hash shuffle) gives the results of parallelism 1.
    #[test]
    fn p5_pipeline_parallelism_3_equals_parallelism_1(seed in any::<u64>()) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let one = CollectSink::new();
            run(seed, 1, &CheckpointStore::memory(), None, &one).await.unwrap();
            let three = CollectSink::new();
            run(seed, 3, &CheckpointStore::memory(), None, &three).await.unwrap();
            let total: u64 = one.values().iter().filter(|r| r.window.end.0 - r.window.start.0 == 100).map(|r| r.value).sum();
            prop_assert!(total > 0);
            prop_assert_eq!(sorted(three.values()), sorted(one.values()));
            Ok(())
        })?;
    }

    /// 6. Through a real pipeline: crash at any point, restart from the latest checkpoint
    /// (window state restored, watermark regenerated from MIN): the committed windows equal
    /// those of an uninterrupted run, none missing, none twice.
    #[test]
    fn p6_pipeline_crash_and_restore_commits_the_uninterrupted_windows(
        seed in any::<u64>(),
        cut in 1u64..(3 * PER_SPLIT),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let reference = CollectSink::new();
            run(seed, 2, &CheckpointStore::memory(), None, &reference).await.unwrap();
            let store = CheckpointStore::memory();
            let sink = CollectSink::new();
            let crashed = run(seed, 2, &store, Some(cut), &sink).await;
            prop_assert!(crashed.is_err(), "the injected crash must stop the run");
            run(seed, 2, &store, None, &sink).await.unwrap();
            prop_assert_eq!(sorted(sink.values()), sorted(reference.values()));
            Ok(())
        })?;
    }
}
