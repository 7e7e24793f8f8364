//! The runtime: tasks joined by bounded channels, and the checkpoint coordinator.

pub(crate) mod coordinator;
pub(crate) mod inputs;
pub(crate) mod output;
pub(crate) mod sink_stage;
pub(crate) mod source_gauges;
pub(crate) mod summary;
pub(crate) mod tasks;

use crate::checkpoint::{CheckpointId, Manifest};
use crate::config::PipelineConfig;
use crate::dead_letter::DeadLetter;
use crate::error::Result;
use crate::message::Message;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What a task contributes to a checkpoint.
#[derive(Debug)]
pub(crate) enum AckState {
    Source {
        position: serde_json::Value,
        event_times: std::collections::BTreeMap<String, i64>,
    },
    Operator(Option<Vec<u8>>),
    /// A keyed operator instance's state, split by key group (ascending, in its range).
    KeyGroups {
        operator: String,
        groups: crate::key_group::KeyGroupSnapshot,
    },
    Sink(serde_json::Value),
}

/// A task's acknowledgement of checkpoint `id`.
#[derive(Debug)]
pub(crate) struct Ack {
    pub id: CheckpointId,
    pub node: String,
    pub state: AckState,
}

/// Commands from the coordinator to a source task.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SourceControl {
    /// Snapshot, emit barrier `id`; with `stop`, then end the stream.
    Trigger { id: CheckpointId, stop: bool },
}

/// What kind of task a report comes from.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    Source,
    Operator,
    Sink,
    DeadLetter,
    #[default]
    Internal,
}

/// Counts a task reports when it ends.
#[derive(Debug, Default, Clone)]
pub(crate) struct TaskReport {
    pub kind: TaskKind,
    pub node: String,
    pub records_in: u64,
}

pub(crate) type TaskFuture = BoxFuture<'static, Result<TaskReport>>;

/// A task (or chain of operators) not yet started whose output is not yet decided: the next
/// operator may chain onto it, or a channel may be attached.
pub(crate) type Build<T> =
    Box<dyn FnOnce(&mut RunContext, tasks::Output<T>) -> Result<TaskFuture> + Send>;

/// A task not yet started: it is built when the pipeline runs, once the restored checkpoint is
/// known.
pub(crate) type TaskFactory = Box<dyn FnOnce(&mut RunContext) -> Result<TaskFuture> + Send>;

/// What task factories get from the runtime when the pipeline starts.
pub(crate) struct RunContext {
    pub config: Arc<PipelineConfig>,
    pub restored: Option<Manifest>,
    pub restored_states: HashMap<String, Bytes>,
    pub ack_tx: mpsc::UnboundedSender<Ack>,
    pub complete_rx: watch::Receiver<Option<CheckpointId>>,
    pub finished_tx: mpsc::UnboundedSender<String>,
    /// Sources asking for a checkpoint now ([`crate::SourceEvent::CheckpointRequested`]), by
    /// node name.
    pub checkpoint_requests: mpsc::UnboundedSender<String>,
    pub source_controls: Vec<mpsc::UnboundedSender<SourceControl>>,
    pub participants: usize,
    pub dead_letters: Vec<mpsc::Receiver<Message<DeadLetter>>>,
    pub dead_letter_enabled: bool,
    pub error_policy: crate::dead_letter::ErrorPolicy,
    pub rejected: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub recent_rejections: crate::dead_letter::RecentRejections,
    pub records_out: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RunContext {
    /// Registers a task that acknowledges every checkpoint.
    pub(crate) fn participate(&mut self) {
        self.participants += 1;
    }

    /// A channel for a task's rejected records, if a dead-letter sink exists.
    pub(crate) fn dead_letter_sender(&mut self) -> Option<mpsc::Sender<Message<DeadLetter>>> {
        if !self.dead_letter_enabled {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.config.channel_capacity);
        self.dead_letters.push(rx);
        Some(tx)
    }

    pub(crate) fn restored_checkpoint(&self) -> Option<CheckpointId> {
        self.restored.as_ref().map(|m| m.id)
    }
}
