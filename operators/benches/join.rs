//! Interval-join benchmark: two generated streams (halves of the records), 1,000 keys, a 10 s
//! interval (`between(-5 s, +5 s)`), parallelism 1, through a real pipeline, against a
//! hand-written loop computing the same pairs over the same generated batches, interleaved in
//! one run; then the pipeline's peak RSS at 1 M and at 10 M records (state is bounded by the
//! interval, so the two should be about equal). Figures: docs/joins.md.
//!
//! `cargo bench -p watershed-operators --bench join [-- RECORDS PAIRS]`

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_operators::{prelude::*, IntervalJoin};
use watershed_testkit::bench::{self, bench_line, cpu_of, mix, DiscardSink, Pairs};

const KEYS: u64 = 1_000;
const BATCH: usize = 1024;
const LOWER: i64 = -5_000;
const UPPER: i64 = 5_000;
const DELAY: Duration = Duration::from_millis(100);

/// Left element `j` at 2j ms, right element `j` at 2j + 1 ms: one record per ms overall, each
/// key about every 2 s per side, so a left matches about five rights.
fn left(records: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(1, records / 2, |_, j| {
        Record::new(mix(j), EventTime(2 * j as i64))
    })
    .batch_size(BATCH)
}

fn right(records: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(1, records / 2, |_, j| {
        Record::new(mix(j ^ 0x5555), EventTime(2 * j as i64 + 1))
    })
    .batch_size(BATCH)
}

#[inline]
fn key(v: &u64) -> u64 {
    v % KEYS
}

#[derive(Default)]
struct Sides {
    left: BTreeMap<i64, Vec<u64>>,
    right: BTreeMap<i64, Vec<u64>>,
}

/// The hand-written loop: polls the same two sources a batch at a time, alternately; per
/// record the same key closure, the same per-key time-ordered buffers and range scans, the
/// same (left, right) records stamped with the later time handed to the same sink, the same
/// bounded-out-of-orderness watermark per source, their minimum cleaning state through a
/// timer queue. What it lacks is the runtime (tasks, channels, tagging, the shuffle) and the
/// operator's generality (outer mode, lateness, checkpointable state).
fn baseline(rt: &tokio::runtime::Runtime, records: u64) -> (Duration, u64) {
    rt.block_on(async {
        let (mut ls, mut rs) = (left(records), right(records));
        ls.open(None).await.unwrap();
        rs.open(None).await.unwrap();
        let mut sink = DiscardSink::new();
        let delay = DELAY.as_millis() as i64;
        let t = Instant::now();
        let mut keys: FxHashMap<u64, Sides> = FxHashMap::default();
        let mut timers: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        let (mut wl, mut wr) = (i64::MIN, i64::MIN);
        let (mut done_l, mut done_r) = (false, false);
        while !(done_l && done_r) {
            for is_left in [true, false] {
                let (src, done, wm) = if is_left {
                    (&mut ls, &mut done_l, &mut wl)
                } else {
                    (&mut rs, &mut done_r, &mut wr)
                };
                if *done {
                    continue;
                }
                let mut out = Vec::new();
                match src.poll(Duration::from_millis(100)).await.unwrap() {
                    SourceEvent::Batch { records, .. } => {
                        let mut max_ts = i64::MIN;
                        for r in records {
                            let ts = r.timestamp.0;
                            max_ts = max_ts.max(ts);
                            let k = key(&r.value);
                            let sides = keys.entry(k).or_default();
                            let cleanup = if is_left {
                                for (&b, rs) in sides.right.range(ts + LOWER..=ts + UPPER) {
                                    for v in rs {
                                        out.push(Record::new((r.value, *v), EventTime(ts.max(b))));
                                    }
                                }
                                sides.left.entry(ts).or_default().push(r.value);
                                ts + UPPER
                            } else {
                                for (&a, ls) in sides.left.range(ts - UPPER..=ts - LOWER) {
                                    for v in ls {
                                        out.push(Record::new((*v, r.value), EventTime(ts.max(a))));
                                    }
                                }
                                sides.right.entry(ts).or_default().push(r.value);
                                ts - LOWER
                            };
                            let due = timers.entry(cleanup).or_default();
                            if due.last() != Some(&k) {
                                due.push(k);
                            }
                        }
                        *wm = (*wm).max(max_ts - delay - 1);
                    }
                    SourceEvent::Finished => {
                        *done = true;
                        *wm = i64::MAX;
                    }
                    _ => continue,
                }
                if !out.is_empty() {
                    sink.write(out).await.unwrap();
                }
            }
            let w = wl.min(wr);
            while let Some(e) = timers.first_entry() {
                if *e.key() > w {
                    break;
                }
                for k in e.remove() {
                    let Some(s) = keys.get_mut(&k) else { continue };
                    while s
                        .left
                        .first_key_value()
                        .is_some_and(|(a, _)| a + UPPER <= w)
                    {
                        s.left.pop_first();
                    }
                    while s
                        .right
                        .first_key_value()
                        .is_some_and(|(b, _)| b - LOWER <= w)
                    {
                        s.right.pop_first();
                    }
                    if s.left.is_empty() && s.right.is_empty() {
                        keys.remove(&k);
                    }
                }
            }
        }
        (t.elapsed(), sink.records())
    })
}

