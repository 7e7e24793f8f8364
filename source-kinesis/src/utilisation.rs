//! Shard utilisation: each shard's load over a sliding window (10 buckets of 1 s) as a ratio
//! of the Kinesis service limits, and the shard's heaviest partition keys.
//!
//! The sink records what PutRecords accepted per shard (the results carry the shard id), the
//! source what each GetRecords response or enhanced fan-out event returned. Both are exported
//! as gauges through the `metrics` facade:
//! `watershed_kinesis_shard_write_utilisation{stream,shard}` and
//! `watershed_kinesis_shard_read_utilisation{stream,shard}` (0 to 1, above 1 when the limit
//! is exceeded: throttling follows), and can be read with [`snapshot`].
//!
//! Cost: one update per batch and shard (atomic adds into the current bucket; a registry
//! lookup under an uncontended read lock); the key sketch is updated per record under a
//! `try_lock` and skipped for a batch when another task holds it, so the hot path never
//! waits. See `docs/utilisation.md`.

pub mod sketch;

use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry, Record};
use sketch::{HeavyHitter, SpaceSaving};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

/// One MiB: the unit of the Kinesis throughput limits.
pub const MIB: f64 = 1_048_576.0;
/// Write limit per shard: 1 MiB/s (data plus partition keys).
pub const WRITE_BYTES_PER_SEC: f64 = MIB;
/// Write limit per shard: 1,000 records/s.
pub const WRITE_RECORDS_PER_SEC: f64 = 1_000.0;
/// Shared read limit per shard (all polling consumers together): 2 MiB/s.
pub const READ_BYTES_PER_SEC: f64 = 2.0 * MIB;
/// Shared read limit per shard: 5 GetRecords calls/s.
pub const READ_CALLS_PER_SEC: f64 = 5.0;
/// Read limit per shard and enhanced fan-out consumer: 2 MiB/s.
pub const EFO_BYTES_PER_SEC: f64 = 2.0 * MIB;
/// Seconds in the sliding window (one bucket per second).
pub const WINDOW_SECS: u64 = 10;
/// Counters of each shard's partition-key sketch.
pub const HOT_KEY_COUNTERS: usize = 32;

/// Which side of a shard the load is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// PutRecords (the sink).
    Write,
    /// GetRecords polling (the source).
    Read,
    /// Enhanced fan-out (the source, one consumer).
    FanOut,
}

/// A rate: per second over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Records per second.
    pub records_per_sec: f64,
    /// Bytes (data plus partition key) per second.
    pub bytes_per_sec: f64,
    /// GetRecords calls per second (0 for writes and enhanced fan-out).
    pub calls_per_sec: f64,
}

impl Load {
    /// Write utilisation: the larger of bytes/s ÷ 1 MiB and records/s ÷ 1,000.
    pub fn write_utilisation(&self) -> f64 {
        (self.bytes_per_sec / WRITE_BYTES_PER_SEC).max(self.records_per_sec / WRITE_RECORDS_PER_SEC)
    }

    /// Polling read utilisation: the larger of bytes/s ÷ 2 MiB and calls/s ÷ 5 (limits every
    /// polling consumer of the shard shares: this is one consumer's part).
    pub fn read_utilisation(&self) -> f64 {
        (self.bytes_per_sec / READ_BYTES_PER_SEC).max(self.calls_per_sec / READ_CALLS_PER_SEC)
    }

    /// Enhanced fan-out utilisation: bytes/s ÷ 2 MiB (per consumer).
    pub fn fan_out_utilisation(&self) -> f64 {
        self.bytes_per_sec / EFO_BYTES_PER_SEC
    }

    /// The utilisation against the limits of `direction`.
    pub fn utilisation(&self, direction: Direction) -> f64 {
        match direction {
            Direction::Write => self.write_utilisation(),
            Direction::Read => self.read_utilisation(),
            Direction::FanOut => self.fan_out_utilisation(),
        }
    }
}

#[derive(Debug, Default)]
struct Bucket {
    /// The second (since the window's clock started) the counts belong to, plus one (0: unused).
    second: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    calls: AtomicU64,
}

/// Counts per second over the last [`WINDOW_SECS`] seconds, lock-free. Concurrent writers of
/// one shard may lose an update at a bucket's turn of the second (documented approximation).
#[derive(Debug, Default)]
pub struct Window {
    buckets: [Bucket; WINDOW_SECS as usize],
    /// Milliseconds of the first update plus one (0: none yet).
    first_ms: AtomicU64,
}

