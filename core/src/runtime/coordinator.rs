//! The checkpoint coordinator: triggers checkpoints, collects acknowledgements, writes the
//! manifest last, announces completion, and supervises the tasks.

use super::summary::RunSummary;
use super::{Ack, AckState, SourceControl, TaskReport};
use crate::checkpoint::{CheckpointData, CheckpointId, CheckpointStore};
use crate::error::{Error, Result};
use crate::metric_catalogue as m;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

struct InFlight {
    id: CheckpointId,
    acks: usize,
    data: CheckpointData,
    started: Instant,
}

pub(crate) struct Coordinator {
    pub pipeline: String,
    pub store: CheckpointStore,
    pub interval: Option<Duration>,
    pub next_id: CheckpointId,
    pub participants: usize,
    pub sources: Vec<mpsc::UnboundedSender<SourceControl>>,
    pub source_count: usize,
    pub acks: mpsc::UnboundedReceiver<Ack>,
    pub finished: mpsc::UnboundedReceiver<String>,
    /// Sources asking for a checkpoint now (by node name).
    pub requests: mpsc::UnboundedReceiver<String>,
    pub complete: watch::Sender<Option<CheckpointId>>,
    pub shutdown: Arc<Notify>,
    pub signals: Signals,
    pub layout: BTreeMap<String, usize>,
    /// The pipeline's number of key groups, recorded in every manifest.
    pub max_parallelism: usize,
}

