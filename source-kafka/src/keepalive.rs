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

use crate::source::SourceContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

struct State {
    /// The source is inside `poll`: the keeper stays out.
    in_poll: bool,
    /// When the source last returned from `poll`.
    last_poll: Instant,
    /// The keeper paused the assignment.
    paused: bool,
    /// Messages the keeper's poll returned (only of a partition read from the consumer queue),
    /// for the source to hand out.
    stray: Vec<OwnedMessage>,
}

impl KeepAlive {
    /// Starts the keeper: it steps in when the source has not polled for `after`.
    pub(crate) fn start(
        consumer: Arc<BaseConsumer<SourceContext>>,
        after: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                in_poll: false,
                last_poll: Instant::now(),
                paused: false,
                stray: Vec::new(),
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
    /// (when `poll` returns, or its future is dropped), paused partitions resume, and the
    /// messages the keeper received are handed over.
    pub(crate) fn enter(
        &self,
        consumer: &BaseConsumer<SourceContext>,
    ) -> (Polling, Vec<OwnedMessage>) {
        let mut state = self.shared.state.lock().expect("keepalive lock");
        state.in_poll = true;
        if state.paused {
            state.paused = false;
            match consumer.assignment() {
                Ok(assigned) => {
                    if let Err(e) = consumer.resume(&assigned) {
                        tracing::error!(error = %e, "kafka: resuming partitions after back-pressure failed");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "kafka: reading the assignment to resume it failed")
                }
            }
            tracing::info!("kafka: pipeline polling again; partitions resumed");
        }
        let stray = std::mem::take(&mut state.stray);
        (Polling(self.shared.clone()), stray)
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
        let mut state = self.0.state.lock().expect("keepalive lock");
        state.in_poll = false;
        state.last_poll = Instant::now();
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keep(consumer: &BaseConsumer<SourceContext>, shared: &Shared, after: Duration, tick: Duration) {
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(tick);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let mut state = shared.state.lock().expect("keepalive lock");
        if state.in_poll || state.last_poll.elapsed() < after {
            continue;
        }
        if !state.paused {
            state.paused = true;
            tracing::warn!(
                waited = ?state.last_poll.elapsed(),
                "kafka: the pipeline has not polled the source for a while (back-pressure); pausing its partitions and keeping the group membership alive"
            );
            metrics::counter!("watershed_kafka_backpressure_pauses_total").increment(1);
        }
        // Serves what the consumer queue holds (a rebalance returns after one event; a few
        // rounds per tick are plenty).
        for _ in 0..16 {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => state.stray.push(m.detach()),
                Some(Err(e)) => tracing::warn!(error = %e, "kafka: consumer error while paused"),
            }
        }
        // Again each time: a rebalance served above may have assigned more partitions.
        if let Ok(assigned) = consumer.assignment() {
            if assigned.count() > 0 {
                if let Err(e) = consumer.pause(&assigned) {
                    tracing::warn!(error = %e, "kafka: pausing partitions failed");
                }
            }
        }
    }
}
