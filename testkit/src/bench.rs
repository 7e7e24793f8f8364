//! A small benchmark harness for same-run ratios (docs/benchmarks.md): a baseline and a
//! candidate run interleaved in pairs, each pair's ratio taken, the median and spread reported,
//! with the candidate's CPU time and the process's peak RSS, and the figures printed as
//! `BENCH name=… metric=… value=…` lines that scripts and docs read.
//!
//! ```
//! use watershed_testkit::bench::{bench_line, Pairs};
//!
//! let mut pairs = Pairs::new();
//! for (baseline, candidate) in [(100.0, 90.0), (100.0, 95.0), (100.0, 80.0)] {
//!     pairs.push(baseline, candidate);
//! }
//! assert_eq!(pairs.ratio(), 0.9);
//! assert_eq!(
//!     bench_line("noop", "ratio", pairs.ratio()),
//!     "BENCH name=noop metric=ratio value=0.900"
//! );
//! ```

use async_trait::async_trait;
use std::hint::black_box;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{Batch, BoxError, CheckpointId, Sink};

/// CPU seconds (user + system) this process used so far, every thread's included, those that
/// ended too (`getrusage(RUSAGE_SELF)`, microsecond resolution). 0 where it is unavailable.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` through a valid pointer and reads nothing.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded, so it initialised the struct (zeroed before, too).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds this process used so far: unavailable on this platform, so 0.
#[cfg(not(unix))]
pub fn cpu_seconds() -> f64 {
    0.0
}

/// Runs `f` and returns what it returned with the CPU seconds the whole process used meanwhile
/// (every thread's: the runtime's workers and a client library's threads count).
pub fn cpu_of<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let before = cpu_seconds();
    let out = f();
    (out, cpu_seconds() - before)
}

/// The process's peak resident set size in MiB since it started or since the last
/// [`reset_peak_rss`] (Linux: `VmHWM` of `/proc/self/status`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Resets the peak-RSS mark (Linux: writes 5 to `/proc/self/clear_refs`), so that the next
/// [`peak_rss_mb`] is the peak of what ran since. Does nothing where that is not possible.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The median of `values` (for an even count, the upper of the two middle values, as every
/// bench has reported it); NaN when empty.
///
/// ```
/// assert_eq!(watershed_testkit::bench::median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(watershed_testkit::bench::median(&[4.0, 1.0, 2.0, 3.0]), 3.0);
/// ```
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How far apart `values` are, relative to their median: (max − min) / median. A spread above
/// 10% means the machine was too busy for the figure to be trusted.
///
/// ```
/// assert_eq!(watershed_testkit::bench::spread(&[80.0, 100.0, 120.0]), 0.4);
/// ```
pub fn spread(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    (max - min) / median(values)
}

/// One `BENCH name=… metric=… value=…` line, the value written as the metric has always been:
/// ratios with 3 decimals, megabyte figures (`…_mb`) with 1, everything else (rates, counts)
/// as a whole number.
///
/// ```
/// use watershed_testkit::bench::bench_line;
/// assert_eq!(
///     bench_line("kafka_sink", "records_per_s", 123456.7),
///     "BENCH name=kafka_sink metric=records_per_s value=123457"
/// );
/// assert_eq!(
///     bench_line("kafka", "peak_rss_mb", 41.25),
///     "BENCH name=kafka metric=peak_rss_mb value=41.2"
/// );
/// ```
pub fn bench_line(name: &str, metric: &str, value: f64) -> String {
    let value = if metric == "ratio" {
        format!("{value:.3}")
    } else if metric.ends_with("_mb") {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    };
    format!("BENCH name={name} metric={metric} value={value}")
}

/// Prints [`bench_line`]`(name, metric, value)`.
pub fn print_bench(name: &str, metric: &str, value: f64) {
    println!("{}", bench_line(name, metric, value));
}

/// SplitMix64 of `x`: a bench's record payload as a pure function of its index, so the
/// baseline and the candidate see the same data without storing it.
///
/// ```
/// use watershed_testkit::bench::mix;
/// assert_eq!(mix(1), mix(1));
/// assert_ne!(mix(1), mix(2));
/// ```
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The runtime the benches run their pipelines and baselines on: multi-threaded with two
/// workers (the project machine's cores), timers and I/O enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The command line of a bench, `cargo bench … [-- RECORDS PAIRS …]`: the words after the
/// binary that are not flags (cargo passes `--bench`).
pub fn args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect()
}

