//! The JSON endpoints report what the Prometheus rendering says, under the graph's node names,
//! and the server answers every path and method without panicking. No broker: metrics come
//! from a local recorder, fed by hand or by a small in-process pipeline.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_status::{CheckpointsView, MetricsView, StatusPage};

fn numbers(splits: usize, per_split: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(splits, per_split, |s, i| {
        Record::new(i * 10 + s as u64, EventTime(i as i64))
    })
    .batch_size(16)
}

fn identity() -> FnOperator<u64, u64, impl FnMut(Batch<u64>, &mut Collector<u64>) + Send + 'static>
{
    FnOperator::new(|b: Batch<u64>, out: &mut Collector<u64>| out.emit_all(b))
}

/// numbers → keyed `counts` ×2 (behind its exchange) → `out`, and a dead-letter sink.
fn small_pipeline(id: &str) -> (Pipeline, CollectSink<u64>) {
    let pipeline = Pipeline::new(
        PipelineConfig::new(id)
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_millis(5))
            .parallelism(2)
            .handle_signals(false),
    );
    let out = CollectSink::new();
    pipeline
        .source("numbers", numbers(2, 500), WatermarkStrategy::monotonous())
        .key_by(|v: &u64| *v % 5)
        .process("counts", |_| identity())
        .sink("out", out.clone());
    pipeline.dead_letter("dead-letters", CollectSink::<DeadLetter>::new());
    (pipeline, out)
}

fn json_of(page: &StatusPage, path: &str) -> Value {
    let reply = page.respond("GET", path);
    assert_eq!(reply.status, 200, "{path}");
    assert_eq!(reply.content_type, "application/json", "{path}");
    serde_json::from_slice(&reply.body).unwrap()
}

/// Metrics as the runtime and the Kafka and Kinesis sources name them, recorded by hand.
fn record_known_metrics(recorder: &PrometheusRecorder) {
    metrics::with_local_recorder(recorder, || {
        metrics::counter!("watershed_records_in_total", "node" => "numbers").increment(1000);
        metrics::counter!("watershed_records_rejected_total", "node" => "counts.0").increment(2);
        metrics::counter!("watershed_records_rejected_total", "node" => "counts.1").increment(3);
        metrics::counter!("watershed_records_out_total", "node" => "out").increment(995);
        metrics::counter!("watershed_records_out_total", "node" => "dead-letters").increment(5);
        // What an operator receives and emits is neither the pipeline's input nor its output.
        metrics::counter!("watershed_operator_records_in_total", "node" => "counts.0")
            .increment(400);
        metrics::counter!("watershed_operator_records_in_total", "node" => "counts.1")
            .increment(600);
        metrics::counter!("watershed_operator_records_out_total", "node" => "counts.1")
            .increment(595);
        metrics::counter!("watershed_backpressure_microseconds_total", "node" => "counts.shuffle")
            .increment(2_500_000);
        metrics::gauge!("watershed_sink_pending_commits", "node" => "out").set(1.0);
        metrics::gauge!("watershed_event_time_skew_seconds", "node" => "numbers").set(3.5);
        let watermark = |split: &str| metrics::gauge!("watershed_split_watermark_seconds", "node" => "numbers", "split" => split.to_string());
        watermark("1").set(1_700_000_000.5);
        watermark("0").set(1_700_000_001.0);
        watermark("2").set(f64::NAN);
        metrics::gauge!("watershed_kafka_consumer_lag", "topic" => "clicks", "partition" => "1")
            .set(42.0);
        metrics::gauge!("watershed_kinesis_millis_behind_latest", "stream" => "clicks", "shard" => "shardId-0")
            .set(1500.0);
        let pipeline = "known";
        metrics::counter!("watershed_checkpoints_total", "pipeline" => pipeline).increment(2);
        metrics::gauge!("watershed_checkpoint_last_completed_seconds", "pipeline" => pipeline)
            .set(1_000.0);
        let duration =
            metrics::histogram!("watershed_checkpoint_duration_seconds", "pipeline" => pipeline);
        duration.record(0.25);
        duration.record(0.75);
    });
}

