//! Where `KinesisSource` starts and resumes, against the local Kinesis-API server
//! (kinesis-mock): after the checkpointed sequence numbers, after a failure from the last
//! complete checkpoint, at LATEST or a timestamp, and at its first LATEST after a restore.
//! Start the server with `scripts/brokers up`; settings as in `broker_kinesis.rs`.

mod common;

use common::*;
use watershed_core::connectors::CollectSink;
use watershed_core::{CheckpointStore, Pipeline, WatermarkStrategy};
use watershed_source_kinesis::KinesisSource;
use watershed_testkit::{FailAt, FailingSource, Fault};

/// Rule: a pipeline stopped at a checkpoint and restarted continues exactly
/// after the checkpointed sequence number of every shard: per shard, what the two runs read
/// is, concatenated, exactly the shard's content (no gap, no repeat at the boundary).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn property_8_restart_resumes_after_the_checkpointed_sequence_numbers() {
    const N: usize = 3_000;
    let stream = TestStream::create("ws-resume", 2).await;
    let records = keyed_records(N, 32, 0);
    assert_eq!(write(aws(), &stream.name, &records).await, N as u64);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("checkpoint store");
    let collected = CollectSink::new();
    // Small GetRecords calls so that the first run stops mid-shard.
    let slow = || {
        KinesisSource::builder(&stream.name)
            .aws(aws())
            .start_position(watershed_source_kinesis::StartPosition::TrimHorizon)
            .max_records_per_call(50)
            .build()
    };
    let first = read("resume", &store, slow(), &collected, |n| n >= 500).await;
    assert!(
        first.last_checkpoint.is_some(),
        "the stop took a checkpoint"
    );
    let first_run = collected.values();
    assert!(first_run.len() < N, "the first run stopped mid-stream");

    // The restart uses LATEST for shards without a position: if the checkpoint were not used,
    // it would read nothing and the test would time out.
    let restarted = KinesisSource::builder(&stream.name)
        .aws(aws())
        .max_records_per_call(50)
        .build();
    let second = read("resume", &store, restarted, &collected, |n| n >= N).await;
    assert_eq!(
        second.records_in as usize,
        N - first_run.len(),
        "the second run reads only what the first did not"
    );
    let all = collected.values();
    assert_once_and_ordered(&all, N);

    assert_each_shard_read_exactly(&stream, &all).await;
    stream.delete().await;
}

/// C2 with Kinesis: a run that fails mid-stream (records read after the last checkpoint are
/// lost with it) and a restart from the last complete checkpoint together deliver every record
/// exactly once to an exactly-once sink, and each shard exactly in order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn restart_after_a_failure_resumes_from_the_last_complete_checkpoint() {
    const N: usize = 2_000;
    let stream = TestStream::create("ws-crash", 2).await;
    write(aws(), &stream.name, &keyed_records(N, 16, 0)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("store");
    let collected = CollectSink::new();
    let reader = || {
        KinesisSource::builder(&stream.name)
            .aws(aws())
            .start_position(watershed_source_kinesis::StartPosition::TrimHorizon)
            .max_records_per_call(40)
            .build()
    };

    let p = Pipeline::new(pipeline_config("crash", &store));
    // Fails like a crashed process once 700 records were read.
    let crashing = FailingSource::new(reader(), Fault::error(FailAt::AfterRecords(700)));
    p.source("kinesis", crashing, WatermarkStrategy::none())
        .apply("describe", describe())
        .sink("collect", collected.clone());
    let failed = tokio::time::timeout(TIMEOUT, p.run())
        .await
        .expect("the crashing run ends");
    assert!(failed.is_err(), "the injected crash stops the run");
    let before = collected.values().len();
    assert!(before < N, "the crash happened mid-stream");

    read("crash", &store, reader(), &collected, |n| n >= N).await;
    let all = collected.values();
    assert_once_and_ordered(&all, N);
    // Per shard exactly, across the failure.
    assert_each_shard_read_exactly(&stream, &all).await;
    stream.delete().await;
}

/// Reads `stream` from `start` while `later` is written after the source opened; returns the
/// payloads read once `expected` arrived.
async fn read_from(
    stream: &TestStream,
    start: watershed_source_kinesis::StartPosition,
    later: &[(String, String)],
    expected: usize,
) -> Vec<String> {
    let collected = CollectSink::new();
    let source = KinesisSource::builder(&stream.name)
        .aws(aws())
        .start_position(start)
        .build();
    let running = start_reading("start", source, &collected, move |n| n >= expected);
    // Give the source time to open and take its iterators before the new records arrive.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    write(aws(), &stream.name, later).await;
    running.finish().await;
    let mut payloads: Vec<String> = collected.values().into_iter().map(|s| s.3).collect();
    payloads.sort();
    payloads
}

