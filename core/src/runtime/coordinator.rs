//! The checkpoint coordinator: triggers checkpoints, collects acknowledgements, writes the
//! manifest last, announces completion, and supervises the tasks.

use super::{Ack, AckState, SourceControl, TaskReport};
use crate::checkpoint::{CheckpointData, CheckpointId, CheckpointStore};
use crate::error::{Error, Result};
use crate::pipeline::RunSummary;
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
    pub complete: watch::Sender<Option<CheckpointId>>,
    pub shutdown: Arc<Notify>,
    pub handle_signals: bool,
    pub layout: BTreeMap<String, usize>,
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
        let mut signals = Signals::new(self.handle_signals);
        let mut signalled = false;
        let shutdown = self.shutdown.clone();
        loop {
            if stop_requested && !stop_sent && in_flight.is_none() {
                in_flight = Some(self.trigger(true));
                stop_sent = true;
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
                        metrics::histogram!("watershed_checkpoint_duration_seconds", "pipeline" => self.pipeline.clone())
                            .record(took.as_secs_f64());
                        tracing::debug!(pipeline = %self.pipeline, id = f.id.0, ?took, "checkpoint complete");
                        metrics::counter!("watershed_checkpoints_total", "pipeline" => self.pipeline.clone()).increment(1);
                        metrics::gauge!("watershed_checkpoint_last_completed_seconds", "pipeline" => self.pipeline.clone())
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
struct Signals {
    enabled: bool,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new(enabled: bool) -> Self {
        Signals {
            enabled,
            #[cfg(unix)]
            term: if enabled {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
            } else {
                None
            },
        }
    }

    async fn recv(&mut self) {
        if !self.enabled {
            return std::future::pending().await;
        }
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
