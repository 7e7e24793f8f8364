//! The Kafka source.

use crate::error::KafkaError;
use crate::fetch::{FetchQueue, Fetched, FetchedMessage};
use crate::keepalive::KeepAlive;
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Offset as RdOffset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use watershed_core::{
    BoxError, CheckpointId, EventTime, Offset, Origin, Record, Source, SourceEvent, SplitId,
    SplitRef,
};

/// Where to start reading a partition that has neither a Watershed checkpoint position nor a
/// committed group offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced after the source starts.
    Latest,
    /// The first record with a timestamp at or after this time (ms since epoch).
    Timestamp(i64),
}

/// Checkpointed position of a [`KafkaSource`]: for each topic and partition, the **next**
/// offset to read (last processed + 1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPosition {
    /// topic → partition → next offset.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl KafkaPosition {
    /// The next offset of `topic`/`partition`, if known.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic)?.get(&partition).copied()
    }
}

#[derive(Debug)]
enum Change {
    /// With the offset each partition starts at, when it comes from the checkpoint (else the
    /// group's committed offset or the start position applies).
    Assigned(Vec<(String, i32, Option<i64>)>),
    /// Released at once (eager protocol, lost partitions, closing source).
    Revoked(Vec<(String, i32)>),
    /// Still assigned: to be released once a checkpoint covering them completes.
    Revoking(Vec<(String, i32)>),
}

/// Rebalance handling: seeks newly assigned partitions to their restored positions inside the
/// callback (before any fetch), and records what changed for the poll loop.
pub(crate) struct SourceContext {
    /// Positions from the restored checkpoint not yet applied: each applies to the first
    /// assignment of its partition only. A partition regained later (after it was handed over)
    /// starts from the group's committed offset, which its last owner committed.
    restored: Mutex<KafkaPosition>,
    changes: Mutex<Vec<Change>>,
    /// Whether cooperative revocations wait for a checkpoint; off while the source closes, as
    /// librdkafka's close waits for the unassign call and no checkpoint will come.
    hand_over: AtomicBool,
    /// Set when `changes` holds notes: the poll loop looks at the notes only then, without
    /// taking the lock on every poll.
    changed: AtomicBool,
    /// Where newly assigned partitions forward their messages; taken away before the
    /// consumer closes (the queue must go first).
    fetch: Mutex<Option<Arc<FetchQueue>>>,
}

impl SourceContext {
    fn note(&self, change: Change) {
        self.changes.lock().expect("changes lock").push(change);
        self.changed.store(true, Ordering::Release);
    }
}

impl ClientContext for SourceContext {
    /// librdkafka's periodic statistics (`statistics.interval.ms`, 5 s by default here): the
    /// consumer lag per partition, high watermark − position, as a gauge.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue; // the internal "UA" partition, or not yet known
                }
                metrics::gauge!(
                    "watershed_kafka_consumer_lag",
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut restored = self.restored.lock().expect("restored lock");
                let mut starts: Vec<(String, i32, Option<i64>)> = parts
                    .iter()
                    .map(|(topic, partition)| {
                        let next = restored
                            .offsets
                            .get_mut(topic)
                            .and_then(|p| p.remove(partition));
                        (topic.clone(), *partition, next)
                    })
                    .collect();
                drop(restored);
                // Before the assignment starts fetching, so no message of these partitions
                // lands on the consumer queue.
                if let Some(fetch) = self.fetch.lock().expect("fetch lock").as_ref() {
                    for (topic, partition) in &parts {
                        if !fetch.attach(topic, *partition) {
                            tracing::error!(topic = %topic, partition = *partition, "kafka: librdkafka gave no queue for the partition, so its messages cannot be forwarded to the source; they may not be read");
                        }
                    }
                }
                start_after_later_commits(consumer, &mut starts);
                for (topic, partition, next) in &starts {
                    if let Some(next) = next {
                        let _ =
                            tpl.set_partition_offset(topic, *partition, RdOffset::Offset(*next));
                    }
                }
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "kafka: assigning partitions failed");
                }
                self.note(Change::Assigned(starts));
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                if cooperative
                    && !consumer.assignment_lost()
                    && self.hand_over.load(Ordering::Acquire) =>
            {
                // Not unassigned yet: librdkafka keeps the group from giving the partitions to
                // their new owner (and pauses fetching) until we call incremental_unassign,
                // which the source does once a checkpoint covering what it read of them has
                // completed and their offsets are committed (Kafka Streams' commit on revoke).
                self.note(Change::Revoking(parts));
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "kafka: unassigning partitions failed");
                }
                self.note(Change::Revoked(parts));
            }
            other => {
                tracing::error!(error = ?other, "kafka: rebalance error");
                let _ = consumer.unassign();
            }
        }
        metrics::counter!("watershed_kafka_rebalances_total").increment(1);
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

