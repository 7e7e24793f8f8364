//! The `Sink` trait: where records leave a pipeline, with two-phase commit.

use crate::checkpoint::CheckpointId;
use crate::error::BoxError;
use crate::record::Batch;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a sink learns when it opens.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SinkContext {
    /// Pipeline id, for naming outputs deterministically.
    pub pipeline: String,
    /// The sink's node name in the pipeline.
    pub node: String,
    /// The checkpoint the pipeline restored from, if any. Output of later, never-completed
    /// checkpoints from a previous run may be discarded.
    pub restored_checkpoint: Option<CheckpointId>,
}

impl SinkContext {
    /// The context of sink `node` in pipeline `pipeline`, for driving a sink outside a pipeline
    /// (tests, tools).
    pub fn new(pipeline: impl Into<String>, node: impl Into<String>) -> Self {
        SinkContext {
            pipeline: pipeline.into(),
            node: node.into(),
            restored_checkpoint: None,
        }
    }

    /// The same context, restored from `checkpoint`.
    pub fn restored_from(mut self, checkpoint: CheckpointId) -> Self {
        self.restored_checkpoint = Some(checkpoint);
        self
    }
}

/// A destination with two-phase commit (SEMANTICS.md C6).
///
/// The runtime calls `write` for data, `pre_commit` when a checkpoint barrier has arrived from
/// every input, and `commit` with the handle once that checkpoint's manifest is written. On
/// recovery it calls `commit` again for every handle of the restored checkpoint that may not have
/// committed, so **`commit` must be idempotent**. A sink without transactions implements
/// at-least-once through the same trait: flush in `pre_commit`, do nothing in `commit`.
#[async_trait]
pub trait Sink: Send + 'static {
    /// The record payload this sink accepts.
    type Item: Send + 'static;
    /// What `pre_commit` returns and `commit` needs: upload ids, transaction ids, file names.
    /// It is stored in the checkpoint, so it must be serializable.
    type Handle: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Connects; called once before anything else.
    async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Writes a batch into the current (uncommitted) epoch.
    async fn write(&mut self, batch: Batch<Self::Item>) -> Result<(), BoxError>;

    /// Makes everything written so far durable but not yet visible, and starts a new epoch.
    /// After this returns, `commit` of the handle must be able to succeed, even after a crash.
    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Self::Handle, BoxError>;

    /// Makes a pre-committed epoch visible. Idempotent: it may run again after a crash.
    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: Self::Handle,
    ) -> Result<(), BoxError>;

    /// Discards the current, not pre-committed epoch (on failure or shutdown without commit).
    async fn abort(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Releases resources; called once at the end.
    async fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