fn pipeline(rt: &tokio::runtime::Runtime, records: u64) -> (Duration, u64) {
    rt.block_on(async {
        let results = DiscardSink::new();
        let p = Pipeline::new(
            PipelineConfig::new("bench-join")
                .checkpoint_store(CheckpointStore::memory())
                .without_periodic_checkpoints()
                .parallelism(1)
                .handle_signals(false),
        );
        let strategy = || WatermarkStrategy::bounded_out_of_orderness(DELAY);
        let l = p.source("left", left(records), strategy()).key_by(key);
        let r = p.source("right", right(records), strategy()).key_by(key);
        l.interval_join(r)
            .between(LOWER, UPPER)
            .named("join")
            .inner()
            .sink("discard", results.clone());
        let t = Instant::now();
        let s = p.run().await.expect("pipeline runs");
        assert_eq!(s.records_in, records / 2 * 2);
        (t.elapsed(), results.records())
    })
}

/// The join operator, recording the most elements it ever buffered.
struct Tracked {
    join: IntervalJoin<u64, u64, u64>,
    peak: Arc<AtomicU64>,
}

impl Tracked {
    fn note(&self) {
        self.peak
            .fetch_max(self.join.buffered() as u64, Ordering::Relaxed);
    }
}

impl Operator for Tracked {
    type In = Either<u64, u64>;
    type Out = (u64, Option<u64>);
    fn process(
        &mut self,
        batch: Batch<Either<u64, u64>>,
        out: &mut Collector<(u64, Option<u64>)>,
    ) -> Result<(), BoxError> {
        self.join.process(batch, out)?;
        self.note();
        Ok(())
    }
    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<(u64, Option<u64>)>,
    ) -> Result<(), BoxError> {
        self.join.on_watermark(watermark, out)
    }
}

/// The same join as [`pipeline`], spelled out (tag, union, key, the operator) so the
/// operator's peak state can be read: (results, peak buffered elements). `alignment` is the
/// pipeline's watermark alignment drift, if any.
fn pipeline_tracked(
    rt: &tokio::runtime::Runtime,
    records: u64,
    alignment: Option<Duration>,
) -> (Duration, u64, u64) {
    rt.block_on(async {
        let results = DiscardSink::new();
        let peak = Arc::new(AtomicU64::new(0));
        let mut config = PipelineConfig::new("bench-join-tracked")
            .checkpoint_store(CheckpointStore::memory())
            .without_periodic_checkpoints()
            .parallelism(1)
            .handle_signals(false);
        if let Some(drift) = alignment {
            config = config.watermark_alignment(drift);
        }
        let p = Pipeline::new(config);
        let strategy = || WatermarkStrategy::bounded_out_of_orderness(DELAY);
        let l = p
            .source("left", left(records), strategy())
            .map(Either::Left);
        let r = p
            .source("right", right(records), strategy())
            .map(Either::Right);
        let key_of = |e: &Either<u64, u64>| match e {
            Either::Left(v) | Either::Right(v) => key(v),
        };
        let peak2 = peak.clone();
        l.union(r)
            .key_by(key_of)
            .process("join", move |_| Tracked {
                join: IntervalJoin::new(Arc::new(key_of), LOWER, UPPER),
                peak: peak2.clone(),
            })
            .filter_map(|(l, r): (u64, Option<u64>)| r.map(|r| (l, r)))
            .sink("discard", results.clone());
        let t = Instant::now();
        p.run().await.expect("pipeline runs");
        (t.elapsed(), results.records(), peak.load(Ordering::Relaxed))
    })
}

/// Set in a child process of this benchmark: run one tracked join (`RECORDS:DRIFT_MS`, drift
/// `none` for unaligned) and print its figures. A process per run, because the allocator keeps
/// freed memory: in one process the first, largest run sets every later run's peak RSS.
const RSS_CHILD: &str = "WATERSHED_JOIN_BENCH_RSS_CHILD";