impl Coordinator {
    pub(crate) async fn run(
        mut self,
        mut tasks: JoinSet<(String, Result<TaskReport>)>,
    ) -> Result<RunSummary> {
        let mut summary = RunSummary::default();
        let mut ticker = self.interval.map(|d| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut in_flight: Option<InFlight> = None;
        let mut finished: HashSet<String> = HashSet::new();
        let mut stop_requested = false;
        let mut stop_sent = false;
        // A source asked for a checkpoint: trigger one as soon as none is in flight. Never a
        // second concurrent one: barriers of two checkpoints would interleave in alignment.
        let mut requested = false;
        let mut signals = std::mem::replace(&mut self.signals, Signals::new(false));
        let mut signalled = false;
        let shutdown = self.shutdown.clone();
        loop {
            if stop_requested && !stop_sent && in_flight.is_none() {
                in_flight = Some(self.trigger(true));
                stop_sent = true;
            }
            if requested && in_flight.is_none() && !stop_sent {
                requested = false;
                in_flight = Some(self.trigger(false));
                // The next periodic checkpoint is a full interval after this one.
                if let Some(t) = ticker.as_mut() {
                    t.reset();
                }
            }
            tokio::select! {
                _ = tick(&mut ticker), if in_flight.is_none() && !stop_sent => {
                    in_flight = Some(self.trigger(false));
                }
                Some(ack) = self.acks.recv() => {
                    let done = match in_flight.as_mut() {
                        Some(f) if f.id == ack.id => {
                            f.acks += 1;
                            match ack.state {
                                AckState::Source { position, event_times } => {
                                    if !event_times.is_empty() {
                                        f.data.source_event_times.insert(ack.node.clone(), event_times);
                                    }
                                    f.data.sources.insert(ack.node, position);
                                }
                                AckState::Sink(v) => { f.data.sinks.insert(ack.node, v); }
                                AckState::Operator(Some(s)) => { f.data.operators.insert(ack.node, s); }
                                AckState::Operator(None) => {}
                                AckState::KeyGroups { operator, groups } => {
                                    f.data.key_groups.entry(operator).or_default().insert(ack.node, groups);
                                }
                            }
                            f.acks >= self.participants
                        }
                        _ => false,
                    };
                    if done {
                        let f = in_flight.take().expect("in flight");
                        let mut failed = None;
                        if let Err(e) = self.store.write(&self.pipeline, f.id, f.data).await {
                            failed = Some(e);
                        }
                        if let Some(e) = failed {
                            tasks.shutdown().await;
                            return Err(e);
                        }
                        let took = f.started.elapsed();
                        metrics::histogram!(m::CHECKPOINT_DURATION, m::LABEL_PIPELINE => self.pipeline.clone())
                            .record(took.as_secs_f64());
                        tracing::debug!(pipeline = %self.pipeline, id = f.id.0, ?took, "checkpoint complete");
                        metrics::counter!(m::CHECKPOINTS, m::LABEL_PIPELINE => self.pipeline.clone()).increment(1);
                        metrics::gauge!(m::CHECKPOINT_LAST_COMPLETED, m::LABEL_PIPELINE => self.pipeline.clone())
                            .set(crate::time::EventTime::now().millis() as f64 / 1000.0);
                        summary.checkpoints += 1;
                        summary.last_checkpoint = Some(f.id);
                        let _ = self.complete.send(Some(f.id));
                    }
                }
                Some(node) = self.finished.recv() => {
                    finished.insert(node);
                    if finished.len() >= self.source_count {
                        stop_requested = true;
                    }
                }
                Some(node) = self.requests.recv() => {
                    tracing::debug!(pipeline = %self.pipeline, %node, "checkpoint requested by a source");
                    requested = true;
                }
                _ = shutdown.notified() => { stop_requested = true; }
                _ = signals.recv() => {
                    if signalled {
                        // A second signal: the user does not want to wait for the drain.
                        tracing::warn!(pipeline = %self.pipeline, "second signal: stopping without a final checkpoint");
                        tasks.shutdown().await;
                        return Err(Error::Task { node: "pipeline".into(), message: "stopped by a second signal before the final checkpoint".into() });
                    }
                    signalled = true;
                    tracing::info!(pipeline = %self.pipeline, "signal received: final checkpoint, then stop (again to abort)");
                    stop_requested = true;
                }
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok((_, Ok(report)))) => {
                        tracing::debug!(node = %report.node, records_in = report.records_in, "task finished");
                        summary.add(report);
                    }
                    Some(Ok((node, Err(e)))) => {
                        tracing::error!(%node, error = %e, "task failed; stopping the pipeline");
                        // Wait until every task has stopped, so nothing of this run (a late
                        // file write, a commit) can overlap a run started after we return.
                        tasks.shutdown().await;
                        return Err(e);
                    }
                    Some(Err(join)) => {
                        tasks.shutdown().await;
                        return Err(Error::Task { node: "?".into(), message: join.to_string() });
                    }
                },
            }
        }
        Ok(summary)
    }

    fn trigger(&mut self, stop: bool) -> InFlight {
        let id = self.next_id;
        self.next_id = id.next();
        for s in &self.sources {
            let _ = s.send(SourceControl::Trigger { id, stop });
        }
        InFlight {
            id,
            acks: 0,
            data: CheckpointData {
                layout: self.layout.clone(),
                max_parallelism: self.max_parallelism,
                ..Default::default()
            },
            started: Instant::now(),
        }
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, received any number of times.
///
/// Both are listened to through streams created once, when the pipeline starts running: such a
/// stream keeps a signal that arrives while nobody awaits it (the coordinator writing a
/// manifest, tasks still opening). A `ctrl_c()` future created anew for each wait only sees
/// signals that arrive after it is first polled, so a SIGINT during a manifest write was lost
/// and the pipeline ran on.
pub(crate) struct Signals {
    enabled: bool,
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Starts listening (replacing the default "terminate" action) when `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        #[cfg(unix)]
        let streams = enabled.then(|| {
            use tokio::signal::unix::{signal, SignalKind};
            Some((
                signal(SignalKind::interrupt()).ok()?,
                signal(SignalKind::terminate()).ok()?,
            ))
        });
        Signals {
            enabled,
            #[cfg(unix)]
            streams: streams.flatten(),
        }
    }

    async fn recv(&mut self) {
        if !self.enabled {
            return std::future::pending().await;
        }
        #[cfg(unix)]
        if let Some((int, term)) = self.streams.as_mut() {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use crate::checkpoint::{CheckpointId, CheckpointStore};
    use crate::connectors::CollectSink;
    use crate::error::BoxError;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::record::{Record, SplitId};
    use crate::source::{Source, SourceEvent};
    use crate::time::EventTime;
    use crate::watermark::WatermarkStrategy;
    use async_trait::async_trait;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Emits one batch, asks for a checkpoint, and finishes only once a checkpoint covering
    /// the batch has completed. Records which checkpoints it was told about.
    struct AsksForCheckpoint {
        step: u32,
        completed: Arc<Mutex<Vec<(CheckpointId, u64)>>>,
        read: u64,
    }

    #[async_trait]
    impl Source for AsksForCheckpoint {
        type Item = u64;
        type Position = u64;

        async fn open(&mut self, _: Option<u64>) -> Result<(), BoxError> {
            Ok(())
        }

        async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<u64>, BoxError> {
            self.step += 1;
            match self.step {
                1 => {
                    self.read = 3;
                    Ok(SourceEvent::Batch {
                        split: SplitId::new("s"),
                        records: (0..3)
                            .map(|i| Record::new(i, EventTime(i as i64)))
                            .collect(),
                    })
                }
                2 => Ok(SourceEvent::CheckpointRequested),
                _ if self.completed.lock().unwrap().iter().any(|(_, p)| *p == 3) => {
                    Ok(SourceEvent::Finished)
                }
                _ => {
                    tokio::time::sleep(max_wait).await;
                    Ok(SourceEvent::Idle)
                }
            }
        }

        fn position(&self) -> u64 {
            self.read
        }

        async fn checkpoint_complete(&mut self, id: CheckpointId, p: &u64) -> Result<(), BoxError> {
            self.completed.lock().unwrap().push((id, *p));
            Ok(())
        }
    }

    /// Rule: a source's checkpoint request is served at once, not at the next interval: with
    /// an interval of an hour, the source still sees a checkpoint covering what it read
    /// complete (and the run, which waits for it, ends).
    #[tokio::test]
    async fn a_checkpoint_requested_by_a_source_completes_without_waiting_for_the_interval() {
        let completed = Arc::new(Mutex::new(Vec::new()));
        let p = Pipeline::new(
            PipelineConfig::new("requested")
                .checkpoint_store(CheckpointStore::memory())
                .checkpoint_interval(Duration::from_secs(3600))
                .handle_signals(false),
        );
        let source = AsksForCheckpoint {
            step: 0,
            completed: completed.clone(),
            read: 0,
        };
        let out = CollectSink::<u64>::new();
        p.source("asks", source, WatermarkStrategy::none())
            .sink("out", out.clone());
        let summary = tokio::time::timeout(Duration::from_secs(60), p.run())
            .await
            .expect("the requested checkpoint was not taken")
            .unwrap();
        let completed = completed.lock().unwrap().clone();
        // The requested checkpoint, then the final one at the end of the input.
        assert_eq!(completed.first(), Some(&(CheckpointId(1), 3)));
        assert_eq!(summary.checkpoints, 2);
        assert_eq!(out.values(), vec![0, 1, 2]);
    }
}
