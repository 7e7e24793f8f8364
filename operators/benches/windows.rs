//! Window benchmarks: tumbling 1-minute count over 10,000 keys and sliding 5 min / 1 min mean,
//! parallelism 1, through a real pipeline, against a hand-written HashMap loop computing the same
//! results over the same generated batches, interleaved in one run (see docs/benchmarks.md).
//!
//! `cargo bench -p watershed-operators --bench windows [-- RECORDS PAIRS]`

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_operators::{prelude::*, Count, Mean, WindowResult};
use watershed_testkit::bench::{self, bench_line, cpu_of, mix, DiscardSink, Pairs};

const KEYS: u64 = 10_000;
const BATCH: usize = 1024;
/// Event time advances 60 ms per 1,000 records: 10 M records span 10 minutes, so a 1-minute
/// window holds 1 M records (100 per key) and the sliding run keeps 5–6 windows × 10,000 keys
/// open.
const MS_PER_1000: u64 = 60;
const DELAY: Duration = Duration::from_secs(1);

fn make(_split: usize, i: u64) -> Record<u64> {
    Record::new(mix(i), EventTime((i * MS_PER_1000 / 1000) as i64))
}

/// The key both sides use.
#[inline]
fn key(v: &u64) -> u64 {
    v % KEYS
}

/// The value the mean is taken of.
#[inline]
fn metric(v: &u64) -> f64 {
    (v >> 44) as f64
}

fn source(records: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(1, records, make).batch_size(BATCH)
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    TumblingCount,
    SlidingMean,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::TumblingCount => "window_tumbling_count",
            Case::SlidingMean => "window_sliding_mean",
        }
    }
}

fn tumbling() -> TumblingWindows {
    TumblingWindows::of(Duration::from_secs(60))
}

fn sliding() -> SlidingWindows {
    SlidingWindows::of(Duration::from_secs(300), Duration::from_secs(60))
}

/// The hand-written loop: poll the same source for the same batches; per record the same key
/// closure and window formula, a FxHashMap per window (windows ordered by end so firing pops a
/// prefix), the same bounded-out-of-orderness watermark after each batch, and the same
/// `WindowResult`s handed to the same sink. What it lacks is the runtime and the operator's
/// generality (lateness, timers, checkpointable state).
fn baseline(rt: &tokio::runtime::Runtime, case: Case, records: u64) -> (Duration, u64) {
    rt.block_on(async {
        let mut source = source(records);
        // The same sink as the pipeline's, counting results so both sides can be checked to agree.
        let (mut counted, mut averaged) = (DiscardSink::new(), DiscardSink::new());
        source.open(None).await.unwrap();
        let delay = DELAY.as_millis() as i64;
        let t = Instant::now();
        let mut counts: BTreeMap<(EventTime, EventTime), FxHashMap<u64, u64>> = BTreeMap::new();
        let mut means: BTreeMap<(EventTime, EventTime), FxHashMap<u64, (f64, u64)>> =
            BTreeMap::new();
        let mut scratch = Vec::new();
        let (tw, sw) = (tumbling(), sliding());
        let mut max_ts = i64::MIN;
        let mut finished = false;
        while !finished {
            let wm = match source.poll(Duration::from_millis(100)).await.unwrap() {
                SourceEvent::Batch { records, .. } => {
                    for r in &records {
                        let k = key(&r.value);
                        match case {
                            Case::TumblingCount => {
                                let w = tw.window_of(r.timestamp);
                                *counts
                                    .entry((w.end, w.start))
                                    .or_default()
                                    .entry(k)
                                    .or_insert(0) += 1;
                            }
                            Case::SlidingMean => {
                                scratch.clear();
                                sw.assign(r.timestamp, &mut scratch);
                                let x = metric(&r.value);
                                for w in &scratch {
                                    let acc = means
                                        .entry((w.end, w.start))
                                        .or_default()
                                        .entry(k)
                                        .or_insert((0.0, 0));
                                    acc.0 += x;
                                    acc.1 += 1;
                                }
                            }
                        }
                        max_ts = max_ts.max(r.timestamp.0);
                    }
                    EventTime(max_ts.saturating_sub(delay).saturating_sub(1))
                }
                SourceEvent::Finished => {
                    finished = true;
                    EventTime::MAX
                }
                _ => continue,
            };
            match case {
                Case::TumblingCount => {
                    let mut out = Vec::new();
                    while let Some(e) = counts.first_entry() {
                        let (end, start) = *e.key();
                        let window = Window::new(start, end);
                        if window.max_timestamp() > wm {
                            break;
                        }
                        for (key, value) in e.remove() {
                            out.push(Record::new(
                                WindowResult {
                                    key,
                                    window,
                                    value,
                                    is_update: false,
                                },
                                window.max_timestamp(),
                            ));
                        }
                    }
                    if !out.is_empty() {
                        counted.write(out).await.unwrap();
                    }
                }
                Case::SlidingMean => {
                    let mut out = Vec::new();
                    while let Some(e) = means.first_entry() {
                        let (end, start) = *e.key();
                        let window = Window::new(start, end);
                        if window.max_timestamp() > wm {
                            break;
                        }
                        for (key, (sum, n)) in e.remove() {
                            out.push(Record::new(
                                WindowResult {
                                    key,
                                    window,
                                    value: sum / n as f64,
                                    is_update: false,
                                },
                                window.max_timestamp(),
                            ));
                        }
                    }
                    if !out.is_empty() {
                        averaged.write(out).await.unwrap();
                    }
                }
            }
        }
        (t.elapsed(), counted.records() + averaged.records())
    })
}