/// Builds a [`KafkaSource`].
#[derive(Clone, Debug)]
pub struct KafkaSourceBuilder {
    brokers: String,
    group: String,
    topics: Vec<String>,
    start: StartPosition,
    properties: Vec<(String, String)>,
    batch_size: usize,
    event_time_from_kafka: bool,
    hand_over_timeout: Duration,
    read_headers: bool,
}

impl KafkaSourceBuilder {
    /// Subscribes to `topic` (call again for more). A name starting with `^` is a regex.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Where to start partitions with no checkpointed or committed position (default earliest).
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Any librdkafka consumer property (security, SASL, TLS, fetch sizes, …). Properties the
    /// source relies on (`enable.auto.commit`, `enable.auto.offset.store`) cannot be overridden.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Static group membership (`group.instance.id`, KIP-345): a restarted instance with the
    /// same id takes its partitions back at once, instead of waiting for the old member's
    /// session to time out. Give each pipeline instance its own stable id. The flip side: a
    /// static member that stops for good keeps its partitions until `session.timeout.ms`.
    pub fn instance_id(self, id: impl Into<String>) -> Self {
        self.property("group.instance.id", id)
    }

    /// Records per batch, at most (default 1024).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How long a revoked partition waits for the checkpoint that hands it over (default 30 s;
    /// keep it well under `max.poll.interval.ms`). On timeout the partition is released without
    /// committing, and its records read since the last checkpoint are read again by the new
    /// owner (at-least-once for that window). See docs/kafka.md, "Scaling out".
    pub fn hand_over_timeout(mut self, timeout: Duration) -> Self {
        self.hand_over_timeout = timeout;
        self
    }

    /// Leaves record headers empty. librdkafka parses a message's headers when asked for them,
    /// with an allocation per message even when there are none: about 8% of the source's
    /// throughput in the benchmark (docs/benchmarks.md). For pipelines that do not use headers.
    pub fn without_headers(mut self) -> Self {
        self.read_headers = false;
        self
    }

    /// Use the read time instead of the Kafka record timestamp as event time.
    pub fn event_time_from_read_time(mut self) -> Self {
        self.event_time_from_kafka = false;
        self
    }

