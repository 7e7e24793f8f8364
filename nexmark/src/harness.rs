//! The bench harness behind the `nexmark` binary: runs one query over the in-process generator
//! or a Kafka topic until the input ends, and measures events per CPU-second of this process.

use crate::generator::{NexmarkGenerator, MAX_OUT_OF_ORDER};
use crate::kafka::BoundedKafkaSource;
use crate::model::Event;
use crate::queries;
use async_trait::async_trait;
use serde::Serialize;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watershed_core::{
    Batch, BoxError, CheckpointId, CheckpointStore, Pipeline, PipelineConfig, Sink, Stream,
    WatermarkStrategy,
};
use watershed_operators::prelude::*;

/// One of the queries q0–q8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Query(u8);

impl Query {
    /// All nine, in order.
    pub fn all() -> impl Iterator<Item = Query> {
        (0..=8).map(Query)
    }

    /// Its number.
    pub fn number(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

impl FromStr for Query {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix('q')
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| *n <= 8)
            .map(Query)
            .ok_or_else(|| format!("unknown query `{s}` (q0 … q8)"))
    }
}

/// Where the events come from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Input {
    /// The in-process generator: decoded events, no serialization.
    Generator {
        /// The generator.
        generator: NexmarkGenerator,
        /// Splits of the source.
        splits: usize,
    },
    /// A topic loaded by `nexmark load`, read as JSON.
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// Topic.
        topic: String,
    },
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The query.
    pub query: Query,
    /// Events read.
    pub events: u64,
    /// Result rows emitted (for q4/q6 every update row).
    pub results: u64,
    /// Order-independent checksum of the final result set (for q4/q6 the last row per key).
    pub checksum: u64,
    /// User + system CPU seconds of this process during the run.
    pub cpu_s: f64,
    /// Wall-clock seconds of the run.
    pub wall_s: f64,
}

impl Report {
    /// Events per CPU-second.
    pub fn events_per_cpu_s(&self) -> f64 {
        self.events as f64 / self.cpu_s.max(1e-9)
    }

    /// The contract's `NEXMARK …` line.
    pub fn nexmark_line(&self) -> String {
        format!(
            "NEXMARK system=watershed query={} events={} results={} cpu_s={:.3} wall_s={:.3} events_per_cpu_s={:.0} checksum={:016x}",
            self.query,
            self.events,
            self.results,
            self.cpu_s,
            self.wall_s,
            self.events_per_cpu_s(),
            self.checksum
        )
    }

    /// The `BENCH` line the benchmark prints.
    pub fn bench_line(&self) -> String {
        format!(
            "BENCH name=nexmark_{} metric=events_per_cpu_s value={:.0}",
            self.query,
            self.events_per_cpu_s()
        )
    }
}

/// User + system CPU time of this process so far (`getrusage(RUSAGE_SELF)`).
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[derive(Default)]
struct Tally {
    results: u64,
    checksum: u64,
    /// Updating queries: the last row per key, hashed.
    last: rustc_hash::FxHashMap<i64, u64>,
}

type KeyOf<T> = fn(&T) -> i64;

/// Counts and checksums result rows and optionally writes them as JSON lines. Not transactional:
/// the bench runs without checkpoints.
struct ResultSink<T> {
    tally: Arc<Mutex<Tally>>,
    out: Option<BufWriter<std::fs::File>>,
    key_of: Option<KeyOf<T>>,
    local: Tally,
}

fn row_hash<T: Hash>(row: &T) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    row.hash(&mut h);
    // FxHash's low bits mix poorly; a final avalanche keeps the sum sensitive to every field.
    let mut z = h.finish();
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^ (z >> 33)
}

#[async_trait]
impl<T: Serialize + Hash + Send + 'static> Sink for ResultSink<T> {
    type Item = T;
    type Handle = ();

    async fn write(&mut self, batch: Batch<T>) -> Result<(), BoxError> {
        for r in &batch {
            self.local.results += 1;
            let h = row_hash(&r.value);
            match self.key_of {
                Some(k) => {
                    self.local.last.insert(k(&r.value), h);
                }
                None => self.local.checksum = self.local.checksum.wrapping_add(h),
            }
            if let Some(out) = &mut self.out {
                serde_json::to_writer(&mut *out, &r.value)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    async fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<(), BoxError> {
        if let Some(out) = &mut self.out {
            out.flush()?;
        }
        Ok(())
    }

    async fn commit(&mut self, _checkpoint: CheckpointId, _handle: ()) -> Result<(), BoxError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        if let Some(out) = &mut self.out {
            out.flush()?;
        }
        let mut t = self.tally.lock().map_err(|_| "result tally poisoned")?;
        t.results += self.local.results;
        t.checksum = t.checksum.wrapping_add(self.local.checksum);
        t.last.extend(self.local.last.drain());
        Ok(())
    }
}

fn attach<T: Serialize + Hash + Send + 'static>(
    rows: Stream<T>,
    tally: Arc<Mutex<Tally>>,
    output: Option<BufWriter<std::fs::File>>,
    key_of: Option<KeyOf<T>>,
) {
    rows.sink(
        "results",
        ResultSink {
            tally,
            out: output,
            key_of,
            local: Tally::default(),
        },
    );
}

/// Runs `query` over the first `events` events of `input`, writing result rows as JSON lines to
/// `output` if given, and measures CPU and wall time from pipeline construction to its end.
pub async fn run(
    query: Query,
    input: &Input,
    events: u64,
    output: Option<PathBuf>,
) -> Result<Report, BoxError> {
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let out = match &output {
        Some(p) => Some(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(p).map_err(|e| format!("creating {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let pipeline = Pipeline::new(
        PipelineConfig::new(format!("nexmark-{query}"))
            .checkpoint_store(CheckpointStore::memory())
            .without_periodic_checkpoints()
            .max_poll_wait(Duration::from_millis(20))
            .handle_signals(false),
    );
    let watermarks = WatermarkStrategy::bounded_out_of_orderness(MAX_OUT_OF_ORDER);
    let stream: Stream<Event> = match input {
        Input::Generator { generator, splits } => pipeline.source(
            "events",
            generator.source(events, *splits).batch_size(1024),
            watermarks,
        ),
        Input::Kafka { brokers, topic } => pipeline
            .source(
                "events",
                BoundedKafkaSource::new(brokers, topic, events)?,
                WatermarkStrategy::bounded_out_of_orderness(MAX_OUT_OF_ORDER),
            )
            .decode_json::<Event>(),
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t = tally.clone();
    match query.0 {
        0 => attach(queries::q0(stream), t, out, None),
        1 => attach(queries::q1(stream), t, out, None),
        2 => attach(queries::q2(stream), t, out, None),
        3 => attach(queries::q3(stream), t, out, None),
        4 => attach(queries::q4(stream), t, out, Some(|r| r.category)),
        5 => attach(queries::q5(stream), t, out, None),
        6 => attach(queries::q6(stream), t, out, Some(|r| r.seller)),
        7 => attach(queries::q7(stream), t, out, None),
        _ => attach(queries::q8(stream), t, out, None),
    }
    let summary = pipeline.run().await?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds() - cpu0;
    let t = tally.lock().map_err(|_| "result tally poisoned")?;
    let checksum = t
        .last
        .iter()
        .fold(t.checksum, |acc, (_, h)| acc.wrapping_add(*h));
    Ok(Report {
        query,
        events: summary.records_in,
        results: t.results,
        checksum,
        cpu_s,
        wall_s,
    })
}
