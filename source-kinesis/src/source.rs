//! `KinesisSource`: shards as splits, GetRecords polling, resharding, positions in checkpoints.

use crate::backoff::Backoff;
use crate::config::{with_stream, AwsOptions, StreamRef};
use crate::deaggregate::{deaggregate, KPL_MAGIC};
use crate::error::{classify, detail, Failure, KinesisError};
use crate::stats::KinesisStats;
use async_trait::async_trait;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use aws_smithy_types::DateTime;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watershed_core::{
    BoxError, CheckpointId, EventTime, Offset, Origin, Record, SequenceNumber, Source, SourceEvent,
    SplitId, SplitRef,
};

/// Kinesis allows 5 GetRecords calls per second per shard.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// GetRecords returns at most 10,000 records per call.
const MAX_RECORDS_PER_CALL: i32 = 10_000;

/// How far before the moment a shard was opened at LATEST its replayable start lies (ms).
///
/// The first run reads from Kinesis' own LATEST; a restore reads from `AT_TIMESTAMP` of this
/// host's clock at open, minus this allowance, so that a host clock running ahead of Kinesis by
/// up to a second still skips nothing. The price: a restore from a checkpoint taken before the
/// shard returned anything may also read records that arrived up to a second before the first
/// open — records no run returned before, so nothing is repeated.
pub const LATEST_CLOCK_ALLOWANCE_MS: i64 = 1_000;

/// Milliseconds since the epoch on this host.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The replayable form of "LATEST, as of now".
fn resolve_latest() -> ShardPosition {
    ShardPosition::Start(StartPosition::AtTimestamp(
        now_millis().saturating_sub(LATEST_CLOCK_ALLOWANCE_MS),
    ))
}

/// Where to start reading a shard that has no checkpointed position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records written after the source opened (closed shards are skipped). The moment a
    /// shard is first opened this way is kept in the position as `AtTimestamp` (minus
    /// [`LATEST_CLOCK_ALLOWANCE_MS`]), so a restore from a checkpoint taken before the shard
    /// returned a record resumes there instead of at a new LATEST, and skips nothing.
    Latest,
    /// The first record that arrived at or after this time (ms since the epoch).
    AtTimestamp(i64),
}

/// Where one shard stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ShardPosition {
    /// Nothing returned yet: reading starts (or restarts) at this position.
    Start(StartPosition),
    /// The last record returned (inclusive, as the KCL checkpoints): reading resumes with
    /// `AFTER_SEQUENCE_NUMBER`. `sub` is the KPL sub-sequence, always 0 for plain records.
    After {
        /// Sequence number of the last record returned.
        sequence: String,
        /// Sub-sequence of that record inside a KPL aggregate.
        sub: u32,
    },
    /// The shard is closed and was read to SHARD_END: it is never read again, and its
    /// children may start.
    Finished,
}

/// The source's position: one entry per shard it has seen. Stored in checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KinesisPosition {
    /// Shard id → position.
    pub shards: BTreeMap<String, ShardPosition>,
}

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
        }
    }
}

/// Builds a [`KinesisSource`].
#[derive(Clone, Debug)]
pub struct KinesisSourceBuilder {
    stream: StreamRef,
    aws: AwsOptions,
    options: SourceOptions,
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

    /// The source (it connects in [`Source::open`]).
    pub fn build(self) -> KinesisSource {
        let (tx, rx) = mpsc::channel(self.options.read_ahead);
        KinesisSource {
            stream: self.stream,
            aws: self.aws,
            options: Arc::new(self.options),
            stats: Arc::default(),
            client: None,
            consumer: None,
            shards: BTreeMap::new(),
            position: KinesisPosition::default(),
            fresh: true,
            tx,
            rx,
            queued: VecDeque::new(),
            next_discovery: Instant::now(),
        }
    }
}

/// What the source knows about a shard besides its position.
#[derive(Debug)]
struct ShardInfo {
    parents: Vec<String>,
    closed: bool,
    split: Arc<SplitRef>,
    state: ShardState,
    /// Shared with the reader: EFO subscriptions of some servers never signal the end of a
    /// closed shard, so its reader checks for SHARD_END itself once the shard is closed.
    closed_flag: Arc<AtomicBool>,
    /// Opened at LATEST in this run: the reader asks for a LATEST iterator while the position
    /// already holds the replayable `AtTimestamp` it was resolved to (see `resolve_latest`).
    latest: bool,
}

