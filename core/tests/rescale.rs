//! Key groups and rescaling through real pipelines: keyed state checkpointed by key group
//! restores at any parallelism, exactly; what cannot be restored is refused with what to do.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;

const PIPELINE: &str = "rescale";
const KEYS: u64 = 50;

/// Keyed running count, checkpointed by key group: emits `(key, count so far)` per record, so
/// a key whose state went to the wrong instance (or twice, or nowhere) shows in the output.
#[derive(Default)]
struct GroupedCount {
    counts: HashMap<u64, u64>,
}

impl Operator for GroupedCount {
    type In = u64;
    type Out = (u64, u64);

    fn process(
        &mut self,
        batch: Batch<u64>,
        out: &mut Collector<(u64, u64)>,
    ) -> Result<(), BoxError> {
        for r in batch {
            let key = r.value % KEYS;
            let c = self.counts.entry(key).or_default();
            *c += 1;
            out.emit(r.with_value((key, *c)));
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(serde_json::to_vec(&self.counts)?))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.counts = serde_json::from_slice(state)?;
        Ok(())
    }

    fn snapshot_key_groups(
        &mut self,
        groups: &KeyGroups,
    ) -> Result<Option<KeyGroupSnapshot>, BoxError> {
        let mut out = Vec::new();
        for (group, entries) in groups.split(self.counts.iter()) {
            out.push((group, serde_json::to_vec(&entries)?));
        }
        Ok(Some(out))
    }

    fn restore_key_groups(
        &mut self,
        groups: &KeyGroups,
        states: &[(u16, bytes::Bytes)],
    ) -> Result<(), BoxError> {
        for (group, state) in states {
            assert!(
                groups.range().contains(*group),
                "only owned groups are restored"
            );
            let entries: Vec<(u64, u64)> = serde_json::from_slice(state)?;
            for (key, _) in &entries {
                assert_eq!(
                    groups.group_of(key),
                    *group,
                    "a key comes back in its own group"
                );
            }
            self.counts.extend(entries);
        }
        Ok(())
    }
}

/// Keyed running count that only knows the one-blob snapshot.
#[derive(Default)]
struct BlobCount(GroupedCount);

impl Operator for BlobCount {
    type In = u64;
    type Out = (u64, u64);

    fn process(
        &mut self,
        batch: Batch<u64>,
        out: &mut Collector<(u64, u64)>,
    ) -> Result<(), BoxError> {
        self.0.process(batch, out)
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        self.0.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.0.restore(state)
    }
}

fn config(dir: &Path, parallelism: usize) -> PipelineConfig {
    PipelineConfig::new(PIPELINE)
        .checkpoint_store(CheckpointStore::local(dir).expect("checkpoint store"))
        .without_periodic_checkpoints()
        .handle_signals(false)
        .parallelism(parallelism)
}

/// Counts records `0..upto` (a restored run reads on from its checkpoint) at `parallelism`;
/// the run ends with a checkpoint that holds every key's count.
async fn count_upto<O: Operator<In = u64, Out = (u64, u64)> + Default>(
    config: PipelineConfig,
    upto: u64,
    sink: &CollectSink<(u64, u64)>,
) -> Result<RunSummary> {
    let p = Pipeline::new(config);
    let numbers =
        GeneratorSource::new(1, upto, |_, i| Record::new(i, EventTime(i as i64))).batch_size(16);
    p.source("numbers", numbers, WatermarkStrategy::none())
        .key_by(|v: &u64| v % KEYS)
        .process("count", |_| O::default())
        .sink("out", sink.clone());
    tokio::time::timeout(Duration::from_secs(20), p.run())
        .await
        .expect("run() must not hang")
}

/// `(key, count)` outputs sorted, so that runs at different parallelism compare.
fn sorted(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    v
}

/// The exact output for records `0..n`.
fn expected(n: u64) -> Vec<(u64, u64)> {
    sorted((0..n).map(|i| (i % KEYS, i / KEYS + 1)).collect())
}

fn manifest_path(dir: &Path) -> std::path::PathBuf {
    let chk = std::fs::read_dir(dir.join(PIPELINE))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .expect("a checkpoint");
    chk.join("_MANIFEST")
}

/// Rewrites the latest manifest with `edit`, and seals it again the way Watershed does (SHA-256
/// over its compact JSON without the checksum), so that only the edit differs.
fn rewrite_manifest(dir: &Path, edit: impl FnOnce(&mut Manifest)) {
    let file = manifest_path(dir);
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    edit(&mut m);
    m.checksum = None;
    let digest = Sha256::digest(serde_json::to_vec(&m).unwrap());
    let mut sum = String::from("sha256:");
    for b in digest.iter() {
        write!(sum, "{b:02x}").unwrap();
    }
    m.checksum = Some(sum);
    std::fs::write(&file, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Rule: keyed state checkpointed by key group at parallelism 4 restores at parallelism 3,
/// and that at parallelism 1: every key's count goes on exactly, as in one uninterrupted run.
#[tokio::test]
async fn keyed_state_rescales_from_4_to_3_to_1_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    for (parallelism, upto) in [(4, 300), (3, 700), (1, 1000)] {
        count_upto::<GroupedCount>(config(dir.path(), parallelism), upto, &sink)
            .await
            .unwrap_or_else(|e| panic!("run at parallelism {parallelism}: {e}"));
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(manifest_path(dir.path())).unwrap()).unwrap();
        assert_eq!(m.max_parallelism, Some(128));
        assert_eq!(
            m.key_groups["count"].len(),
            parallelism,
            "one object per instance"
        );
    }
    assert_eq!(sorted(sink.values()), expected(1000));
}

