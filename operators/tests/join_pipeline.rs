//! Joins through real pipelines: two sources, the tagged union and hash shuffle, aligned
//! checkpoints across both inputs, a crash and a restart whose watermark starts again at MIN.
//! Fewer cases than the operator-level properties in join_properties.rs (which carry the 1,000
//! cases each), because every case runs pipelines. Also: interval-join state stays bounded
//! over a long input, and a table join's table survives a restart.

use proptest::prelude::*;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_operators::{prelude::*, IntervalJoin, WindowJoined};
use watershed_testkit::{FailAt, FailingSource, Fault};

/// (key, unique id)
type Ev = (u8, u32);

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 31)
}

const SPLITS: usize = 2;
const PER_SPLIT: u64 = 150;
/// Event-time disorder within a split stays under the watermark delay, so no element is late.
const DISORDER: u64 = 40;
const DELAY: Duration = Duration::from_millis(50);
const KEYS: u64 = 5;

/// Element `i` of split `s` of side `side`: a pure function, so the reference can recompute it.
fn event(seed: u64, side: u64, s: usize, i: u64) -> Record<Ev> {
    let v = mix(seed ^ (side << 40) ^ (i << 8) ^ s as u64);
    let id = (side * 10_000 + s as u64 * PER_SPLIT + i) as u32;
    Record::new(
        ((v % KEYS) as u8, id),
        EventTime((i * 7 + v % DISORDER) as i64),
    )
}

fn all(seed: u64, side: u64) -> Vec<Record<Ev>> {
    (0..SPLITS)
        .flat_map(|s| (0..PER_SPLIT).map(move |i| event(seed, side, s, i)))
        .collect()
}

/// One side's source: fails after `crash_at` records, like a killed process; pauses between
/// polls so checkpoints interleave with data.
fn side(seed: u64, side: u64, crash_at: Option<u64>) -> FailingSource<GeneratorSource<Ev>> {
    let events =
        GeneratorSource::new(SPLITS, PER_SPLIT, move |s, i| event(seed, side, s, i)).batch_size(8);
    let fault = crash_at.map_or_else(Fault::never, |n| Fault::error(FailAt::AfterRecords(n)));
    FailingSource::new(events, fault).pause_before_polls(Duration::from_micros(200))
}

const LOWER: i64 = -30;
const UPPER: i64 = 60;

type Outer = (Ev, Option<Ev>);

fn config(id: &str, store: &CheckpointStore, parallelism: usize) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(store.clone())
        .checkpoint_interval(Duration::from_millis(3))
        .parallelism(parallelism)
        .handle_signals(false)
}

/// Left-outer interval join and tumbling window join of the same two sources.
async fn run(
    seed: u64,
    parallelism: usize,
    store: &CheckpointStore,
    crash_at: Option<u64>,
    interval: &CollectSink<Outer>,
    windowed: &CollectSink<WindowJoined<Ev, Ev>>,
) -> Result<RunSummary> {
    let p = Pipeline::new(config("joins", store, parallelism));
    let mut lefts = p
        .source(
            "left",
            side(seed, 1, crash_at),
            WatermarkStrategy::bounded_out_of_orderness(DELAY),
        )
        .fan_out(2)
        .into_iter();
    let mut rights = p
        .source(
            "right",
            side(seed, 2, None),
            WatermarkStrategy::bounded_out_of_orderness(DELAY),
        )
        .fan_out(2)
        .into_iter();
    let (l1, l2) = (lefts.next().unwrap(), lefts.next().unwrap());
    let (r1, r2) = (rights.next().unwrap(), rights.next().unwrap());
    l1.key_by(|e: &Ev| e.0)
        .interval_join(r1.key_by(|e: &Ev| e.0))
        .between(LOWER, UPPER)
        .named("interval")
        .left_outer()
        .sink("interval-out", interval.clone());
    l2.key_by(|e: &Ev| e.0)
        .window_join(
            r2.key_by(|e: &Ev| e.0),
            TumblingWindows::of(Duration::from_millis(100)),
        )
        .named("windowed")
        .inner()
        .sink("window-out", windowed.clone());
    p.run().await
}

fn ref_interval(seed: u64) -> Vec<(Outer, i64)> {
    let (ls, rs) = (all(seed, 1), all(seed, 2));
    let mut out = Vec::new();
    for l in &ls {
        let mut matched = false;
        for r in &rs {
            let (a, b) = (l.timestamp.0, r.timestamp.0);
            if l.value.0 == r.value.0 && a + LOWER <= b && b <= a + UPPER {
                matched = true;
                out.push(((l.value, Some(r.value)), a.max(b)));
            }
        }
        if !matched {
            out.push(((l.value, None), l.timestamp.0 + UPPER));
        }
    }
    out.sort();
    out
}