    /// Creates the consumer (it connects when the pipeline opens the source).
    pub fn build(self) -> Result<KafkaSource, KafkaError> {
        if self.topics.is_empty() {
            return Err(KafkaError::Invalid("no topic to subscribe to".into()));
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("isolation.level", "read_committed")
            .set("statistics.interval.ms", "5000")
            // librdkafka stops fetching a partition whose prefetch queue is full and looks
            // again only after this backoff (default 1 s): a pipeline that drains the queue
            // in a fraction of that then waits for data that is there (measured: 0.75 of a
            // raw consumer loop's throughput with the default, 3-4x it with 50 ms).
            .set("fetch.queue.backoff.ms", "50")
            .set(
                "auto.offset.reset",
                match self.start {
                    StartPosition::Latest => "latest",
                    _ => "earliest",
                },
            );
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        // Offsets are Watershed's to commit, and only at completed checkpoints.
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let context = SourceContext {
            restored: Mutex::new(KafkaPosition::default()),
            changes: Mutex::new(Vec::new()),
            hand_over: AtomicBool::new(true),
            changed: AtomicBool::new(false),
            fetch: Mutex::new(None),
        };
        let mut consumer: BaseConsumer<SourceContext> = config
            .create_with_context(context)
            .map_err(KafkaError::Config)?;
        // librdkafka calls back when either queue stops being empty (a fetched message, a
        // rebalance, an error), so a source with nothing to read awaits instead of blocking a
        // thread or polling on a timer.
        let wake = Arc::new(Notify::new());
        consumer.set_nonempty_callback({
            let wake = wake.clone();
            move || wake.notify_one()
        });
        let keepalive_after = self
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "max.poll.interval.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .map_or(Duration::from_secs(300), Duration::from_millis)
            / 4;
        let fetch = Arc::new(FetchQueue::new(&consumer, wake).ok_or_else(|| {
            KafkaError::Config(RdError::ClientCreation(
                "librdkafka could not create the fetch queue".into(),
            ))
        })?);
        *consumer.context().fetch.lock().expect("fetch lock") = Some(fetch.clone());
        Ok(KafkaSource {
            fetch,
            keepalive: None,
            keepalive_after,
            stray: Vec::new(),
            consumer: Arc::new(consumer),
            topics: self.topics,
            start: self.start,
            batch_size: self.batch_size,
            event_time_from_kafka: self.event_time_from_kafka,
            read_headers: self.read_headers,
            position: KafkaPosition::default(),
            assigned: HashMap::new(),
            can_block_in_place: false,
            ready: VecDeque::new(),
            hand_over: None,
            hand_over_timeout: self.hand_over_timeout,
            records_in: HashMap::new(),
        })
    }
}

/// An event ready to hand out, with the position it moves the partition to
/// (topic, partition, next offset), if it carries records.
type Ready = (Option<(String, i32, i64)>, SourceEvent<Bytes>);

struct Assigned {
    split: SplitId,
    source: Arc<SplitRef>,
}

/// Partitions revoked (cooperative protocol) and not yet released: their records are no longer
/// emitted, and they are released once a checkpoint holding their final positions completes.
struct HandOver {
    /// (topic, partition, the next offset to read when revoked: what to commit). `None`: no
    /// record of it was read, nothing to commit.
    parts: Vec<(String, i32, Option<i64>)>,
    deadline: Instant,
    /// A checkpoint request is still to be returned by `poll`.
    request: bool,
}

impl HandOver {
    fn covered_by(&self, position: &KafkaPosition) -> bool {
        self.parts
            .iter()
            .all(|(topic, partition, next)| match next {
                None => true,
                Some(n) => position.next_offset(topic, *partition) >= Some(*n),
            })
    }
}

/// Reads Kafka topics through a consumer group; each partition is a split. See the crate docs.
pub struct KafkaSource {
    /// Declared before the consumer: dropped first, as librdkafka wants its queues destroyed
    /// before the client.
    fetch: Arc<FetchQueue>,
    /// Keeps the group membership while the pipeline does not poll (see `keepalive.rs`);
    /// started by `open`, stopped before the consumer closes.
    keepalive: Option<KeepAlive>,
    /// How long the source may go without polling before the keeper steps in: a quarter of
    /// `max.poll.interval.ms`.
    keepalive_after: Duration,
    /// What the keeper's polls of the consumer queue returned, handled first.
    stray: Vec<Result<OwnedMessage, RdError>>,
    consumer: Arc<BaseConsumer<SourceContext>>,
    topics: Vec<String>,
    start: StartPosition,
    batch_size: usize,
    event_time_from_kafka: bool,
    read_headers: bool,
    position: KafkaPosition,
    assigned: HashMap<(String, i32), Assigned>,
    /// A multi-thread runtime: blocking client calls run in `block_in_place`.
    can_block_in_place: bool,
    /// Events ready to hand out, each with the position it moves to (topic, partition, next).
    ready: VecDeque<Ready>,
    hand_over: Option<HandOver>,
    hand_over_timeout: Duration,
    /// Per-partition records-in counters, registered once.
    records_in: HashMap<(String, i32), metrics::Counter>,
}

impl KafkaSource {
    /// A builder for a source in consumer group `group` on the cluster at `brokers`.
    pub fn builder(brokers: impl Into<String>, group: impl Into<String>) -> KafkaSourceBuilder {
        KafkaSourceBuilder {
            brokers: brokers.into(),
            group: group.into(),
            topics: Vec::new(),
            start: StartPosition::default(),
            properties: Vec::new(),
            batch_size: 1024,
            event_time_from_kafka: true,
            hand_over_timeout: Duration::from_secs(30),
            read_headers: true,
        }
    }