#[derive(Debug)]
enum ShardState {
    /// Waiting for its parents to reach SHARD_END.
    Waiting,
    Reading(JoinHandle<()>),
    Finished,
}

/// Where a new iterator or subscription starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartAt {
    After(String),
    Latest,
    Timestamp(i64),
    TrimHorizon,
}

/// What a shard reader task reports.
pub(crate) enum ReaderEvent {
    Records {
        shard: String,
        split: SplitId,
        records: Vec<Record<Bytes>>,
        /// Sequence number and sub-sequence of the last record.
        last: (String, u32),
    },
    End {
        shard: String,
        children: Vec<(String, Vec<String>)>,
    },
    Failed(KinesisError),
}

/// Reads a Kinesis data stream: every shard is a split.
///
/// - **Records** are raw `Bytes` with the partition key as key and `ApproximateArrivalTimestamp`
///   as event time. For an event time from the payload, decode in
///   `WatermarkStrategy::with_timestamps` (core assigns it before watermarks).
/// - **Reading**: one reader task per shard keeps its own GetRecords loop (at most one call per
///   `poll_interval`, default 200 ms = the 5 calls/s limit), so shards are fetched concurrently
///   and `poll` returns whichever batch arrived first. Readers run at most `read_ahead` batches
///   ahead; nothing they read ahead is in the position until `poll` returned it.
/// - **Throttling** (`ProvisionedThroughputExceededException`) is retried with jittered
///   exponential backoff and counted (`watershed_throttled_total`); expired iterators are
///   re-acquired after the last record read; `MillisBehindLatest` is published per shard as
///   `watershed_kinesis_millis_behind_latest`.
/// - **Resharding**: a shard starts only after all its parents (two for a merge) reached
///   SHARD_END, at TRIM_HORIZON, so each partition key's records stay in order across splits
///   and merges. A finished shard is announced with `SplitRemoved` and stays `Finished` in the
///   position, so it is not read again after a restore.
/// - **Positions** name the last record returned per shard; a restore resumes with
///   `AFTER_SEQUENCE_NUMBER`, so a record covered by a completed checkpoint is neither skipped
///   nor repeated. The source commits nothing to Kinesis (Kinesis has no consumer offsets; the
///   checkpoint store plays the KCL lease table's role).
/// - **Enhanced fan-out** (opt-in, [`KinesisSourceBuilder::enhanced_fan_out`]): the readers
///   subscribe with SubscribeToShard instead of polling, with the same positions, resharding
///   order and metrics.
/// - **KPL aggregates** are split into their user records (sub-sequence numbers in the origin
///   and the position); a record that is not a well-formed aggregate arrives as it is.
pub struct KinesisSource {
    stream: StreamRef,
    aws: AwsOptions,
    options: Arc<SourceOptions>,
    stats: Arc<KinesisStats>,
    client: Option<Client>,
    /// The enhanced fan-out consumer's ARN, once registered.
    consumer: Option<Arc<str>>,
    shards: BTreeMap<String, ShardInfo>,
    position: KinesisPosition,
    /// No checkpoint was restored and the first discovery has not happened: shards found now
    /// get the configured start position.
    fresh: bool,
    tx: mpsc::Sender<ReaderEvent>,
    rx: mpsc::Receiver<ReaderEvent>,
    queued: VecDeque<SourceEvent<Bytes>>,
    next_discovery: Instant,
}

impl KinesisSource {
    /// A builder for a source reading `stream` (a name, or an ARN starting with `arn:`).
    pub fn builder(stream: impl Into<String>) -> KinesisSourceBuilder {
        KinesisSourceBuilder {
            stream: StreamRef::parse(stream),
            aws: AwsOptions::default(),
            options: SourceOptions::default(),
        }
    }

    /// Counters of this source (shared; read them while the pipeline runs).
    pub fn stats(&self) -> Arc<KinesisStats> {
        self.stats.clone()
    }

    fn client(&self) -> Result<&Client, KinesisError> {
        self.client
            .as_ref()
            .ok_or_else(|| KinesisError::Config("the source is not open".into()))
    }

