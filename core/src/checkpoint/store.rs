//! Where checkpoints live, and how their objects are written, listed, read and pruned.

use super::integrity;
use super::manifest::{KeyGroupIndex, KeyGroupSlice, Manifest, MANIFEST, MANIFEST_VERSION};
use super::CheckpointId;
use crate::error::{Error, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything a checkpoint collected, before it is written.
#[derive(Debug, Default)]
pub(crate) struct CheckpointData {
    pub sources: BTreeMap<String, serde_json::Value>,
    pub source_event_times: BTreeMap<String, BTreeMap<String, i64>>,
    pub sinks: BTreeMap<String, serde_json::Value>,
    pub operators: BTreeMap<String, Vec<u8>>,
    pub layout: BTreeMap<String, usize>,
    /// Keyed state split by key group: by keyed operator, then instance node.
    pub key_groups: BTreeMap<String, KeyGroupStates>,
    pub max_parallelism: usize,
}

/// The key groups of each instance node of one keyed operator.
pub(crate) type KeyGroupStates = BTreeMap<String, crate::key_group::KeyGroupSnapshot>;

/// Where checkpoints live: any [`ObjectStore`] (local directory by default, S3 in production,
/// memory in tests) under a prefix.
///
/// Layout: `<prefix>/<pipeline>/chk-<id>/<node>.state` for operator state, then
/// `<prefix>/<pipeline>/chk-<id>/_MANIFEST`, written last. The manifest holds a checksum of
/// every state file and of itself, checked on restore.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    retain: usize,
    /// The local directory, so that errors name files as the operator sees them.
    local_dir: Option<std::path::PathBuf>,
}

