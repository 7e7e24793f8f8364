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
    /// The checkpoint store failed.
    #[error("checkpoint store: {0}")]
    Store(#[from] object_store::Error),
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
