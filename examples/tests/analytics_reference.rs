//! The shared analytics against a reference computed directly from the generated input,
//! brokerless: bots dropped, late events dropped, malformed events dead-lettered.

use bytes::Bytes;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_examples::analytics::{analytics, event_time_of, ClickSpec, ErrorRate, PageStats};

#[tokio::test]
async fn analytics_counts_equal_the_reference_with_bots_late_and_malformed_events() {
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
    let out = analytics(raw);
    let stats = CollectSink::<PageStats>::new();
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
}
