//! Issue 16 for Kinesis: a missing or vanished stream, a restored position the stream cannot
//! serve, and an unreachable endpoint each end in a clear, prompt error (or, when asked for,
//! a visible wait) — never in a pipeline that idles silently or reads from somewhere else.
//! Against the local kinesis-mock (`scripts/brokers up`).

mod common;

use bytes::Bytes;
use common::*;
use std::time::{Duration, Instant};
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::{
    CheckpointStore, EventTime, Pipeline, PipelineConfig, Record, WatermarkStrategy,
};
use watershed_source_kinesis::{
    KinesisSink, KinesisSource, MissingStream, OutOfRange, StartPosition,
};

/// The promptness every failure here must meet.
const PROMPT: Duration = Duration::from_secs(10);

/// Runs `source` into a fresh sink (pipeline `id`, checkpoints in `store`) until the pipeline
/// ends by itself, at most `within`; returns the error's text (panics if it ended well).
async fn run_to_error(
    id: &str,
    store: &CheckpointStore,
    source: KinesisSource,
    within: Duration,
) -> String {
    let p = Pipeline::new(pipeline_config(id, store));
    p.source("kinesis", source, WatermarkStrategy::none())
        .apply("describe", describe())
        .sink("collect", CollectSink::<Seen>::new());
    match tokio::time::timeout(within, p.run()).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(summary)) => panic!("the pipeline ended without an error: {summary:?}"),
        Err(_) => panic!("no error within {within:?}: the pipeline kept running"),
    }
}

/// Rule: a source whose stream does not exist fails within 10 s, by default, with an error
/// naming the stream and the endpoint.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_missing_stream_fails_within_10_s_naming_stream_and_endpoint() {
    let name = unique("ws-missing");
    let error = run_to_error(
        "missing",
        &CheckpointStore::memory(),
        source(aws(), &name),
        PROMPT,
    )
    .await;
    assert!(error.contains(&name), "names the stream: {error}");
    assert!(error.contains(&endpoint()), "names the endpoint: {error}");
    assert!(
        error.contains("does not exist"),
        "says what is wrong: {error}"
    );
}

/// Rule: with `MissingStream::Wait`, a source whose stream does not exist yet waits for it
/// (the pipeline keeps running) and reads it once it is created.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn with_wait_a_missing_stream_is_read_once_it_is_created() {
    const N: usize = 5;
    let name = unique("ws-late");
    let source = KinesisSource::builder(&name)
        .aws(aws())
        .start_position(StartPosition::TrimHorizon)
        .missing_stream(MissingStream::Wait)
        .build();
    let collected = CollectSink::new();
    let reading = start_reading("late", source, &collected, |n| n >= N);
    // Longer than a failing source takes to fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stream = TestStream::create_named(&name, 1).await;
    assert_eq!(write(aws(), &name, &keyed_records(N, 2, 0)).await, N as u64);
    reading.finish().await;
    assert_once_and_ordered(&collected.values(), N);
    stream.delete().await;
}

/// Rule: a stream deleted while the pipeline reads it stops the pipeline with an error that
/// names the stream, the endpoint and the deletion — it neither idles nor retries for ever.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_stream_deleted_while_read_stops_the_pipeline_naming_it() {
    let stream = TestStream::create("ws-vanish", 1).await;
    write(aws(), &stream.name, &keyed_records(3, 1, 0)).await;
    // Discovery only every 10 s (the default): the readers must notice the deletion.
    let source = KinesisSource::builder(&stream.name)
        .aws(aws())
        .start_position(StartPosition::TrimHorizon)
        .build();
    let p = Pipeline::new(pipeline_config("vanish", &CheckpointStore::memory()));
    let collected = CollectSink::new();
    p.source("kinesis", source, WatermarkStrategy::none())
        .apply("describe", describe())
        .sink("collect", collected.clone());
    let run = tokio::spawn(p.run());
    let deadline = Instant::now() + TIMEOUT;
    while collected.records().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the records before the deletion are read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stream
        .client
        .delete_stream()
        .stream_name(&stream.name)
        .send()
        .await
        .expect("DeleteStream");
    let ended = tokio::time::timeout(PROMPT, run)
        .await
        .expect("the pipeline stops")
        .expect("task");
    let error = ended.expect_err("a deleted stream is an error").to_string();
    assert!(error.contains(&stream.name), "names the stream: {error}");
    assert!(error.contains(&endpoint()), "names the endpoint: {error}");
    assert!(
        error.contains("deleted"),
        "says the stream was deleted: {error}"
    );
}

