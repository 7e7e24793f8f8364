//! The sink stage: two-phase commit, written once for every sink.

use super::tasks::{Downstream, Rejects};
use super::{Ack, AckState};
use crate::checkpoint::CheckpointId;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::sink::{Sink, SinkContext};
use crate::time::EventTime;
use async_trait::async_trait;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// A sink as the last stage of a chain: two-phase commit, written once for every sink.
/// Writes data, pre-commits on the aligned barrier, commits every pending handle up to a
/// completed checkpoint, and re-commits the restored checkpoint's handles when it starts.
pub(crate) struct SinkStage<S: Sink> {
    pub node: String,
    pub sink: S,
    pub ctx: SinkContext,
    pub restored: Vec<(CheckpointId, S::Handle)>,
    pub pending: BTreeMap<CheckpointId, S::Handle>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub written: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    pub records_out: metrics::Counter,
    pub latency: metrics::Histogram,
    pub pending_commits: metrics::Gauge,
    /// Where the records the sink refuses go; `None` for the dead-letter sink itself.
    pub rejects: Option<Rejects>,
}

impl<S: Sink> SinkStage<S> {
    fn err(&self, e: crate::error::BoxError) -> Error {
        Error::sink(self.node.clone(), e)
    }

    async fn commit(&mut self, id: CheckpointId, handle: S::Handle) -> Result<()> {
        self.sink.commit(id, handle).await.map_err(|error| {
            let e = Error::Commit {
                node: self.node.clone(),
                checkpoint: id,
                error,
            };
            tracing::error!(node = %self.node, checkpoint = id.0, error = %e, "commit failed");
            e
        })
    }

    /// Applies the error policy to what the sink refused; returns how many it refused.
    async fn refused(&mut self) -> Result<u64> {
        let rejected = self.sink.take_rejected();
        let n = rejected.len() as u64;
        match self.rejects.as_mut() {
            Some(r) => r.handle(rejected).await?,
            None if n > 0 => {
                return Err(self.err(
                    format!(
                        "the dead-letter sink refused {n} dead letter(s), first: {}",
                        rejected[0].reason
                    )
                    .into(),
                ))
            }
            None => {}
        }
        Ok(n)
    }
}

#[async_trait]
impl<S: Sink> Downstream<S::Item> for SinkStage<S> {
    async fn start(&mut self) -> Result<()> {
        self.sink.open(&self.ctx).await.map_err(|e| self.err(e))?;
        // Restored handles may or may not have committed before the crash; commit is idempotent.
        for (id, handle) in std::mem::take(&mut self.restored) {
            self.commit(id, handle).await?;
        }
        Ok(())
    }

    async fn push(&mut self, m: Message<S::Item>) -> Result<bool> {
        match m {
            Message::Data(batch) => {
                let n = batch.len() as u64;
                // End-to-end latency, once per batch: wall clock minus the newest event time.
                let newest = batch.iter().map(|r| r.timestamp).max();
                if let Some(ts) = newest.filter(|t| t.millis() > 0) {
                    let lag_ms = (EventTime::now().millis() - ts.millis()).max(0);
                    self.latency.record(lag_ms as f64 / 1000.0);
                }
                self.sink.write(batch).await.map_err(|e| self.err(e))?;
                let n = n - self.refused().await?.min(n);
                self.records_out.increment(n);
                if let Some(w) = &self.written {
                    w.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Message::Barrier(id) => {
                let handle = self.sink.pre_commit(id).await.map_err(|e| self.err(e))?;
                // Refusals found while pre-committing belong to this checkpoint too.
                self.refused().await?;
                if let Some(r) = &self.rejects {
                    r.barrier(id).await;
                }
                self.pending.insert(id, handle);
                self.pending_commits.set(self.pending.len() as f64);
                let value = serde_json::to_value(self.pending.iter().collect::<Vec<_>>())
                    .map_err(|e| Error::state(&self.node, e))?;
                let _ = self.acks.send(Ack {
                    id,
                    node: self.node.clone(),
                    state: AckState::Sink(value),
                });
            }
            Message::Watermark(_) | Message::Idle => {}
        }
        Ok(true)
    }

    async fn checkpoint_complete(&mut self, done: CheckpointId) -> Result<()> {
        // Notices may be skipped: a completed checkpoint commits everything up to it.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > done {
                break;
            }
            let (id, handle) = entry.remove_entry();
            self.commit(id, handle).await?;
            self.pending_commits.set(self.pending.len() as f64);
        }
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    async fn finish(&mut self) -> Result<()> {
        self.sink.close().await.map_err(|e| self.err(e))
    }
}
