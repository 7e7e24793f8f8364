//! What a sink may refuse, and when: records it cannot write are refused in `write` and take
//! the error path; a commit refused after its checkpoint completed stops the pipeline without
//! losing the refused output or letting the other sinks run ahead of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::{CollectHandle, CollectSink, GeneratorSource};
use watershed_core::*;

/// A collecting two-phase-commit sink that refuses negative values in `write` (as the Kafka
/// sink refuses timestamps its topic would reject) and, while `refuse_commits` is set, refuses
/// every commit (as a broker refusing a transaction would).
struct Picky {
    inner: CollectSink<i64>,
    refused: Vec<DeadLetter>,
    refuse_commits: Arc<AtomicBool>,
}

impl Picky {
    fn new(inner: CollectSink<i64>, refuse_commits: Arc<AtomicBool>) -> Self {
        Picky {
            inner,
            refused: Vec::new(),
            refuse_commits,
        }
    }
}

#[async_trait]
impl Sink for Picky {
    type Item = i64;
    type Handle = CollectHandle<i64>;

    async fn write(&mut self, mut batch: Batch<i64>) -> std::result::Result<(), BoxError> {
        batch.retain(|r| {
            if r.value >= 0 {
                return true;
            }
            self.refused.push(
                DeadLetter::new(format!("{} is negative", r.value), r.value.to_string())
                    .at(r.origin.clone(), r.timestamp),
            );
            false
        });
        self.inner.write(batch).await
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.refused)
    }

    async fn pre_commit(
        &mut self,
        id: CheckpointId,
    ) -> std::result::Result<Self::Handle, BoxError> {
        self.inner.pre_commit(id).await
    }

    async fn commit(
        &mut self,
        id: CheckpointId,
        handle: Self::Handle,
    ) -> std::result::Result<(), BoxError> {
        if self.refuse_commits.load(Ordering::SeqCst) {
            return Err("the broker refused the transaction".into());
        }
        self.inner.commit(id, handle).await
    }
}

/// 0..n, every `negative_every`-th value negated, one split, event time = index.
fn numbers(n: u64, negative_every: u64) -> GeneratorSource<i64> {
    GeneratorSource::new(1, n, move |_, i| {
        let v = i as i64;
        let v = if negative_every > 0 && i % negative_every == 3 {
            -v
        } else {
            v
        };
        Record::new(v, EventTime(i as i64))
    })
    .batch_size(100)
}

fn config(id: &str, store: &CheckpointStore) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(store.clone())
        .checkpoint_interval(Duration::from_millis(20))
        .handle_signals(false)
}

/// Rule: a record a sink refuses in `write` never reaches its output; it goes to the
/// dead-letter sink with the sink's reason, counted as rejected, and the pipeline goes on.
#[tokio::test]
async fn a_record_a_sink_refuses_goes_to_the_dead_letters_with_its_reason() {
    let store = CheckpointStore::memory();
    let p = Pipeline::new(config("refuse-dl", &store));
    let out = CollectSink::new();
    let dead = CollectSink::<DeadLetter>::new();
    p.source("numbers", numbers(1_000, 10), WatermarkStrategy::none())
        .sink("out", Picky::new(out.clone(), Arc::default()));
    p.dead_letter("dead", dead.clone());
    let summary = p.run().await.expect("refusals do not stop the pipeline");

    let mut got = out.values();
    got.sort();
    let expected: Vec<i64> = (0..1_000).filter(|i| i % 10 != 3).collect();
    assert_eq!(got, expected);
    let letters = dead.values();
    assert_eq!(letters.len(), 100);
    assert_eq!(summary.rejected, 100);
    assert!(letters.iter().all(|d| d.node == "out"));
    assert!(letters.iter().any(|d| d.reason == "-13 is negative"));
    assert!(letters.iter().any(|d| &d.payload[..] == b"-13"));
}

