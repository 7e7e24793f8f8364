//! Lambda's tumbling windows: state carried in events and responses between invocations.

mod common;

use bytes::Bytes;
use common::record;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::{
    CheckpointStore, DeadLetter, EventTime, Pipeline, PipelineConfig, Record, Stream,
    TumblingWindows, WatermarkStrategy,
};
use watershed_examples::analytics::{ClickEvent, ClickSpec, PageAggregate};
use watershed_lambda::{LambdaError, MemoryTarget, TumblingWindowHandler};
use watershed_operators::{prelude::*, Count, WindowResult};

const WINDOW_MS: i64 = 60_000;

/// Clicks as they arrive at one shard: (arrival ms, payload), in arrival order.
fn arrivals(events: u64) -> Vec<(i64, Vec<u8>)> {
    let spec = ClickSpec {
        events,
        span: Duration::from_secs(300),
        malformed_every: 13,
        ..ClickSpec::default()
    };
    let mut clicks: Vec<(i64, Vec<u8>)> = (0..events)
        .map(|n| {
            let at = spec.event(n).map_or(spec.start.0 + n as i64, |e| e.ts);
            (at, spec.payload(n).1)
        })
        .collect();
    clicks.sort_by_key(|(at, _)| *at);
    clicks
}

fn clicks(raw: Stream<Bytes>) -> Stream<ClickEvent> {
    raw.decode_json::<ClickEvent>()
        .filter(|e: &ClickEvent| !e.is_bot())
}

fn iso(ms: i64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An invocation of a tumbling window as the event source mapping sends it.
fn window_event(
    records: Vec<Value>,
    start: i64,
    state: &HashMap<String, String>,
    last: bool,
) -> Value {
    json!({
        "Records": records,
        "window": { "start": iso(start), "end": iso(start + WINDOW_MS) },
        "state": state,
        "shardId": "shardId-000000000003",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks",
        "isFinalInvokeForWindow": last,
        "isWindowTerminatedEarly": false
    })
}

type PageResult = WindowResult<String, (u64, u64)>;

/// Runs the clicks through Lambda's tumbling windows: per window, invocations of `batch`
/// records each carrying the previous response's state, then the final invocation.
async fn through_lambda(arrived: &[(i64, Vec<u8>)], batch: usize) -> (Vec<PageResult>, usize) {
    let results = MemoryTarget::<PageResult>::new();
    let letters = MemoryTarget::<DeadLetter>::new();
    let handler = TumblingWindowHandler::new(
        "pages",
        clicks,
        |e: &ClickEvent| e.page.clone(),
        PageAggregate,
        results.clone(),
    )
    .dead_letters(letters.clone());
    let mut by_window: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for (i, (at, payload)) in arrived.iter().enumerate() {
        let rec = record("shardId-000000000003", i, "k", payload, *at as f64 / 1000.0);
        by_window
            .entry(at.div_euclid(WINDOW_MS) * WINDOW_MS)
            .or_default()
            .push(rec);
    }
    for (start, records) in by_window {
        let mut state = HashMap::new();
        for chunk in records.chunks(batch) {
            let response = handler
                .handle(&window_event(chunk.to_vec(), start, &state, false))
                .await
                .unwrap();
            state = response.state;
        }
        let last = handler
            .handle(&window_event(vec![], start, &state, true))
            .await
            .unwrap();
        assert!(
            last.state.is_empty(),
            "the final invocation ends the window's state"
        );
    }
    (
        results.records().into_iter().map(|r| r.value).collect(),
        letters.records().len(),
    )
}

/// The same clicks through a long-running pipeline whose event time is the arrival time.
async fn through_pipeline(arrived: &[(i64, Vec<u8>)]) -> (Vec<PageResult>, usize) {
    let input = arrived.to_vec();
    let pipeline = Pipeline::new(
        PipelineConfig::new("pages")
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    let raw = pipeline.source(
        "clicks",
        GeneratorSource::new(1, input.len() as u64, move |_, i| {
            let (at, payload) = &input[i as usize];
            Record::new(Bytes::from(payload.clone()), EventTime(*at))
        }),
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO),
    );
    let results = CollectSink::new();
    let letters = CollectSink::<DeadLetter>::new();
    clicks(raw)
        .key_by(|e: &ClickEvent| e.page.clone())
        .window(TumblingWindows::of(Duration::from_millis(WINDOW_MS as u64)))
        .aggregate(PageAggregate)
        .sink("results", results.clone());
    pipeline.dead_letter("dead-letters", letters.clone());
    pipeline.run().await.unwrap();
    (results.values(), letters.values().len())
}

fn by_key(results: Vec<PageResult>) -> BTreeMap<(String, i64, i64), (u64, u64)> {
    results
        .into_iter()
        .map(|r| ((r.key, r.window.start.0, r.window.end.0), r.value))
        .collect()
}

/// Rule: the window state carried across invocations gives the same per-window results (and
/// the same dead letters) as the long-running pipeline on the same records, whatever the
/// batch size.
#[tokio::test]
async fn tumbling_window_state_across_invocations_equals_the_long_running_pipeline() {
    let arrived = arrivals(600);
    let (expected, expected_letters) = through_pipeline(&arrived).await;
    let expected = by_key(expected);
    assert!(
        expected.len() > 20 && expected_letters > 10,
        "a meaningful comparison"
    );
    for batch in [1, 7, 100, 1000] {
        let (results, letters) = through_lambda(&arrived, batch).await;
        assert_eq!(
            results.len(),
            expected.len(),
            "one result per page and window (batch {batch})"
        );
        assert_eq!(by_key(results), expected, "batch size {batch}");
        assert_eq!(letters, expected_letters, "batch size {batch}");
    }
}

/// Rule: a state above the limit fails the invocation with an error naming the shard, the
/// size and the limit, instead of a response Lambda would refuse.
#[tokio::test]
async fn a_state_above_the_limit_is_a_clear_error() {
    let handler = TumblingWindowHandler::new(
        "pages",
        |raw: Stream<Bytes>| raw.decode_json::<String>(),
        |page: &String| page.clone(),
        Count,
        MemoryTarget::new(),
    )
    .state_limit(200);
    let records: Vec<Value> = (0..50)
        .map(|i| {
            record(
                "shardId-000000000003",
                i,
                "k",
                format!("\"/page/{i}\"").as_bytes(),
                1.0,
            )
        })
        .collect();
    let err = handler
        .handle(&window_event(records, 0, &HashMap::new(), false))
        .await
        .expect_err("too large");
    assert!(
        matches!(err, LambdaError::StateTooLarge { limit: 200, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("shardId-000000000003") && message.contains("200 bytes"),
        "{message}"
    );
}

/// Rule: a state in the event that the aggregator cannot read is refused naming the key.
#[tokio::test]
async fn an_unreadable_state_is_refused_naming_the_key() {
    let handler = TumblingWindowHandler::new(
        "pages",
        |raw: Stream<Bytes>| raw.decode_json::<String>(),
        |page: &String| page.clone(),
        Count,
        MemoryTarget::new(),
    );
    let state = HashMap::from([("\"/page/1\"".to_string(), "not a number".to_string())]);
    let err = handler
        .handle(&window_event(vec![], 0, &state, true))
        .await
        .expect_err("bad state");
    assert!(matches!(err, LambdaError::BadState { .. }), "{err:?}");
    assert!(err.to_string().contains("/page/1"), "{err}");
}