/// Rule: a checkpoint written before key groups (manifest version 2, no max_parallelism) with
/// keyed state at parallelism above 1 is refused, saying why and what to do.
#[tokio::test]
async fn a_checkpoint_from_before_key_groups_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    count_upto::<BlobCount>(config(dir.path(), 4), 200, &sink)
        .await
        .unwrap();
    rewrite_manifest(dir.path(), |m| {
        m.version = 2;
        m.max_parallelism = None;
    });
    let message = count_upto::<BlobCount>(config(dir.path(), 4), 400, &sink)
        .await
        .expect_err("refused")
        .to_string();
    assert!(message.contains("keyed operator `count`"), "{message}");
    assert!(message.contains("written before key groups"), "{message}");
    assert!(message.contains("start this pipeline afresh"), "{message}");
    assert_eq!(sink.values().len(), 200, "nothing more was committed");
}

/// Rule: a checkpoint written before key groups at parallelism 1 is migrated when restored at
/// parallelism 1 (one instance held every key under either routing), and its next checkpoint
/// has key groups.
#[tokio::test]
async fn a_parallelism_1_checkpoint_from_before_key_groups_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    count_upto::<GroupedCount>(config(dir.path(), 1), 200, &sink)
        .await
        .unwrap();
    rewrite_manifest(dir.path(), |m| {
        // What Watershed before key groups wrote: the operator's state as one blob.
        m.version = 2;
        m.max_parallelism = None;
        m.key_groups.clear();
    });
    let file = manifest_path(dir.path());
    let blob: HashMap<u64, u64> = (0..KEYS).map(|k| (k, 4)).collect();
    std::fs::write(
        file.with_file_name("count.0.state"),
        serde_json::to_vec(&blob).unwrap(),
    )
    .unwrap();
    rewrite_manifest(dir.path(), |m| {
        let sum = Sha256::digest(serde_json::to_vec(&blob).unwrap());
        let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
        m.state_checksums
            .insert("count.0".into(), format!("sha256:{hex}"));
    });
    count_upto::<GroupedCount>(config(dir.path(), 1), 400, &sink)
        .await
        .unwrap();
    count_upto::<GroupedCount>(config(dir.path(), 2), 500, &sink)
        .await
        .unwrap();
    assert_eq!(sorted(sink.values()), expected(500));
}

/// Rule: a restore with another max_parallelism is refused: every key would fall in another
/// key group.
#[tokio::test]
async fn a_changed_max_parallelism_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    count_upto::<GroupedCount>(config(dir.path(), 2), 200, &sink)
        .await
        .unwrap();
    let message =
        count_upto::<GroupedCount>(config(dir.path(), 2).max_parallelism(256), 400, &sink)
            .await
            .expect_err("refused")
            .to_string();
    assert!(message.contains("split into 128 key groups"), "{message}");
    assert!(message.contains("max_parallelism 256"), "{message}");
    assert!(
        message.contains("PipelineConfig::max_parallelism(128)"),
        "{message}"
    );
}

/// Rule: one-blob state (an operator without snapshot_key_groups) restores at its own
/// parallelism only; another is refused, naming the way out.
#[tokio::test]
async fn blob_state_at_another_parallelism_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    count_upto::<BlobCount>(config(dir.path(), 3), 200, &sink)
        .await
        .unwrap();
    let message = count_upto::<BlobCount>(config(dir.path(), 2), 400, &sink)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("one blob per instance at parallelism 3"),
        "{message}"
    );
    count_upto::<BlobCount>(config(dir.path(), 3), 400, &sink)
        .await
        .unwrap();
    assert_eq!(sorted(sink.values()), expected(400));
}

/// Rule: max_parallelism must be 1..=32768 and at least every keyed operator's parallelism.
#[tokio::test]
async fn max_parallelism_out_of_range_or_below_a_parallelism_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    for (max, p, expect) in [
        (0, 1, "between 1 and 32768"),
        (40_000, 1, "between 1 and 32768"),
        (4, 8, "parallelism 8, above max_parallelism 4"),
    ] {
        let config = config(dir.path(), p).max_parallelism(max);
        let message = count_upto::<GroupedCount>(config, 10, &sink)
            .await
            .expect_err("refused")
            .to_string();
        assert!(message.contains(expect), "{message}");
    }
    assert!(sink.values().is_empty());
}

/// Rule: a key-group index pointing outside its state object (a sealed but wrong manifest) is
/// a corrupt checkpoint, refused naming the object, not a panic or a silent misread.
#[tokio::test]
async fn a_key_group_outside_its_object_is_a_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    count_upto::<GroupedCount>(config(dir.path(), 2), 200, &sink)
        .await
        .unwrap();
    rewrite_manifest(dir.path(), |m| {
        let slices = m
            .key_groups
            .get_mut("count")
            .and_then(|nodes| nodes.get_mut("count.1"))
            .expect("instance 1's groups");
        slices[0].len += 1_000_000;
    });
    let message = count_upto::<GroupedCount>(config(dir.path(), 2), 400, &sink)
        .await
        .expect_err("refused")
        .to_string();
    assert!(message.contains("is corrupt"), "{message}");
    assert!(message.contains("count.1.state"), "{message}");
    assert!(
        message.contains("but the manifest puts key group"),
        "{message}"
    );
}
