//! The hybrid example (Kafka → analytics → Kafka + S3) killed with `kill -9` three times and
//! restarted: the Kafka output and the S3 output hold, for every window and page, exactly the
//! counts a reference computation over the input gives, and the per-category counts in S3 (the
//! category from the reference table the example writes to S3) do too. Needs the local brokers.

mod common;

use common::*;

use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use watershed_examples::analytics::{CategoryStats, ClickSpec, PageStats};

const EVENTS: u64 = 500_000;

type Counts = BTreeMap<(String, i64), (u64, u64)>;

/// Adds results, failing on a (page, window) seen twice: each must be emitted exactly once.
fn add(into: &mut Counts, s: PageStats, source: &str) {
    let key = (s.page.clone(), s.window_start);
    let prev = into.insert(key.clone(), (s.views, s.unique_users));
    assert!(prev.is_none(), "{source}: window {key:?} emitted twice");
}

fn kafka_output(topic: &str, expected: usize, child: &mut Child) -> Counts {
    let consumer = committed_consumer(topic);
    let mut out = Counts::new();
    let started = Instant::now();
    let mut quiet = Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("the example exited early: {status}");
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                add(
                    &mut out,
                    serde_json::from_slice(m.payload().unwrap()).unwrap(),
                    "kafka",
                );
                quiet = Instant::now();
            }
            // Stop once everything arrived and nothing more (a duplicate) came for 3 s.
            _ if out.len() >= expected && quiet.elapsed() > Duration::from_secs(3) => break,
            _ => {}
        }
    }
    out
}

async fn s3_output(prefix: &str) -> Counts {
    let mut out = Counts::new();
    for line in s3_lines(prefix).await {
        add(&mut out, serde_json::from_str(&line).unwrap(), "s3");
    }
    out
}

/// (category, window start) → views, failing on a window seen twice.
async fn s3_categories(prefix: &str) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for line in s3_lines(prefix).await {
        let c: CategoryStats = serde_json::from_str(&line).unwrap();
        let key = (c.category, c.window_start);
        assert!(
            out.insert(key.clone(), c.views).is_none(),
            "s3: category window {key:?} emitted twice"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn hybrid_killed_three_times_commits_exactly_the_reference_counts_to_kafka_and_s3() {
    let input = unique("e2e-clicks");
    let output = unique("e2e-stats");
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["kafka", "--topic", &input, "--events", &EVENTS.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let spec = ClickSpec {
        events: EVENTS,
        ..Default::default()
    };
    let reference = spec.reference();

    let dir = tempfile::tempdir().unwrap();
    let id = unique("hybrid");
    let prefix = unique("e2e-hybrid");
    let args = hybrid_args(&input, &output, &id, &prefix, dir.path());
    // Kill at moments that vary from run to run (derived from the clock), three times.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis() as u64;
    let log = dir.path().join("hybrid.log");
    for round in 0..3u64 {
        let mut child = spawn_hybrid(&args, &log);
        let after = 1_500 + (seed * (round + 7) * 7919) % 3_000;
        std::thread::sleep(Duration::from_millis(after));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut child = spawn_hybrid(&args, &log);
    let from_kafka = kafka_output(&output, reference.len(), &mut child);
    // Give the S3 sink's last checkpoint time to commit, then stop gracefully.
    std::thread::sleep(Duration::from_secs(2));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let from_s3 = s3_output(&format!("{prefix}/page-stats")).await;
    let categories = s3_categories(&format!("{prefix}/category-stats")).await;

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        from_kafka.len(),
        reference.len(),
        "kafka: windows missing; the example's stderr:\n{log_text}"
    );
    assert_eq!(
        from_kafka, reference,
        "kafka output differs from the reference"
    );
    assert_eq!(from_s3, reference, "s3 output differs from the reference");
    assert_eq!(
        categories,
        spec.category_reference(),
        "s3 category output differs from the reference"
    );
}