    fn split_id(topic: &str, partition: i32) -> SplitId {
        SplitId::new(format!("{topic}-{partition}"))
    }

    /// Turns rebalance notes into split events, in order.
    fn apply_changes(&mut self) {
        Splits {
            consumer: &self.consumer,
            assigned: &mut self.assigned,
            ready: &mut self.ready,
            position: &mut self.position,
            start: self.start,
            hand_over: &mut self.hand_over,
            hand_over_timeout: self.hand_over_timeout,
        }
        .apply();
    }

    /// Takes what librdkafka has prefetched, up to one batch, into per-partition batches,
    /// without waiting. The consumer queue is served first: it carries rebalances and errors, and the messages of a partition whose
    /// fetch queue could not be attached (rare, so simply copied out). A partition's batch is
    /// found by comparing with the previous message's (messages come in runs per partition),
    /// and the topic name is copied once per partition per drain.
    fn drain(&mut self) -> Result<usize, KafkaError> {
        let mut batches: Vec<Pending> = Vec::new();
        let mut n = 0;
        let now = EventTime::now();
        for polled in std::mem::take(&mut self.stray) {
            match polled {
                Ok(m) => {
                    if self.push(&mut batches, usize::MAX, now, &m).is_some() {
                        n += 1;
                    }
                }
                Err(e) => check_error(e)?,
            }
        }
        while n < self.batch_size {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    let m = m.detach();
                    if self.push(&mut batches, usize::MAX, now, &m).is_some() {
                        n += 1;
                    }
                }
                Some(Err(e)) => check_error(e)?,
            }
        }
        let mut messages: Vec<FetchedMessage> = Vec::new();
        self.fetch.take(self.batch_size - n, &mut messages);
        let mut last = usize::MAX;
        for m in &messages {
            if let Some(e) = m.error() {
                check_error(e)?;
                continue;
            }
            if let Some(at) = self.push(&mut batches, last, now, m) {
                last = at;
                n += 1;
            }
        }
        drop(messages);
        // A partition revoked during this drain: its records are the new owner's to read.
        self.apply_changes();
        for b in batches {
            if !self.assigned.contains_key(&(b.topic.clone(), b.partition)) {
                continue;
            }
            let Some(Origin {
                offset: Offset::Number(o),
                ..
            }) = b.records.last().and_then(|r| r.origin.as_ref())
            else {
                continue;
            };
            let next = o + 1;
            self.count_in(&b.topic, b.partition, b.records.len());
            self.ready.push_back((
                Some((b.topic, b.partition, next)),
                SourceEvent::Batch {
                    split: b.split,
                    records: b.records,
                },
            ));
        }
        Ok(n)
    }

    /// The batch of `message`'s partition among those of this drain, looking at `hint` first.
    fn find<M: Fetched>(batches: &[Pending], hint: usize, message: &M) -> Option<usize> {
        let partition = message.partition();
        let handle = message.topic_handle();
        let is = |b: &Pending| {
            b.partition == partition
                && ((handle.is_some() && b.topic_handle == handle) || b.topic == message.topic())
        };
        if batches.get(hint).is_some_and(is) {
            return Some(hint);
        }
        batches.iter().position(is)
    }

    /// Adds `message` to its partition's batch, starting the batch if needed. `None`: the
    /// partition is not assigned (revoked, or being handed over, between fetch and poll).
    fn push<M: Fetched>(
        &mut self,
        batches: &mut Vec<Pending>,
        hint: usize,
        now: EventTime,
        message: &M,
    ) -> Option<usize> {
        let at = match Self::find(batches, hint, message) {
            Some(at) => at,
            None => {
                let key = (message.topic().to_string(), message.partition());
                if !self.assigned.contains_key(&key) {
                    // Rebalance callbacks run inside poll: a newly assigned partition is
                    // known only once its notes are applied.
                    self.apply_changes();
                }
                let assigned = self.assigned.get(&key)?;
                let (split, source) = (assigned.split.clone(), assigned.source.clone());
                batches.push(Pending {
                    topic: key.0,
                    topic_handle: message.topic_handle(),
                    partition: key.1,
                    split,
                    source,
                    records: Vec::with_capacity(self.batch_size.min(256)),
                });
                batches.len() - 1
            }
        };
        let convert = Convert {
            event_time_from_kafka: self.event_time_from_kafka,
            read_headers: self.read_headers,
        };
        let b = &mut batches[at];
        b.records.push(to_record(convert, &b.source, now, message));
        Some(at)
    }

    /// Records in per partition, counted per batch.
    fn count_in(&mut self, topic: &str, partition: i32, n: usize) {
        let key = (topic.to_string(), partition);
        let counter = self.records_in.entry(key).or_insert_with(|| {
            metrics::counter!(
                "watershed_kafka_partition_records_in_total",
                "topic" => topic.to_string(),
                "partition" => partition.to_string()
            )
        });
        counter.increment(n as u64);
    }
}

