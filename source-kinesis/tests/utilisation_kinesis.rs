//! Shard utilisation and hot keys as the sink and the source measure them, against the local
//! Kinesis-API server (kinesis-mock): `utilisation::snapshot` after writing a skewed key
//! distribution with `KinesisSink` and reading it back with `KinesisSource`.
//! Start the server with `scripts/brokers up`; settings as in `broker_kinesis.rs`.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use watershed_source_kinesis::utilisation::{snapshot, Direction, ShardUtilisation, WINDOW_SECS};

const N: usize = 2_000;

/// 40 % of the records under "hot", the rest over 100 keys; payloads of 50 bytes.
fn skewed() -> Vec<(String, String)> {
    (0..N)
        .map(|i| {
            let key = if i % 5 < 2 {
                "hot".to_owned()
            } else {
                format!("key-{}", i % 100)
            };
            (key, format!("{i:050}"))
        })
        .collect()
}

/// Checks a side's snapshot: every record counted once, "hot" the top key of one shard with
/// its records' share, and rates consistent with N records in the last window.
/// `fresh`: the records were all counted within the last window.
fn check(
    side: &str,
    snap: &[ShardUtilisation],
    records: &[(String, String)],
    fresh: bool,
) -> String {
    assert_eq!(snap.len(), 2, "{side}: both shards: {snap:?}");
    let total: u64 = snap.iter().map(|s| s.keys_total).sum();
    assert_eq!(total, N as u64, "{side}: each record counted once");
    let hot = snap
        .iter()
        .find(|s| s.hot_keys.first().is_some_and(|k| k.key == "hot"))
        .unwrap_or_else(|| panic!("{side}: no shard has \"hot\" on top: {snap:?}"));
    let hot_records = records.iter().filter(|(k, _)| k == "hot").count() as u64;
    let top = &hot.hot_keys[0];
    assert!(
        top.count >= hot_records && top.guaranteed() <= hot_records,
        "{side}: {top:?}"
    );
    for s in snap {
        // The records arrived within the window; the rate divides by at most the window and at
        // least one second.
        let r = s.load.records_per_sec;
        let counted = s.keys_total as f64;
        assert!(r <= counted + 1e-9, "{side}: {s:?}");
        if fresh {
            assert!(r >= counted / WINDOW_SECS as f64 * 0.99, "{side}: {s:?}");
        }
        assert!(
            s.load.bytes_per_sec >= r * 50.0,
            "{side}: at least the payloads: {s:?}"
        );
        assert!(s.utilisation > 0.0, "{side}: {s:?}");
    }
    hot.shard.clone()
}

/// Issue 23: the sink's per-shard write utilisation and the source's read utilisation see the
/// records where PutRecords put them, and both name the hot key's shard.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sink_and_source_measure_each_shard_and_name_the_hot_key() {
    let stream = TestStream::create("ws-utilisation", 2).await;
    let records = skewed();
    let fresh = |started: Instant| started.elapsed() < Duration::from_secs(WINDOW_SECS - 1);
    let started = Instant::now();
    assert_eq!(write(aws(), &stream.name, &records).await, N as u64);
    let written = snapshot(Direction::Write, &stream.name, 5);
    let hot_written = check("write", &written, &records, fresh(started));
    for s in &written {
        let expected = (s.load.bytes_per_sec / 1_048_576.0).max(s.load.records_per_sec / 1_000.0);
        assert!((s.utilisation - expected).abs() < 1e-9, "{s:?}");
    }

    let started = Instant::now();
    let (_, seen) = read_each_once("utilisation", source(aws(), &stream.name), N).await;
    let read = snapshot(Direction::Read, &stream.name, 5);
    let hot_read = check("read", &read, &records, fresh(started));
    assert_eq!(hot_read, hot_written, "the same shard holds the hot key");
    let hot_shard_of_seen: HashMap<&str, &str> = seen
        .iter()
        .map(|(shard, _, key, _)| (key.as_str(), shard.as_str()))
        .collect();
    assert!(
        hot_shard_of_seen["hot"].ends_with(&hot_read),
        "{} vs {hot_read}",
        hot_shard_of_seen["hot"]
    );
    for s in &read {
        assert!(
            s.load.calls_per_sec > 0.0,
            "polling calls are counted: {s:?}"
        );
    }
    stream.delete().await;
}
