//! Where a task's output goes: a bounded channel to the next task (counting the time its
//! sender waits while it is full), or the next stage of the same task.

use crate::checkpoint::CheckpointId;
use crate::error::Result;
use crate::message::Message;
use crate::metric_catalogue as m;
use async_trait::async_trait;
use std::time::Instant;
use tokio::sync::mpsc;

/// Where a task's output goes: a bounded channel to the next task, or straight into the next
/// stage of the same task (operator chaining: no channel hop, no cross-thread wake-up).
pub(crate) enum Output<T> {
    Channel(Channel<T>),
    Chained(Box<dyn Downstream<T>>),
}

/// A bounded channel to the next task, and the time its sender waited on it while full.
pub(crate) struct Channel<T> {
    tx: mpsc::Sender<Message<T>>,
    blocked: metrics::Counter,
}

impl<T: Send + 'static> Channel<T> {
    /// Sends, counting the wait only when the channel is full: the common case costs one
    /// `try_send` and no clock read.
    async fn send(&self, m: Message<T>) -> bool {
        match self.tx.try_send(m) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(m)) => {
                let started = Instant::now();
                let sent = self.tx.send(m).await.is_ok();
                self.blocked
                    .increment(started.elapsed().as_micros().min(u64::MAX as u128) as u64);
                sent
            }
        }
    }
}

/// The next stage of a chain (an operator or a sink), fed in the same task.
#[async_trait]
pub(crate) trait Downstream<T>: Send {
    /// Called once before the first message (sinks open and re-commit restored handles).
    async fn start(&mut self) -> Result<()>;
    /// Handles one message; `Ok(false)` when the pipeline is being torn down.
    async fn push(&mut self, m: Message<T>) -> Result<bool>;
    /// Checkpoint `id` completed: commit what is pending up to it.
    async fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()>;
    /// True while a pre-committed epoch waits for its checkpoint to complete.
    fn has_pending(&self) -> bool;
    /// Called once after the last message, on success.
    async fn finish(&mut self) -> Result<()>;
}

impl<T: Send + 'static> Output<T> {
    /// An output into `tx`, whose waits on a full channel count as `node`'s back-pressure.
    pub(crate) fn channel(tx: mpsc::Sender<Message<T>>, node: &str) -> Self {
        Output::Channel(Channel {
            tx,
            blocked: metrics::counter!(m::BACKPRESSURE, m::LABEL_NODE => node.to_string()),
        })
    }

    /// Sends downstream. `Ok(false)` means the receiver is gone: the pipeline is being torn
    /// down after a failure elsewhere, which the coordinator reports, so the task ends quietly.
    pub(crate) async fn send(&mut self, m: Message<T>) -> Result<bool> {
        match self {
            Output::Channel(channel) => Ok(channel.send(m).await),
            Output::Chained(next) => next.push(m).await,
        }
    }

    pub(crate) async fn start(&mut self) -> Result<()> {
        match self {
            Output::Channel(_) => Ok(()),
            Output::Chained(next) => next.start().await,
        }
    }

    pub(crate) async fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        match self {
            Output::Channel(_) => Ok(()),
            Output::Chained(next) => next.checkpoint_complete(id).await,
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        match self {
            Output::Channel(_) => false,
            Output::Chained(next) => next.has_pending(),
        }
    }

    pub(crate) async fn finish(&mut self) -> Result<()> {
        match self {
            Output::Channel(_) => Ok(()),
            Output::Chained(next) => next.finish().await,
        }
    }
}