/// Rule: `/api/metrics` sums a keyed operator's instances under its graph name, lists every
/// graph node (zeros until it reports), counts dead letters apart from the output and
/// operators' records apart from input and output, reports back-pressure, sinks' pending
/// commits and sources' event-time skew, and
/// reports Kafka and Kinesis lag per split; `/api/checkpoints` gives count, last completion,
/// age and the duration distribution; `/api/graph` is `describe()`.
#[test]
fn json_endpoints_report_the_rendered_metrics_under_graph_names() {
    let recorder = PrometheusBuilder::new().build_recorder();
    record_known_metrics(&recorder);
    let (pipeline, _) = small_pipeline("known");
    let page = StatusPage::new(recorder.handle(), pipeline.describe());

    let graph = json_of(&page, "/api/graph");
    assert_eq!(graph, serde_json::to_value(pipeline.describe()).unwrap());

    let raw = json_of(&page, "/api/metrics");
    for field in ["pipeline", "unix_seconds", "nodes", "splits", "totals"] {
        assert!(
            raw.get(field).is_some(),
            "/api/metrics has `{field}`: {raw}"
        );
    }
    let metrics: MetricsView = serde_json::from_value(raw).unwrap();
    assert_eq!(metrics.nodes["numbers"].records_in, 1000.0);
    assert_eq!(metrics.nodes["counts"].rejected, 5.0);
    assert_eq!(metrics.nodes["counts.shuffle"].records_in, 0.0);
    assert_eq!(metrics.nodes["counts"].records_in, 1000.0);
    assert_eq!(metrics.nodes["counts"].records_out, 595.0);
    assert_eq!(metrics.nodes["counts.shuffle"].backpressure_seconds, 2.5);
    assert_eq!(metrics.nodes["out"].pending_commits, 1.0);
    assert_eq!(metrics.nodes["numbers"].event_time_skew_seconds, 3.5);
    assert_eq!(
        metrics.totals.records_in, 1000.0,
        "the source's records only"
    );
    let watermarks: Vec<_> = metrics
        .watermarks
        .iter()
        .map(|w| (w.node.as_str(), w.split.as_str(), w.watermark_unix_seconds))
        .collect();
    assert_eq!(
        watermarks,
        [
            ("numbers", "0", 1_700_000_001.0),
            ("numbers", "1", 1_700_000_000.5)
        ],
        "a split no longer read (NaN) is left out"
    );
    assert_eq!(metrics.nodes["out"].records_out, 995.0);
    assert_eq!(metrics.nodes["numbers"].records_in_per_second, None);
    assert_eq!(metrics.totals.records_out, 995.0);
    assert_eq!(metrics.totals.dead_letters, 5.0);
    assert_eq!(metrics.totals.rejected, 5.0);
    let splits: Vec<_> = metrics
        .splits
        .iter()
        .map(|s| (s.source.as_str(), s.split.as_str(), s.lag, s.unit.as_str()))
        .collect();
    assert_eq!(
        splits,
        [
            ("kafka", "clicks/1", 42.0, "records"),
            ("kinesis", "clicks/shardId-0", 1500.0, "milliseconds")
        ]
    );

    let checkpoints: CheckpointsView =
        serde_json::from_value(json_of(&page, "/api/checkpoints")).unwrap();
    assert_eq!(checkpoints.completed, 2.0);
    assert_eq!(checkpoints.last_completed_unix_seconds, Some(1_000.0));
    assert!(checkpoints.age_seconds.unwrap() > 1_000_000.0);
    assert_eq!(checkpoints.duration_seconds.count, 2.0);
    assert_eq!(checkpoints.duration_seconds.sum, 1.0);
    assert_eq!(checkpoints.last_duration_seconds, Some(0.5));
}

/// Rule: for a pipeline that ran in this process, the endpoints agree with its run summary:
/// records in at the source, out at the sink, completed checkpoints.
#[test]
fn json_endpoints_agree_with_a_pipeline_run_in_process() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let (pipeline, out) = small_pipeline("in-process");
    let page = StatusPage::new(recorder.handle(), pipeline.describe());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One thread, so every task records into the local recorder.
    let summary =
        metrics::with_local_recorder(&recorder, || runtime.block_on(pipeline.run())).unwrap();
    let metrics = page.metrics();
    assert_eq!(
        metrics.nodes["numbers"].records_in,
        summary.records_in as f64
    );
    assert_eq!(metrics.nodes["out"].records_out, out.values().len() as f64);
    assert_eq!(metrics.totals.records_out, summary.records_out as f64);
    assert_eq!(metrics.totals.records_in, summary.records_in as f64);
    // Every record reaches the keyed operator and passes through it.
    assert_eq!(
        metrics.nodes["counts"].records_in,
        summary.records_in as f64
    );
    assert_eq!(
        metrics.nodes["counts"].records_out,
        out.values().len() as f64
    );
    assert_eq!(metrics.nodes["out"].pending_commits, 0.0, "all committed");
    let splits: Vec<&str> = metrics
        .watermarks
        .iter()
        .map(|w| w.split.as_str())
        .collect();
    assert_eq!(splits.len(), 2, "both splits' watermarks: {splits:?}");
    let checkpoints = page.checkpoints();
    assert_eq!(checkpoints.completed, summary.checkpoints as f64);
    assert!(checkpoints.completed >= 1.0, "a final checkpoint at least");
    assert!(checkpoints.age_seconds.unwrap() < 60.0);
    assert!(checkpoints.last_duration_seconds.is_some());
}

