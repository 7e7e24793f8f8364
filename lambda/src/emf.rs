//! Metrics as CloudWatch embedded metric format (EMF) log lines: in Lambda, whatever goes
//! through the `metrics` facade (the handler's counters and the core runtime's) is written to
//! stdout as JSON lines after each invocation, which CloudWatch turns into metrics without an
//! agent or an API call.

use metrics_cloudwatch_embedded::Collector;
use std::time::Instant;

/// The handler's metrics (names as the rest of Watershed spells them).
pub(crate) mod names {
    /// Records received in events.
    pub const RECORDS: &str = "watershed_lambda_records_total";
    /// Outputs the function emitted.
    pub const OUTPUTS: &str = "watershed_lambda_outputs_total";
    /// Records sent to the dead-letter target.
    pub const DEAD_LETTERS: &str = "watershed_lambda_dead_letters_total";
    /// Batch item failures answered.
    pub const FAILURES: &str = "watershed_lambda_batch_item_failures_total";
    /// Records the handler gave up on after repeated failures (sent to the on-failure target).
    pub const GIVEN_UP: &str = "watershed_lambda_records_given_up_total";
    /// Invocations that failed as a whole.
    pub const ERRORS: &str = "watershed_lambda_invocation_errors_total";
    /// Wall time of one invocation, in seconds.
    pub const SECONDS: &str = "watershed_lambda_invocation_seconds";
}

/// Installs the EMF recorder as the process's metrics recorder, metrics in `namespace` with
/// the dimension `function` = `function`. Call once, before the first invocation; then
/// [`flush_emf`] after each. Fails when another recorder is installed.
pub fn install_emf(
    namespace: &str,
    function: &str,
) -> Result<&'static Collector, Box<dyn std::error::Error + Send + Sync>> {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace.to_owned())
        .with_dimension("function", function.to_owned())
        .init()
        .map_err(|e| e.to_string().into())
}

/// Writes the metrics recorded since the last flush as EMF lines (JSON, one per line) to `out`.
pub fn flush_emf(collector: &Collector, out: impl std::io::Write) -> std::io::Result<()> {
    collector.flush(out)
}

/// Records an invocation's duration when dropped.
pub(crate) struct Timer(Instant);

impl Timer {
    pub(crate) fn start() -> Self {
        Timer(Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::histogram!(names::SECONDS).record(self.0.elapsed().as_secs_f64());
    }
}