/// One partition's records of a drain.
struct Pending {
    topic: String,
    /// librdkafka's topic handle, when the messages come with one.
    topic_handle: Option<usize>,
    partition: i32,
    split: SplitId,
    source: Arc<SplitRef>,
    records: Vec<Record<Bytes>>,
}

impl KafkaSource {
    /// Runs blocking client calls (synchronous commit) without stalling other tasks.
    fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.can_block_in_place {
            tokio::task::block_in_place(f)
        } else {
            f()
        }
    }

    /// Releases the partitions of the pending hand-over: commits their final offsets first when
    /// `commit` (a checkpoint holding them has completed), then lets the group give them to
    /// their new owner. A failed commit still releases them: holding them would stall the
    /// group, and the new owner then starts at the previous commit (at-least-once).
    /// Commits `offsets` synchronously, timed as `watershed_kafka_commit_seconds{kind}` and
    /// counted in `watershed_kafka_commit_errors_total` when it fails.
    fn commit_sync(&self, offsets: &TopicPartitionList, kind: &'static str) -> Result<(), RdError> {
        let started = Instant::now();
        let result = self.blocking(|| self.consumer.commit(offsets, CommitMode::Sync));
        metrics::histogram!("watershed_kafka_commit_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("watershed_kafka_commit_errors_total").increment(1);
        }
        result
    }

    fn release_hand_over(&mut self, commit: bool, outcome: &'static str) {
        let Some(hand_over) = self.hand_over.take() else {
            return;
        };
        let mut to_commit = TopicPartitionList::new();
        let mut all = TopicPartitionList::new();
        for (topic, partition, next) in &hand_over.parts {
            all.add_partition(topic, *partition);
            if let (true, Some(n)) = (commit, next) {
                let _ = to_commit.add_partition_offset(topic, *partition, RdOffset::Offset(*n));
            }
            if let Some(p) = self.position.offsets.get_mut(topic) {
                // From now on the new owner's: a later checkpoint of this instance must not
                // carry it, or a restart that regained it would resume from a stale offset.
                p.remove(partition);
                if p.is_empty() {
                    self.position.offsets.remove(topic);
                }
            }
        }
        let mut outcome = outcome;
        if to_commit.count() > 0 {
            if let Err(e) = self.commit_sync(&to_commit, "hand_over") {
                tracing::warn!(offsets = %offsets_text(&to_commit), error = %e, "kafka: committing handed-over partitions failed; releasing them anyway");
                outcome = "commit_failed";
            }
        }
        if let Err(e) = self.consumer.incremental_unassign(&all) {
            tracing::error!(error = %e, "kafka: unassigning handed-over partitions failed");
        }
        tracing::info!(partitions = %offsets_text(&all), outcome, "kafka: partitions handed over");
        metrics::counter!("watershed_kafka_hand_overs_total", "outcome" => outcome).increment(1);
    }

    /// Releases a hand-over that needs no commit, or whose checkpoint did not come in time.
    fn check_hand_over(&mut self) {
        let Some(h) = &self.hand_over else {
            return;
        };
        if h.parts.iter().all(|(_, _, next)| next.is_none()) {
            self.release_hand_over(false, "nothing_read");
        } else if Instant::now() >= h.deadline {
            tracing::warn!(
                timeout = ?self.hand_over_timeout,
                "kafka: no checkpoint covered the revoked partitions in time; releasing them uncommitted (the new owner re-reads since the last commit)"
            );
            self.release_hand_over(false, "timeout");
        }
    }
}