/// Rule: under the fail policy, a refused record stops the pipeline before the checkpoint
/// that would cover it completes, so no checkpoint ever holds output without it.
#[tokio::test]
async fn with_the_fail_policy_a_refused_record_stops_the_pipeline_before_its_checkpoint() {
    let store = CheckpointStore::memory();
    let p = Pipeline::new(config("refuse-fail", &store).error_policy(ErrorPolicy::Fail));
    let out = CollectSink::new();
    // The first refused value is the 3rd of 50 000: well before the first checkpoint.
    p.source(
        "numbers",
        numbers(50_000, 50_000),
        WatermarkStrategy::none(),
    )
    .sink("out", Picky::new(out.clone(), Arc::default()));
    let err = p
        .run()
        .await
        .expect_err("a refused record fails the pipeline");
    assert!(
        matches!(&err, Error::Record { node, reason, .. } if node == "out" && reason == "-3 is negative"),
        "{err}"
    );
    assert!(out.values().is_empty(), "nothing was committed");
}

/// Rule: when a sink's commit of a completed checkpoint fails, the pipeline stops with an
/// error naming the sink and the checkpoint; that checkpoint stays the restore point (no later
/// checkpoint completes, so no other sink commits past it), restarts retry the commit, and once
/// it succeeds both sinks hold every record exactly once.
#[tokio::test]
async fn a_refused_commit_is_retried_from_its_checkpoint_and_no_sink_runs_ahead_of_it() {
    let store = CheckpointStore::memory();
    let refuse = Arc::new(AtomicBool::new(true));
    let (a, b) = (CollectSink::<i64>::new(), CollectSink::<i64>::new());
    let run = |a: CollectSink<i64>, b: CollectSink<i64>| {
        let p = Pipeline::new(config("refuse-commit", &store));
        // Slow enough that the first checkpoint comes long before the end of the input.
        let source = numbers(20_000, 0).rate(20_000.0);
        let numbers = p.source("numbers", source, WatermarkStrategy::none());
        let mut copies = numbers.fan_out(2).into_iter();
        copies.next().unwrap().sink("a", a);
        copies
            .next()
            .unwrap()
            .sink("b", Picky::new(b, refuse.clone()));
        p.run()
    };

    let err = run(a.clone(), b.clone()).await.expect_err("b refuses");
    let Error::Commit {
        node, checkpoint, ..
    } = &err
    else {
        panic!("expected a commit error, got {err}");
    };
    assert_eq!(node, "b");
    let text = err.to_string();
    assert!(text.contains(&format!("checkpoint {checkpoint}")), "{text}");
    assert!(text.contains("Way out"), "{text}");
    let stuck = *checkpoint;
    assert_eq!(
        store.complete_ids("refuse-commit").await.unwrap().last(),
        Some(&stuck)
    );
    assert!(b.values().is_empty());
    let manifest = store
        .latest("refuse-commit")
        .await
        .unwrap()
        .expect("a checkpoint");
    let covered = manifest.sources["numbers"]["next"][0].as_u64().unwrap() as i64;
    assert!(covered < 20_000, "the refused checkpoint is mid-stream");

    // Still refused: the same checkpoint again, and sink a holds exactly what that checkpoint
    // covers (its restart re-commits it), nothing past it.
    let err = run(a.clone(), b.clone())
        .await
        .expect_err("b still refuses");
    assert!(matches!(err, Error::Commit { checkpoint, .. } if checkpoint == stuck));
    assert_eq!(
        store.complete_ids("refuse-commit").await.unwrap().last(),
        Some(&stuck)
    );
    let mut got = a.values();
    got.sort();
    assert_eq!(got, (0..covered).collect::<Vec<_>>());
    assert!(b.values().is_empty());

    // Fixed: the retried commit delivers b's part of the stuck checkpoint, then the rest.
    refuse.store(false, Ordering::SeqCst);
    run(a.clone(), b.clone()).await.expect("b accepts");
    let all: Vec<i64> = (0..20_000).collect();
    for (name, sink) in [("a", &a), ("b", &b)] {
        let mut got = sink.values();
        got.sort();
        assert_eq!(got, all, "sink {name}: every record exactly once");
    }
}
