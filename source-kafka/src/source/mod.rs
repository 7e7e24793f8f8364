//! The Kafka source: a consumer group whose partitions are splits.
//!
//! [`KafkaSource`] and its poll loop live here; the rest is one concept per module:
//! [`config`] builds the consumer, [`position`] holds the checkpointed positions,
//! [`splits`] turns rebalances into split events, [`reader`] drains prefetched messages into
//! batches ([`convert`] makes the records), [`hand_over`] holds revoked partitions until a
//! checkpoint covers them, and [`commit`] commits offsets to the group.

mod commit;
mod config;
mod convert;
mod hand_over;
mod position;
mod reader;
mod splits;

pub use config::KafkaSourceBuilder;
pub use position::{KafkaPosition, StartPosition};

use crate::error::KafkaError;
use crate::fetch::FetchQueue;
use crate::keepalive::KeepAlive;
use crate::rebalance::SourceContext;
use crate::topic_check::{MissingTopics, TopicWatch, Watched};
use async_trait::async_trait;
use bytes::Bytes;
use hand_over::HandOver;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::OwnedMessage;
use splits::{Assigned, Ready};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use watershed_core::{BoxError, CheckpointId, Source, SourceEvent};

/// Reads Kafka topics through a consumer group; each partition is a split. See the crate docs.
pub struct KafkaSource {
    /// Declared before the consumer: dropped first, as librdkafka wants its queues destroyed
    /// before the client.
    fetch: Arc<FetchQueue>,
    /// Watches the subscribed topics (see `topic_check.rs`); started by `open`, stopped before
    /// the consumer closes.
    watch: Option<TopicWatch>,
    /// Wakes the source's task (librdkafka's queues, the topic watcher).
    wake: Arc<Notify>,
    brokers: String,
    /// The user's properties that say how to reach the cluster (TLS, SASL), for the check at
    /// open.
    connection: Vec<(String, String)>,
    missing_topics: MissingTopics,
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
    /// Records and bytes in, per partition.
    records_in: HashMap<(String, i32), (metrics::Counter, metrics::Counter)>,
}

impl KafkaSource {
    /// `poll`'s work: the next event, waiting up to `max_wait`.
    async fn next_event(&mut self, max_wait: Duration) -> Result<SourceEvent<Bytes>, BoxError> {
        let deadline = Instant::now() + max_wait;

        loop {
            if let Some(failure) = self.consumer.context().take_failure() {
                return Err(failure.into());
            }
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
                    self.position.set(topic, partition, next);
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
        let missing = crate::topic_check::check_at_open(
            &self.brokers,
            &self.connection,
            &self.topics,
            self.missing_topics,
        )
        .await?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|error| KafkaError::Subscribe {
                topics: self.topics.clone(),
                brokers: self.brokers.clone(),
                error: Box::new(error),
            })?;
        let watched = Watched {
            consumer: self.consumer.clone(),
            brokers: self.brokers.clone(),
            topics: crate::topic_check::named(&self.topics),
            policy: self.missing_topics,
            missing,
            wake: self.wake.clone(),
        };
        self.watch = Some(
            TopicWatch::start(watched)
                .map_err(|e| KafkaError::Invalid(format!("starting the topic watch: {e}")))?,
        );
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
        self.commit_checkpoint(position)?;
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
        self.watch = None;
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
        self.watch = None;
        // The context outlives the consumer; its handle on the fetch queue must not.
        self.consumer
            .context()
            .fetch
            .lock()
            .expect("fetch lock")
            .take();
    }
}
