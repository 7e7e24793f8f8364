//! Checkpoints: ids, manifests and the store they live in.

use crate::error::{Error, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Identifies a checkpoint. Ids strictly increase within a pipeline, across restarts too, and a
/// higher id subsumes every lower one (SEMANTICS.md C5).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(pub u64);

impl CheckpointId {
    /// The id after this one.
    pub fn next(self) -> CheckpointId {
        CheckpointId(self.0 + 1)
    }
}

impl fmt::Debug for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chk-{}", self.0)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

const MANIFEST: &str = "_MANIFEST";
const MANIFEST_VERSION: u32 = 1;

/// The record of one complete checkpoint. It is written last: a checkpoint without its manifest
/// never happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// The pipeline's id.
    pub pipeline: String,
    /// The checkpoint's id.
    pub id: CheckpointId,
    /// Wall-clock time the manifest was written (ms since epoch).
    pub created_ms: i64,
    /// Position of each source, by node name.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Maximum event time seen per split of each source, by node name then split, so event
    /// time resumes where it was (see [`SplitWatermarks::snapshot`](crate::SplitWatermarks::snapshot)).
    /// Absent in checkpoints written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_event_times: BTreeMap<String, BTreeMap<String, i64>>,
    /// Pending (pre-committed, possibly not yet committed) handles of each sink, by node name.
    pub sinks: BTreeMap<String, serde_json::Value>,
    /// Where each stateful operator instance's state is, by node name, relative to the store prefix.
    pub operators: BTreeMap<String, String>,
    /// Parallelism of each keyed operator, so a restore with another parallelism is refused.
    #[serde(default)]
    pub layout: BTreeMap<String, usize>,
}

/// Everything a checkpoint collected, before it is written.
#[derive(Debug, Default)]
pub(crate) struct CheckpointData {
    pub sources: BTreeMap<String, serde_json::Value>,
    pub source_event_times: BTreeMap<String, BTreeMap<String, i64>>,
    pub sinks: BTreeMap<String, serde_json::Value>,
    pub operators: BTreeMap<String, Vec<u8>>,
    pub layout: BTreeMap<String, usize>,
}

/// Where checkpoints live: any [`ObjectStore`] (local directory by default, S3 in production,
/// memory in tests) under a prefix.
///
/// Layout: `<prefix>/<pipeline>/chk-<id>/<node>.state` for operator state, then
/// `<prefix>/<pipeline>/chk-<id>/_MANIFEST`, written last.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    retain: usize,
}

impl CheckpointStore {
    /// A store on any object store under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: impl Into<Path>) -> Self {
        CheckpointStore {
            store,
            prefix: prefix.into(),
            retain: 3,
        }
    }

    /// A store in a local directory (created if missing).
    pub fn local(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.as_ref())?;
        Ok(Self::new(Arc::new(fs), Path::default()))
    }

    /// A store in memory, for tests. Clones share the same memory.
    pub fn memory() -> Self {
        Self::new(Arc::new(InMemory::new()), Path::default())
    }

    /// How many complete checkpoints to keep (default 3, at least 1).
    pub fn retain(mut self, n: usize) -> Self {
        self.retain = n.max(1);
        self
    }

    fn dir(&self, pipeline: &str, id: CheckpointId) -> Path {
        self.prefix
            .clone()
            .join(pipeline)
            .join(format!("chk-{:020}", id.0))
    }

    /// Ids of the complete checkpoints of `pipeline`, ascending.
    pub async fn complete_ids(&self, pipeline: &str) -> Result<Vec<CheckpointId>> {
        let base = self.prefix.clone().join(pipeline);
        let metas: Vec<_> = self.store.list(Some(&base)).try_collect().await?;
        let mut ids: Vec<CheckpointId> = metas
            .iter()
            .filter(|m| m.location.filename() == Some(MANIFEST))
            .filter_map(|m| {
                let dir = m.location.parts().rev().nth(1)?;
                dir.as_ref()
                    .strip_prefix("chk-")?
                    .parse()
                    .ok()
                    .map(CheckpointId)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The latest complete checkpoint of `pipeline`, if any.
    pub async fn latest(&self, pipeline: &str) -> Result<Option<Manifest>> {
        let Some(id) = self.complete_ids(pipeline).await?.pop() else {
            return Ok(None);
        };
        self.manifest(pipeline, id).await.map(Some)
    }

    /// The manifest of checkpoint `id`.
    pub async fn manifest(&self, pipeline: &str, id: CheckpointId) -> Result<Manifest> {
        let bytes = self
            .store
            .get(&self.dir(pipeline, id).join(MANIFEST))
            .await?
            .bytes()
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
            id: Some(id),
            message: format!("unreadable manifest: {e}"),
        })
    }

    /// Reads an operator state object named in a manifest.
    pub async fn read_state(&self, relative: &str) -> Result<Bytes> {
        let path = Path::parse(relative).map_err(|e| Error::Checkpoint {
            id: None,
            message: format!("bad state path {relative}: {e}"),
        })?;
        Ok(self
            .store
            .get(&Path::from_iter(self.prefix.parts().chain(path.parts())))
            .await?
            .bytes()
            .await?)
    }

    /// Writes states first and the manifest last, then prunes old checkpoints.
    pub(crate) async fn write(
        &self,
        pipeline: &str,
        id: CheckpointId,
        data: CheckpointData,
    ) -> Result<Manifest> {
        let dir = self.dir(pipeline, id);
        let rel_dir = Path::from(pipeline).join(format!("chk-{:020}", id.0));
        let mut operators = BTreeMap::new();
        for (node, state) in data.operators {
            let name = format!("{node}.state");
            self.store
                .put(&dir.clone().join(name.as_str()), PutPayload::from(state))
                .await?;
            operators.insert(node, rel_dir.clone().join(name.as_str()).to_string());
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            pipeline: pipeline.to_string(),
            id,
            created_ms: crate::time::EventTime::now().millis(),
            sources: data.sources,
            source_event_times: data.source_event_times,
            sinks: data.sinks,
            operators,
            layout: data.layout,
        };
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Checkpoint {
            id: Some(id),
            message: format!("manifest not serializable: {e}"),
        })?;
        self.store
            .put(&dir.join(MANIFEST), PutPayload::from(body))
            .await?;
        // The checkpoint is durable now; failing to delete old ones must not fail it.
        if let Err(e) = self.prune(pipeline).await {
            tracing::warn!(%pipeline, error = %e, "pruning old checkpoints failed");
        }
        Ok(manifest)
    }

    async fn prune(&self, pipeline: &str) -> Result<()> {
        let ids = self.complete_ids(pipeline).await?;
        if ids.len() <= self.retain {
            return Ok(());
        }
        let keep_from = ids[ids.len() - self.retain];
        let base = self.prefix.clone().join(pipeline);
        let metas: Vec<_> = self.store.list(Some(&base)).try_collect().await?;
        // Delete manifests first so a half-pruned checkpoint is never mistaken for a complete one.
        let (manifests, others): (Vec<_>, Vec<_>) = metas
            .into_iter()
            .filter(|m| {
                m.location
                    .parts()
                    .rev()
                    .nth(1)
                    .and_then(|d| d.as_ref().strip_prefix("chk-")?.parse::<u64>().ok())
                    .is_some_and(|n| CheckpointId(n) < keep_from)
            })
            .partition(|m| m.location.filename() == Some(MANIFEST));
        for m in manifests.into_iter().chain(others) {
            self.store.delete(&m.location).await?;
        }
        Ok(())
    }
}