    /// ListShards with pagination, retried on throttling and transient failures.
    async fn list_shards(&self) -> Result<Vec<aws_sdk_kinesis::types::Shard>, KinesisError> {
        let client = self.client()?;
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        let mut attempt = 0u32;
        loop {
            // With a NextToken, ListShards refuses the stream name: the token carries it.
            let request = match &token {
                Some(t) => client.list_shards().next_token(t),
                None => with_stream!(client.list_shards(), &self.stream),
            };
            match request.send().await {
                Ok(out) => {
                    attempt = 0;
                    shards.extend(out.shards().iter().cloned());
                    match out.next_token() {
                        Some(t) => token = Some(t.to_owned()),
                        None => return Ok(shards),
                    }
                }
                Err(e) => {
                    let failure = classify(&e);
                    let retry = match failure {
                        Failure::Throttled => true,
                        Failure::Transient => attempt < self.options.backoff.max_attempts,
                        _ => false,
                    };
                    if !retry {
                        return Err(KinesisError::Stream {
                            operation: "ListShards",
                            stream: self.stream.as_str().to_owned(),
                            detail: detail(&e),
                        });
                    }
                    if failure == Failure::Throttled {
                        self.stats
                            .add_throttled(1, self.stream.as_str(), "ListShards");
                    }
                    self.stats.add_retry(self.stream.as_str(), "ListShards");
                    tokio::time::sleep(self.options.backoff.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    fn split_ref(&self, shard: &str) -> Arc<SplitRef> {
        Arc::new(SplitRef {
            stream: self.stream.as_str().to_owned(),
            split: SplitId::new(shard),
        })
    }

    /// Learns new shards from ListShards, forgets finished shards that expired, and starts
    /// every shard whose parents are done.
    async fn discover(&mut self) -> Result<(), KinesisError> {
        let listed = self.list_shards().await?;
        let fresh = std::mem::replace(&mut self.fresh, false);
        let listed_ids: std::collections::HashSet<String> =
            listed.iter().map(|s| s.shard_id().to_owned()).collect();
        for shard in &listed {
            let id = shard.shard_id();
            let closed = shard
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some();
            if let Some(info) = self.shards.get_mut(id) {
                info.closed |= closed;
                if closed {
                    info.closed_flag.store(true, Ordering::Relaxed);
                }
                continue;
            }
            let parents: Vec<String> = shard
                .parent_shard_id()
                .into_iter()
                .chain(shard.adjacent_parent_shard_id())
                .map(str::to_owned)
                .collect();
            self.add_shard(id, parents, closed, fresh);
        }
        // A finished shard that ListShards no longer lists has expired: nothing can read it
        // again, so its entry only grows the checkpoint.
        self.position
            .shards
            .retain(|id, p| !matches!(p, ShardPosition::Finished) || listed_ids.contains(id));
        self.start_ready();
        self.next_discovery = Instant::now() + self.options.shard_discovery_interval;
        Ok(())
    }

    fn add_shard(&mut self, id: &str, parents: Vec<String>, closed: bool, fresh: bool) {
        let mut latest = false;
        // A checkpoint written before LATEST was resolved (older versions) still says LATEST:
        // resolve it now, which is the best that can be done for it.
        if let Some(p @ ShardPosition::Start(StartPosition::Latest)) =
            self.position.shards.get_mut(id)
        {
            *p = resolve_latest();
            latest = true;
        }
        if !self.position.shards.contains_key(id) {
            let start = if fresh {
                match self.options.start {
                    // LATEST on a closed shard can never return a record: skip it, and let its
                    // open descendants start at LATEST too (they were listed in this first
                    // discovery, so they are `fresh`), as the KCL does for LATEST.
                    StartPosition::Latest if closed => ShardPosition::Finished,
                    // The position must not say LATEST: a checkpoint taken before the shard
                    // returned a record would restart at a new LATEST and skip everything
                    // written while the pipeline was down.
                    StartPosition::Latest => {
                        latest = true;
                        resolve_latest()
                    }
                    start => ShardPosition::Start(start),
                }
            } else {
                // A shard that appears after the first discovery is a reshard child: all of
                // it is newer than its parents, so read it from the beginning.
                ShardPosition::Start(StartPosition::TrimHorizon)
            };
            self.position.shards.insert(id.to_owned(), start);
        }
        let state = if matches!(self.position.shards.get(id), Some(ShardPosition::Finished)) {
            ShardState::Finished
        } else {
            ShardState::Waiting
        };
        let split = self.split_ref(id);
        self.shards.insert(
            id.to_owned(),
            ShardInfo {
                parents,
                closed,
                split,
                state,
                closed_flag: Arc::new(AtomicBool::new(closed)),
                latest,
            },
        );
    }

    /// A parent is done when it reached SHARD_END, or when it is unknown (expired past the
    /// retention period, so there is nothing left to read before the child).
    fn parent_done(&self, parent: &str) -> bool {
        match self.shards.get(parent) {
            Some(info) => matches!(info.state, ShardState::Finished),
            None => true,
        }
    }

    fn start_ready(&mut self) {
        let ready: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, info)| matches!(info.state, ShardState::Waiting))
            .filter(|(_, info)| info.parents.iter().all(|p| self.parent_done(p)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            let Ok(client) = self.client().cloned() else {
                return;
            };
            let info = self.shards.get_mut(&id).expect("ready shard is known");
            let resume = self
                .position
                .shards
                .get(&id)
                .cloned()
                .unwrap_or(ShardPosition::Start(StartPosition::TrimHorizon));
            let start = if info.latest {
                ShardPosition::Start(StartPosition::Latest)
            } else {
                resume.clone()
            };
            let reader = ShardReader {
                client,
                stream: self.stream.clone(),
                shard: id.clone(),
                split: info.split.clone(),
                start,
                resume,
                options: self.options.clone(),
                stats: self.stats.clone(),
                tx: self.tx.clone(),
                consumer: self.consumer.clone(),
                closed: info.closed_flag.clone(),
            };
            info.state = ShardState::Reading(tokio::spawn(reader.run()));
            tracing::debug!(stream = self.stream.as_str(), shard = %id, "shard reader started");
            // The shard holds the watermark back from now until its first records.
            self.queued
                .push_back(SourceEvent::SplitAdded(SplitId::new(&id)));
        }
    }

    fn shard_ended(&mut self, shard: String, children: Vec<(String, Vec<String>)>) {
        self.position
            .shards
            .insert(shard.clone(), ShardPosition::Finished);
        if let Some(info) = self.shards.get_mut(&shard) {
            info.state = ShardState::Finished;
            info.closed = true;
        }
        self.queued
            .push_back(SourceEvent::SplitRemoved(SplitId::new(&shard)));
        for (child, parents) in children {
            if !self.shards.contains_key(&child) {
                self.add_shard(&child, parents, false, false);
            }
        }
        self.start_ready();
        // ChildShards names the children; ListShards confirms the other parent of a merge and
        // any shard GetRecords did not mention.
        self.next_discovery = Instant::now();
    }

    fn stop_readers(&mut self) {
        for info in self.shards.values_mut() {
            if let ShardState::Reading(handle) = &info.state {
                handle.abort();
            }
        }
    }
}

impl Drop for KinesisSource {
    fn drop(&mut self) {
        self.stop_readers();
    }
}

#[async_trait]
impl Source for KinesisSource {
    type Item = Bytes;
    type Position = KinesisPosition;

    async fn open(&mut self, restored: Option<KinesisPosition>) -> Result<(), BoxError> {
        let client = self.aws.build_client().await?;
        if let Some(name) = &self.options.enhanced_fan_out {
            let arn =
                crate::efo::register_consumer(&client, &self.stream, name, &self.options.backoff)
                    .await?;
            self.consumer = Some(arn.into());
        }
        self.client = Some(client);
        if let Some(position) = restored {
            for (shard, p) in &position.shards {
                if let ShardPosition::After { sequence, .. } = p {
                    if !crate::sequence::is_valid_sequence_number(sequence) {
                        return Err(KinesisError::Position {
                            stream: self.stream.as_str().to_owned(),
                            reason: format!("shard {shard}: `{sequence}` is not a sequence number"),
                        }
                        .into());
                    }
                }
            }
            self.position = position;
            self.fresh = false;
        }
        self.discover().await?;
        Ok(())
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<Bytes>, BoxError> {
        let deadline = Instant::now() + max_wait;
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Ok(event);
            }
            if Instant::now() >= self.next_discovery {
                self.discover().await?;
                continue;
            }
            let until = deadline.min(self.next_discovery);
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(ReaderEvent::Records {
                    shard,
                    split,
                    records,
                    last,
                })) => {
                    self.position.shards.insert(
                        shard,
                        ShardPosition::After {
                            sequence: last.0,
                            sub: last.1,
                        },
                    );
                    return Ok(SourceEvent::Batch { split, records });
                }
                Ok(Some(ReaderEvent::End { shard, children })) => {
                    tracing::info!(stream = self.stream.as_str(), shard = %shard, "shard reached SHARD_END");
                    self.shard_ended(shard, children);
                }
                Ok(Some(ReaderEvent::Failed(e))) => return Err(e.into()),
                // The source holds a sender, so the channel never closes; a timeout means
                // nothing arrived (or discovery is due, handled at the top of the loop).
                Ok(None) | Err(_) => {
                    if Instant::now() >= deadline {
                        return Ok(SourceEvent::Idle);
                    }
                }
            }
        }
    }

    fn position(&self) -> KinesisPosition {
        self.position.clone()
    }

    async fn checkpoint_complete(
        &mut self,
        _id: CheckpointId,
        _position: &KinesisPosition,
    ) -> Result<(), BoxError> {
        // Kinesis keeps no consumer positions: the Watershed checkpoint is the only record.
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.stop_readers();
        Ok(())
    }
}

fn sub_sequence(r: &Record<Bytes>) -> u32 {
    match r.origin.as_ref().map(|o| &o.offset) {
        Some(Offset::Sequence(s)) => s.sub,
        _ => 0,
    }
}

/// The reading loop of one shard (GetRecords polling, or SubscribeToShard), in its own task.
pub(crate) struct ShardReader {
    pub(crate) client: Client,
    pub(crate) stream: StreamRef,
    pub(crate) shard: String,
    pub(crate) split: Arc<SplitRef>,
    /// Where the first iterator or subscription starts.
    pub(crate) start: ShardPosition,
    /// Where a later one starts while no record was read yet: the position's entry, which
    /// for a shard opened at LATEST is the resolved `AtTimestamp`, not a new LATEST.
    pub(crate) resume: ShardPosition,
    pub(crate) options: Arc<SourceOptions>,
    pub(crate) stats: Arc<KinesisStats>,
    pub(crate) tx: mpsc::Sender<ReaderEvent>,
    /// The enhanced fan-out consumer to subscribe with; `None` polls with GetRecords.
    pub(crate) consumer: Option<Arc<str>>,
    /// Set once ListShards reports the shard closed (it has an ending sequence number).
    pub(crate) closed: Arc<AtomicBool>,
}

impl ShardReader {
    async fn run(self) {
        let tx = self.tx.clone();
        let result = if self.consumer.is_some() {
            self.subscribe().await
        } else {
            self.read().await
        };
        if let Err(e) = result {
            let _ = tx.send(ReaderEvent::Failed(e)).await;
        }
    }

