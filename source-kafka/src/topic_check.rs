//! Whether the source's topics exist: checked when it opens, and watched while it runs.
//!
//! librdkafka treats a subscribed topic that does not exist, or is deleted, as one with no
//! partitions: the consumer idles, for ever, reporting nothing the application sees. So the
//! source asks the cluster itself: once when it opens (one metadata request per topic, bounded,
//! which also tells a wrong broker address in seconds) and then, from a thread of its own,
//! every few seconds. Topic patterns (`^…`) are not checked: matching nothing is not an error
//! for a pattern.

use crate::connect::missing_topics;
use crate::error::KafkaError;
use crate::rebalance::SourceContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What a [`KafkaSource`](crate::KafkaSource) does about a subscribed topic that does not exist
/// (when it opens) or no longer exists (deleted while it runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingTopics {
    /// Fail the source with an error naming the topics and the cluster (the default).
    #[default]
    Fail,
    /// Keep running and start reading a topic once it exists: a warning naming the missing
    /// topics every 30 s, and the gauge `watershed_kafka_missing_topics`.
    Wait,
}

/// How often the running source looks at its topics: a deleted topic stops the source within
/// this (plus one metadata round trip).
const WATCH_EVERY: Duration = Duration::from_secs(5);
/// How often a source waiting for topics says so.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The named topics of a subscription (patterns left out).
pub(crate) fn named(topics: &[String]) -> Vec<String> {
    topics
        .iter()
        .filter(|t| !t.starts_with('^'))
        .cloned()
        .collect()
}

/// The watching thread; stopped (and joined) when dropped, before the consumer closes.
pub(crate) struct TopicWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the watcher needs.
pub(crate) struct Watched {
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    pub brokers: String,
    /// The named topics, which are watched.
    pub topics: Vec<String>,
    pub policy: MissingTopics,
    /// Topics missing when the source opened (only with `Wait`).
    pub missing: Vec<String>,
    /// Wakes the source's task, so a failure does not wait for its poll deadline.
    pub wake: Arc<Notify>,
}

impl TopicWatch {
    pub(crate) fn start(watched: Watched) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kafka-topic-watch".into())
                .spawn(move || watch(&watched, &stop))?
        };
        Ok(TopicWatch {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TopicWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Reports `topics` as missing: the gauge, and a warning at most every 30 s.
pub(crate) fn report_missing(topics: &[String], brokers: &str, last_warning: &mut Option<Instant>) {
    metrics::gauge!(crate::metric_catalogue::MISSING_TOPICS).set(topics.len() as f64);
    if topics.is_empty() || last_warning.is_some_and(|t| t.elapsed() < WARN_EVERY) {
        return;
    }
    *last_warning = Some(Instant::now());
    tracing::warn!(topics = ?topics, brokers, "kafka: waiting for topics that do not exist; the source reads them once they are created");
}

fn watch(w: &Watched, stop: &AtomicBool) {
    let mut missing = w.missing.clone();
    let mut last_warning = (!missing.is_empty()).then(Instant::now);
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(WATCH_EVERY);
        if stop.load(Ordering::Acquire) {
            break;
        }
        let now_missing =
            match missing_topics(w.consumer.client(), &w.brokers, &w.topics, WATCH_EVERY) {
                Ok(m) => m,
                Err(e) => {
                    // The cluster not answering for a moment is librdkafka's to ride out.
                    tracing::debug!(error = %e, "kafka: checking the source's topics failed");
                    continue;
                }
            };
        match w.policy {
            MissingTopics::Fail => {
                if let Some(topic) = now_missing.into_iter().next() {
                    w.consumer.context().fail(KafkaError::TopicVanished {
                        topic,
                        brokers: w.brokers.clone(),
                    });
                    w.wake.notify_one();
                    return;
                }
            }
            _ => {
                let appeared = missing.iter().any(|t| !now_missing.contains(t));
                let vanished: Vec<&String> = now_missing
                    .iter()
                    .filter(|t| !missing.contains(t))
                    .collect();
                if !vanished.is_empty() {
                    tracing::warn!(topics = ?vanished, brokers = %w.brokers, "kafka: topics the source was reading no longer exist; waiting for them to be created again");
                    last_warning = None;
                }
                if appeared {
                    // librdkafka looks for a subscribed topic it does not know often (its
                    // fast metadata refresh), and starts reading it by itself.
                    tracing::info!(brokers = %w.brokers, "kafka: a topic the source waited for exists now");
                }
                missing = now_missing;
                report_missing(&missing, &w.brokers, &mut last_warning);
            }
        }
    }
}

/// The check when the source opens: a wrong address fails here, within
/// [`CONNECT_TIMEOUT`](crate::connect::CONNECT_TIMEOUT), refused credentials or an untrusted
/// certificate sooner and as such (`connect::reach`), and missing topics fail (or, with
/// `Wait`, are returned to be waited for).
pub(crate) async fn check_at_open(
    brokers: &str,
    connection: &[(String, String)],
    subscription: &[String],
    policy: MissingTopics,
) -> Result<Vec<String>, KafkaError> {
    let topics = named(subscription);
    let (b, t, c) = (brokers.to_string(), topics.clone(), connection.to_vec());
    // Patterns only (no named topic): nothing to look up, but the cluster must answer.
    let missing = tokio::task::spawn_blocking(move || crate::connect::reach(&b, &c, &t))
        .await
        .map_err(|e| KafkaError::Invalid(format!("metadata request thread: {e}")))??;
    if missing.is_empty() {
        return Ok(missing);
    }
    match policy {
        MissingTopics::Fail => Err(KafkaError::MissingTopics {
            topics: missing,
            brokers: brokers.to_string(),
            operation: "opening the source".into(),
            hint: ", or wait for them with `missing_topics(MissingTopics::Wait)`".into(),
        }),
        _ => {
            report_missing(&missing, brokers, &mut None);
            Ok(missing)
        }
    }
}