/// The fields a rebalance note touches, borrowed apart from the consumer so notes can be applied
/// while a polled message still borrows it.
struct Splits<'a> {
    consumer: &'a BaseConsumer<SourceContext>,
    assigned: &'a mut HashMap<(String, i32), Assigned>,
    ready: &'a mut VecDeque<Ready>,
    position: &'a mut KafkaPosition,
    start: StartPosition,
    hand_over: &'a mut Option<HandOver>,
    hand_over_timeout: Duration,
}

impl Splits<'_> {
    fn apply(self) {
        let context = self.consumer.context();
        if !context.changed.swap(false, Ordering::Acquire) {
            return;
        }
        let changes = std::mem::take(&mut *context.changes.lock().expect("lock"));
        for change in changes {
            match change {
                Change::Assigned(parts) => {
                    let mut seek_by_time = TopicPartitionList::new();
                    for (topic, partition, start) in parts {
                        let split = KafkaSource::split_id(&topic, partition);
                        // The position names where this partition resumes, so a checkpoint
                        // taken before its first record neither regresses nor invents it.
                        match start {
                            Some(next) => {
                                self.position
                                    .offsets
                                    .entry(topic.clone())
                                    .or_default()
                                    .insert(partition, next);
                            }
                            None => {
                                if let Some(p) = self.position.offsets.get_mut(&topic) {
                                    p.remove(&partition);
                                }
                            }
                        }
                        if start.is_none() {
                            if let StartPosition::Timestamp(ts) = self.start {
                                let _ = seek_by_time.add_partition_offset(
                                    &topic,
                                    partition,
                                    RdOffset::Offset(ts),
                                );
                            }
                        }
                        self.assigned.insert(
                            (topic.clone(), partition),
                            Assigned {
                                split: split.clone(),
                                source: Arc::new(SplitRef {
                                    stream: topic,
                                    split: split.clone(),
                                }),
                            },
                        );
                        self.ready.push_back((None, SourceEvent::SplitAdded(split)));
                    }
                    if seek_by_time.count() > 0 {
                        seek_to_times(self.consumer, seek_by_time);
                    }
                }
                Change::Revoking(parts) => {
                    let hand_over = self.hand_over.get_or_insert_with(|| HandOver {
                        parts: Vec::new(),
                        deadline: Instant::now() + self.hand_over_timeout,
                        request: true,
                    });
                    // A checkpoint taken after this revocation covers every partition of the
                    // hand-over, the earlier ones included.
                    hand_over.request = true;
                    for (topic, partition) in parts {
                        let key = (topic, partition);
                        if let Some(a) = self.assigned.remove(&key) {
                            // Read but not yet handed out: the new owner reads them.
                            self.ready.retain(|(moves_to, _)| {
                                !matches!(moves_to, Some((t, p, _)) if *t == key.0 && *p == key.1)
                            });
                            self.ready
                                .push_back((None, SourceEvent::SplitRemoved(a.split)));
                        }
                        let next = self.position.next_offset(&key.0, key.1);
                        hand_over.parts.push((key.0, key.1, next));
                    }
                }
                Change::Revoked(parts) => {
                    for (topic, partition) in parts {
                        if let Some(a) = self.assigned.remove(&(topic.clone(), partition)) {
                            // Its data since the last checkpoint is the new owner's to read.
                            if let Some(p) = self.position.offsets.get_mut(&topic) {
                                p.remove(&partition);
                            }
                            self.ready
                                .push_back((None, SourceEvent::SplitRemoved(a.split)));
                        }
                    }
                }
            }
        }
    }
}

/// A restored checkpoint position is raised to the group's committed offset when that is
/// further: another instance of the group owned the partition after this checkpoint was taken
/// (it was handed over, then this instance restarted) and committed what it processed. This
/// instance's own commits never pass its latest checkpoint, which is written before them.
fn start_after_later_commits(
    consumer: &BaseConsumer<SourceContext>,
    starts: &mut [(String, i32, Option<i64>)],
) {
    let mut query = TopicPartitionList::new();
    for (topic, partition, next) in starts.iter() {
        if next.is_some() {
            query.add_partition(topic, *partition);
        }
    }
    if query.count() == 0 {
        return;
    }
    let committed = match consumer.committed_offsets(query, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "kafka: reading committed offsets failed; resuming from the checkpoint");
            return;
        }
    };
    for (topic, partition, next) in starts.iter_mut() {
        let Some(n) = next else { continue };
        if let Some(RdOffset::Offset(c)) = committed
            .find_partition(topic, *partition)
            .map(|e| e.offset())
        {
            if c > *n {
                tracing::info!(topic = %topic, partition = *partition, checkpoint = *n, committed = c, "kafka: resuming after the group's later commit");
                *n = c;
            }
        }
    }
}