impl Window {
    /// Adds counts at `now_ms` (milliseconds on any monotonic clock).
    pub fn add(&self, now_ms: u64, records: u64, bytes: u64, calls: u64) {
        let _ = self
            .first_ms
            .compare_exchange(0, now_ms + 1, Ordering::Relaxed, Ordering::Relaxed);
        let second = now_ms / 1000 + 1;
        let bucket = &self.buckets[(second % WINDOW_SECS) as usize];
        let seen = bucket.second.load(Ordering::Acquire);
        if seen != second
            && bucket
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.records.store(0, Ordering::Relaxed);
            bucket.bytes.store(0, Ordering::Relaxed);
            bucket.calls.store(0, Ordering::Relaxed);
        }
        bucket.records.fetch_add(records, Ordering::Relaxed);
        bucket.bytes.fetch_add(bytes, Ordering::Relaxed);
        bucket.calls.fetch_add(calls, Ordering::Relaxed);
    }

    /// The rate at `now_ms`: the counts of the last [`WINDOW_SECS`] seconds (the current one
    /// included) over the time they cover, which is shorter while the window is young (at
    /// least 1 s, so a first burst is not divided by a few milliseconds).
    pub fn load(&self, now_ms: u64) -> Load {
        let second = now_ms / 1000 + 1;
        let oldest = second.saturating_sub(WINDOW_SECS - 1);
        let (mut records, mut bytes, mut calls) = (0u64, 0u64, 0u64);
        for b in &self.buckets {
            let s = b.second.load(Ordering::Acquire);
            if s >= oldest && s <= second && s != 0 {
                records += b.records.load(Ordering::Relaxed);
                bytes += b.bytes.load(Ordering::Relaxed);
                calls += b.calls.load(Ordering::Relaxed);
            }
        }
        let full = (WINDOW_SECS - 1) as f64 + (now_ms % 1000) as f64 / 1000.0;
        let first = self.first_ms.load(Ordering::Relaxed);
        let young = match first {
            0 => full,
            f => now_ms.saturating_sub(f - 1) as f64 / 1000.0,
        };
        let span = full.min(young).max(1.0);
        Load {
            records_per_sec: records as f64 / span,
            bytes_per_sec: bytes as f64 / span,
            calls_per_sec: calls as f64 / span,
        }
    }
}

/// One shard's meter.
struct ShardMeter {
    window: Window,
    keys: Mutex<SpaceSaving>,
    gauge: metrics::Gauge,
}

/// The shards of one stream, on one side.
#[derive(Default)]
struct StreamMeters {
    shards: RwLock<HashMap<String, Arc<ShardMeter>>>,
    /// When every shard's gauge was last refreshed (ms plus one).
    refreshed_ms: AtomicU64,
}

type Registry = RwLock<HashMap<(Direction, String), Arc<StreamMeters>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn gauge_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Write => crate::metric_catalogue::SHARD_WRITE_UTILISATION,
        Direction::Read | Direction::FanOut => crate::metric_catalogue::SHARD_READ_UTILISATION,
    }
}

fn stream_meters(direction: Direction, stream: &str) -> Arc<StreamMeters> {
    let key = (direction, stream.to_owned());
    if let Some(m) = registry().read().expect("registry").get(&key) {
        return m.clone();
    }
    registry()
        .write()
        .expect("registry")
        .entry(key)
        .or_default()
        .clone()
}

fn shard_meter(
    meters: &StreamMeters,
    direction: Direction,
    stream: &str,
    shard: &str,
) -> Arc<ShardMeter> {
    if let Some(m) = meters.shards.read().expect("meters").get(shard) {
        return m.clone();
    }
    let mut shards = meters.shards.write().expect("meters");
    shards
        .entry(shard.to_owned())
        .or_insert_with(|| {
            let gauge = metrics::gauge!(gauge_name(direction), "stream" => stream.to_owned(), "shard" => shard.to_owned());
            Arc::new(ShardMeter {
                window: Window::default(),
                keys: Mutex::new(SpaceSaving::new(HOT_KEY_COUNTERS)),
                gauge,
            })
        })
        .clone()
}

