//! The crate's one error type.

use watershed_core::BoxError;

/// Everything the testkit reports: misuse of the driver, a pipeline failure, or a broken rule
/// found by a conformance suite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// The driver was asked for an input the pipeline function does not declare.
    #[error("no input named `{name}`; the pipeline function declares: {known}")]
    UnknownInput {
        /// The name asked for.
        name: String,
        /// The declared inputs, comma-separated.
        known: String,
    },
    /// The driver was asked for an output the pipeline function does not declare.
    #[error("no output named `{name}`; the pipeline function declares: {known}")]
    UnknownOutput {
        /// The name asked for.
        name: String,
        /// The declared outputs, comma-separated.
        known: String,
    },
    /// An input or output was used with another type than the one it was declared with.
    #[error("`{name}` carries {declared}, but was used as {requested}")]
    WrongType {
        /// The input or output.
        name: String,
        /// The type the pipeline function declared.
        declared: &'static str,
        /// The type the caller used.
        requested: &'static str,
    },
    /// The pipeline function declared the same input or output name twice.
    #[error("the pipeline function declares `{name}` twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The pipeline function declared no input, so nothing could drive it.
    #[error("the pipeline function declares no input: call `TestPipeline::input` at least once")]
    NoInputs,
    /// The pipeline failed (an operator or sink error, a panic in the user's code).
    #[error("the pipeline failed: {0}")]
    Pipeline(#[from] watershed_core::Error),
    /// The pipeline stopped although the driver did not finish it.
    #[error("the pipeline stopped on its own before the driver finished it")]
    Stopped,
    /// The pipeline failed earlier (the error was returned then); only a restart goes on.
    #[error("the pipeline failed earlier: call `restart()` to restore its last checkpoint")]
    NotRunning,
    /// Input was sent, or a restart asked for, after [`finish`](crate::TestDriver::finish).
    #[error("the driver has finished (end of input): create a new driver to send more")]
    Finished,
    /// The driver runs its own tokio runtime, which cannot start inside another one.
    #[error(
        "the test driver runs its own tokio runtime and cannot be used inside one: \
         call it from a plain #[test], not #[tokio::test]"
    )]
    InsideRuntime,
    /// The driver's tokio runtime could not start.
    #[error("could not start the driver's tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A sink or source under a conformance suite returned an error.
    #[error("{step} failed: {error}")]
    Connector {
        /// The step that failed (`pre_commit of epoch 2`).
        step: String,
        /// The connector's error.
        error: BoxError,
    },
    /// A connector under a conformance suite broke one of its rules.
    #[error("rule broken: {rule}: {detail}")]
    Conformance {
        /// The rule, as the suite states it.
        rule: &'static str,
        /// What was observed instead.
        detail: String,
    },
}

/// `Result` with [`TestkitError`].
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;