fn seek_to_times(consumer: &BaseConsumer<SourceContext>, tpl: TopicPartitionList) {
    // Only for partitions that have no committed offset: a committed offset wins.
    let committed = consumer
        .committed_offsets(tpl.clone(), Duration::from_secs(10))
        .unwrap_or_default();
    let mut by_time = TopicPartitionList::new();
    for e in tpl.elements() {
        let has_committed = committed
            .find_partition(e.topic(), e.partition())
            .is_some_and(|c| matches!(c.offset(), RdOffset::Offset(_)));
        if !has_committed {
            let _ = by_time.add_partition_offset(e.topic(), e.partition(), e.offset());
        }
    }
    if by_time.count() == 0 {
        return;
    }
    match consumer.offsets_for_times(by_time, Duration::from_secs(10)) {
        Ok(found) => {
            for e in found.elements() {
                let offset = match e.offset() {
                    RdOffset::Offset(o) => RdOffset::Offset(o),
                    _ => RdOffset::End,
                };
                if let Err(err) =
                    consumer.seek(e.topic(), e.partition(), offset, Duration::from_secs(10))
                {
                    tracing::warn!(topic = e.topic(), partition = e.partition(), error = %err, "kafka: seek by time failed");
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "kafka: offsets_for_times failed"),
    }
}

/// How messages become records.
struct Convert {
    event_time_from_kafka: bool,
    read_headers: bool,
}

/// The record for a message of an assigned partition.
fn to_record<M: Fetched>(
    convert: Convert,
    source: &Arc<SplitRef>,
    now: EventTime,
    message: &M,
) -> Record<Bytes> {
    let timestamp = if convert.event_time_from_kafka {
        message.timestamp_ms().map(EventTime).unwrap_or(now)
    } else {
        now
    };
    let mut record = Record::new(
        Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        timestamp,
    );
    record.key = message.key().map(Bytes::copy_from_slice);
    if convert.read_headers {
        record.headers = message.headers();
    }
    record.origin = Some(Origin {
        source: source.clone(),
        offset: Offset::Number(message.offset()),
    });
    record
}

/// End-of-partition notices are not errors; fatal errors stop the source; the rest are logged
/// (librdkafka retries them itself).
fn check_error(e: RdError) -> Result<(), KafkaError> {
    match e {
        RdError::PartitionEOF(_) => Ok(()),
        e if is_fatal(&e) => Err(KafkaError::Consume(e)),
        e => {
            tracing::warn!(error = %e, "kafka: transient consumer error");
            Ok(())
        }
    }
}

fn is_fatal(e: &RdError) -> bool {
    use rdkafka::error::RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            Fatal | TopicAuthorizationFailed | GroupAuthorizationFailed | SaslAuthenticationFailed
        )
    )
}

fn offsets_text(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
        .collect::<Vec<_>>()
        .join(",")
}

impl KafkaSource {
    /// `poll`'s work: the next event, waiting up to `max_wait`.
    async fn next_event(&mut self, max_wait: Duration) -> Result<SourceEvent<Bytes>, BoxError> {
        let deadline = Instant::now() + max_wait;

        loop {
            if self.hand_over.is_some() {
                self.check_hand_over();
                if let Some(h) = self.hand_over.as_mut().filter(|h| h.request) {
                    h.request = false;
                    return Ok(SourceEvent::CheckpointRequested);
                }
            }
            if let Some((moves_to, event)) = self.ready.pop_front() {
                // The position moves when records are handed over, never before.
                if let Some((topic, partition, next)) = moves_to {
                    self.position
                        .offsets
                        .entry(topic)
                        .or_default()
                        .insert(partition, next);
                }
                return Ok(event);
            }
            self.apply_changes();
            if !self.ready.is_empty() {
                continue;
            }
            if self.drain()? > 0 || !self.ready.is_empty() {
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(SourceEvent::Idle);
            }
            if self.fetch.pending() {
                continue;
            }
            // Nothing prefetched and no rebalance pending: wait for librdkafka to call back
            // (a message fetched, a rebalance, an error), or for the deadline.
            let fetch = self.fetch.clone();
            let until = tokio::time::Instant::from_std(deadline);
            let _ = tokio::time::timeout_at(until, fetch.ready()).await;
        }
    }
}