    /// The start for a new iterator or subscription: after the last record read, else the
    /// first start for the first one and the position's start for later ones.
    pub(crate) fn start_after(&self, last: &Option<String>, first: bool) -> StartAt {
        match (last, if first { &self.start } else { &self.resume }) {
            (Some(seq), _) => StartAt::After(seq.clone()),
            (None, ShardPosition::Start(StartPosition::Latest)) => StartAt::Latest,
            (None, ShardPosition::Start(StartPosition::AtTimestamp(ms))) => StartAt::Timestamp(*ms),
            (None, ShardPosition::After { sequence, .. }) => StartAt::After(sequence.clone()),
            (None, _) => StartAt::TrimHorizon,
        }
    }

    /// Converts and sends one response's records; returns false when the source is gone.
    /// `last` becomes the last Kinesis record's sequence number.
    pub(crate) async fn emit(
        &self,
        raw: Vec<aws_sdk_kinesis::types::Record>,
        last: &mut Option<String>,
        records_in: &metrics::Counter,
    ) -> bool {
        if let Some(r) = raw.last() {
            *last = Some(r.sequence_number.clone());
        }
        let mut records: Vec<Record<Bytes>> = Vec::with_capacity(raw.len());
        for r in raw {
            self.convert(r, &mut records);
        }
        if records.is_empty() {
            return true;
        }
        let n = records.len() as u64;
        records_in.increment(n);
        self.stats.add_records(n);
        let event = ReaderEvent::Records {
            shard: self.shard.clone(),
            split: self.split.split.clone(),
            last: (
                last.clone().expect("a batch has a last record"),
                records.last().map_or(0, sub_sequence),
            ),
            records,
        };
        self.tx.send(event).await.is_ok()
    }

