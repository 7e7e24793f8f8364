//! The exactly-once sink suite, run against core's sinks, and against sinks broken on purpose
//! to show that it catches each kind of breakage.

use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use watershed_core::connectors::{CollectSink, LocalDirSink};
use watershed_core::{Batch, BoxError, CheckpointId, Sink};
use watershed_testkit::{SinkSuite, TestkitError, SINK_RULES};

fn collect_suite(sink: CollectSink<u64>) -> SinkSuite<CollectSink<u64>> {
    let reader = sink.clone();
    SinkSuite::new(
        move || sink.clone(),
        |n| n,
        move || {
            let values = reader.values();
            async move { Ok(values) }
        },
    )
}

/// Reads every committed JSON-lines file of a `LocalDirSink` directory (not `.inprogress/`).
async fn committed_lines(dir: PathBuf) -> Result<Vec<u64>, BoxError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path)?.lines() {
                out.push(serde_json::from_str(line)?);
            }
        }
    }
    Ok(out)
}

/// Rule: core's `CollectSink` passes every rule of the exactly-once sink suite that applies to
/// it (it refuses nothing).
#[tokio::test]
async fn collect_sink_is_exactly_once() {
    let checked = collect_suite(CollectSink::new()).run().await.unwrap();
    assert_eq!(checked, SINK_RULES[..5].to_vec());
}

/// Rule: core's `LocalDirSink` passes the exactly-once sink suite.
#[tokio::test]
async fn local_dir_sink_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let read = path.clone();
    let checked = SinkSuite::new(
        move || LocalDirSink::<u64>::new(path.clone()),
        |n| n,
        move || committed_lines(read.clone()),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(checked.len(), 5);
}

/// A sink broken on purpose, one way at a time.
#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    /// None: a correct sink.
    None,
    /// Writes straight to the destination (at-least-once, no transaction).
    VisibleAtWrite,
    /// Appends the handle's records on every commit, repeated or not.
    CommitNotIdempotent,
    /// Keeps what abort should discard.
    AbortKeeps,
    /// Refuses odd-flagged records in `take_rejected` but delivers them too.
    DeliversRefused,
}

struct Flawed {
    flaw: Flaw,
    visible: Arc<Mutex<Vec<u64>>>,
    epoch: Vec<u64>,
    rejected: Vec<watershed_core::DeadLetter>,
}

#[async_trait]
impl Sink for Flawed {
    type Item = u64;
    type Handle = Vec<u64>;

    async fn write(&mut self, batch: Batch<u64>) -> Result<(), BoxError> {
        for r in batch {
            if r.value >= 1_000 {
                self.rejected.push(watershed_core::DeadLetter {
                    reason: "too big".into(),
                    payload: Default::default(),
                    origin: None,
                    timestamp: r.timestamp,
                    node: String::new(),
                });
                if self.flaw != Flaw::DeliversRefused {
                    continue;
                }
            }
            if self.flaw == Flaw::VisibleAtWrite {
                self.visible.lock().unwrap().push(r.value % 1_000);
            } else {
                self.epoch.push(r.value % 1_000);
            }
        }
        Ok(())
    }

    fn take_rejected(&mut self) -> Vec<watershed_core::DeadLetter> {
        std::mem::take(&mut self.rejected)
    }

    async fn pre_commit(&mut self, _: CheckpointId) -> Result<Vec<u64>, BoxError> {
        Ok(std::mem::take(&mut self.epoch))
    }

    async fn commit(&mut self, _: CheckpointId, handle: Vec<u64>) -> Result<(), BoxError> {
        let mut visible = self.visible.lock().unwrap();
        if self.flaw == Flaw::CommitNotIdempotent || !visible.iter().any(|v| handle.contains(v)) {
            visible.extend(handle);
        }
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        if self.flaw != Flaw::AbortKeeps {
            self.epoch.clear();
        }
        Ok(())
    }
}

