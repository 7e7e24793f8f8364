//! Exactly once through failures: a pipeline that fails anywhere and restarts from its latest
//! complete checkpoint commits exactly the output of a run that never failed, and committing a
//! checkpoint again after a restart duplicates nothing.

mod common;

use common::{config, numbers, sorted, RunningCount};
use proptest::prelude::*;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, LocalDirSink};
use watershed_core::*;
use watershed_testkit::{FailAt, FailingSource, Fault};

/// The running count of `numbers(2, 300)`, keyed by value mod 7, into `sink`; the source
/// fails as `fault` says, after a pause before each poll so that checkpoints (every 3 ms) fall
/// between batches and the failure lands between two of them.
async fn run_counting(
    store: &CheckpointStore,
    sink: &CollectSink<(u64, u64)>,
    fault: Fault,
) -> Result<RunSummary> {
    let p = Pipeline::new(config("running-count", store));
    let source =
        FailingSource::new(numbers(2, 300), fault).pause_before_polls(Duration::from_micros(300));
    p.source("numbers", source, WatermarkStrategy::monotonous())
        .key_by(|v: &u64| v % 7)
        .process("running", |_| RunningCount::default())
        .sink("out", sink.clone());
    p.run().await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// C2 + property 7: for any crash point, restoring the latest complete checkpoint and
    /// replaying from its positions commits exactly the output of a failure-free run.
    #[test]
    fn c2_restore_after_a_crash_at_any_point_gives_the_uninterrupted_output(cut in 1u64..600) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let reference = CollectSink::new();
            run_counting(&CheckpointStore::memory(), &reference, Fault::never()).await.unwrap();

            let store = CheckpointStore::memory();
            let sink = CollectSink::new();
            let crashed = run_counting(&store, &sink, Fault::error(FailAt::AfterRecords(cut))).await;
            prop_assert!(crashed.is_err(), "the injected crash must stop the run");
            run_counting(&store, &sink, Fault::never()).await.unwrap();

            prop_assert_eq!(reference.values().len(), 600);
            prop_assert_eq!(sorted(sink.values()), sorted(reference.values()));
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn c6_rerunning_a_completed_pipeline_recommits_without_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path().join("chk")).unwrap();
    let out = dir.path().join("out");
    let run = || async {
        let p = Pipeline::new(config("recommit", &store));
        p.source("numbers", numbers(2, 500), WatermarkStrategy::monotonous())
            .sink("files", LocalDirSink::new(out.clone()));
        p.run().await.unwrap()
    };
    let first = run().await;
    assert_eq!(first.records_in, 1000);
    let read_all = || {
        let mut lines: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().unwrap().is_file())
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        lines
    };
    let before = read_all();
    assert_eq!(before.len(), 1000);
    // The second run restores the final checkpoint and commits its handles again.
    let second = run().await;
    assert_eq!(second.records_in, 0);
    assert_eq!(read_all(), before);
}

#[tokio::test]
async fn c6_commit_after_a_crash_between_manifest_and_commit_makes_data_visible_once() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = |restored| {
        let mut c = SinkContext::clone(&sink_context());
        c.restored_checkpoint = restored;
        c
    };
    let mut sink = LocalDirSink::<u64>::new(dir.path());
    sink.open(&ctx(None)).await.unwrap();
    sink.write(vec![
        Record::new(1, EventTime(0)),
        Record::new(2, EventTime(0)),
    ])
    .await
    .unwrap();
    let handle = sink.pre_commit(CheckpointId(1)).await.unwrap();
    // Crash: the process dies before commit. The restarted sink gets the handle from the manifest.
    drop(sink);
    let mut restarted = LocalDirSink::<u64>::new(dir.path());
    restarted.open(&ctx(Some(CheckpointId(1)))).await.unwrap();
    restarted
        .commit(CheckpointId(1), handle.clone())
        .await
        .unwrap();
    // And once more, as a second recovery would.
    restarted.commit(CheckpointId(1), handle).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().unwrap().is_file())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read_to_string(files[0].path()).unwrap(), "1\n2\n");
}

fn sink_context() -> SinkContext {
    // SinkContext is non-exhaustive; get one the way the runtime makes it.
    static CTX: std::sync::OnceLock<SinkContext> = std::sync::OnceLock::new();
    CTX.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        struct Grab(std::sync::mpsc::Sender<SinkContext>);
        #[async_trait]
        impl Sink for Grab {
            type Item = u64;
            type Handle = ();
            async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
                self.0.send(ctx.clone()).unwrap();
                Ok(())
            }
            async fn write(&mut self, _: Batch<u64>) -> Result<(), BoxError> {
                Ok(())
            }
            async fn pre_commit(&mut self, _: CheckpointId) -> Result<(), BoxError> {
                Ok(())
            }
            async fn commit(&mut self, _: CheckpointId, _: ()) -> Result<(), BoxError> {
                Ok(())
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            rt.block_on(async {
                let p = Pipeline::new(config("ctx", &CheckpointStore::memory()));
                p.source("n", numbers(1, 1), WatermarkStrategy::none())
                    .sink("grab", Grab(tx));
                p.run().await.unwrap();
            })
        })
        .join()
        .unwrap();
        rx.recv().unwrap()
    })
    .clone()
}
