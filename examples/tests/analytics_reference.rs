//! The shared analytics against a reference computed directly from the generated input,
//! brokerless: bots dropped, late events dropped, malformed events dead-lettered, categories
//! from the reference table (written to an in-memory object store, as the examples do in S3).

use bytes::Bytes;
use object_store::memory::InMemory;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_examples::analytics::{
    analytics, event_time_of, page_categories, CategoryStats, ClickSpec, ErrorRate, PageStats,
};

#[tokio::test]
async fn analytics_counts_equal_the_reference_with_bots_late_and_malformed_events_and_categories() {
    let spec = ClickSpec {
        events: 30_000,
        late_every: 97,
        ..Default::default()
    };
    let p = Pipeline::new(
        PipelineConfig::new("analytics-reference")
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_millis(20))
            .parallelism(2)
            .handle_signals(false),
    );
    let source = GeneratorSource::new(1, spec.events, move |_, n| {
        Record::new(Bytes::from(spec.payload(n).1), EventTime::MIN)
    });
    let raw = p.source(
        "clicks",
        source,
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(5))
            .with_timestamps(event_time_of),
    );
    let categories = page_categories(
        Arc::new(InMemory::new()),
        "reference/page-categories.csv",
        spec.pages,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(categories.current().len() as u64, spec.pages - 1);
    let out = analytics(raw, &categories);
    let stats = CollectSink::<PageStats>::new();
    let by_category = CollectSink::<CategoryStats>::new();
    out.category_stats.sink("categories", by_category.clone());
    let rates = CollectSink::<ErrorRate>::new();
    let dead = CollectSink::<DeadLetter>::new();
    out.page_stats.sink("stats", stats.clone());
    out.error_rates.sink("rates", rates.clone());
    p.dead_letter("dead", dead.clone());
    p.run().await.unwrap();

    let got: std::collections::BTreeMap<(String, i64), (u64, u64)> = stats
        .values()
        .into_iter()
        .map(|s| ((s.page, s.window_start), (s.views, s.unique_users)))
        .collect();
    assert_eq!(
        got.len(),
        stats.values().len(),
        "a window was emitted twice"
    );
    assert_eq!(got, spec.reference());
    assert_eq!(
        dead.values().len() as u64,
        spec.events / spec.malformed_every
    );
    let requests: u64 = rates.values().iter().map(|r| r.requests).sum();
    let views: u64 = got.values().map(|v| v.0).sum();
    assert_eq!(requests, views, "error rates count the same requests");
    let got_categories: std::collections::BTreeMap<(String, i64), u64> = by_category
        .values()
        .into_iter()
        .map(|c| ((c.category, c.window_start), c.views))
        .collect();
    let expected = spec.category_reference();
    assert!(
        expected.keys().any(|(c, _)| c == "unknown"),
        "the reference has pages missing from the table"
    );
    assert_eq!(got_categories, expected);
}
