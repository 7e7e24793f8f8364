//! [`SourceOptions`] and [`KinesisSourceBuilder`]: the source's settings and their defaults.

use super::{KinesisPosition, KinesisSource, MissingStream, OutOfRange, StartPosition};
use crate::backoff::Backoff;
use crate::config::{AwsOptions, StreamRef};
use crate::lease::LeaseConfig;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Kinesis allows 5 GetRecords calls per second per shard.
pub(super) const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// GetRecords returns at most 10,000 records per call.
pub(super) const MAX_RECORDS_PER_CALL: i32 = 10_000;

/// Tuning of a [`KinesisSource`]; the defaults follow the Kinesis limits.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SourceOptions {
    /// Start for shards without a checkpointed position, on a fresh start (default `Latest`,
    /// as the KCL). Shards that appear later (children of a reshard) always start at
    /// TRIM_HORIZON so that nothing written to them is missed.
    pub start: StartPosition,
    /// Least time between two GetRecords calls on one shard (default and minimum 200 ms:
    /// Kinesis allows 5 calls per second per shard, and every consumer shares that budget).
    pub poll_interval: Duration,
    /// Records per GetRecords call (default and maximum 10,000).
    pub max_records_per_call: i32,
    /// How often ListShards looks for new shards (default 10 s). Closed shards trigger an
    /// immediate look as well.
    pub shard_discovery_interval: Duration,
    /// Batches read ahead, over all shards, before readers wait (default 8). Bounds memory to
    /// `read_ahead × max_records_per_call` records.
    pub read_ahead: usize,
    /// Retry timing.
    pub backoff: Backoff,
    /// Split KPL aggregates into their user records (default true). Each keeps the
    /// aggregate's sequence number and its index as the sub-sequence number.
    pub deaggregate: bool,
    /// Read with enhanced fan-out as this consumer (default `None`: GetRecords polling).
    pub enhanced_fan_out: Option<String>,
    /// What to do when the stream does not exist, at open or later (default `Fail`).
    pub missing_stream: MissingStream,
    /// What to do with restored positions the stream cannot serve (default `Fail`).
    pub out_of_range: OutOfRange,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            start: StartPosition::Latest,
            poll_interval: MIN_POLL_INTERVAL,
            max_records_per_call: MAX_RECORDS_PER_CALL,
            shard_discovery_interval: Duration::from_secs(10),
            read_ahead: 8,
            backoff: Backoff::default(),
            deaggregate: true,
            enhanced_fan_out: None,
            missing_stream: MissingStream::Fail,
            out_of_range: OutOfRange::Fail,
        }
    }
}

/// Builds a [`KinesisSource`].
#[derive(Clone, Debug)]
pub struct KinesisSourceBuilder {
    pub(super) stream: StreamRef,
    pub(super) aws: AwsOptions,
    pub(super) options: SourceOptions,
    pub(super) leases: Option<LeaseConfig>,
}

impl KinesisSourceBuilder {
    /// AWS connection settings (region, credentials, endpoint).
    pub fn aws(mut self, aws: AwsOptions) -> Self {
        self.aws = aws;
        self
    }

    /// Where to start when there is no checkpoint (default `Latest`).
    pub fn start_position(mut self, start: StartPosition) -> Self {
        self.options.start = start;
        self
    }

    /// Least time between GetRecords calls per shard; values below 200 ms are raised to 200 ms.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.options.poll_interval = every.max(MIN_POLL_INTERVAL);
        self
    }

    /// Records per GetRecords call, clamped to 1..=10,000.
    pub fn max_records_per_call(mut self, n: i32) -> Self {
        self.options.max_records_per_call = n.clamp(1, MAX_RECORDS_PER_CALL);
        self
    }

    /// How often to look for new shards.
    pub fn shard_discovery_interval(mut self, every: Duration) -> Self {
        self.options.shard_discovery_interval = every.max(Duration::from_millis(100));
        self
    }

    /// Batches read ahead over all shards (at least 1).
    pub fn read_ahead(mut self, batches: usize) -> Self {
        self.options.read_ahead = batches.max(1);
        self
    }

    /// Retry timing for throttling and transient failures.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Whether to split KPL aggregates into user records (default true).
    pub fn deaggregate(mut self, on: bool) -> Self {
        self.options.deaggregate = on;
        self
    }

    /// Reads with enhanced fan-out (SubscribeToShard) as the stream consumer `name` instead of
    /// polling GetRecords: the consumer is registered on open (or reused when it exists), and
    /// each shard gets its own push subscription with 2 MB/s not shared with other consumers.
    /// Positions, checkpoints, resharding order and metrics are the same as when polling;
    /// `poll_interval` and `max_records_per_call` do not apply. The consumer is not
    /// deregistered on close, so a restart reuses it.
    pub fn enhanced_fan_out(mut self, name: impl Into<String>) -> Self {
        self.options.enhanced_fan_out = Some(name.into());
        self
    }

    /// What to do when the stream does not exist (at open) or is deleted while being read:
    /// fail naming stream and endpoint (the default), or wait for it (see [`MissingStream`]).
    pub fn missing_stream(mut self, policy: MissingStream) -> Self {
        self.options.missing_stream = policy;
        self
    }

    /// What to do with a restored shard position the stream cannot serve (a shard it no
    /// longer has, or a sequence number outside the shard's range, as after the stream was
    /// deleted and re-created): fail naming shard and sequence number (the default), or read
    /// such shards from TRIM_HORIZON or LATEST (see [`OutOfRange`]).
    pub fn on_position_out_of_range(mut self, policy: OutOfRange) -> Self {
        self.options.out_of_range = policy;
        self
    }

    /// Shares the stream with the application's other workers through a lease table in
    /// DynamoDB, as the KCL does: this source reads only the shards whose leases it holds (see
    /// [`LeaseConfig`] and `docs/kinesis.md`, "Sharing a stream between workers").
    pub fn leases(mut self, config: LeaseConfig) -> Self {
        self.leases = Some(config);
        self
    }

    /// The source (it connects in [`Source::open`](watershed_core::Source::open)).
    pub fn build(self) -> KinesisSource {
        let (tx, rx) = mpsc::channel(self.options.read_ahead);
        KinesisSource {
            stream: self.stream,
            aws: self.aws,
            options: Arc::new(self.options),
            stats: Arc::default(),
            client: None,
            endpoint: Arc::from(""),
            consumer: None,
            shards: BTreeMap::new(),
            position: KinesisPosition::default(),
            fresh: true,
            check_positions: false,
            seen: false,
            absence: None,
            tx,
            rx,
            queued: VecDeque::new(),
            next_discovery: Instant::now(),
            leasing: self.leases.map(super::leased::Leasing::new),
        }
    }
}
