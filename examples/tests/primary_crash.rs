//! The primary example (Kinesis → analytics → S3 Parquet, raw archive, dead letters) killed with
//! `kill -9` three times and restarted: the Parquet output holds, for every window and page,
//! exactly the counts a reference computation over the input gives, the per-category output
//! (categories from the reference table in S3) too, and the raw archive holds every event once.
//! Needs the local brokers.
//!
//! 20,000 events, not 500,000: the local Kinesis server (kinesis-mock) slows down sharply as a
//! shard fills (docs/local-brokers.md); the 500,000-event run is the Kafka example's.

use arrow_array::{Array, Int64Array, StringArray};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use watershed_examples::analytics::{CategoryStats, ClickSpec};
use watershed_testkit::env::unique;

const EVENTS: u64 = 20_000;

type Counts = BTreeMap<(String, i64), (u64, u64)>;

async fn objects(prefix: &str) -> Vec<bytes::Bytes> {
    let store = watershed_sink_s3::amazon_s3_from_env().unwrap();
    let metas: Vec<_> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for m in metas {
        out.push(store.get(&m.location).await.unwrap().bytes().await.unwrap());
    }
    out
}

async fn parquet_counts(prefix: &str) -> Counts {
    let mut counts = Counts::new();
    for bytes in objects(prefix).await {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column_by_name(name).unwrap().clone();
            let page = col("page");
            let page = page.as_any().downcast_ref::<StringArray>().unwrap();
            let ints = |name: &str| {
                col(name)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone()
            };
            let (start, views, users) = (ints("window_start"), ints("views"), ints("unique_users"));
            for i in 0..batch.num_rows() {
                let key = (page.value(i).to_string(), start.value(i));
                let prev =
                    counts.insert(key.clone(), (views.value(i) as u64, users.value(i) as u64));
                assert!(prev.is_none(), "window {key:?} written twice");
            }
        }
    }
    counts
}

fn spawn(args: &[String], log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_primary"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn primary_killed_three_times_writes_exactly_the_reference_counts_to_s3() {
    let stream = unique("e2e-primary");
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "kinesis",
            "--stream",
            &stream,
            "--shards",
            "2",
            "--events",
            &EVENTS.to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let spec = ClickSpec {
        events: EVENTS,
        ..Default::default()
    };
    let reference = spec.reference();

    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("e2e-primary");
    let args: Vec<String> = [
        "--stream",
        &stream,
        "--id",
        &unique("primary"),
        "--s3-prefix",
        &prefix,
        "--checkpoints",
        dir.path().to_str().unwrap(),
        "--metrics",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = dir.path().join("primary.log");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis() as u64;
    for round in 0..3u64 {
        let mut child = spawn(&args, &log);
        std::thread::sleep(Duration::from_millis(
            1_500 + (seed * (round + 3) * 7919) % 2_500,
        ));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut child = spawn(&args, &log);
    let started = Instant::now();
    let mut got = Counts::new();
    while started.elapsed() < Duration::from_secs(180) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "primary exited early ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        got = parquet_counts(&format!("{prefix}/page-stats")).await;
        if got.len() >= reference.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    std::thread::sleep(Duration::from_secs(3)); // let a late duplicate show, if any
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let got_final = parquet_counts(&format!("{prefix}/page-stats")).await;
    if got != got_final || got_final != reference {
        // Keep the checkpoints and the log: a failure here is worth a post-mortem.
        let kept = dir.keep();
        let missing: Vec<_> = reference
            .iter()
            .filter(|(k, v)| got_final.get(k) != Some(v))
            .take(10)
            .collect();
        panic!(
            "parquet output differs from the reference ({} windows expected, {} written, first \
             differences {missing:?}); checkpoints and log kept in {}; log:\n{}",
            reference.len(),
            got_final.len(),
            kept.display(),
            std::fs::read_to_string(kept.join("primary.log")).unwrap_or_default()
        );
    }

    // Per category: each window once, with the reference's views.
    let mut categories: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for bytes in objects(&format!("{prefix}/category-stats")).await {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            let c: CategoryStats = serde_json::from_str(line).unwrap();
            let key = (c.category, c.window_start);
            assert!(
                categories.insert(key.clone(), c.views).is_none(),
                "category window {key:?} written twice"
            );
        }
    }
    assert_eq!(categories, spec.category_reference(), "category output");

    // The raw archive holds every event (and end marker) exactly once.
    let mut seen: HashMap<String, u32> = HashMap::new();
    for bytes in objects(&format!("{prefix}/raw")).await {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            *seen.entry(line.to_string()).or_default() += 1;
        }
    }
    let expected: HashMap<String, u32> = (0..EVENTS)
        .map(|n| String::from_utf8(spec.payload(n).1).unwrap())
        .fold(HashMap::new(), |mut m, p| {
            *m.entry(p).or_default() += 1;
            m
        });
    for (payload, n) in &expected {
        assert_eq!(seen.get(payload), Some(n), "raw archive: {payload}");
    }
    // One line per event: no blank line after each record (the sink ends lines itself).
    assert_eq!(seen.get(""), None, "raw archive: blank lines");

    // kinesis-mock holds 50 shards in all: give these back.
    let endpoint =
        std::env::var("WATERSHED_KINESIS_ENDPOINT").unwrap_or("http://127.0.0.1:4568".into());
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    let _ = aws_sdk_kinesis::Client::new(&conf)
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await;
}
