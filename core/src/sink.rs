//! The `Sink` trait: where records leave a pipeline, with two-phase commit.

use crate::checkpoint::CheckpointId;
use crate::dead_letter::DeadLetter;
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
    /// checkpoints from a previous run may be discarded. `None` only when nothing of this sink
    /// was ever committed: a sink may name its output after it (the S3 sink does), so driving
    /// a sink by hand after earlier commits needs [`restored_from`](Self::restored_from).
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

/// A destination with two-phase commit: output becomes visible only once the checkpoint that
/// covers it is complete, exactly once.
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

    /// Records this sink refused since the last call, each with its reason: records the
    /// destination would reject for what they hold (a timestamp or size outside the topic's
    /// limits), found in `write` so that nothing `commit` cannot write ever enters an epoch.
    ///
    /// The runtime calls this after every `write` and `pre_commit` and applies the pipeline's
    /// [`ErrorPolicy`](crate::ErrorPolicy) to them, as to records an operator rejects: the
    /// dead-letter sink (in the same checkpoint), skip (counted), or fail the pipeline *before*
    /// the checkpoint. A sink that refuses nothing keeps the default.
    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }

    /// Discards the current, not pre-committed epoch (on failure or shutdown without commit).
    async fn abort(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Releases resources; called once at the end.
    async fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