impl CheckpointStore {
    /// A store on any object store under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: impl Into<Path>) -> Self {
        CheckpointStore {
            store,
            prefix: prefix.into(),
            retain: 3,
            local_dir: None,
        }
    }

    /// A store in a local directory (created if missing). Fails, naming the directory, when it
    /// cannot be created or opened (a path under a regular file, no permission).
    pub fn local(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let unusable = |problem: String, error: crate::error::BoxError| Error::CheckpointDir {
            dir: dir.to_path_buf(),
            problem,
            error,
        };
        std::fs::create_dir_all(dir).map_err(|e| unusable(why_not_created(dir, &e), e.into()))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| unusable(format!("it cannot be opened: {e}"), e.into()))?;
        let mut store = Self::new(Arc::new(fs), Path::default());
        store.local_dir = Some(dir.to_path_buf());
        Ok(store)
    }

    /// A store in memory, for tests. Clones share the same memory.
    pub fn memory() -> Self {
        Self::new(Arc::new(InMemory::new()), Path::default())
    }

    /// How many complete checkpoints to keep (default 3, at least 1). Keep at least 2 for
    /// [`CorruptCheckpoint::FallBack`](super::CorruptCheckpoint::FallBack) to have an older
    /// checkpoint to fall back to.
    pub fn retain(mut self, n: usize) -> Self {
        self.retain = n.max(1);
        self
    }

    fn dir(&self, pipeline: &str, id: CheckpointId) -> Path {
        self.prefix.clone().join(pipeline).join(dir_name(id))
    }

    pub(crate) fn manifest_path(&self, pipeline: &str, id: CheckpointId) -> Path {
        self.dir(pipeline, id).join(MANIFEST)
    }

    /// The full path of a state object named in a manifest (relative to the prefix).
    pub(crate) fn state_path(&self, relative: &str) -> std::result::Result<Path, String> {
        let path = Path::parse(relative).map_err(|e| format!("is not a valid path ({e})"))?;
        Ok(Path::from_iter(self.prefix.parts().chain(path.parts())))
    }

    /// How errors name an object: its file for a local store, its path otherwise.
    pub(crate) fn describe(&self, path: &Path) -> String {
        match &self.local_dir {
            Some(dir) => dir.join(path.as_ref()).display().to_string(),
            None => path.to_string(),
        }
    }

    fn failed(&self, action: &'static str, path: &Path, error: object_store::Error) -> Error {
        Error::CheckpointObject {
            action,
            object: self.describe(path),
            error: error.into(),
        }
    }

    /// Every object of every checkpoint of `pipeline`, complete or not, with its id.
    async fn objects(&self, pipeline: &str) -> Result<Vec<(CheckpointId, ObjectMeta)>> {
        let base = self.prefix.clone().join(pipeline);
        let metas: Vec<_> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|e| self.failed("list", &base, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| Some((id_of(&m.location)?, m)))
            .collect())
    }

    /// Ids of the complete checkpoints of `pipeline`, ascending.
    pub async fn complete_ids(&self, pipeline: &str) -> Result<Vec<CheckpointId>> {
        let mut ids: Vec<CheckpointId> = self
            .objects(pipeline)
            .await?
            .into_iter()
            .filter(|(_, m)| m.location.filename() == Some(MANIFEST))
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The highest checkpoint id with any object in the store, complete, corrupt or
    /// half-written: new ids go above it, since a sink may have seen it.
    pub(crate) async fn highest_id(&self, pipeline: &str) -> Result<Option<CheckpointId>> {
        Ok(self
            .objects(pipeline)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .max())
    }

    /// The latest complete checkpoint of `pipeline`, if any; an error if its manifest is
    /// corrupt.
    pub async fn latest(&self, pipeline: &str) -> Result<Option<Manifest>> {
        let Some(id) = self.complete_ids(pipeline).await?.pop() else {
            return Ok(None);
        };
        self.manifest(pipeline, id).await.map(Some)
    }

    /// The manifest of checkpoint `id`, checked against its own checksum (state files are
    /// checked on restore).
    pub async fn manifest(&self, pipeline: &str, id: CheckpointId) -> Result<Manifest> {
        let path = self.manifest_path(pipeline, id);
        let corrupt = |problem: String| Error::Checkpoint {
            id: Some(id),
            message: format!("`{}` {problem}", self.describe(&path)),
        };
        let bytes = self
            .get(&path)
            .await?
            .ok_or_else(|| corrupt("is missing".into()))?;
        Manifest::open(&bytes, pipeline, id)
            .map(|c| c.manifest)
            .map_err(corrupt)
    }

    /// Reads an operator state object named in a manifest, unchecked.
    pub async fn read_state(&self, relative: &str) -> Result<Bytes> {
        let path = self.state_path(relative).map_err(|e| Error::Checkpoint {
            id: None,
            message: format!("state path {relative} {e}"),
        })?;
        self.get(&path).await?.ok_or_else(|| {
            self.failed(
                "read",
                &path,
                object_store::Error::NotFound {
                    path: path.to_string(),
                    source: "no such checkpoint object".into(),
                },
            )
        })
    }

    /// An object's bytes, `None` if it does not exist; any other failure names the object.
    pub(crate) async fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        let read = async { self.store.get(path).await?.bytes().await };
        match read.await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("read", path, e)),
        }
    }

    async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.failed("write", path, e))
    }

    /// Writes states first and the manifest last, then prunes old checkpoints.
    pub(crate) async fn write(
        &self,
        pipeline: &str,
        id: CheckpointId,
        data: CheckpointData,
    ) -> Result<Manifest> {
        let dir = self.dir(pipeline, id);
        let rel_dir = Path::from(pipeline).join(dir_name(id));
        let mut operators = BTreeMap::new();
        let mut state_checksums = BTreeMap::new();
        let (key_groups, concatenated) = concatenate(data.key_groups);
        for (node, state) in data.operators.into_iter().chain(concatenated) {
            let name = format!("{node}.state");
            state_checksums.insert(node.clone(), integrity::checksum(&state));
            self.put(&dir.clone().join(name.as_str()), state).await?;
            operators.insert(node, rel_dir.clone().join(name.as_str()).to_string());
        }
        let mut manifest = Manifest {
            version: MANIFEST_VERSION,
            pipeline: pipeline.to_string(),
            id,
            created_ms: crate::time::EventTime::now().millis(),
            sources: data.sources,
            source_event_times: data.source_event_times,
            sinks: data.sinks,
            operators,
            layout: data.layout,
            max_parallelism: Some(data.max_parallelism),
            key_groups,
            state_checksums,
            checksum: None,
        };
        let body = manifest.seal().map_err(|e| Error::Checkpoint {
            id: Some(id),
            message: format!("manifest not serializable: {e}"),
        })?;
        self.put(&dir.join(MANIFEST), body).await?;
        // The checkpoint is durable now; failing to delete old ones must not fail it.
        if let Err(e) = self.prune(pipeline).await {
            tracing::warn!(%pipeline, error = %e, "pruning old checkpoints failed");
        }
        Ok(manifest)
    }

    /// Keeps the `retain` newest complete checkpoints. The newest is always the one just
    /// written, which is intact and above every other id (restore continues ids above corrupt
    /// ones), so pruning never removes the checkpoint a fall-back would restore while a corrupt
    /// newer one exists.
    async fn prune(&self, pipeline: &str) -> Result<()> {
        let ids = self.complete_ids(pipeline).await?;
        if ids.len() <= self.retain {
            return Ok(());
        }
        let keep_from = ids[ids.len() - self.retain];
        // Delete manifests first so a half-pruned checkpoint is never mistaken for a complete one.
        let (manifests, others): (Vec<_>, Vec<_>) = self
            .objects(pipeline)
            .await?
            .into_iter()
            .filter(|(id, _)| *id < keep_from)
            .map(|(_, m)| m)
            .partition(|m| m.location.filename() == Some(MANIFEST));
        for m in manifests.into_iter().chain(others) {
            self.store
                .delete(&m.location)
                .await
                .map_err(|e| self.failed("delete", &m.location, e))?;
        }
        Ok(())
    }
}

