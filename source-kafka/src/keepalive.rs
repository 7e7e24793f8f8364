//! Keeps the consumer in its group while the pipeline is back-pressured.
//!
//! A back-pressured pipeline stops calling the source's `poll`, and a consumer that does not
//! poll for `max.poll.interval.ms` (5 minutes by default) is put out of its group: its
//! partitions are given away, and whatever it read since its last checkpoint is read again by
//! their next owner. A slow sink (an S3 outage with retries, a throttled stream) can take that
//! long. So when the source has not polled for a quarter of the interval, a thread of the
//! source's own **pauses** the assigned partitions (librdkafka stops fetching them, and resumes
//! right after the last message handed out) and polls the consumer queue, which keeps the
//! membership alive and serves rebalances. The source resumes the partitions when it polls
//! again. This is the pause/resume back-pressure Kafka's clients recommend over not polling.

use crate::rebalance::SourceContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::OwnedMessage;
use rdkafka::TopicPartitionList;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The keeper thread and what it shares with the source.
pub(crate) struct KeepAlive {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    /// The state; a panic elsewhere while it was held leaves nothing half-done worth refusing.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    /// The source is inside `poll`: the keeper stays out.
    in_poll: bool,
    /// When the source last returned from `poll` (`None`: not yet).
    last_poll: Option<Instant>,
    /// Every partition the keeper paused and the source has not resumed yet, assigned or not:
    /// librdkafka keeps a partition paused across unassignment and a later assignment.
    paused: BTreeSet<(String, i32)>,
    /// What the keeper's polls returned, in order, for the source: messages (only of a
    /// partition read from the consumer queue) and errors (a fatal one must stop the source).
    polled: Vec<Result<OwnedMessage, RdError>>,
}

impl KeepAlive {
    /// Starts the keeper: it steps in when the source has not polled for `after`.
    pub(crate) fn start(
        consumer: Arc<BaseConsumer<SourceContext>>,
        after: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                last_poll: Some(Instant::now()),
                ..State::default()
            }),
            stop: AtomicBool::new(false),
        });
        let tick = (after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kafka-keepalive".into())
                .spawn(move || keep(&consumer, &shared, after, tick))?
        };
        Ok(KeepAlive {
            shared,
            thread: Some(thread),
        })
    }

    /// The source's `poll` begins: the keeper stands aside until the returned guard is dropped
    /// (when `poll` returns, or its future is dropped), whatever it paused resumes, and what
    /// its polls returned is handed over. Never waits for a keeper round in progress: the
    /// state lock is held only for bookkeeping, not across librdkafka calls.
    pub(crate) fn enter(
        &self,
        consumer: &BaseConsumer<SourceContext>,
    ) -> (Polling, Vec<Result<OwnedMessage, RdError>>) {
        let (paused, polled) = {
            let mut state = self.shared.state();
            state.in_poll = true;
            (
                std::mem::take(&mut state.paused),
                std::mem::take(&mut state.polled),
            )
        };
        if !paused.is_empty() {
            resume(consumer, &paused);
            tracing::info!(
                partitions = paused.len(),
                "kafka: pipeline polling again; partitions resumed"
            );
        }
        (Polling(self.shared.clone()), polled)
    }

    /// Stops the keeper and waits for it: before the consumer closes.
    pub(crate) fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The source is polling; dropping this marks the end of it.
pub(crate) struct Polling(Arc<Shared>);

impl Drop for Polling {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_poll = false;
        state.last_poll = Some(Instant::now());
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop();
    }
}

fn resume(consumer: &BaseConsumer<SourceContext>, partitions: &BTreeSet<(String, i32)>) {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    // librdkafka resumes any partition it knows, assigned or not.
    if let Err(e) = consumer.resume(&tpl) {
        tracing::error!(error = %e, "kafka: resuming partitions after back-pressure failed");
    }
}

fn keep(consumer: &BaseConsumer<SourceContext>, shared: &Shared, after: Duration, tick: Duration) {
    let mut pausing = false;
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(tick);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        {
            let state = shared.state();
            let away = state.last_poll.map_or(Duration::ZERO, |t| t.elapsed());
            if state.in_poll || away < after {
                pausing = false;
                continue;
            }
            if !pausing {
                pausing = true;
                tracing::warn!(
                    waited = ?away,
                    "kafka: the pipeline has not polled the source for a while (back-pressure); pausing its partitions and keeping the group membership alive"
                );
                metrics::counter!(crate::metric_catalogue::BACKPRESSURE_PAUSES).increment(1);
            }
        }
        // Serves what the consumer queue holds, without the state lock (a rebalance callback
        // may block on the broker): a rebalance returns after one event, so a few rounds.
        let mut polled = Vec::new();
        for _ in 0..16 {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => polled.push(Ok(m.detach())),
                Some(Err(e)) => polled.push(Err(e)),
            }
        }
        // Again each round: a rebalance served above may have assigned more partitions.
        let assigned: BTreeSet<(String, i32)> = consumer
            .assignment()
            .map(|a| {
                a.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect()
            })
            .unwrap_or_default();
        if !assigned.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in &assigned {
                tpl.add_partition(topic, *partition);
            }
            if let Err(e) = consumer.pause(&tpl) {
                tracing::warn!(error = %e, "kafka: pausing partitions failed");
            }
        }
        let mut state = shared.state();
        state.polled.extend(polled);
        if state.in_poll {
            // The source came back during this round and resumed what it knew of: resume
            // what was paused since.
            drop(state);
            resume(consumer, &assigned);
        } else {
            state.paused.extend(assigned);
        }
    }
}