/// Records one batch of one shard: counts, then keys (skipped if the sketch is busy), then the
/// gauges (this shard's; every shard of the stream at most once a second, so idle shards decay).
fn observe<'a>(
    direction: Direction,
    stream: &str,
    shard: &str,
    counts: (u64, u64, u64),
    keys: impl Iterator<Item = &'a str>,
) {
    let meters = stream_meters(direction, stream);
    let meter = shard_meter(&meters, direction, stream, shard);
    let now = now_ms();
    meter.window.add(now, counts.0, counts.1, counts.2);
    if let Ok(mut sketch) = meter.keys.try_lock() {
        keys.for_each(|k| sketch.offer(k, 1));
    }
    meter
        .gauge
        .set(meter.window.load(now).utilisation(direction));
    let last = meters.refreshed_ms.load(Ordering::Relaxed);
    if now + 1 >= last + 1000
        && meters
            .refreshed_ms
            .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        for m in meters.shards.read().expect("meters").values() {
            m.gauge.set(m.window.load(now).utilisation(direction));
        }
    }
}

/// Sink hook: what one PutRecords call wrote (accepted entries only), per shard.
pub(crate) fn observe_write(
    stream: &str,
    entries: &[PutRecordsRequestEntry],
    results: &[PutRecordsResultEntry],
) {
    // Per shard: records, bytes and the accepted entries' keys (one pass over the call).
    let mut per_shard: Vec<(&str, u64, u64, Vec<&str>)> = Vec::new();
    for (entry, result) in entries.iter().zip(results) {
        let (None, Some(shard)) = (result.error_code(), result.shard_id()) else {
            continue;
        };
        let key = entry.partition_key().unwrap_or_default();
        let bytes = (entry.data().as_ref().len() + key.len()) as u64;
        match per_shard.iter_mut().find(|(s, ..)| *s == shard) {
            Some((_, n, b, keys)) => {
                (*n, *b) = (*n + 1, *b + bytes);
                keys.push(key);
            }
            None => per_shard.push((shard, 1, bytes, vec![key])),
        }
    }
    for (shard, records, bytes, keys) in per_shard {
        observe(
            Direction::Write,
            stream,
            shard,
            (records, bytes, 0),
            keys.into_iter(),
        );
    }
}

/// Source hook: one GetRecords response (`fan_out: false`, one call) or one enhanced fan-out
/// event (`fan_out: true`) of `shard`, empty ones included (they are calls too).
pub(crate) fn observe_read(stream: &str, shard: &str, fan_out: bool, records: &[Record]) {
    let bytes: usize = records
        .iter()
        .map(|r| r.data().as_ref().len() + r.partition_key().unwrap_or_default().len())
        .sum();
    let (direction, calls) = match fan_out {
        true => (Direction::FanOut, 0),
        false => (Direction::Read, 1),
    };
    let keys = records
        .iter()
        .map(|r| r.partition_key().unwrap_or_default());
    observe(
        direction,
        stream,
        shard,
        (records.len() as u64, bytes as u64, calls),
        keys,
    );
}

/// One shard's current utilisation and heaviest keys, from [`snapshot`].
#[derive(Clone, Debug)]
pub struct ShardUtilisation {
    /// The shard id.
    pub shard: String,
    /// Rates over the sliding window.
    pub load: Load,
    /// The utilisation against the direction's limits (0..1, above 1 when over the limit).
    pub utilisation: f64,
    /// Records the key sketch counted since the shard was first seen.
    pub keys_total: u64,
    /// The heaviest partition keys since the shard was first seen, heaviest first; the
    /// share of a key is `count / keys_total`, overestimated by at most `error / keys_total`.
    pub hot_keys: Vec<HeavyHitter>,
}

