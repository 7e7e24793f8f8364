//! The builder: settings, the librdkafka properties the source relies on, and the consumer
//! with its wake-up plumbing.

use super::position::{KafkaPosition, StartPosition};
use super::KafkaSource;
use crate::error::KafkaError;
use crate::fetch::FetchQueue;
use crate::out_of_range::OutOfRange;
use crate::rebalance::SourceContext;
use crate::topic_check::MissingTopics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

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
    missing_topics: MissingTopics,
    out_of_range: OutOfRange,
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
            missing_topics: MissingTopics::default(),
            out_of_range: OutOfRange::default(),
        }
    }
}

impl KafkaSourceBuilder {
    /// What to do about a subscribed topic that does not exist when the source opens, or is
    /// deleted while it runs (default [`MissingTopics::Fail`]). Patterns are not checked.
    pub fn missing_topics(mut self, missing: MissingTopics) -> Self {
        self.missing_topics = missing;
        self
    }

    /// What to do when a position the source resumes from (restored checkpoint or group commit)
    /// is outside the partition's log (default [`OutOfRange::Fail`]). Sets librdkafka's
    /// `auto.offset.reset` (`error`, `earliest`, `latest`); a partition with no position starts
    /// at [`start`](Self::start) whatever this says.
    pub fn on_position_out_of_range(mut self, policy: OutOfRange) -> Self {
        self.out_of_range = policy;
        self
    }

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
        let mut consumer: BaseConsumer<SourceContext> = self
            .client_config()
            .create_with_context(self.rebalance_context())
            .map_err(KafkaError::Config)?;
        // librdkafka calls back when either queue stops being empty (a fetched message, a
        // rebalance, an error), so a source with nothing to read awaits instead of blocking a
        // thread or polling on a timer.
        let wake = Arc::new(Notify::new());
        consumer.set_nonempty_callback({
            let wake = wake.clone();
            move || wake.notify_one()
        });
        let keepalive_after = self.keepalive_after();
        let fetch = Arc::new(FetchQueue::new(&consumer, wake.clone()).ok_or_else(|| {
            KafkaError::Config(RdError::ClientCreation(
                "librdkafka could not create the fetch queue".into(),
            ))
        })?);
        *consumer.context().fetch.lock().expect("fetch lock") = Some(fetch.clone());
        Ok(KafkaSource {
            fetch,
            watch: None,
            wake,
            connection: crate::connect::connection_properties(&self.properties),
            brokers: self.brokers,
            missing_topics: self.missing_topics,
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

    /// The consumer's properties: the source's defaults, then the user's, then the ones the
    /// source's exactly-once protocol cannot do without.
    fn client_config(&self) -> ClientConfig {
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
            .set("auto.offset.reset", self.out_of_range.auto_offset_reset());
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        // Offsets are Watershed's to commit, and only at completed checkpoints.
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        config
    }

    fn rebalance_context(&self) -> SourceContext {
        SourceContext {
            restored: Mutex::new(KafkaPosition::default()),
            changes: Mutex::new(Vec::new()),
            hand_over: AtomicBool::new(true),
            changed: AtomicBool::new(false),
            fetch: Mutex::new(None),
            brokers: self.brokers.clone(),
            start: self.start,
            out_of_range: self.out_of_range,
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }

    /// A quarter of the effective `max.poll.interval.ms` (the last setting wins, as in
    /// librdkafka): leaves the keeper time to poll before the group evicts the member.
    fn keepalive_after(&self) -> Duration {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == "max.poll.interval.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .map_or(Duration::from_secs(300), Duration::from_millis)
            / 4
    }
}