/// The `i`-th word of [`args`] as a number, or `default` when it is missing or not one.
pub fn arg_or<T: std::str::FromStr>(i: usize, default: T) -> T {
    args()
        .get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Interleaved baseline/candidate pairs: each pair's two rates (or any figure where more is
/// better), and the candidate's CPU and wall time, from which the median ratio, its spread and
/// the cores the candidate used follow.
#[derive(Clone, Debug, Default)]
pub struct Pairs {
    baseline: Vec<f64>,
    candidate: Vec<f64>,
    cpu_seconds: f64,
    wall_seconds: f64,
}

impl Pairs {
    /// No pairs yet.
    pub fn new() -> Pairs {
        Pairs::default()
    }

    /// Adds one pair: the baseline's and the candidate's figure, measured one after the other.
    pub fn push(&mut self, baseline: f64, candidate: f64) {
        self.baseline.push(baseline);
        self.candidate.push(candidate);
    }

    /// Adds a pair of timed runs over `work` items (records, events) each: their rates
    /// (`work` per second), and the candidate's CPU seconds and wall time. Returns the two
    /// rates, for the bench's table.
    pub fn push_timed(
        &mut self,
        work: f64,
        baseline: Duration,
        candidate: Duration,
        candidate_cpu_seconds: f64,
    ) -> (f64, f64) {
        let rates = (
            work / baseline.as_secs_f64(),
            work / candidate.as_secs_f64(),
        );
        self.push(rates.0, rates.1);
        self.add_candidate_time(candidate_cpu_seconds, candidate);
        rates
    }

    /// Adds CPU and wall time the candidate used (for [`cores`](Pairs::cores) and
    /// [`per_cpu_second`](Pairs::per_cpu_second)).
    pub fn add_candidate_time(&mut self, cpu_seconds: f64, wall: Duration) {
        self.cpu_seconds += cpu_seconds;
        self.wall_seconds += wall.as_secs_f64();
    }

    /// How many pairs there are.
    pub fn len(&self) -> usize {
        self.baseline.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.baseline.is_empty()
    }

    /// Each pair's candidate / baseline.
    pub fn ratios(&self) -> Vec<f64> {
        self.baseline
            .iter()
            .zip(&self.candidate)
            .map(|(b, c)| c / b)
            .collect()
    }

    /// The median of the pairs' ratios: ratios are taken within a pair, because the machine's
    /// load drifts between pairs.
    pub fn ratio(&self) -> f64 {
        median(&self.ratios())
    }

    /// The [`spread`] of the pairs' ratios.
    pub fn spread(&self) -> f64 {
        spread(&self.ratios())
    }

    /// The median baseline figure.
    pub fn baseline(&self) -> f64 {
        median(&self.baseline)
    }

    /// The median candidate figure.
    pub fn candidate(&self) -> f64 {
        median(&self.candidate)
    }

    /// The cores the candidate kept busy: its CPU time over its wall time.
    pub fn cores(&self) -> f64 {
        self.cpu_seconds / self.wall_seconds
    }

    /// `work` (records, events, bytes the candidate handled in all its runs) per CPU second.
    pub fn per_cpu_second(&self, work: f64) -> f64 {
        work / self.cpu_seconds.max(1e-9)
    }

    /// `median ratio R (spread S%), pipeline uses C cores`: the figures every bench summarises
    /// its pairs with.
    pub fn summary(&self) -> String {
        format!(
            "median ratio {:.3} (spread {:.1}%), pipeline uses {:.2} cores",
            self.ratio(),
            self.spread() * 100.0,
            self.cores()
        )
    }

    /// Prints the note every bench prints when the spread is above 10%.
    pub fn note_spread(&self) {
        if self.spread() > 0.10 {
            println!("note: spread above 10%: rerun on a quieter machine");
        }
    }
}

/// A sink that touches every batch and drops it, counting the records: the end of a bench's
/// pipeline (so what is measured is what comes before it) and of its hand-written baseline
/// alike. Clones share the count.
pub struct DiscardSink<T> {
    records: Arc<AtomicU64>,
    _items: PhantomData<fn(T)>,
}

impl<T> DiscardSink<T> {
    /// A sink that has discarded nothing yet.
    pub fn new() -> Self {
        DiscardSink {
            records: Arc::default(),
            _items: PhantomData,
        }
    }

    /// How many records this sink and its clones have discarded.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

impl<T> Default for DiscardSink<T> {
    fn default() -> Self {
        DiscardSink::new()
    }
}

impl<T> Clone for DiscardSink<T> {
    fn clone(&self) -> Self {
        DiscardSink {
            records: self.records.clone(),
            _items: PhantomData,
        }
    }
}

#[async_trait]
impl<T: Send + 'static> Sink for DiscardSink<T> {
    type Item = T;
    type Handle = ();

    async fn write(&mut self, batch: Batch<T>) -> Result<(), BoxError> {
        self.records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        black_box(batch);
        Ok(())
    }

    async fn pre_commit(&mut self, _: CheckpointId) -> Result<(), BoxError> {
        Ok(())
    }

    async fn commit(&mut self, _: CheckpointId, _: ()) -> Result<(), BoxError> {
        Ok(())
    }
}