/// Rule: with `MissingStream::Wait`, a stream deleted while read is waited for instead (the
/// pipeline keeps running); when it is re-created under the same name, the positions read
/// before are checked against it like a restored checkpoint (here `OutOfRange::TrimHorizon`:
/// counted, then read from the oldest record), and the new stream's records are read once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn with_wait_a_deleted_stream_is_waited_for_and_its_successor_read() {
    const OLD: usize = 3;
    let stream = TestStream::create("ws-reborn", 1).await;
    write(aws(), &stream.name, &keyed_records(OLD, 1, 0)).await;
    let source = KinesisSource::builder(&stream.name)
        .aws(aws())
        .start_position(StartPosition::TrimHorizon)
        .missing_stream(MissingStream::Wait)
        .on_position_out_of_range(OutOfRange::TrimHorizon)
        .build();
    let stats = source.stats();
    let collected = CollectSink::new();
    let reading = start_reading("reborn", source, &collected, |n| n >= OLD + NEW);
    let deadline = Instant::now() + TIMEOUT;
    while collected.records().len() < OLD {
        assert!(
            Instant::now() < deadline,
            "the records before the deletion are read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let name = stream.name.clone();
    stream
        .client
        .delete_stream()
        .stream_name(&name)
        .send()
        .await
        .expect("DeleteStream");
    // Longer than a failing source takes to fail (start_reading panics if the pipeline ends).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stream = recreate(&name).await;
    assert_eq!(
        write(aws(), &name, &keyed_records(NEW, 2, 1_000)).await,
        NEW as u64
    );
    reading.finish().await;
    assert_once_and_ordered(&collected.values(), OLD + NEW);
    assert_eq!(
        stats.positions_out_of_range(),
        1,
        "the old shard's position was replaced"
    );
    stream.delete().await;
}

/// A checkpoint of a two-shard stream (every record read), then the stream deleted and
/// re-created with the same name and one shard, holding `NEW` new records. Returns the
/// checkpoint store, the stream and the last sequence number read per shard.
async fn checkpoint_of_a_re_created_stream(
    id: &str,
) -> (CheckpointStore, TestStream, Vec<(String, String)>) {
    const OLD: usize = 20;
    let stream = TestStream::create("ws-recreate", 2).await;
    assert_eq!(
        write(aws(), &stream.name, &keyed_records(OLD, 10, 0)).await,
        OLD as u64
    );
    let store = CheckpointStore::memory();
    let collected = CollectSink::new();
    let first = read(id, &store, source(aws(), &stream.name), &collected, |n| {
        n >= OLD
    })
    .await;
    assert!(
        first.last_checkpoint.is_some(),
        "the stop took a checkpoint"
    );
    let mut last: Vec<(String, String)> = Vec::new();
    for (shard, sequence, ..) in collected.values() {
        match last.iter_mut().find(|(s, _)| *s == shard) {
            Some(entry) => entry.1 = sequence,
            None => last.push((shard, sequence)),
        }
    }
    assert_eq!(last.len(), 2, "both shards were read");
    stream
        .client
        .delete_stream()
        .stream_name(&stream.name)
        .send()
        .await
        .expect("DeleteStream");
    let name = stream.name.clone();
    let stream = recreate(&name).await;
    assert_eq!(
        write(aws(), &name, &keyed_records(NEW, 3, 1_000)).await,
        NEW as u64
    );
    (store, stream, last)
}

const NEW: usize = 4;

/// Creates the stream again once kinesis-mock has let go of the deleted one.
async fn recreate(name: &str) -> TestStream {
    let client = client().await;
    let deadline = Instant::now() + TIMEOUT;
    while client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "stream {name} is never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    TestStream::create_named(name, 1).await
}

/// Rule: by default, a checkpoint restored onto a stream deleted and re-created under the same
/// name (same shard ids, new sequence numbers; one shard fewer) fails within 10 s, naming
/// every shard position it cannot serve with its sequence number.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_checkpoint_restored_onto_a_re_created_stream_fails_naming_shards_and_sequences() {
    let (store, stream, last) = checkpoint_of_a_re_created_stream("recreated-fail").await;
    let error = run_to_error(
        "recreated-fail",
        &store,
        source(aws(), &stream.name),
        PROMPT,
    )
    .await;
    assert!(
        error.contains("out of range"),
        "says what is wrong: {error}"
    );
    for (shard, sequence) in &last {
        assert!(
            error.contains(shard.as_str()),
            "names shard {shard}: {error}"
        );
        assert!(
            error.contains(sequence.as_str()),
            "names sequence {sequence}: {error}"
        );
    }
    stream.delete().await;
}

