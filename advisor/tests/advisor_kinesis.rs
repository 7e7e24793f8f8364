//! The advisor against the local Kinesis-API server (kinesis-mock): a 4-shard stream fed with
//! one key carrying ~30 % of the records; the advice names that key and its shard, the
//! utilisation matches what was written over the sampled span, the recommended count follows
//! the formula; the binary prints the same as JSON; UpdateShardCount through the autoscaler.
//! Start the server with `scripts/brokers up`.

use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_kinesis::Client;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};
use watershed_advisor::{advise, open_shards, recommended_shards, sample, scale, From};
use watershed_source_kinesis::utilisation::Load;
use watershed_testkit::clients::{kinesis_client, put_records};
use watershed_testkit::env::{kinesis_endpoint, unique};

const N: usize = 3_000;
const BATCHES: usize = 6;

async fn create(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    wait_active(client, name).await;
}

async fn wait_active(client: &Client, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        if out
            .stream_description_summary()
            .expect("summary")
            .stream_status()
            == &StreamStatus::Active
        {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete(client: &Client, name: &str) {
    let _ = client.delete_stream().stream_name(name).send().await;
}

/// What a shard was given: records and bytes (data plus key).
type Written = HashMap<String, (u64, u64)>;

/// Writes N records in BATCHES PutRecords calls ~0.5 s apart (so they arrive over ~2.5 s):
/// key "hot" for 30 %, 300 other keys for the rest, 100-byte payloads. Returns what each
/// shard took, the hot key's shard, and how long the writes took.
async fn write_skewed(client: &Client, stream: &str) -> (Written, String, Duration) {
    let mut written: Written = HashMap::new();
    let mut hot_shard = String::new();
    let started = Instant::now();
    for b in 0..BATCHES {
        let batch: Vec<(String, Vec<u8>)> = (b * N / BATCHES..(b + 1) * N / BATCHES)
            .map(|i| {
                let key = if i % 10 < 3 {
                    "hot".to_owned()
                } else {
                    format!("user-{}", i % 300)
                };
                (key, vec![b'x'; 100])
            })
            .collect();
        let shards = put_records(client, stream, &batch).await;
        for ((k, v), shard) in batch.iter().zip(shards) {
            if k == "hot" {
                hot_shard = shard.clone();
            }
            let w = written.entry(shard).or_default();
            (w.0, w.1) = (w.0 + 1, w.1 + (k.len() + v.len()) as u64);
        }
        if b + 1 < BATCHES {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    (written, hot_shard, started.elapsed())
}

fn close(measured: f64, expected: f64) -> bool {
    (measured - expected).abs() <= expected * 0.10
}

/// Issue 23: the report names the hot key and its shard; each shard's utilisation is within
/// 10 % of the load written over the sampled span; the recommended count is the formula's.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn the_advice_names_the_hot_key_and_sizes_the_stream() {
    let client = kinesis_client().await;
    let stream = unique("ws-advisor");
    create(&client, &stream, 4).await;
    let (written, hot_shard, took) = write_skewed(&client, &stream).await;

    let sampled = sample(&client, &stream, From::TrimHorizon, Duration::from_secs(20))
        .await
        .expect("sample");
    let advice = advise(&sampled, 0.6);
    eprintln!("{}", watershed_advisor::report::render(&advice));
    assert_eq!(advice.current_shards, 4);
    assert_eq!(
        advice.shards.iter().map(|s| s.records).sum::<u64>(),
        N as u64
    );
    // The span is the time the records arrived over: about the writes' duration.
    let span = advice.span_secs;
    assert!(
        span <= took.as_secs_f64() + 1.0 && span >= 2.0,
        "span {span} s, writes took {took:?}"
    );
    for s in &advice.shards {
        let (records, bytes) = written.get(&s.shard).copied().unwrap_or_default();
        let expected = (bytes as f64 / span / 1_048_576.0).max(records as f64 / span / 1_000.0);
        assert!(
            close(s.utilisation, expected),
            "{}: {} vs {expected}",
            s.shard,
            s.utilisation
        );
    }
    let hot = advice
        .keys
        .iter()
        .find(|k| k.key == "hot")
        .expect("hot key advice");
    assert_eq!(hot.shard, hot_shard);
    assert!(
        hot.text.contains("adding shards does not relieve it")
            && hot.text.contains("per-key order")
    );
    let report = advice
        .shards
        .iter()
        .find(|s| s.shard == hot_shard)
        .expect("hot shard");
    assert_eq!(report.hot_keys[0].key, "hot");
    let total = Load {
        records_per_sec: N as f64 / span,
        bytes_per_sec: written.values().map(|w| w.1).sum::<u64>() as f64 / span,
        calls_per_sec: 0.0,
    };
    assert_eq!(advice.recommended_shards, recommended_shards(&total, 0.6));

    // The binary, as JSON.
    let out = Command::new(env!("CARGO_BIN_EXE_watershed-advisor"))
        .args([
            "--stream",
            &stream,
            "--endpoint",
            &kinesis_endpoint(),
            "--duration",
            "20",
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["keys"][0]["key"], "hot");
    assert_eq!(json["keys"][0]["shard"], hot_shard.as_str());
    assert_eq!(json["recommended_shards"], advice.recommended_shards);
    delete(&client, &stream).await;
}

/// Issue 23: `autoscale --dry-run` prints the decision and changes nothing; `scale` calls
/// UpdateShardCount (UNIFORM_SCALING), which kinesis-mock carries out.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn autoscale_dry_run_decides_and_scale_updates_the_shard_count() {
    let client = kinesis_client().await;
    let stream = unique("ws-autoscale");
    create(&client, &stream, 2).await;
    let out = Command::new(env!("CARGO_BIN_EXE_watershed-advisor"))
        .args([
            "autoscale",
            "--stream",
            &stream,
            "--endpoint",
            &kinesis_endpoint(),
        ])
        .args([
            "--dry-run",
            "--rounds",
            "1",
            "--window",
            "2",
            "--sustain",
            "0",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Idle: below --low at once (sustain 0); 2 → 1 (at most halve).
    assert!(stdout.contains("would scale 2 → 1"), "{stdout}");
    assert_eq!(
        open_shards(&client, &stream)
            .await
            .expect("ListShards")
            .len(),
        2
    );

    scale(&client, &stream, 4, Duration::from_secs(60))
        .await
        .expect("UpdateShardCount");
    wait_active(&client, &stream).await;
    assert_eq!(
        open_shards(&client, &stream)
            .await
            .expect("ListShards")
            .len(),
        4
    );
    delete(&client, &stream).await;
}

/// `--help` documents the options (no server needed).
#[test]
fn help_lists_the_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_watershed-advisor"))
        .arg("--help")
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--stream",
        "--duration",
        "--from",
        "--endpoint",
        "--target",
        "--json",
        "autoscale",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_watershed-advisor"))
        .args(["autoscale", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--dry-run",
        "--high",
        "--low",
        "--cooldown",
        "--sustain",
        "--min-shards",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

/// `--from latest`: only records written while sampling count, over the sampling window.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn sampling_from_latest_counts_what_arrives_during_the_window() {
    let client = kinesis_client().await;
    let stream = unique("ws-latest");
    create(&client, &stream, 2).await;
    let before: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("old-{i}"), vec![b'o'; 10]))
        .collect();
    put_records(&client, &stream, &before).await;
    let sampling = {
        let (client, stream) = (client.clone(), stream.clone());
        tokio::spawn(async move {
            sample(&client, &stream, From::Latest, Duration::from_secs(20)).await
        })
    };
    // Time for ListShards and GetShardIterator(LATEST) on a busy machine, and for the writes
    // (~3 s) to end well before the window does.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let (written, _, _) = write_skewed(&client, &stream).await;
    let sampled = sampling.await.expect("task").expect("sample");
    let advice = advise(&sampled, 0.6);
    assert_eq!(
        advice.shards.iter().map(|s| s.records).sum::<u64>(),
        N as u64,
        "only the records written while sampling"
    );
    assert!(advice.span_secs >= 19.5, "span {}", advice.span_secs);
    for s in &advice.shards {
        let records = written.get(&s.shard).map_or(0, |w| w.0);
        assert_eq!(s.records, records, "{}", s.shard);
    }
    delete(&client, &stream).await;
}

/// Issue 23, bad input: a stream that does not exist ends the command with a message naming
/// the stream and the service's answer (exit code 1, no panic); an existing stream with no
/// traffic gets a report that says so and keeps the shard count.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_missing_stream_and_a_quiet_stream_get_clear_answers() {
    let advisor = || Command::new(env!("CARGO_BIN_EXE_watershed-advisor"));
    let missing = unique("ws-no-such-stream");
    let out = advisor()
        .args(["--stream", &missing, "--endpoint", &kinesis_endpoint()])
        .args(["--duration", "2"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let client = kinesis_client().await;
    let quiet = unique("ws-quiet");
    create(&client, &quiet, 2).await;
    let out = advisor()
        .args(["--stream", &quiet, "--endpoint", &kinesis_endpoint()])
        .args(["--duration", "2"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("no record arrived"), "{stdout}");
    assert!(
        stdout.contains("recommended shard count at target 0.60: 2 (now 2)"),
        "{stdout}"
    );
    delete(&client, &quiet).await;
}
