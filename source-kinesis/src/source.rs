//! `KinesisSource`: shards as splits, GetRecords polling, resharding, positions in checkpoints.

mod builder;
mod leased;
mod recovery;

pub use builder::{KinesisSourceBuilder, SourceOptions};

use crate::config::{AwsOptions, StreamRef};
use crate::error::KinesisError;
pub use crate::out_of_range::OutOfRange;
use crate::position::resolve_latest;
pub use crate::position::{KinesisPosition, ShardPosition, StartPosition};
pub use crate::presence::MissingStream;
use crate::presence::{list_shards, Absence};
use crate::reader::{ReaderEvent, ShardReader};
use crate::retry::Call;
use crate::stats::KinesisStats;
use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watershed_core::{BoxError, CheckpointId, Source, SourceEvent, SplitId, SplitRef};

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
/// - **Failures are loud**: a missing or deleted stream, restored positions the stream cannot
///   serve and an unreachable endpoint fail within seconds naming stream and endpoint, unless
///   [`MissingStream::Wait`] or an [`OutOfRange`] policy says otherwise.
pub struct KinesisSource {
    stream: StreamRef,
    aws: AwsOptions,
    options: Arc<SourceOptions>,
    stats: Arc<KinesisStats>,
    client: Option<Client>,
    /// The endpoint the client calls, for errors.
    endpoint: Arc<str>,
    /// The enhanced fan-out consumer's ARN, once registered.
    consumer: Option<Arc<str>>,
    shards: BTreeMap<String, ShardInfo>,
    position: KinesisPosition,
    /// No checkpoint was restored and the first discovery has not happened: shards found now
    /// get the configured start position.
    fresh: bool,
    /// The position came from elsewhere (a restore, or before the stream was deleted): check
    /// it against the shards at the next discovery.
    check_positions: bool,
    /// ListShards succeeded in this run: a missing stream now was deleted.
    seen: bool,
    /// Waiting for the stream (`MissingStream::Wait`).
    absence: Option<Absence>,
    tx: mpsc::Sender<ReaderEvent>,
    rx: mpsc::Receiver<ReaderEvent>,
    queued: VecDeque<SourceEvent<Bytes>>,
    next_discovery: Instant,
    /// Reading only the shards whose leases this worker holds (`leases(...)`).
    leasing: Option<Box<leased::Leasing>>,
}

impl KinesisSource {
    /// A builder for a source reading `stream` (a name, or an ARN starting with `arn:`).
    pub fn builder(stream: impl Into<String>) -> KinesisSourceBuilder {
        KinesisSourceBuilder {
            stream: StreamRef::parse(stream),
            aws: AwsOptions::default(),
            options: SourceOptions::default(),
            leases: None,
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

    /// A stream-level call, for errors and retry counting.
    fn call(&self, operation: &'static str) -> Call<'_> {
        Call {
            operation,
            stream: &self.stream,
            endpoint: &self.endpoint,
            backoff: &self.options.backoff,
            stats: Some(&self.stats),
        }
    }

    /// ListShards with pagination, retried on throttling and transient failures.
    async fn list_shards(&self) -> Result<Vec<aws_sdk_kinesis::types::Shard>, KinesisError> {
        list_shards(self.client()?, &self.call("ListShards")).await
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
        let listed = match self.connect().await {
            Ok(listed) => listed,
            Err(e @ KinesisError::StreamNotFound { .. }) => return self.stream_missing(e),
            Err(e) => return Err(e),
        };
        self.seen = true;
        if self.absence.take().is_some() {
            tracing::info!(
                stream = self.stream.as_str(),
                "Kinesis stream found: reading it"
            );
        }
        if std::mem::take(&mut self.check_positions) {
            self.check_positions(&listed)?;
        }
        if self.leasing.is_some() {
            self.fresh = false;
            self.next_discovery = Instant::now() + self.options.shard_discovery_interval;
            return self.discover_leased(&listed).await;
        }
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
                endpoint: self.endpoint.clone(),
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
        // With leases, a child is read by whoever takes its lease once its parents' are done.
        let leased = self.leasing.is_some();
        for (child, parents) in children.into_iter().filter(|_| !leased) {
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
        let (client, endpoint) = self.aws.build_client().await?;
        self.client = Some(client);
        self.endpoint = endpoint.into();
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
            self.check_positions = true;
        }
        if self.leasing.is_some() {
            return Ok(self.open_leases().await?);
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
            if self.leasing.as_ref().is_some_and(|l| l.due()) {
                self.apply_leases().await?;
                continue;
            }
            if Instant::now() >= self.next_discovery {
                self.discover().await?;
                continue;
            }
            let until = deadline.min(self.next_discovery);
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                // A shard stopped for a lease hand-over (or lost): what its reader had queued
                // is not this worker's to return.
                Ok(Some(
                    ReaderEvent::Records { shard, .. }
                    | ReaderEvent::End { shard, .. }
                    | ReaderEvent::Stopped { shard, .. },
                )) if !self.reading(&shard) => {}
                Ok(Some(ReaderEvent::Records {
                    shard,
                    split,
                    records,
                    last,
                })) => return Ok(self.returned(shard, split, records, last)),
                Ok(Some(ReaderEvent::End { shard, children })) => {
                    tracing::info!(stream = self.stream.as_str(), shard = %shard, "shard reached SHARD_END");
                    self.shard_ended(shard, children);
                }
                Ok(Some(ReaderEvent::Stopped { shard, stop })) => {
                    self.reader_stopped(shard, stop).await?;
                }
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
        position: &KinesisPosition,
    ) -> Result<(), BoxError> {
        // Kinesis keeps no consumer positions: the Watershed checkpoint is the only record,
        // mirrored into the lease table when the source shares the stream through leases.
        self.leases_checkpointed(position).await;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.stop_readers();
        self.absence = None;
        self.close_leases().await;
        Ok(())
    }
}