/// Rule: with `OutOfRange::TrimHorizon`, that restore reads the re-created stream from its
/// oldest record — each new record once, none of the old — and counts each replaced or
/// forgotten shard position.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn with_trim_horizon_a_restore_onto_a_re_created_stream_reads_its_records_once() {
    let (store, stream, _) = checkpoint_of_a_re_created_stream("recreated-th").await;
    let source = KinesisSource::builder(&stream.name)
        .aws(aws())
        .on_position_out_of_range(OutOfRange::TrimHorizon)
        .build();
    let stats = source.stats();
    let collected = CollectSink::new();
    read("recreated-th", &store, source, &collected, |n| n >= NEW).await;
    let seen = collected.values();
    assert_once_and_ordered(&seen, NEW);
    assert!(seen.iter().all(|s| s.3.starts_with("key-")), "{seen:?}");
    let indices: Vec<usize> = seen
        .iter()
        .map(|s| {
            s.3.rsplit('|')
                .next()
                .and_then(|i| i.parse().ok())
                .expect("index")
        })
        .collect();
    assert!(
        indices.iter().all(|i| *i >= 1_000),
        "only the new stream's records: {indices:?}"
    );
    assert_eq!(
        stats.positions_out_of_range(),
        2,
        "both shard positions were replaced or forgotten"
    );
    stream.delete().await;
}

/// Rule: with a wrong endpoint, the source and the sink fail within 10 s with an error that
/// names the endpoint and the operation that could not reach it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_wrong_endpoint_fails_source_and_sink_within_10_s_naming_it() {
    const WRONG: &str = "http://127.0.0.1:1";
    let error = run_to_error(
        "unreachable",
        &CheckpointStore::memory(),
        source(aws_at(WRONG), "clicks"),
        PROMPT,
    )
    .await;
    assert!(
        error.contains(&format!("cannot reach Kinesis at {WRONG}")),
        "names the endpoint: {error}"
    );
    assert!(
        error.contains("ListShards on stream `clicks`"),
        "names the operation: {error}"
    );

    let sink = KinesisSink::builder("clicks").aws(aws_at(WRONG)).build();
    let input = GeneratorSource::sized(vec![3], |_, i| {
        Record::new(Bytes::from(format!("r{i}")), EventTime(i as i64))
    });
    let p = Pipeline::new(
        PipelineConfig::new(unique("unreachable-sink"))
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    p.source("input", input, WatermarkStrategy::none())
        .sink("kinesis", sink);
    let ended = tokio::time::timeout(PROMPT, p.run())
        .await
        .expect("the sink fails within 10 s");
    let error = ended
        .expect_err("an unreachable sink is an error")
        .to_string();
    assert!(
        error.contains(&format!("cannot reach Kinesis at {WRONG}")),
        "names the endpoint: {error}"
    );
    assert!(
        error.contains("on stream `clicks`"),
        "names the operation and stream: {error}"
    );
}
