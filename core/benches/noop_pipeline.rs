//! No-op pipeline benchmark: source → map → discarding sink, against a hand-written loop over
//! the same source batches doing the same work, interleaved in one run (see docs/benchmarks.md).
//!
//! `cargo bench -p watershed-core --bench noop_pipeline [-- RECORDS PAIRS]`

use std::hint::black_box;
use std::time::{Duration, Instant};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_testkit::bench::{self, cpu_of, DiscardSink, Pairs};

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

const BATCH: usize = 1024;

/// The hand-written consumer: poll the same source for the same batches, map them with the same
/// closure, hand them to the same sink. What it lacks is exactly the runtime: tasks, chaining,
/// barriers, watermarks, checkpoints, metrics.
fn baseline(rt: &tokio::runtime::Runtime, records: u64) -> Duration {
    rt.block_on(async {
        let mut source = GeneratorSource::new(1, records, make).batch_size(BATCH);
        let mut sink = DiscardSink::new();
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
        .sink("discard", DiscardSink::new());
        let t = Instant::now();
        let s = p.run().await.expect("pipeline runs");
        assert_eq!(s.records_out, records);
        t.elapsed()
    })
}

fn main() {
    let records: u64 = bench::arg_or(0, 10_000_000);
    let pairs: usize = bench::arg_or(1, 5);
    let rt = bench::runtime();
    // Warm-up, not measured.
    baseline(&rt, records / 10);
    pipeline(&rt, records / 10);

    let mut runs = Pairs::new();
    println!(
        "{:>4} {:>16} {:>16} {:>8}",
        "pair", "loop rec/s", "pipeline rec/s", "ratio"
    );
    for pair in 0..pairs {
        let b = baseline(&rt, records);
        let (p, cpu) = cpu_of(|| pipeline(&rt, records));
        let (br, pr) = runs.push_timed(records as f64, b, p, cpu);
        println!("{pair:>4} {br:>16.0} {pr:>16.0} {:>8.3}", pr / br);
    }
    let ratio = runs.ratio();
    let peak_rss = bench::peak_rss_mb();
    let unbatched = records as f64 / record_loop(records).as_secs_f64();
    println!(
        "context: the per-record loop without batches runs {unbatched:.0} rec/s; the pipeline reaches {:.3} of it",
        runs.candidate() / unbatched
    );
    println!("{}, peak RSS {peak_rss:.1} MiB", runs.summary());
    runs.note_spread();
    bench::print_bench("noop_pipeline", "records_per_s", runs.candidate());
    bench::print_bench("noop_loop", "records_per_s", runs.baseline());
    let per_cpu_s = runs.per_cpu_second(records as f64 * pairs as f64);
    bench::print_bench("noop_pipeline", "events_per_cpu_s", per_cpu_s);
    bench::print_bench("noop_pipeline", "ratio", ratio);
    bench::print_bench("noop_pipeline", "peak_rss_mb", peak_rss);
}