async fn run_flawed(flaw: Flaw) -> Result<Vec<&'static str>, TestkitError> {
    let visible = Arc::new(Mutex::new(Vec::new()));
    let (shared, reader) = (visible.clone(), visible);
    SinkSuite::new(
        move || Flawed {
            flaw,
            visible: shared.clone(),
            epoch: Vec::new(),
            rejected: Vec::new(),
        },
        |n| n,
        move || {
            let seen = reader.lock().unwrap().clone();
            async move { Ok(seen) }
        },
    )
    .refused_item(|n| n + 1_000)
    .run()
    .await
}

fn broken_rule(r: Result<Vec<&'static str>, TestkitError>) -> &'static str {
    match r {
        Err(TestkitError::Conformance { rule, .. }) => rule,
        other => panic!("expected a broken rule, got {other:?}"),
    }
}

/// Rule: the suite catches a sink that makes records visible before their epoch commits.
#[tokio::test]
async fn the_suite_catches_output_visible_before_commit() {
    assert_eq!(
        broken_rule(run_flawed(Flaw::VisibleAtWrite).await),
        SINK_RULES[0]
    );
}

/// Rule: the suite catches a commit that delivers again when repeated after a crash.
#[tokio::test]
async fn the_suite_catches_a_commit_that_is_not_idempotent() {
    let rule = broken_rule(run_flawed(Flaw::CommitNotIdempotent).await);
    assert_eq!(rule, SINK_RULES[2]);
}

/// Rule: the suite catches a sink that delivers an aborted epoch.
#[tokio::test]
async fn the_suite_catches_an_aborted_epoch_delivered() {
    assert_eq!(
        broken_rule(run_flawed(Flaw::AbortKeeps).await),
        SINK_RULES[4]
    );
}

/// Rule: the suite catches a sink that delivers records it refused.
#[tokio::test]
async fn the_suite_catches_refused_records_delivered() {
    let rule = broken_rule(run_flawed(Flaw::DeliversRefused).await);
    assert_eq!(rule, SINK_RULES[5]);
}

/// Rule: the same sink without a flaw passes all six rules, so the failures above come from
/// the flaws, not from the harness.
#[tokio::test]
async fn the_flawed_sink_without_its_flaw_passes_every_rule() {
    assert_eq!(run_flawed(Flaw::None).await.unwrap(), SINK_RULES.to_vec());
}

/// Reads the numbers in every committed (not staged) JSON-lines object under `prefix`.
async fn committed_objects(
    store: Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> Result<Vec<u64>, BoxError> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let path = object_store::path::Path::from(prefix);
    let metas: Vec<_> = store.list(Some(&path)).try_collect().await?;
    let mut out = Vec::new();
    for meta in metas {
        if meta.location.as_ref().split('/').any(|p| p == "_staging") {
            continue;
        }
        let body = store.get(&meta.location).await?.bytes().await?;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line)?);
        }
    }
    Ok(out)
}

/// Rule: the S3 sink with multipart uploads (over object_store's in-memory store) passes the
/// exactly-once sink suite.
#[tokio::test]
async fn s3_sink_with_multipart_uploads_is_exactly_once() {
    use object_store::memory::InMemory;
    let store = Arc::new(InMemory::new());
    let (make, read): (Arc<InMemory>, Arc<dyn object_store::ObjectStore>) = (store.clone(), store);
    let checked = SinkSuite::new(
        move || {
            watershed_sink_s3::S3Sink::<u64>::s3(make.clone(), "out")
                .build()
                .unwrap()
        },
        |n| n,
        move || committed_objects(read.clone(), "out"),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(checked.len(), 5);
}

/// Rule: the S3 sink with staged objects (a store without multipart uploads) passes the
/// exactly-once sink suite.
#[tokio::test]
async fn s3_sink_with_staged_objects_is_exactly_once() {
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let read = store.clone();
    let checked = SinkSuite::new(
        move || {
            watershed_sink_s3::S3Sink::<u64>::builder(store.clone(), "out")
                .build()
                .unwrap()
        },
        |n| n,
        move || committed_objects(read.clone(), "out"),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(checked.len(), 5);
}