/// N2: with no checkpoint, `Latest` reads only records written after the source opened, and
/// `AtTimestamp(t)` reads from the first record that arrived at or after `t`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n2_start_positions_latest_and_at_timestamp_skip_older_records() {
    let stream = TestStream::create("ws-start", 1).await;
    let old = keyed_records(100, 5, 0);
    write(aws(), &stream.name, &old).await;
    // ApproximateArrivalTimestamp has millisecond resolution; leave a clear gap around `t`.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let middle = keyed_records(100, 5, 100);
    write(aws(), &stream.name, &middle).await;

    let newest = keyed_records(100, 5, 200);
    let latest = read_from(
        &stream,
        watershed_source_kinesis::StartPosition::Latest,
        &newest,
        100,
    )
    .await;
    let mut expected: Vec<String> = newest.iter().map(|(_, v)| v.clone()).collect();
    expected.sort();
    assert_eq!(
        latest, expected,
        "LATEST reads only what was written after open"
    );

    let even_newer = keyed_records(100, 5, 300);
    let from_t = read_from(
        &stream,
        watershed_source_kinesis::StartPosition::AtTimestamp(t),
        &even_newer,
        300,
    )
    .await;
    let mut expected: Vec<String> = middle
        .iter()
        .chain(&newest)
        .chain(&even_newer)
        .map(|(_, v)| v.clone())
        .collect();
    expected.sort();
    assert_eq!(
        from_t, expected,
        "AT_TIMESTAMP skips records that arrived before t"
    );
    stream.delete().await;
}

/// N2 + property 8 with LATEST: a shard opened at LATEST whose checkpoint was taken before it
/// returned any record resumes, after a restore, from the moment it was first opened — not at
/// a new LATEST. Every record written while the pipeline was down is read, and none written
/// (well) before the first start, so the fix is not "restart at TRIM_HORIZON".
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn latest_checkpointed_before_any_record_resumes_from_the_first_open_not_a_new_latest() {
    use watershed_source_kinesis::{StartPosition, LATEST_CLOCK_ALLOWANCE_MS};
    let stream = TestStream::create("ws-latest-restore", 2).await;
    write(aws(), &stream.name, &keyed_records(50, 8, 0)).await;
    // Older than the resolved start minus its clock allowance.
    tokio::time::sleep(std::time::Duration::from_millis(
        LATEST_CLOCK_ALLOWANCE_MS as u64 + 1_500,
    ))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::local(dir.path()).expect("checkpoint store");
    let collected = CollectSink::new();
    let latest = || {
        KinesisSource::builder(&stream.name)
            .aws(aws())
            .start_position(StartPosition::Latest)
            .build()
    };

    // First run: opens both shards at LATEST, checkpoints while nothing arrives, stops.
    let p = Pipeline::new(pipeline_config("latest-restore", &store));
    let shutdown = p.shutdown_handle();
    p.source("kinesis", latest(), WatermarkStrategy::none())
        .apply("describe", describe())
        .sink("collect", collected.clone());
    let first = tokio::spawn(p.run());
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    shutdown.shutdown();
    let first = tokio::time::timeout(TIMEOUT, first)
        .await
        .expect("graceful stop finishes")
        .expect("pipeline task")
        .expect("first run");
    assert!(
        first.last_checkpoint.is_some(),
        "the stop took a checkpoint"
    );
    assert_eq!(first.records_in, 0, "nothing was written after the open");

    // Written while the pipeline is down.
    let down = keyed_records(200, 8, 50);
    assert_eq!(write(aws(), &stream.name, &down).await, 200);
    let second = read("latest-restore", &store, latest(), &collected, |n| n >= 200).await;
    assert_eq!(second.records_in, 200);
    let seen = collected.values();
    assert_once_and_ordered(&seen, 200);
    let mut read: Vec<&str> = seen.iter().map(|s| s.3.as_str()).collect();
    read.sort_unstable();
    let mut expected: Vec<&str> = down.iter().map(|(_, v)| v.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(
        read, expected,
        "exactly the records written while down are read"
    );
    stream.delete().await;
}
