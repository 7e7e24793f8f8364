//! What a finished run reports.

use super::{TaskKind, TaskReport};
use crate::checkpoint::CheckpointId;

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Records read by all sources.
    pub records_in: u64,
    /// Records written by all sinks (dead-letter sink excluded).
    pub records_out: u64,
    /// Records rejected by operators.
    pub rejected: u64,
    /// Checkpoints completed in this run.
    pub checkpoints: u64,
    /// The last completed checkpoint.
    pub last_checkpoint: Option<CheckpointId>,
}

impl RunSummary {
    pub(crate) fn add(&mut self, r: TaskReport) {
        match r.kind {
            TaskKind::Source => self.records_in += r.records_in,
            TaskKind::Sink | TaskKind::Operator | TaskKind::DeadLetter | TaskKind::Internal => {}
        }
    }
}
