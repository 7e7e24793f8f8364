//! Where a batch's outputs and dead letters go: any Watershed [`Sink`], once per batch, or a
//! target of your own that can report how far it got.

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use watershed_core::{BoxError, CheckpointId, Record, Sink, SinkContext};

/// A target failed after delivering the first `delivered` records of what it was given.
#[derive(Debug, thiserror::Error)]
#[error("delivered {delivered} record(s), then: {error}")]
pub struct DeliveryFailure {
    /// How many records, from the start, were delivered before the failure.
    pub delivered: usize,
    /// The cause.
    #[source]
    pub error: BoxError,
}

impl DeliveryFailure {
    /// Nothing was delivered.
    pub fn nothing(error: impl Into<BoxError>) -> Self {
        DeliveryFailure {
            delivered: 0,
            error: error.into(),
        }
    }
}

/// Where outputs of one batch go.
///
/// A target delivers records in the order given. When it fails, it says how many of them (a
/// prefix) it delivered: the handler reports the record that produced the first undelivered
/// one as the batch item failure, and Lambda retries from it. A target that cannot tell
/// (most transactional sinks) reports 0 and must then have delivered nothing.
#[async_trait]
pub trait Target<T>: Send {
    /// Delivers `records` of the batch whose first record is `batch_id` (`shard-sequence`,
    /// the same on every retry of the same batch: a key for idempotent writes).
    async fn deliver(
        &mut self,
        batch_id: &str,
        records: Vec<Record<T>>,
    ) -> Result<(), DeliveryFailure>;
}

/// Runs a Watershed [`Sink`] as a target: per batch, a fresh sink (from the factory) opened as
/// node `<name>-<batch_id>`, written, pre-committed and committed as checkpoint 1. Its output
/// becomes visible all at once or not at all, and its object names depend only on the batch's
/// first record, so a retried batch rewrites the same objects instead of adding copies.
pub struct SinkTarget<S, F> {
    name: String,
    pipeline: String,
    factory: F,
    _sink: std::marker::PhantomData<fn() -> S>,
}

impl<S, F> SinkTarget<S, F>
where
    S: Sink,
    F: FnMut() -> Result<S, BoxError> + Send,
{
    /// A target that builds its sink with `factory` for each batch. `pipeline` and `name` go
    /// into the sink's context (the S3 sink puts them in object names).
    pub fn new(pipeline: impl Into<String>, name: impl Into<String>, factory: F) -> Self {
        SinkTarget {
            name: name.into(),
            pipeline: pipeline.into(),
            factory,
            _sink: std::marker::PhantomData,
        }
    }
}

#[async_trait]
impl<S, F> Target<S::Item> for SinkTarget<S, F>
where
    S: Sink,
    F: FnMut() -> Result<S, BoxError> + Send,
{
    async fn deliver(
        &mut self,
        batch_id: &str,
        records: Vec<Record<S::Item>>,
    ) -> Result<(), DeliveryFailure> {
        if records.is_empty() {
            return Ok(());
        }
        let mut sink = (self.factory)().map_err(DeliveryFailure::nothing)?;
        let ctx = SinkContext::new(&self.pipeline, format!("{}-{batch_id}", self.name));
        sink.open(&ctx).await.map_err(DeliveryFailure::nothing)?;
        let written = async {
            sink.write(records).await?;
            let handle = sink.pre_commit(CheckpointId(1)).await?;
            sink.commit(CheckpointId(1), handle).await
        }
        .await;
        if let Err(error) = written {
            // Best effort: the error to report is the write's, not the abort's.
            let _ = sink.abort().await;
            let _ = sink.close().await;
            return Err(DeliveryFailure::nothing(error));
        }
        sink.close().await.map_err(DeliveryFailure::nothing)
    }
}

/// Keeps what it is given in memory, for tests and for handlers that return outputs.
/// Clones share the same records.
#[derive(Debug)]
pub struct MemoryTarget<T> {
    records: Arc<Mutex<Vec<Record<T>>>>,
}

impl<T> Default for MemoryTarget<T> {
    fn default() -> Self {
        MemoryTarget {
            records: Arc::default(),
        }
    }
}

impl<T> Clone for MemoryTarget<T> {
    fn clone(&self) -> Self {
        MemoryTarget {
            records: self.records.clone(),
        }
    }
}

impl<T: Clone> MemoryTarget<T> {
    /// An empty target.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything delivered so far, in order.
    pub fn records(&self) -> Vec<Record<T>> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl<T: Send> Target<T> for MemoryTarget<T> {
    async fn deliver(
        &mut self,
        _batch_id: &str,
        records: Vec<Record<T>>,
    ) -> Result<(), DeliveryFailure> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(records);
        Ok(())
    }
}