    pub(crate) fn error(
        &self,
        operation: &'static str,
        last: &Option<String>,
        detail: String,
    ) -> KinesisError {
        KinesisError::Shard {
            operation,
            stream: self.stream.as_str().to_owned(),
            shard: self.shard.clone(),
            sequence: last.clone(),
            detail,
        }
    }

    /// An iterator just after `last`, or at the start position when nothing was read (`last`
    /// begins as the restored position's sequence number, so a restore resumes after it).
    /// `first`: the shard's first iterator in this run (LATEST is only ever asked for then).
    pub(crate) async fn iterator(
        &self,
        last: &Option<String>,
        first: bool,
    ) -> Result<Option<String>, KinesisError> {
        let mut attempt = 0u32;
        loop {
            let request =
                with_stream!(self.client.get_shard_iterator(), &self.stream).shard_id(&self.shard);
            let request = match self.start_after(last, first) {
                StartAt::After(seq) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(seq),
                StartAt::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
                StartAt::Timestamp(ms) => request
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(DateTime::from_millis(ms)),
                StartAt::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            match request.send().await {
                Ok(out) => return Ok(out.shard_iterator().map(str::to_owned)),
                Err(e) => {
                    let failure = classify(&e);
                    let retry = match failure {
                        Failure::Throttled => true,
                        Failure::Transient => attempt < self.options.backoff.max_attempts,
                        _ => false,
                    };
                    if !retry {
                        return Err(self.error("GetShardIterator", last, detail(&e)));
                    }
                    if failure == Failure::Throttled {
                        self.stats
                            .add_throttled(1, self.stream.as_str(), "GetShardIterator");
                    }
                    self.stats
                        .add_retry(self.stream.as_str(), "GetShardIterator");
                    tokio::time::sleep(self.options.backoff.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// The shard is read to its end (in polling or enhanced fan-out mode): no longer behind,
    /// and the source learns its children.
    pub(crate) async fn end(
        &self,
        behind: &metrics::Gauge,
        children: Vec<(String, Vec<String>)>,
    ) -> Result<(), KinesisError> {
        behind.set(0.0);
        let _ = self
            .tx
            .send(ReaderEvent::End {
                shard: self.shard.clone(),
                children,
            })
            .await;
        Ok(())
    }

    async fn read(self) -> Result<(), KinesisError> {
        let stream = self.stream.as_str().to_owned();
        let behind = metrics::gauge!("watershed_kinesis_millis_behind_latest", "stream" => stream.clone(), "shard" => self.shard.clone());
        let records_in = metrics::counter!("watershed_kinesis_records_in_total", "stream" => stream.clone(), "shard" => self.shard.clone());
        let latency = metrics::histogram!("watershed_kinesis_get_records_seconds", "stream" => stream.clone());
        let mut last: Option<String> = match &self.start {
            ShardPosition::After { sequence, .. } => Some(sequence.clone()),
            _ => None,
        };
        let Some(mut iterator) = self.iterator(&last, true).await? else {
            // No iterator: the shard is closed and read to its end.
            return self.end(&behind, Vec::new()).await;
        };
        let mut next_call = Instant::now();
        let mut attempt = 0u32;
        loop {
            tokio::time::sleep_until(next_call).await;
            next_call = Instant::now() + self.options.poll_interval;
            let started = Instant::now();
            self.stats.add_call();
            let result = self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(self.options.max_records_per_call)
                .send()
                .await;
            latency.record(started.elapsed().as_secs_f64());
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    match classify(&e) {
                        Failure::Throttled => {
                            self.stats.add_throttled(1, &stream, "GetRecords");
                        }
                        Failure::ExpiredIterator => {
                            // Unused for 5 minutes (a long back-pressure stall): resume after the
                            // last record read.
                            self.stats.add_iterator_renewed();
                            match self.iterator(&last, false).await? {
                                Some(it) => iterator = it,
                                None => {
                                    return Err(self.error(
                                        "GetShardIterator",
                                        &last,
                                        "no iterator for an expired one".into(),
                                    ))
                                }
                            }
                            continue;
                        }
                        Failure::Transient if attempt < self.options.backoff.max_attempts => {}
                        _ => return Err(self.error("GetRecords", &last, detail(&e))),
                    }
                    self.stats.add_retry(&stream, "GetRecords");
                    next_call = Instant::now()
                        + self
                            .options
                            .backoff
                            .delay(attempt)
                            .max(self.options.poll_interval);
                    attempt += 1;
                    continue;
                }
            };
            attempt = 0;
            if let Some(ms) = out.millis_behind_latest() {
                behind.set(ms as f64);
            }
            let next = out.next_shard_iterator().map(str::to_owned);
            let children: Vec<(String, Vec<String>)> = out
                .child_shards()
                .iter()
                .map(|c| (c.shard_id().to_owned(), c.parent_shards().to_vec()))
                .collect();
            if !self.emit(out.records, &mut last, &records_in).await {
                return Ok(());
            }
            match next {
                Some(it) => iterator = it,
                None => {
                    // SHARD_END: the shard is closed and every record of it was returned.
                    return self.end(&behind, children).await;
                }
            }
        }
    }

    /// Appends the user records of one Kinesis record: itself, or the records of a KPL
    /// aggregate with their sub-sequence numbers. A GetRecords response is always returned
    /// whole, so an aggregate is never split between batches: the position after a batch is
    /// the aggregate's last sub-record, and AFTER_SEQUENCE_NUMBER resumes correctly.
    pub(crate) fn convert(&self, r: aws_sdk_kinesis::types::Record, out: &mut Vec<Record<Bytes>>) {
        let timestamp = r
            .approximate_arrival_timestamp
            .and_then(|t| t.to_millis().ok())
            .map(EventTime)
            .unwrap_or(EventTime::MIN);
        // The SDK's buffers become the record's: no payload, key or sequence number is copied.
        let data = Bytes::from(r.data.into_inner());
        let origin = |number: String, sub: u32| Origin {
            source: self.split.clone(),
            offset: Offset::Sequence(Arc::new(SequenceNumber { number, sub })),
        };
        if self.options.deaggregate && data.starts_with(&KPL_MAGIC) {
            if let Some(users) = deaggregate(&data) {
                for (sub, user) in users.into_iter().enumerate() {
                    let sub = u32::try_from(sub).unwrap_or(u32::MAX);
                    let mut record = Record::new(user.data, timestamp)
                        .with_origin(origin(r.sequence_number.clone(), sub));
                    record.key = Some(Bytes::from(user.partition_key.into_bytes()));
                    out.push(record);
                }
                return;
            }
        }
        let mut record = Record::new(data, timestamp).with_origin(origin(r.sequence_number, 0));
        record.key = r.partition_key.map(|k| Bytes::from(k.into_bytes()));
        out.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(start: ShardPosition, resume: ShardPosition) -> ShardReader {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .build();
        let (tx, _rx) = mpsc::channel(1);
        ShardReader {
            client: Client::from_conf(config),
            stream: StreamRef::parse("s"),
            shard: "shardId-0".into(),
            split: Arc::new(SplitRef {
                stream: "s".into(),
                split: SplitId::new("shardId-0"),
            }),
            start,
            resume,
            options: Arc::new(SourceOptions::default()),
            stats: Arc::default(),
            tx,
            consumer: None,
            closed: Arc::default(),
        }
    }

    #[tokio::test]
    async fn latest_is_asked_for_only_once_later_iterators_start_at_its_resolved_time() {
        let r = reader(
            ShardPosition::Start(StartPosition::Latest),
            ShardPosition::Start(StartPosition::AtTimestamp(5)),
        );
        assert_eq!(r.start_after(&None, true), StartAt::Latest);
        // An expired iterator or a new subscription before any record: a new LATEST would
        // skip what arrived in between.
        assert_eq!(r.start_after(&None, false), StartAt::Timestamp(5));
        assert_eq!(
            r.start_after(&Some("7".into()), false),
            StartAt::After("7".into())
        );
    }

    #[tokio::test]
    async fn a_restored_position_resumes_after_its_sequence_number() {
        let after = ShardPosition::After {
            sequence: "42".into(),
            sub: 0,
        };
        let r = reader(after.clone(), after);
        assert_eq!(r.start_after(&None, true), StartAt::After("42".into()));
        assert_eq!(r.start_after(&None, false), StartAt::After("42".into()));
    }

    #[test]
    fn latest_is_stored_as_a_replayable_time_never_as_latest() {
        let before = now_millis();
        match resolve_latest() {
            ShardPosition::Start(StartPosition::AtTimestamp(t)) => {
                assert!(t <= before && t >= before - LATEST_CLOCK_ALLOWANCE_MS - 1_000);
            }
            other => panic!("LATEST resolved to {other:?}"),
        }
    }
}
