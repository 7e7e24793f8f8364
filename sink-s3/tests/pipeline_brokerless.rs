//! The sink inside real pipelines, without brokers: exactly-once across injected crashes on the
//! in-memory store (multipart commits) and a local directory (staged commits), and the error
//! prefix as the pipeline's dead-letter sink.

mod common;

use common::{all_keys, epoch_of, final_objects, lines, HOUR, T0};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::{GeneratorPosition, GeneratorSource};
use watershed_core::*;
use watershed_sink_s3::{Compression, S3Sink};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Event {
    split: usize,
    i: u64,
}

const SPLITS: usize = 2;
const PER_SPLIT: u64 = 3000;

/// Fails after `crash_at` records, like a killed process, pausing between polls so that
/// checkpoints interleave with data.
struct CrashingSource {
    inner: GeneratorSource<Event>,
    crash_at: Option<u64>,
    emitted: u64,
}

#[async_trait]
impl Source for CrashingSource {
    type Item = Event;
    type Position = GeneratorPosition;

    async fn open(&mut self, restored: Option<GeneratorPosition>) -> Result<(), BoxError> {
        self.inner.open(restored).await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<Event>, BoxError> {
        if self.crash_at.is_some_and(|c| self.emitted >= c) {
            return Err("injected crash".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let e = self.inner.poll(max_wait).await?;
        if let SourceEvent::Batch { records, .. } = &e {
            self.emitted += records.len() as u64;
        }
        Ok(e)
    }

    fn position(&self) -> GeneratorPosition {
        self.inner.position()
    }
}

fn events() -> GeneratorSource<Event> {
    // 2 s of event time per record: 3000 records span ~1.7 hours, so objects roll on record
    // time and land in two or three hour partitions.
    GeneratorSource::new(SPLITS, PER_SPLIT, |split, i| {
        Record::new(Event { split, i }, EventTime(T0 + i as i64 * 2000))
    })
    .batch_size(50)
}

async fn run(
    sink: S3Sink<Event>,
    checkpoints: &CheckpointStore,
    crash_at: Option<u64>,
) -> Result<RunSummary> {
    let p = Pipeline::new(
        PipelineConfig::new("eo")
            .checkpoint_store(checkpoints.clone())
            .checkpoint_interval(Duration::from_millis(5))
            .handle_signals(false),
    );
    let source = CrashingSource {
        inner: events(),
        crash_at,
        emitted: 0,
    };
    p.source("gen", source, WatermarkStrategy::monotonous())
        .sink("s3", sink);
    p.run().await
}

/// Every (split, i) of the committed objects, with how often it appears.
async fn committed(store: &dyn ObjectStore) -> BTreeMap<(u64, u64), u32> {
    let mut seen = BTreeMap::new();
    for (key, body) in final_objects(store, "out").await {
        for v in lines(&key, &body) {
            let k = (v["split"].as_u64().unwrap(), v["i"].as_u64().unwrap());
            *seen.entry(k).or_default() += 1;
        }
    }
    seen
}

async fn assert_exactly_once_after_crashes(
    store: Arc<dyn ObjectStore>,
    make: impl Fn() -> S3Sink<Event>,
) {
    let checkpoints = CheckpointStore::memory();
    for crash_at in [1700, 1100, 900] {
        let crashed = run(make(), &checkpoints, Some(crash_at)).await;
        assert!(
            crashed.is_err(),
            "the injected crash at {crash_at} stops the run"
        );
    }
    let summary = run(make(), &checkpoints, None).await.unwrap();
    assert!(
        summary.records_in < SPLITS as u64 * PER_SPLIT,
        "the last run resumed from a checkpoint ({} records read)",
        summary.records_in
    );
    let seen = committed(store.as_ref()).await;
    assert_eq!(
        seen.len() as u64,
        SPLITS as u64 * PER_SPLIT,
        "no record lost"
    );
    assert!(seen.values().all(|&n| n == 1), "no record duplicated");
    let last = checkpoints.latest("eo").await.unwrap().unwrap().id.0;
    for key in all_keys(store.as_ref(), "out").await {
        assert!(
            !key.contains("/_staging/"),
            "nothing stays staged after the final commit: {key}"
        );
        assert!(
            epoch_of(&key) <= last,
            "{key} belongs to no completed checkpoint (last {last})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_commits_give_exactly_once_across_crashes_and_restarts() {
    let store = Arc::new(InMemory::new());
    let dynamic: Arc<dyn ObjectStore> = store.clone();
    assert_exactly_once_after_crashes(dynamic, || {
        S3Sink::s3(store.clone(), "out")
            .compression(Compression::Gzip)
            .max_object_span(Some(Duration::from_secs(600)))
            .build()
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_commits_to_a_local_directory_give_exactly_once_across_crashes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    assert_exactly_once_after_crashes(store.clone(), || {
        S3Sink::builder(store.clone(), "out")
            .compression(Compression::Zstd)
            .max_object_records(500)
            .build()
            .unwrap()
    })
    .await;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Reading {
    id: u32,
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_records_go_to_the_error_prefix_with_their_reason_and_good_ones_are_unaffected() {
    let store = Arc::new(InMemory::new());
    let p = Pipeline::new(
        PipelineConfig::new("dlq")
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    // Every 10th payload is not JSON.
    let source = GeneratorSource::new(1, 100, |_, i| {
        let payload = if i % 10 == 3 {
            format!("not json {i}")
        } else {
            format!("{{\"id\":{i}}}")
        };
        Record::new(
            bytes::Bytes::from(payload),
            EventTime(T0 + i as i64 * HOUR / 50),
        )
    });
    p.source("raw", source, WatermarkStrategy::none())
        .apply(
            "decode",
            FnOperator::new(|batch: Batch<bytes::Bytes>, out: &mut Collector<Reading>| {
                for r in batch {
                    match serde_json::from_slice::<Reading>(&r.value) {
                        Ok(v) => out.emit(r.map(|_| v)),
                        Err(e) => out.reject(
                            DeadLetter::new(e.to_string(), r.value.clone())
                                .at(r.origin.clone(), r.timestamp),
                        ),
                    }
                }
            }),
        )
        .sink("good", S3Sink::s3(store.clone(), "good").build().unwrap());
    p.dead_letter(
        "errors",
        S3Sink::s3_dead_letters(store.clone(), "errors")
            .build()
            .unwrap(),
    );
    let summary = p.run().await.unwrap();
    assert_eq!(summary.rejected, 10);

    let mut good: Vec<u64> = Vec::new();
    for (key, body) in final_objects(store.as_ref(), "good").await {
        good.extend(lines(&key, &body).iter().map(|v| v["id"].as_u64().unwrap()));
    }
    good.sort_unstable();
    assert_eq!(good, (0..100).filter(|i| i % 10 != 3).collect::<Vec<_>>());

    let errors = final_objects(store.as_ref(), "errors").await;
    assert!(errors
        .iter()
        .all(|(k, _)| k.starts_with("errors/dt=2025-11-25/hour=")));
    let mut bad: Vec<serde_json::Value> = errors.iter().flat_map(|(k, b)| lines(k, b)).collect();
    bad.sort_by_key(|v| v["timestamp"].as_i64());
    assert_eq!(bad.len(), 10);
    for (n, v) in bad.iter().enumerate() {
        let i = n * 10 + 3;
        assert_eq!(v["payload"], format!("not json {i}"));
        assert!(v["reason"].as_str().unwrap().contains("expected"), "{v}");
        assert_eq!(v["node"], "decode");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]

    /// Rule (S1–S3, property): for any crash point, object size and commit mode, a crash
    /// followed by a restart from the latest complete checkpoint commits every record exactly
    /// once and leaves nothing staged.
    #[test]
    fn any_crash_point_and_rolling_setting_gives_exactly_once(
        cut in 1u64..6000,
        per_object in 50u64..2000,
        multipart in proptest::bool::ANY,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let memory = Arc::new(InMemory::new());
            let store: Arc<dyn ObjectStore> = memory.clone();
            let make = || {
                let builder = if multipart {
                    S3Sink::s3(memory.clone(), "out")
                } else {
                    S3Sink::builder(store.clone(), "out")
                };
                builder.max_object_records(per_object).build().unwrap()
            };
            let checkpoints = CheckpointStore::memory();
            let crashed = run(make(), &checkpoints, Some(cut)).await;
            assert!(crashed.is_err());
            run(make(), &checkpoints, None).await.unwrap();
            let seen = committed(store.as_ref()).await;
            assert_eq!(seen.len() as u64, SPLITS as u64 * PER_SPLIT, "no record lost");
            assert!(seen.values().all(|&n| n == 1), "no record duplicated");
            assert!(all_keys(store.as_ref(), "out")
                .await
                .iter()
                .all(|k| !k.contains("/_staging/")));
        });
    }
}