/// Each keyed instance's key groups as one object (its groups' states back to back), and the
/// index of where each group is in it. One object per instance, not per group: a checkpoint of
/// 32768 groups must not be 32768 small objects.
fn concatenate(
    key_groups: BTreeMap<String, KeyGroupStates>,
) -> (KeyGroupIndex, Vec<(String, Vec<u8>)>) {
    let mut index = BTreeMap::new();
    let mut objects = Vec::new();
    for (operator, instances) in key_groups {
        let mut nodes = BTreeMap::new();
        for (node, groups) in instances {
            let mut bytes = Vec::with_capacity(groups.iter().map(|(_, s)| s.len()).sum());
            let mut slices = Vec::with_capacity(groups.len());
            for (group, state) in groups {
                slices.push(KeyGroupSlice {
                    group,
                    offset: bytes.len() as u64,
                    len: state.len() as u64,
                });
                bytes.extend_from_slice(&state);
            }
            nodes.insert(node.clone(), slices);
            objects.push((node, bytes));
        }
        index.insert(operator, nodes);
    }
    (index, objects)
}

fn dir_name(id: CheckpointId) -> String {
    format!("chk-{:020}", id.0)
}

/// The checkpoint an object belongs to, from its directory `chk-<id>`.
fn id_of(location: &Path) -> Option<CheckpointId> {
    let dir = location.parts().rev().nth(1)?;
    dir.as_ref()
        .strip_prefix("chk-")?
        .parse()
        .ok()
        .map(CheckpointId)
}

/// Why `create_dir_all(dir)` failed, in the operator's terms: which part of the path is in the
/// way, or that permission is missing.
fn why_not_created(dir: &std::path::Path, e: &std::io::Error) -> String {
    if let Some(file) = dir
        .ancestors()
        .find(|a| a.exists() && !a.is_dir() && !a.as_os_str().is_empty())
    {
        return format!(
            "`{}` is a file, not a directory, so no directory can be created there ({e})",
            file.display()
        );
    }
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return format!("no permission to create it ({e})");
    }
    format!("it cannot be created ({e})")
}
