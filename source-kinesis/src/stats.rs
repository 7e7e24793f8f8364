//! Counters a caller can read while the source or sink runs inside a pipeline.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals of one source or sink. Every increment is also published through the
/// `metrics` facade (see the crate documentation for names); these copies let code that
/// installed no metrics recorder (tests, health endpoints) read them.
#[derive(Debug, Default)]
pub struct KinesisStats {
    records: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    iterators_renewed: AtomicU64,
    calls: AtomicU64,
    subscriptions: AtomicU64,
    out_of_range: AtomicU64,
}

impl KinesisStats {
    /// Records read (source) or acknowledged by Kinesis (sink).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Throttling events: calls or PutRecords entries rejected with
    /// `ProvisionedThroughputExceededException` (or another throttling code).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Retries of any cause (throttling, transient failures, partial PutRecords failures).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Shard iterators re-acquired because they had expired.
    pub fn iterators_renewed(&self) -> u64 {
        self.iterators_renewed.load(Ordering::Relaxed)
    }

    /// GetRecords (source) or PutRecords (sink) calls made, including failed ones (the
    /// SHARD_END checks of an enhanced fan-out source too).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// SubscribeToShard calls made (enhanced fan-out), including failed ones.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Restored shard positions the stream could not serve that the source replaced or
    /// forgot (`OutOfRange::TrimHorizon` or `Latest`).
    pub fn positions_out_of_range(&self) -> u64 {
        self.out_of_range.load(Ordering::Relaxed)
    }

    pub(crate) fn add_out_of_range(&self, stream: &str) {
        self.out_of_range.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metric_catalogue::POSITIONS_OUT_OF_RANGE, "stream" => stream.to_owned())
            .increment(1);
    }

    pub(crate) fn add_subscription(&self) {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_records(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_throttled(&self, n: u64, stream: &str, operation: &'static str) {
        self.throttled.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(crate::metric_catalogue::THROTTLED, "stream" => stream.to_owned(), "operation" => operation)
            .increment(n);
    }

    pub(crate) fn add_retry(&self, stream: &str, operation: &'static str) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metric_catalogue::RETRIES, "stream" => stream.to_owned(), "operation" => operation)
            .increment(1);
    }

    pub(crate) fn add_iterator_renewed(&self) {
        self.iterators_renewed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}
