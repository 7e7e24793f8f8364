//! Event time in the shared analytics cannot be moved by a record that does not decode, nor
//! by one from a producer whose clock is far ahead: every valid click after them is counted.

use bytes::Bytes;
use object_store::memory::InMemory;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_examples::analytics::{
    analytics, click_watermarks, page_categories, ClickEvent, PageStats,
};

const START: i64 = 1_795_564_800_000;

fn click(n: u64, ts: i64) -> Bytes {
    let c = ClickEvent {
        user: n as u32,
        page: format!("/page/{}", n % 7),
        ts,
        status: 200,
        agent: "Mozilla/5.0".into(),
    };
    Bytes::from(serde_json::to_vec(&c).unwrap())
}

/// Input: 1,000 valid clicks, a malformed record carrying a `ts` an hour later, a valid click
/// stamped two hours ahead of the wall clock, then 5,000 more valid clicks, 20 ms apart in
/// event time from `START`.
fn payload(n: u64) -> Bytes {
    match n {
        1_000 => Bytes::from(format!(
            "{{\"user\":1,\"page\":\"/page/1\",\"ts\":{},\"status\":200,\"agent\"",
            START + 3_600_000
        )),
        1_001 => click(n, EventTime::now().millis() + 2 * 3_600_000),
        n => click(n, START + 20 * n as i64),
    }
}

/// Rule: a malformed record carrying a `ts` an hour ahead and a valid click two hours ahead
/// of the wall clock both go to the dead letters, and all 6,000 other clicks are counted.
#[tokio::test]
async fn records_that_do_not_decode_or_are_far_ahead_do_not_make_later_clicks_late() {
    let p = Pipeline::new(
        PipelineConfig::new("event-time")
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_millis(20))
            .handle_signals(false),
    );
    let source = GeneratorSource::new(1, 6_002, |_, n| Record::new(payload(n), EventTime::MIN))
        .batch_size(50);
    let raw = p.source("clicks", source, click_watermarks());
    let categories = page_categories(
        Arc::new(InMemory::new()),
        "reference/page-categories.csv",
        7,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let out = analytics(raw, &categories);
    let stats = CollectSink::<PageStats>::new();
    let dead = CollectSink::<DeadLetter>::new();
    out.page_stats.sink("stats", stats.clone());
    out.category_stats.sink("categories", CollectSink::new());
    out.error_rates.sink("rates", CollectSink::new());
    p.dead_letter("dead", dead.clone());
    p.run().await.unwrap();

    let views: u64 = stats.values().iter().map(|s| s.views).sum();
    assert_eq!(views, 6_000, "every valid click is counted");
    let reasons: Vec<String> = dead.values().into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("ahead of processing time")),
        "{reasons:?}"
    );
}
