//! What the checkpoint tests share: a deterministic stateful pipeline on a local store, and
//! ways to damage what it wrote.
#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;

// The pipeline tests' running count: its output reveals restored state.
#[path = "../common/mod.rs"]
mod common;
pub use common::RunningCount;

/// The pipeline id of every checkpoint test.
pub const PIPELINE: &str = "views";

/// The exact output of [`RunningCount`] for records `range` of the input `0, 1, 2, …`.
pub fn running_counts(range: std::ops::Range<u64>) -> Vec<(u64, u64)> {
    range.map(|i| (i % 7, i / 7 + 1)).collect()
}

/// The configuration of a test pipeline on the local store in `dir`: one checkpoint per run,
/// taken when the input ends.
pub fn config(dir: &Path) -> PipelineConfig {
    PipelineConfig::new(PIPELINE)
        .checkpoint_store(CheckpointStore::local(dir).expect("checkpoint store"))
        .without_periodic_checkpoints()
        .handle_signals(false)
}

/// Counts records `0..upto` (a restored run reads on from its checkpoint's position) into
/// `sink`.
pub async fn count_upto(
    config: PipelineConfig,
    upto: u64,
    sink: &CollectSink<(u64, u64)>,
) -> Result<RunSummary> {
    let p = Pipeline::new(config);
    let numbers =
        GeneratorSource::new(1, upto, |_, i| Record::new(i, EventTime(i as i64))).batch_size(16);
    p.source("numbers", numbers, WatermarkStrategy::none())
        .key_by(|v: &u64| v % 7)
        .process("count", |_| RunningCount::default())
        .sink("out", sink.clone());
    tokio::time::timeout(std::time::Duration::from_secs(20), p.run())
        .await
        .expect("run() must not hang")
}

/// Two runs, so that the store holds checkpoint 1 (records 0..100) and checkpoint 2
/// (0..200), both committed to `sink`.
pub async fn two_checkpoints(dir: &Path, sink: &CollectSink<(u64, u64)>) {
    for upto in [100, 200] {
        count_upto(config(dir), upto, sink)
            .await
            .expect("clean run");
    }
}

/// The directory of checkpoint `id`.
pub fn checkpoint_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join(PIPELINE).join(format!("chk-{id:020}"))
}

/// The manifest file of checkpoint `id`.
pub fn manifest_file(dir: &Path, id: u64) -> PathBuf {
    checkpoint_dir(dir, id).join("_MANIFEST")
}

/// The counting operator's state file of checkpoint `id`.
pub fn state_file(dir: &Path, id: u64) -> PathBuf {
    checkpoint_dir(dir, id).join("count.0.state")
}

/// Changes the first digit of a count in a state file: the file stays valid JSON, only a
/// count is wrong (the outside tester's 154 → 254).
pub fn flip_a_digit(file: &Path) {
    let mut bytes = std::fs::read(file).expect("state file");
    let at = bytes
        .windows(2)
        .position(|w| w[0] == b':' && w[1].is_ascii_digit())
        .expect("a count")
        + 1;
    bytes[at] = if bytes[at] == b'9' {
        b'1'
    } else {
        bytes[at] + 1
    };
    serde_json::from_slice::<serde_json::Value>(&bytes).expect("still valid JSON");
    std::fs::write(file, bytes).expect("write state file");
}

/// What `f` logged at warning level or above.
///
/// The subscriber is global and installed once: scoped subscribers (`set_default`) in tests
/// that run in parallel race with tracing's per-callsite interest cache, and events went
/// missing now and then. Captures are serialised, so a capture holds its own test's events
/// (plus, at most, warnings of tests running beside it that capture nothing).
pub async fn logs_of<T>(f: impl std::future::Future<Output = T>) -> (T, String) {
    static BUFFER: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let buf = BUFFER.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            // Plain text: with the workspace's features unified, colours would be on and
            // split `checkpoint=2` with escape codes.
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        buf
    });
    let _one = ONE_AT_A_TIME.lock().await;
    buf.lock().expect("log lock").clear();
    let out = f.await;
    let text = String::from_utf8_lossy(&buf.lock().expect("log lock")).into_owned();
    (out, text)
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