fn rss_child(rt: &tokio::runtime::Runtime, spec: &str) {
    let (n, drift) = spec.split_once(':').expect("RECORDS:DRIFT_MS");
    let n: u64 = n.parse().expect("records");
    let alignment = drift.parse().ok().map(Duration::from_millis);
    let (t, results, state) = pipeline_tracked(rt, n, alignment);
    let peak = bench::peak_rss_mb();
    println!("{} {results} {state} {peak}", t.as_secs_f64());
}

/// (time, results, peak state, peak RSS MiB) of one tracked join run in a child process.
fn measure_in_child(records: u64, alignment: Option<Duration>) -> (Duration, u64, u64, f64) {
    let drift = alignment.map_or("none".to_string(), |d| d.as_millis().to_string());
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(RSS_CHILD, format!("{records}:{drift}"))
        .output()
        .expect("child runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    assert!(out.status.success() && f.len() == 4, "child failed: {text}");
    (
        Duration::from_secs_f64(f[0].parse().expect("time")),
        f[1].parse().expect("results"),
        f[2].parse().expect("state"),
        f[3].parse().expect("rss"),
    )
}

fn main() {
    let records: u64 = bench::arg_or(0, 2_000_000);
    let pairs: usize = bench::arg_or(1, 5);
    let rt = bench::runtime();
    let name = "join_interval";
    if let Ok(spec) = std::env::var(RSS_CHILD) {
        return rss_child(&rt, &spec);
    }
    baseline(&rt, records / 10);
    pipeline(&rt, records / 10);

    let mut runs = Pairs::new();
    println!("{name}: {records} records (two streams), {KEYS} keys, interval [-5 s, +5 s], parallelism 1");
    println!(
        "{:>4} {:>16} {:>16} {:>8} {:>12}",
        "pair", "loop rec/s", "pipeline rec/s", "ratio", "results"
    );
    for pair in 0..pairs {
        let (b, b_results) = baseline(&rt, records);
        let ((p, p_results), cpu) = cpu_of(|| pipeline(&rt, records));
        assert_eq!(b_results, p_results, "both sides emit the same pairs");
        let (br, pr) = runs.push_timed(records as f64, b, p, cpu);
        println!(
            "{pair:>4} {br:>16.0} {pr:>16.0} {:>8.3} {p_results:>12}",
            pr / br
        );
    }
    let ratio = runs.ratio();
    println!("{name}: {}", runs.summary());
    runs.note_spread();

    // Peak RSS and peak join state by input size: bounded state means 10 M records peak like
    // 1 M. Unaligned, the state holds the interval plus the watermark delay plus however far one
    // input runs ahead of the other, so it varies with scheduling; with watermark alignment
    // (1 s drift) the input that runs ahead waits, and the state is the interval plus the drift.
    let mut rss_lines = Vec::new();
    for (label, alignment) in [
        ("unaligned", None),
        ("aligned 1 s", Some(Duration::from_secs(1))),
    ] {
        let mut rss = Vec::new();
        for n in [1_000_000u64, 10_000_000] {
            let (t, results, state, peak) = measure_in_child(n, alignment);
            println!(
                "{name} ({label}): {n} records, {results} pairs in {:.1} s, peak RSS {peak:.1} MiB, peak state {state} elements",
                t.as_secs_f64()
            );
            rss.push((n, peak, state));
        }
        let tag = if alignment.is_some() { "_aligned" } else { "" };
        println!(
            "{name} ({label}): 10 M / 1 M: peak RSS {:.2}, peak state {:.2}",
            rss[1].1 / rss[0].1,
            rss[1].2 as f64 / rss[0].2 as f64
        );
        for (n, peak, state) in &rss {
            let run = format!("{name}{tag}_{}m", n / 1_000_000);
            rss_lines.push(bench_line(&run, "peak_rss_mb", *peak));
            rss_lines.push(bench_line(&run, "peak_state_elements", *state as f64));
        }
    }

    let per_cpu_s = runs.per_cpu_second(records as f64 * pairs as f64);
    println!();
    bench::print_bench(name, "records_per_s", runs.candidate());
    bench::print_bench(&format!("{name}_loop"), "records_per_s", runs.baseline());
    bench::print_bench(name, "events_per_cpu_s", per_cpu_s);
    bench::print_bench(name, "ratio", ratio);
    for line in rss_lines {
        println!("{line}");
    }
}