#[async_trait]
impl Source for KafkaSource {
    type Item = Bytes;
    type Position = KafkaPosition;

    async fn open(&mut self, restored: Option<KafkaPosition>) -> Result<(), BoxError> {
        self.can_block_in_place = matches!(
            tokio::runtime::Handle::current().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        );
        let restored = restored.unwrap_or_default();
        self.position = restored.clone();
        *self.consumer.context().restored.lock().expect("lock") = restored;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|error| KafkaError::Subscribe {
                topics: self.topics.clone(),
                error,
            })?;
        let keeper = KeepAlive::start(self.consumer.clone(), self.keepalive_after)
            .map_err(|e| KafkaError::Invalid(format!("starting the keep-alive thread: {e}")))?;
        self.keepalive = Some(keeper);
        Ok(())
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<Bytes>, BoxError> {
        let _polling = match &self.keepalive {
            Some(keeper) => {
                let (polling, stray) = keeper.enter(&self.consumer);
                self.stray.extend(stray);
                Some(polling)
            }
            None => None,
        };
        self.next_event(max_wait).await
    }

    fn position(&self) -> KafkaPosition {
        self.position.clone()
    }

    async fn checkpoint_complete(
        &mut self,
        _id: CheckpointId,
        position: &KafkaPosition,
    ) -> Result<(), BoxError> {
        // Rebalances the keep-alive thread served since the last poll count too.
        self.apply_changes();
        // Commit only partitions this instance still owns: a lost partition's offset belongs
        // to its new owner.
        let mut tpl = TopicPartitionList::new();
        for (topic, parts) in &position.offsets {
            for (partition, next) in parts {
                if self.assigned.contains_key(&(topic.clone(), *partition)) {
                    tpl.add_partition_offset(topic, *partition, RdOffset::Offset(*next))
                        .map_err(KafkaError::Consume)?;
                }
            }
        }
        if tpl.count() > 0 {
            // Synchronous, as Kafka Streams commits: one broker round trip per checkpoint, and
            // the outcome is known (librdkafka reports nothing back for an asynchronous manual
            // commit without a commit callback). A failure is logged and counted, not fatal:
            // this instance resumes from its checkpoint, and the next checkpoint commits later
            // offsets; only another instance taking the partition over would re-read from the
            // older commit.
            if let Err(error) = self.commit_sync(&tpl, "offsets") {
                let e = KafkaError::Commit {
                    offsets: offsets_text(&tpl),
                    error,
                };
                tracing::warn!(error = %e, "kafka: committing a checkpoint's offsets failed");
            }
        }
        if self
            .hand_over
            .as_ref()
            .is_some_and(|h| h.covered_by(position))
        {
            self.release_hand_over(true, "committed");
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.consumer
            .context()
            .hand_over
            .store(false, Ordering::Release);
        // The final checkpoint has completed (and released a covered hand-over): whatever is
        // still pending was not covered, and is released uncommitted.
        self.release_hand_over(false, "closing");
        self.keepalive = None; // stops the keeper
        self.consumer.unsubscribe();
        Ok(())
    }
}

impl Drop for KafkaSource {
    /// Dropping the consumer closes it, which waits for the application's unassign call of a
    /// revocation in progress: release a pending hand-over first, and answer the revocations
    /// close itself triggers at once.
    fn drop(&mut self) {
        self.consumer
            .context()
            .hand_over
            .store(false, Ordering::Release);
        self.release_hand_over(false, "closing");
        // The keeper holds a reference to the consumer: stopped here, so the consumer closes
        // when this source is dropped.
        self.keepalive = None;
        // The context outlives the consumer; its handle on the fetch queue must not.
        self.consumer
            .context()
            .fetch
            .lock()
            .expect("fetch lock")
            .take();
    }
}