fn ref_window(seed: u64) -> Vec<WindowJoined<Ev, Ev>> {
    let (ls, rs) = (all(seed, 1), all(seed, 2));
    let mut out = Vec::new();
    for l in &ls {
        for r in &rs {
            let (a, b) = (l.timestamp.0, r.timestamp.0);
            if l.value.0 == r.value.0 && a / 100 == b / 100 {
                let start = a / 100 * 100;
                out.push(WindowJoined {
                    window: Window::new(EventTime(start), EventTime(start + 100)),
                    left: l.value,
                    right: r.value,
                });
            }
        }
    }
    sorted_w(out)
}

fn sorted_i(sink: &CollectSink<Outer>) -> Vec<(Outer, i64)> {
    let mut v: Vec<(Outer, i64)> = sink
        .records()
        .into_iter()
        .map(|r| (r.value, r.timestamp.0))
        .collect();
    v.sort();
    v
}

fn sorted_w(mut v: Vec<WindowJoined<Ev, Ev>>) -> Vec<WindowJoined<Ev, Ev>> {
    v.sort_by_key(|j| (j.window, j.left, j.right));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Rule: through a real pipeline, with parallelism 1 and 3, the interval and window joins
    /// of two sources equal the nested-loop reference.
    #[test]
    fn pipeline_joins_equal_the_reference_at_parallelism_1_and_3(seed in any::<u64>()) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            for parallelism in [1, 3] {
                let (interval, windowed) = (CollectSink::new(), CollectSink::new());
                run(seed, parallelism, &CheckpointStore::memory(), None, &interval, &windowed).await.unwrap();
                prop_assert_eq!(sorted_i(&interval), ref_interval(seed));
                prop_assert_eq!(sorted_w(windowed.values()), ref_window(seed));
            }
            Ok(())
        })?;
    }

    /// Rule: crash at any point, restart from the latest checkpoint (join state restored,
    /// watermark regenerated from MIN): the committed results equal the reference, none
    /// missing, none twice.
    #[test]
    fn pipeline_joins_survive_a_crash_and_restore(
        seed in any::<u64>(),
        cut in 1u64..(SPLITS as u64 * PER_SPLIT),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = CheckpointStore::memory();
            let (interval, windowed) = (CollectSink::new(), CollectSink::new());
            let crashed = run(seed, 2, &store, Some(cut), &interval, &windowed).await;
            prop_assert!(crashed.is_err(), "the injected crash must stop the run");
            run(seed, 2, &store, None, &interval, &windowed).await.unwrap();
            prop_assert_eq!(sorted_i(&interval), ref_interval(seed));
            prop_assert_eq!(sorted_w(windowed.values()), ref_window(seed));
            Ok(())
        })?;
    }
}

/// Rule: the table a changelog built is checkpointed: after a restart, stream elements join
/// the values the first run's changelog set (and deletes stay deleted).
#[tokio::test]
async fn table_join_table_survives_a_restart() {
    let store = CheckpointStore::memory();
    let out = CollectSink::<((u32, u64), Option<String>)>::new();
    for (changes, clicks) in [(20u64, 0u64), (0, 40)] {
        let p = Pipeline::new(config("table-join", &store, 2));
        // Changelog: change i sets key i % 10 to "v{i}"; changes 15..19 delete keys 5..9.
        let changelog = p.source(
            "changelog",
            GeneratorSource::new(1, changes, |_, i| {
                let value = (i < 15).then(|| format!("v{i}"));
                Record::new((i % 10, value), EventTime(i as i64))
            }),
            WatermarkStrategy::monotonous(),
        );
        let stream = p.source(
            "clicks",
            GeneratorSource::new(1, clicks, |_, i| {
                Record::new(((i % 10) as u32, i), EventTime(i as i64))
            }),
            WatermarkStrategy::monotonous(),
        );
        stream
            .key_by(|c: &(u32, u64)| c.0 as u64)
            .join_table(changelog.key_by(|c: &(u64, Option<String>)| c.0), |c| c.1)
            .named("pages")
            .left()
            .sink("out", out.clone());
        p.run().await.unwrap();
    }
    let got = out.values();
    assert_eq!(got.len(), 40);
    for ((k, _), v) in got {
        // Keys 0..4 were last set by changes 10..14; keys 5..9 were deleted.
        let expected = match k {
            0..=4 => Some(format!("v{}", k + 10)),
            _ => None,
        };
        assert_eq!(v, expected, "key {k}");
    }
}