async fn http(address: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

/// Rule: over HTTP, the page, the Prometheus text and the JSON come with their content types;
/// an unknown path is 404, another method 405, a malformed request 400, and the server keeps
/// answering after each.
#[tokio::test]
async fn the_server_answers_known_paths_and_refuses_bad_requests() {
    let recorder = PrometheusBuilder::new().build_recorder();
    record_known_metrics(&recorder);
    let (pipeline, _) = small_pipeline("known");
    let page = StatusPage::new(recorder.handle(), pipeline.describe());
    let address = page.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();

    let index = http(address, &get("/")).await;
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(index.contains("content-type: text/html"), "{index}");
    assert!(
        index.contains("<svg") || index.contains("api/graph"),
        "{index}"
    );
    let prometheus = http(address, &get("/metrics")).await;
    assert!(
        prometheus.contains("text/plain; version=0.0.4"),
        "{prometheus}"
    );
    assert!(
        prometheus.contains("watershed_records_in_total{node=\"numbers\"} 1000"),
        "{prometheus}"
    );
    let api = http(address, &get("/api/metrics?x=1")).await;
    assert!(
        api.starts_with("HTTP/1.1 200") && api.contains("application/json"),
        "{api}"
    );

    let missing = http(address, &get("/api/nothing")).await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post = http(
        address,
        "POST /api/graph HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let garbage = http(address, "\u{1}\u{2} nonsense\r\n\r\n").await;
    assert!(
        garbage.starts_with("HTTP/1.1 400") || garbage.is_empty(),
        "{garbage}"
    );
    let head = http(
        address,
        "HEAD /api/graph HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let again = http(address, &get("/api/checkpoints")).await;
    assert!(again.starts_with("HTTP/1.1 200"), "still serving: {again}");
}

/// Rule: a node whose next task cannot keep up reports back-pressure: the source of a
/// pipeline whose next operator is slow (its own task, behind a one-batch channel) waited,
/// and the page says for how long; the fast operator downstream of it did not.
#[test]
fn a_slow_operator_shows_as_back_pressure_on_the_node_before_it() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let pipeline = Pipeline::new(
        PipelineConfig::new("slow")
            .checkpoint_store(CheckpointStore::memory())
            .channel_capacity(1)
            .handle_signals(false),
    );
    pipeline
        .source("numbers", numbers(1, 320), WatermarkStrategy::none())
        .start_new_chain()
        .apply(
            "slow",
            FnOperator::new(|b: Batch<u64>, out: &mut Collector<u64>| {
                // Blocks the (single) runtime thread, as CPU-heavy work would.
                std::thread::sleep(Duration::from_millis(5));
                out.emit_all(b)
            }),
        )
        .sink("out", CollectSink::new());
    let page = StatusPage::new(recorder.handle(), pipeline.describe());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(pipeline.run())).unwrap();
    let metrics = page.metrics();
    // 20 batches of 16, 5 ms each: the source waits for most of the ~100 ms.
    let waited = metrics.nodes["numbers"].backpressure_seconds;
    assert!(waited >= 0.02, "the source waited {waited} s");
    assert_eq!(metrics.nodes["slow"].backpressure_seconds, 0.0);
    assert_eq!(metrics.nodes["slow"].records_in, 320.0);
    assert_eq!(metrics.nodes["slow"].records_out, 320.0);
}

/// Rule: the page given the pipeline's recent rejections lists the latest ones with the node
/// that rejected them and the reason (and the record's origin, when its source gives one), in
/// `/api/metrics`.
#[test]
fn the_latest_rejections_are_listed_with_node_and_reason() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let pipeline = Pipeline::new(
        PipelineConfig::new("rejecting")
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    pipeline
        .source("numbers", numbers(1, 100), WatermarkStrategy::none())
        .apply(
            "checks",
            FnOperator::new(|b: Batch<u64>, out: &mut Collector<u64>| {
                for r in b {
                    if r.value % 400 == 390 {
                        let reason = format!("{} is not allowed", r.value);
                        let dead = DeadLetter::new(reason, r.value.to_string());
                        out.reject(dead.at(r.origin.clone(), r.timestamp));
                    } else {
                        out.emit(r);
                    }
                }
            }),
        )
        .sink("out", CollectSink::new());
    pipeline.dead_letter("dead-letters", CollectSink::<DeadLetter>::new());
    let page = StatusPage::new(recorder.handle(), pipeline.describe())
        .with_rejections(pipeline.recent_rejections());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(pipeline.run())).unwrap();
    let metrics: MetricsView = serde_json::from_value(json_of(&page, "/api/metrics")).unwrap();
    let latest: Vec<(&str, &str)> = metrics
        .latest_rejections
        .iter()
        .map(|r| (r.node.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        latest,
        [
            ("checks", "390 is not allowed"),
            ("checks", "790 is not allowed")
        ]
    );
    assert_eq!(metrics.totals.rejected, 2.0);
}