/// The utilisation of every shard of `stream` this process wrote (`Direction::Write`) or read,
/// ordered by shard id; `top` hot keys per shard.
pub fn snapshot(direction: Direction, stream: &str, top: usize) -> Vec<ShardUtilisation> {
    let key = (direction, stream.to_owned());
    let Some(meters) = registry().read().expect("registry").get(&key).cloned() else {
        return Vec::new();
    };
    let now = now_ms();
    let mut out: Vec<ShardUtilisation> = meters
        .shards
        .read()
        .expect("meters")
        .iter()
        .map(|(shard, m)| {
            let load = m.window.load(now);
            let keys = m.keys.lock().expect("sketch");
            ShardUtilisation {
                shard: shard.clone(),
                load,
                utilisation: load.utilisation(direction),
                keys_total: keys.total(),
                hot_keys: keys.top(top),
            }
        })
        .collect();
    out.sort_by(|a, b| a.shard.cmp(&b.shard));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_utilisation_is_the_larger_ratio() {
        let by_records = Load {
            records_per_sec: 800.0,
            bytes_per_sec: 100_000.0,
            calls_per_sec: 0.0,
        };
        assert!((by_records.write_utilisation() - 0.8).abs() < 1e-9);
        let by_bytes = Load {
            records_per_sec: 10.0,
            bytes_per_sec: MIB * 0.9,
            calls_per_sec: 0.0,
        };
        assert!((by_bytes.write_utilisation() - 0.9).abs() < 1e-9);
        let reads = Load {
            records_per_sec: 10.0,
            bytes_per_sec: MIB,
            calls_per_sec: 4.0,
        };
        assert!((reads.read_utilisation() - 0.8).abs() < 1e-9);
        assert!((reads.fan_out_utilisation() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_window_averages_over_its_ten_seconds_and_forgets_older_ones() {
        let w = Window::default();
        // 500 records in each of seconds 0..20 (at the half second).
        for s in 0..20u64 {
            w.add(s * 1000 + 500, 500, 50_000, 5);
        }
        // At 19.5 s: seconds 10..=19 are in the window, covering 9.5 s.
        let load = w.load(19_500);
        assert!(
            (load.records_per_sec - 5000.0 / 9.5).abs() < 1e-6,
            "{load:?}"
        );
        assert!((load.calls_per_sec - 50.0 / 9.5).abs() < 1e-6);
        // 30 s later nothing is left.
        assert_eq!(w.load(50_000).records_per_sec, 0.0);
    }

    #[test]
    fn a_young_window_divides_by_its_age_but_at_least_one_second() {
        let w = Window::default();
        w.add(100, 300, 0, 0);
        assert_eq!(w.load(200).records_per_sec, 300.0);
        w.add(2_000, 300, 0, 0);
        // 600 records over 2.9 s (first update at 0.1 s).
        assert!((w.load(3_000).records_per_sec - 600.0 / 2.9).abs() < 1e-6);
    }

    #[test]
    fn write_hooks_count_accepted_entries_per_shard() {
        let entry = |key: &str| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(vec![0u8; 97]))
                .build()
                .expect("entry")
        };
        let ok = |shard: &str| PutRecordsResultEntry::builder().shard_id(shard).build();
        let failed = PutRecordsResultEntry::builder()
            .error_code("ProvisionedThroughputExceededException")
            .build();
        let entries = vec![entry("hot"), entry("hot"), entry("b"), entry("hot")];
        let results = vec![ok("s-0"), ok("s-0"), ok("s-1"), failed];
        observe_write("unit-write", &entries, &results);
        let snap = snapshot(Direction::Write, "unit-write", 3);
        let counts: Vec<(&str, u64)> = snap
            .iter()
            .map(|s| (s.shard.as_str(), s.keys_total))
            .collect();
        assert_eq!(
            counts,
            vec![("s-0", 2), ("s-1", 1)],
            "the failed entry is not counted"
        );
        assert_eq!(snap[0].hot_keys[0].key, "hot");
        // 2 records of 100 bytes within (at least) one second.
        assert!(snap[0].load.bytes_per_sec <= 200.0 && snap[0].load.bytes_per_sec > 0.0);
    }

    #[test]
    fn read_hooks_fill_the_snapshot_with_rates_and_keys() {
        let record = |key: &str| {
            Record::builder()
                .sequence_number("1")
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(vec![0u8; 95]))
                .build()
                .expect("record")
        };
        let batch: Vec<Record> = (0..100)
            .map(|i| record(if i % 2 == 0 { "hot" } else { "other" }))
            .chain((0..50).map(|i| record(&format!("k{i}"))))
            .collect();
        observe_read("unit-stream", "shardId-000000000001", false, &batch);
        let snap = snapshot(Direction::Read, "unit-stream", 2);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].keys_total, 150);
        assert_eq!(snap[0].hot_keys[0].key, "hot");
        // 150 records of 95 + key bytes in (at least) 1 s; one call → 0.2 of 5 calls/s at most.
        assert!(snap[0].load.records_per_sec <= 150.0 && snap[0].load.records_per_sec > 0.0);
        assert!(snap[0].utilisation <= 0.2 + 1e-9 && snap[0].utilisation > 0.0);
        assert!(snapshot(Direction::Write, "unit-stream", 2).is_empty());
    }
}
