//! The core error type.

use crate::checkpoint::CheckpointId;

/// A boxed error from a connector or user code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a pipeline, with the node it happened in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A source failed (broker error, unreadable file, …).
    #[error("source `{node}` failed: {error}")]
    Source {
        /// The source's node name.
        node: String,
        /// What went wrong.
        #[source]
        error: BoxError,
    },
    /// A sink failed to write, pre-commit, commit or abort.
    #[error("sink `{node}` failed: {error}")]
    Sink {
        /// The sink's node name.
        node: String,
        /// What went wrong.
        #[source]
        error: BoxError,
    },
    /// A sink could not commit the output of a completed checkpoint. The checkpoint stays the
    /// restore point and keeps this sink's pending output, so nothing is lost; the pipeline
    /// takes no later checkpoint until the commit succeeds.
    #[error(
        "sink `{node}` could not commit the output of checkpoint {checkpoint}: {error}. \
         Checkpoint {checkpoint} is complete, so the other sinks may have committed their part; \
         this sink's part is kept in the checkpoint and is not lost, and no later checkpoint is \
         taken until it commits. Way out: fix the cause named above and start the pipeline \
         again; the commit is retried from the checkpoint (commits are idempotent)"
    )]
    Commit {
        /// The sink's node name.
        node: String,
        /// The completed checkpoint whose output could not be committed.
        checkpoint: CheckpointId,
        /// What the sink reported.
        #[source]
        error: BoxError,
    },
    /// An operator failed.
    #[error("operator `{node}` failed: {error}")]
    Operator {
        /// The operator's node name.
        node: String,
        /// What went wrong.
        #[source]
        error: BoxError,
    },
    /// A record could not be processed and the error policy is [`ErrorPolicy::Fail`](crate::ErrorPolicy::Fail).
    #[error("record failed in `{node}`: {reason}{}", origin.as_ref().map(|o| format!(" (at {o})")).unwrap_or_default())]
    Record {
        /// Node where the record failed.
        node: String,
        /// Why.
        reason: String,
        /// Where the record came from, if known.
        origin: Option<crate::record::Origin>,
    },
    /// Reading or writing a checkpoint failed.
    #[error("checkpoint {id:?} failed: {message}")]
    Checkpoint {
        /// The checkpoint concerned, if any.
        id: Option<CheckpointId>,
        /// What went wrong.
        message: String,
    },
    /// The checkpoint to restore is corrupt (its manifest unreadable or altered, a state file
    /// missing or altered), and either the configuration refuses corrupt checkpoints
    /// ([`CorruptCheckpoint::Refuse`](crate::checkpoint::CorruptCheckpoint::Refuse), the
    /// default) or no intact older checkpoint is left to fall back to. Nothing was restored.
    #[error(
        "checkpoint {id} is corrupt: `{object}` {problem}. Nothing was restored. Ways out: put \
         back an intact copy of `{object}` and start again; {}",
        fallback_hint(*fallback)
    )]
    CorruptCheckpoint {
        /// The corrupt checkpoint (the newest one, if several are).
        id: CheckpointId,
        /// The object found corrupt: the manifest or a state file, as a path of the store.
        object: String,
        /// What is wrong with it.
        problem: String,
        /// The newest intact checkpoint older than `id`, if any: what
        /// [`CorruptCheckpoint::FallBack`](crate::checkpoint::CorruptCheckpoint::FallBack)
        /// restores.
        fallback: Option<CheckpointId>,
    },
    /// The checkpoint cannot be restored into this pipeline's keyed operators: it was written
    /// before key groups existed, with another `max_parallelism`, or holds an operator's state
    /// as one blob per instance at another parallelism. Nothing was restored.
    #[error("checkpoint {id} cannot be restored into keyed operator `{operator}`: {problem}")]
    Rescale {
        /// The checkpoint.
        id: CheckpointId,
        /// The keyed operator whose state does not fit.
        operator: String,
        /// Why, and what to do.
        problem: String,
    },
    /// A checkpoint object could not be read, written, listed or deleted.
    #[error("checkpoint store: cannot {action} `{object}`: {error}")]
    CheckpointObject {
        /// What was being done: `read`, `write`, `list` or `delete`.
        action: &'static str,
        /// The object's path (for a local store, the file's path).
        object: String,
        /// The store's error.
        #[source]
        error: BoxError,
    },
    /// A local checkpoint directory cannot be used.
    #[error("checkpoint directory `{}` cannot be used: {problem}", dir.display())]
    CheckpointDir {
        /// The directory as given.
        dir: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
        /// The underlying error.
        #[source]
        error: BoxError,
    },
    /// State or positions could not be (de)serialized.
    #[error("state of `{node}` could not be (de)serialized: {error}")]
    State {
        /// Node whose state it is.
        node: String,
        /// The serde error.
        #[source]
        error: serde_json::Error,
    },
    /// The pipeline is not built correctly (duplicate names, nothing to run, changed parallelism).
    #[error("invalid pipeline: {0}")]
    Config(String),
    /// A task ended abnormally (panicked or was cancelled).
    #[error("task `{node}` ended abnormally: {message}")]
    Task {
        /// The task's node name.
        node: String,
        /// The panic message or cancellation reason.
        message: String,
    },
    /// An I/O error outside any connector (signals, local files of the runtime).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Wraps a connector error as a source error of `node`.
    pub fn source(node: impl Into<String>, error: impl Into<BoxError>) -> Self {
        Error::Source {
            node: node.into(),
            error: error.into(),
        }
    }

    /// Wraps a connector error as a sink error of `node`.
    pub fn sink(node: impl Into<String>, error: impl Into<BoxError>) -> Self {
        Error::Sink {
            node: node.into(),
            error: error.into(),
        }
    }

    /// Wraps an error as an operator error of `node`.
    pub fn operator(node: impl Into<String>, error: impl Into<BoxError>) -> Self {
        Error::Operator {
            node: node.into(),
            error: error.into(),
        }
    }

    pub(crate) fn state(node: &str, error: serde_json::Error) -> Self {
        Error::State {
            node: node.to_string(),
            error,
        }
    }
}

/// The second way out of a corrupt checkpoint, depending on whether an older one is intact.
fn fallback_hint(fallback: Option<CheckpointId>) -> String {
    match fallback {
        Some(older) => format!(
            "or opt into falling back with \
             PipelineConfig::on_corrupt_checkpoint(CorruptCheckpoint::FallBack), which restores \
             checkpoint {older} (the newest intact one), re-commits its pending output and \
             replays input from its positions: output committed after checkpoint {older} may \
             be written again (at-least-once for that stretch)"
        ),
        None => "no older intact checkpoint is left to fall back to".to_string(),
    }
}