fn pipeline(rt: &tokio::runtime::Runtime, case: Case, records: u64) -> (Duration, u64) {
    rt.block_on(async {
        let (counted, averaged) = (DiscardSink::new(), DiscardSink::new());
        let p = Pipeline::new(
            PipelineConfig::new("bench")
                .checkpoint_store(CheckpointStore::memory())
                .handle_signals(false),
        );
        let keyed = p
            .source(
                "gen",
                source(records),
                WatermarkStrategy::bounded_out_of_orderness(DELAY),
            )
            .key_by(key)
            .parallelism(1);
        match case {
            Case::TumblingCount => keyed
                .window(tumbling())
                .aggregate_named("tumbling", Count)
                .sink("discard", counted.clone()),
            Case::SlidingMean => keyed
                .window(sliding())
                .aggregate_named("sliding", Mean(metric))
                .sink("discard", averaged.clone()),
        }
        let t = Instant::now();
        let s = p.run().await.expect("pipeline runs");
        assert_eq!(s.records_in, records);
        (t.elapsed(), counted.records() + averaged.records())
    })
}

fn bench(rt: &tokio::runtime::Runtime, case: Case, records: u64, pairs: usize) -> Vec<String> {
    let name = case.name();
    // Warm-up, not measured.
    baseline(rt, case, records / 10);
    pipeline(rt, case, records / 10);
    // Each case's peak RSS is its own.
    bench::reset_peak_rss();

    let mut runs = Pairs::new();
    println!("{name}: {records} records, 10,000 keys, parallelism 1");
    println!(
        "{:>4} {:>16} {:>16} {:>8} {:>10}",
        "pair", "loop rec/s", "pipeline rec/s", "ratio", "results"
    );
    for pair in 0..pairs {
        let (b, b_results) = baseline(rt, case, records);
        let ((p, p_results), cpu) = cpu_of(|| pipeline(rt, case, records));
        assert_eq!(b_results, p_results, "both sides emit the same results");
        let (br, pr) = runs.push_timed(records as f64, b, p, cpu);
        println!(
            "{pair:>4} {br:>16.0} {pr:>16.0} {:>8.3} {p_results:>10}",
            pr / br
        );
    }
    let ratio = runs.ratio();
    let peak_rss = bench::peak_rss_mb();
    println!("{name}: {}, peak RSS {peak_rss:.1} MiB", runs.summary());
    runs.note_spread();
    let per_cpu_s = runs.per_cpu_second(records as f64 * pairs as f64);
    vec![
        bench_line(name, "records_per_s", runs.candidate()),
        bench_line(&format!("{name}_loop"), "records_per_s", runs.baseline()),
        bench_line(name, "events_per_cpu_s", per_cpu_s),
        bench_line(name, "ratio", ratio),
        bench_line(name, "peak_rss_mb", peak_rss),
    ]
}

fn main() {
    let records: u64 = bench::arg_or(0, 10_000_000);
    let pairs: usize = bench::arg_or(1, 5);
    let rt = bench::runtime();
    let mut lines = bench(&rt, Case::TumblingCount, records, pairs);
    println!();
    lines.extend(bench(&rt, Case::SlidingMean, records, pairs));
    println!();
    for l in lines {
        println!("{l}");
    }
}
