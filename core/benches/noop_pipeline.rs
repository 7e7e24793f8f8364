//! No-op pipeline benchmark: source → map → discarding sink, against a hand-written loop over
//! the same source batches doing the same work, interleaved in one run (see docs/benchmarks.md).
//!
//! `cargo bench -p watershed-core --bench noop_pipeline [-- RECORDS PAIRS]`

use std::hint::black_box;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;

/// The per-record work both sides do: make the record from its index, then map it.
#[inline]
fn make(split: usize, i: u64) -> Record<u64> {
    Record::new(
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ split as u64,
        EventTime(i as i64),
    )
}

#[inline]
fn map(v: u64) -> u64 {
    v.rotate_left(7).wrapping_add(1)
}

struct Discard;

#[async_trait]
impl Sink for Discard {
    type Item = u64;
    type Handle = ();
    async fn write(&mut self, batch: Batch<u64>) -> Result<(), BoxError> {
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

const BATCH: usize = 1024;

/// The hand-written consumer: poll the same source for the same batches, map them with the same
/// closure, hand them to the same sink. What it lacks is exactly the runtime: tasks, chaining,
/// barriers, watermarks, checkpoints, metrics.
fn baseline(rt: &tokio::runtime::Runtime, records: u64) -> Duration {
    rt.block_on(async {
        let mut source = GeneratorSource::new(1, records, make).batch_size(BATCH);
        let mut sink = Discard;
        source.open(None).await.unwrap();
        let t = Instant::now();
        let mut n = 0;
        loop {
            match source.poll(Duration::from_millis(100)).await.unwrap() {
                SourceEvent::Batch { records, .. } => {
                    n += records.len() as u64;
                    let mapped: Batch<u64> = records.into_iter().map(|r| r.map(map)).collect();
                    sink.write(mapped).await.unwrap();
                }
                SourceEvent::Finished => break,
                _ => {}
            }
        }
        assert_eq!(n, records);
        t.elapsed()
    })
}

/// The same per-record work with no batches at all: a lower bound no batching engine reaches,
/// printed for context.
fn record_loop(records: u64) -> Duration {
    let t = Instant::now();
    for i in 0..records {
        black_box(make(0, i).map(map));
    }
    t.elapsed()
}

fn pipeline(rt: &tokio::runtime::Runtime, records: u64) -> Duration {
    rt.block_on(async {
        let p = Pipeline::new(
            PipelineConfig::new("bench")
                .checkpoint_store(CheckpointStore::memory())
                .handle_signals(false),
        );
        p.source(
            "gen",
            GeneratorSource::new(1, records, make).batch_size(BATCH),
            WatermarkStrategy::none(),
        )
        .apply(
            "map",
            FnOperator::new(|b: Batch<u64>, out: &mut Collector<u64>| {
                out.emit_batch(b.into_iter().map(|r| r.map(map)).collect())
            }),
        )
        .sink("discard", Discard);
        let t = Instant::now();
        let s = p.run().await.expect("pipeline runs");
        assert_eq!(s.records_out, records);
        t.elapsed()
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
    // Warm-up, not measured.
    baseline(&rt, records / 10);
    pipeline(&rt, records / 10);

    let mut ratios = Vec::new();
    let mut base_rates = Vec::new();
    let mut pipe_rates = Vec::new();
    let mut pipe_cpu = 0.0;
    let mut pipe_wall = 0.0;
    println!(
        "{:>4} {:>16} {:>16} {:>8}",
        "pair", "loop rec/s", "pipeline rec/s", "ratio"
    );
    for pair in 0..pairs {
        let b = baseline(&rt, records);
        let (cpu0, _) = usage();
        let p = pipeline(&rt, records);
        let (cpu1, _) = usage();
        pipe_cpu += cpu1 - cpu0;
        pipe_wall += p.as_secs_f64();
        let (br, pr) = (
            records as f64 / b.as_secs_f64(),
            records as f64 / p.as_secs_f64(),
        );
        base_rates.push(br);
        pipe_rates.push(pr);
        ratios.push(pr / br);
        println!("{pair:>4} {br:>16.0} {pr:>16.0} {:>8.3}", pr / br);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (lo, hi) = (
        ratios.iter().cloned().fold(f64::MAX, f64::min),
        ratios.iter().cloned().fold(f64::MIN, f64::max),
    );
    let ratio = median(&mut ratios);
    let spread = (hi - lo) / ratio;
    let (_, peak_rss) = usage();
    let unbatched = records as f64 / record_loop(records).as_secs_f64();
    println!(
        "context: the per-record loop without batches runs {unbatched:.0} rec/s; the pipeline reaches {:.3} of it",
        median(&mut pipe_rates.clone()) / unbatched
    );
    let per_cpu_s = records as f64 * pairs as f64 / pipe_cpu.max(1e-9);
    println!(
        "median ratio {ratio:.3} (spread {:.1}%), pipeline uses {:.2} cores, peak RSS {peak_rss:.1} MiB",
        spread * 100.0,
        pipe_cpu / pipe_wall
    );
    if spread > 0.10 {
        println!("note: spread above 10%: rerun on a quieter machine");
    }
    println!(
        "BENCH name=noop_pipeline metric=records_per_s value={:.0}",
        median(&mut pipe_rates)
    );
    println!(
        "BENCH name=noop_loop metric=records_per_s value={:.0}",
        median(&mut base_rates)
    );
    println!("BENCH name=noop_pipeline metric=events_per_cpu_s value={per_cpu_s:.0}");
    println!("BENCH name=noop_pipeline metric=ratio value={ratio:.3}");
    println!("BENCH name=noop_pipeline metric=peak_rss_mb value={peak_rss:.1}");
}
