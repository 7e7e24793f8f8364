//! Window benchmarks: tumbling 1-minute count over 10,000 keys and sliding 5 min / 1 min mean,
//! parallelism 1, through a real pipeline, against a hand-written HashMap loop computing the same
//! results over the same generated batches, interleaved in one run (see docs/benchmarks.md).
//!
//! `cargo bench -p watershed-operators --bench windows [-- RECORDS PAIRS]`

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_operators::{prelude::*, Count, Mean, WindowResult};

const KEYS: u64 = 10_000;
const BATCH: usize = 1024;
/// Event time advances 60 ms per 1,000 records: 10 M records span 10 minutes, so a 1-minute
/// window holds 1 M records (100 per key) and the sliding run keeps 5–6 windows × 10,000 keys
/// open.
const MS_PER_1000: u64 = 60;
const DELAY: Duration = Duration::from_secs(1);

/// SplitMix64: the record's payload is a pure function of its index.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

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

/// Discards results after touching them; counts them so both sides can be checked to agree.
struct Discard<V> {
    results: Arc<AtomicU64>,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<V> Discard<V> {
    fn new(results: Arc<AtomicU64>) -> Self {
        Discard {
            results,
            _v: std::marker::PhantomData,
        }
    }
}

#[async_trait]
impl<V: Send + 'static> Sink for Discard<V> {
    type Item = WindowResult<u64, V>;
    type Handle = ();
    async fn write(&mut self, batch: Batch<WindowResult<u64, V>>) -> Result<(), BoxError> {
        self.results
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        black_box(&batch);
        Ok(())
    }
    async fn pre_commit(&mut self, _: CheckpointId) -> Result<(), BoxError> {
        Ok(())
    }
    async fn commit(&mut self, _: CheckpointId, _: ()) -> Result<(), BoxError> {
        Ok(())
    }
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
        let results = Arc::new(AtomicU64::new(0));
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
                        let mut sink = Discard::<u64>::new(results.clone());
                        sink.write(out).await.unwrap();
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
                        let mut sink = Discard::<f64>::new(results.clone());
                        sink.write(out).await.unwrap();
                    }
                }
            }
        }
        (t.elapsed(), results.load(Ordering::Relaxed))
    })
}

fn pipeline(rt: &tokio::runtime::Runtime, case: Case, records: u64) -> (Duration, u64) {
    rt.block_on(async {
        let results = Arc::new(AtomicU64::new(0));
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
                .sink("discard", Discard::<u64>::new(results.clone())),
            Case::SlidingMean => keyed
                .window(sliding())
                .aggregate_named("sliding", Mean(metric))
                .sink("discard", Discard::<f64>::new(results.clone())),
        }
        let t = Instant::now();
        let s = p.run().await.expect("pipeline runs");
        assert_eq!(s.records_in, records);
        (t.elapsed(), results.load(Ordering::Relaxed))
    })
}

/// (user + system CPU seconds, peak RSS in MiB) of this process so far, from /proc.
fn usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command name start at index 2 (state); utime is 14th, stime 15th overall.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kb / 1024.0)
}

/// Resets the peak-RSS mark (Linux: writing 5 to clear_refs), so each case's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bench(rt: &tokio::runtime::Runtime, case: Case, records: u64, pairs: usize) -> Vec<String> {
    let name = case.name();
    // Warm-up, not measured.
    baseline(rt, case, records / 10);
    pipeline(rt, case, records / 10);
    reset_peak_rss();

    let (mut ratios, mut base_rates, mut pipe_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pipe_cpu, mut pipe_wall) = (0.0, 0.0);
    println!("{name}: {records} records, 10,000 keys, parallelism 1");
    println!(
        "{:>4} {:>16} {:>16} {:>8} {:>10}",
        "pair", "loop rec/s", "pipeline rec/s", "ratio", "results"
    );
    for pair in 0..pairs {
        let (b, b_results) = baseline(rt, case, records);
        let (cpu0, _) = usage();
        let (p, p_results) = pipeline(rt, case, records);
        let (cpu1, _) = usage();
        assert_eq!(b_results, p_results, "both sides emit the same results");
        pipe_cpu += cpu1 - cpu0;
        pipe_wall += p.as_secs_f64();
        let (br, pr) = (
            records as f64 / b.as_secs_f64(),
            records as f64 / p.as_secs_f64(),
        );
        base_rates.push(br);
        pipe_rates.push(pr);
        ratios.push(pr / br);
        println!(
            "{pair:>4} {br:>16.0} {pr:>16.0} {:>8.3} {p_results:>10}",
            pr / br
        );
    }
    let lo = ratios.iter().cloned().fold(f64::MAX, f64::min);
    let hi = ratios.iter().cloned().fold(f64::MIN, f64::max);
    let ratio = median(&mut ratios);
    let spread = (hi - lo) / ratio;
    let (_, peak_rss) = usage();
    println!(
        "{name}: median ratio {ratio:.3} (spread {:.1}%), pipeline uses {:.2} cores, peak RSS {peak_rss:.1} MiB",
        spread * 100.0,
        pipe_cpu / pipe_wall
    );
    if spread > 0.10 {
        println!("note: spread above 10%: rerun on a quieter machine");
    }
    let per_cpu_s = records as f64 * pairs as f64 / pipe_cpu.max(1e-9);
    vec![
        format!(
            "BENCH name={name} metric=records_per_s value={:.0}",
            median(&mut pipe_rates)
        ),
        format!(
            "BENCH name={name}_loop metric=records_per_s value={:.0}",
            median(&mut base_rates)
        ),
        format!("BENCH name={name} metric=events_per_cpu_s value={per_cpu_s:.0}"),
        format!("BENCH name={name} metric=ratio value={ratio:.3}"),
        format!("BENCH name={name} metric=peak_rss_mb value={peak_rss:.1}"),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let records: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let pairs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut lines = bench(&rt, Case::TumblingCount, records, pairs);
    println!();
    lines.extend(bench(&rt, Case::SlidingMean, records, pairs));
    println!();
    for l in lines {
        println!("{l}");
    }
}