/// Rule: interval-join state is bounded by the interval and the watermark delay, not by the
/// input: over 300,000 records with a 10 s interval, the buffered elements never exceed what
/// 10 s plus the delay and one batch can hold, and the end of input clears them all.
#[test]
fn interval_join_state_stays_bounded_over_a_long_input() {
    const RECORDS: u64 = 300_000;
    const BATCH: u64 = 1_000;
    let mut op = IntervalJoin::new(
        std::sync::Arc::new(|e: &Either<Ev, Ev>| match e {
            Either::Left(v) | Either::Right(v) => v.0,
        }),
        -5_000,
        5_000,
    )
    .left_outer();
    // One record per ms of event time, up to 100 ms out of order, halves left and right.
    let delay = 100i64;
    let mut max_ts = i64::MIN;
    let mut peak = 0usize;
    let mut results = 0u64;
    let mut out = Collector::default();
    for b in 0..RECORDS / BATCH {
        let batch = (b * BATCH..(b + 1) * BATCH)
            .map(|i| {
                let ts = i as i64 + (mix(i) % delay as u64) as i64;
                max_ts = max_ts.max(ts);
                let ev = ((i / 2 % 200) as u8, i as u32);
                Record::new(
                    if i % 2 == 0 {
                        Either::Left(ev)
                    } else {
                        Either::Right(ev)
                    },
                    EventTime(ts),
                )
            })
            .collect();
        op.process(batch, &mut out).unwrap();
        peak = peak.max(op.buffered());
        op.on_watermark(EventTime(max_ts - delay - 1), &mut out)
            .unwrap();
        results += out.take().0.len() as u64;
    }
    assert_eq!(op.late_records(), 0);
    // Each side keeps ~5 s + delay + one batch of event time at one record per ms, half per side.
    let bound = ((5_000 + delay + BATCH as i64) as usize) * 2;
    assert!(peak <= bound, "peak state {peak} over the bound {bound}");
    assert!(
        peak >= 5_000,
        "the interval is actually buffered (peak {peak})"
    );
    op.on_watermark(EventTime::MAX, &mut out).unwrap();
    results += out.take().0.len() as u64;
    assert_eq!(op.buffered(), 0);
    assert_eq!(op.keys(), 0);
    assert!(
        results > RECORDS,
        "every left matches many rights ({results} results)"
    );
}

/// A left-outer interval join of a fast (unthrottled) and a slow (3,000 records/s) input,
/// generated from `seed`; returns its sorted output.
async fn fast_slow_join(config: PipelineConfig, seed: u64) -> Vec<(Outer, i64)> {
    let p = Pipeline::new(config);
    let fast = p.source(
        "fast",
        GeneratorSource::new(SPLITS, PER_SPLIT, move |s, i| event(seed, 1, s, i)).batch_size(64),
        WatermarkStrategy::bounded_out_of_orderness(DELAY),
    );
    let slow = p.source(
        "slow",
        GeneratorSource::new(SPLITS, PER_SPLIT, move |s, i| event(seed, 2, s, i))
            .batch_size(4)
            .rate(3_000.0),
        WatermarkStrategy::bounded_out_of_orderness(DELAY),
    );
    let out = CollectSink::new();
    fast.key_by(|e: &Ev| e.0)
        .interval_join(slow.key_by(|e: &Ev| e.0))
        .between(LOWER, UPPER)
        .left_outer()
        .sink("out", out.clone());
    p.run().await.unwrap();
    sorted_i(&out)
}

/// Rule: the join's watermark is the minimum of both inputs': a left input that runs far
/// ahead (and finishes) does not make the slower right input's elements late, so every pair is
/// still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_input_does_not_make_the_slow_inputs_elements_late() {
    let config = config("min-watermark", &CheckpointStore::memory(), 2);
    assert_eq!(fast_slow_join(config, 7).await, ref_interval(7));
}

/// Rule: watermark alignment changes only when inputs are read, never the result: the same
/// fast/slow join with a 200 ms drift (the fast input waits for the slow one) equals the
/// reference, at parallelism 2, with checkpoints aligning barriers across the held input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_alignment_holds_the_fast_input_without_changing_the_join() {
    let config = config("aligned", &CheckpointStore::memory(), 2)
        .watermark_alignment(Duration::from_millis(200));
    assert_eq!(fast_slow_join(config, 11).await, ref_interval(11));
}
