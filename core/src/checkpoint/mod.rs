//! Checkpoints: ids, manifests, the store they live in, and how a pipeline restores one.
//!
//! Checkpoints are verified, not trusted: the manifest carries a checksum of every state file
//! and of itself, and restore checks them before anything is used (see [`CorruptCheckpoint`]).

use serde::{Deserialize, Serialize};
use std::fmt;

mod integrity;
mod manifest;
mod rescale;
mod restore;
mod store;

pub use manifest::{KeyGroupIndex, KeyGroupSlice, Manifest};
pub(crate) use rescale::key_group_states;
pub use restore::CorruptCheckpoint;
pub(crate) use restore::{restore, RestoreRules};
pub(crate) use store::CheckpointData;
pub use store::CheckpointStore;

/// Identifies a checkpoint. Ids strictly increase within a pipeline, across restarts too, and a
/// higher id subsumes every lower one.
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
