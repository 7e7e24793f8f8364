//! The task loops. Each is written once and shared by every source, operator and sink.

use super::inputs::Inputs;
use super::{Ack, AckState, SourceControl, TaskKind, TaskReport};
use crate::checkpoint::CheckpointId;
use crate::dead_letter::{DeadLetter, ErrorPolicy};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::operator::{Collector, Operator};
use crate::record::{Batch, Record};
use crate::sink::{Sink, SinkContext};
use crate::source::{Source, SourceEvent};
use crate::time::EventTime;
use crate::watermark::{WatermarkStrategy, WatermarkUpdate};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Sends to the next task; a closed channel means the pipeline is being torn down after a
/// failure elsewhere, which the coordinator reports, so it ends this task quietly.
pub(crate) struct Output<T> {
    tx: mpsc::Sender<Message<T>>,
}

impl<T> Output<T> {
    pub(crate) fn new(tx: mpsc::Sender<Message<T>>) -> Self {
        Output { tx }
    }

    pub(crate) async fn send(&self, m: Message<T>) -> bool {
        self.tx.send(m).await.is_ok()
    }
}

pub(crate) struct SourceTask<S: Source> {
    pub node: String,
    pub source: S,
    pub strategy: WatermarkStrategy<S::Item>,
    pub restored: Option<S::Position>,
    pub out: Output<S::Item>,
    pub control: mpsc::UnboundedReceiver<SourceControl>,
    pub complete: watch::Receiver<Option<CheckpointId>>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub finished: mpsc::UnboundedSender<String>,
    pub max_wait: Duration,
}

impl<S: Source> SourceTask<S> {
    /// The control loop every source shares: poll, assign timestamps and watermarks per split,
    /// inject barriers between polls, pass completed checkpoints on, stop on request.
    pub(crate) async fn run(mut self) -> Result<TaskReport> {
        let node = self.node.clone();
        let err = |e| Error::source(node.clone(), e);
        self.source.open(self.restored.take()).await.map_err(err)?;
        let mut tracker = self.strategy.tracker();
        let mut pending: BTreeMap<CheckpointId, S::Position> = BTreeMap::new();
        let mut report = TaskReport {
            kind: TaskKind::Source,
            node: node.clone(),
            ..Default::default()
        };
        let records_in = metrics::counter!("watershed_records_in_total", "node" => node.clone());
        let mut finished = false;
        let mut stop_at = None;
        'outer: loop {
            while let Ok(SourceControl::Trigger { id, stop }) = self.control.try_recv() {
                let position = self.source.position();
                let value = serde_json::to_value(&position).map_err(|e| Error::state(&node, e))?;
                pending.insert(id, position);
                let _ = self.acks.send(Ack {
                    id,
                    node: node.clone(),
                    state: AckState::Source(value),
                });
                if !self.out.send(Message::Barrier(id)).await {
                    break 'outer;
                }
                if stop {
                    stop_at = Some(id);
                    break 'outer;
                }
            }
            notify_complete(&node, &mut self.source, &mut self.complete, &mut pending).await?;
            if finished {
                // A finished source still answers checkpoint triggers until the final one.
                tokio::select! {
                    c = self.control.recv() => match c {
                        Some(SourceControl::Trigger { id, stop }) => {
                            let position = self.source.position();
                            let value = serde_json::to_value(&position).map_err(|e| Error::state(&node, e))?;
                            pending.insert(id, position);
                            let _ = self.acks.send(Ack { id, node: node.clone(), state: AckState::Source(value) });
                            if !self.out.send(Message::Barrier(id)).await { break 'outer; }
                            if stop { stop_at = Some(id); break 'outer; }
                        }
                        None => break 'outer,
                    },
                    r = self.complete.changed() => if r.is_err() { break 'outer },
                }
                continue;
            }
            match self.source.poll(self.max_wait).await.map_err(err)? {
                SourceEvent::Batch { split, mut records } => {
                    if records.is_empty() {
                        continue;
                    }
                    self.strategy.assign_timestamps(&mut records);
                    let max_ts = records
                        .iter()
                        .map(|r| r.timestamp)
                        .max()
                        .unwrap_or(EventTime::MIN);
                    let now = Instant::now();
                    tracker.observe(&split, max_ts, now);
                    let n = records.len() as u64;
                    report.records_in += n;
                    records_in.increment(n);
                    if !self.out.send(Message::Data(records)).await {
                        break;
                    }
                    if let Some(u) = tracker.update(now) {
                        if !self.out.send(update_message(u)).await {
                            break;
                        }
                    }
                }
                SourceEvent::SplitAdded(split) => tracker.split_added(&split, Instant::now()),
                SourceEvent::SplitRemoved(split) => {
                    tracker.split_removed(&split);
                    if let Some(u) = tracker.update(Instant::now()) {
                        if !self.out.send(update_message(u)).await {
                            break;
                        }
                    }
                }
                SourceEvent::Idle => {
                    if let Some(u) = tracker.update(Instant::now()) {
                        if !self.out.send(update_message(u)).await {
                            break;
                        }
                    }
                }
                SourceEvent::Finished => {
                    finished = true;
                    // End of a bounded input closes every window (T1).
                    if !self.out.send(Message::Watermark(EventTime::MAX)).await {
                        break;
                    }
                    let _ = self.finished.send(node.clone());
                }
            }
        }
        // Closing the output lets downstream drain; then wait for the final checkpoint so the
        // broker commit of its position happens before the source closes.
        let SourceTask {
            mut source,
            mut complete,
            out,
            ..
        } = self;
        drop(out);
        if let Some(stop_id) = stop_at {
            while pending.contains_key(&stop_id) {
                if complete.changed().await.is_err() {
                    break;
                }
                notify_complete(&node, &mut source, &mut complete, &mut pending).await?;
            }
        }
        source.close().await.map_err(err)?;
        Ok(report)
    }
}

async fn notify_complete<S: Source>(
    node: &str,
    source: &mut S,
    complete: &mut watch::Receiver<Option<CheckpointId>>,
    pending: &mut BTreeMap<CheckpointId, S::Position>,
) -> Result<()> {
    {
        let Some(done) = *complete.borrow_and_update() else {
            return Ok(());
        };
        // A later completion subsumes earlier ones: commit only the newest position (C5).
        let mut newest = None;
        while let Some(entry) = pending.first_entry() {
            if *entry.key() > done {
                break;
            }
            newest = Some(entry.remove_entry());
        }
        if let Some((id, position)) = newest {
            source
                .checkpoint_complete(id, &position)
                .await
                .map_err(|e| Error::source(node.to_string(), e))?;
        }
        Ok(())
    }
}

fn update_message<T>(u: WatermarkUpdate) -> Message<T> {
    match u {
        WatermarkUpdate::Advance(w) => Message::Watermark(w),
        WatermarkUpdate::Idle => Message::Idle,
    }
}

/// Applies the error policy to rejected records.
pub(crate) struct Rejects {
    pub node: String,
    pub policy: ErrorPolicy,
    pub dead_letters: Option<mpsc::Sender<Message<DeadLetter>>>,
    pub count: u64,
}

impl Rejects {
    pub(crate) async fn handle(&mut self, rejected: Vec<DeadLetter>) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        self.count += rejected.len() as u64;
        metrics::counter!("watershed_records_rejected_total", "node" => self.node.clone())
            .increment(rejected.len() as u64);
        match (self.policy, &self.dead_letters) {
            (ErrorPolicy::Fail, _) => {
                let first = rejected.into_iter().next().expect("not empty");
                Err(Error::Record {
                    node: self.node.clone(),
                    reason: first.reason,
                    origin: first.origin,
                })
            }
            (ErrorPolicy::DeadLetter, Some(tx)) => {
                let batch: Batch<DeadLetter> = rejected
                    .into_iter()
                    .map(|mut d| {
                        d.node.clone_from(&self.node);
                        let ts = d.timestamp;
                        let origin = d.origin.clone();
                        let mut r = Record::new(d, ts);
                        r.origin = origin;
                        r
                    })
                    .collect();
                let _ = tx.send(Message::Data(batch)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(crate) async fn barrier(&self, id: CheckpointId) {
        if let Some(tx) = &self.dead_letters {
            let _ = tx.send(Message::Barrier(id)).await;
        }
    }
}

pub(crate) struct OperatorTask<O: Operator> {
    pub node: String,
    pub op: O,
    pub inputs: Inputs<O::In>,
    pub out: Output<O::Out>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub rejects: Rejects,
}

impl<O: Operator> OperatorTask<O> {
    pub(crate) async fn run(mut self) -> Result<TaskReport> {
        let node = self.node.clone();
        let err = |e| Error::operator(node.clone(), e);
        let mut out = Collector::default();
        let mut report = TaskReport {
            kind: TaskKind::Operator,
            node: node.clone(),
            ..Default::default()
        };
        while let Some(m) = self.inputs.next().await {
            match m {
                Message::Data(batch) => {
                    report.records_in += batch.len() as u64;
                    self.op.process(batch, &mut out).map_err(err)?;
                    if !self.flush(&mut out, &mut report).await? {
                        break;
                    }
                }
                Message::Watermark(w) => {
                    self.op.on_watermark(w, &mut out).map_err(err)?;
                    if !self.flush(&mut out, &mut report).await? {
                        break;
                    }
                    if !self.out.send(Message::Watermark(w)).await {
                        break;
                    }
                }
                Message::Idle => {
                    if !self.out.send(Message::Idle).await {
                        break;
                    }
                }
                Message::Barrier(id) => {
                    let state = self.op.snapshot().map_err(err)?;
                    let _ = self.acks.send(Ack {
                        id,
                        node: node.clone(),
                        state: AckState::Operator(state),
                    });
                    self.rejects.barrier(id).await;
                    if !self.out.send(Message::Barrier(id)).await {
                        break;
                    }
                }
            }
        }
        report.rejected = self.rejects.count;
        Ok(report)
    }

    async fn flush(
        &mut self,
        out: &mut Collector<O::Out>,
        report: &mut TaskReport,
    ) -> Result<bool> {
        let (records, rejected) = out.take();
        self.rejects.handle(rejected).await?;
        if records.is_empty() {
            return Ok(true);
        }
        report.records_out += records.len() as u64;
        Ok(self.out.send(Message::Data(records)).await)
    }
}

pub(crate) struct SinkTask<S: Sink> {
    pub node: String,
    pub sink: S,
    pub ctx: SinkContext,
    pub restored: Vec<(CheckpointId, S::Handle)>,
    pub inputs: Inputs<S::Item>,
    pub complete: watch::Receiver<Option<CheckpointId>>,
    pub acks: mpsc::UnboundedSender<Ack>,
}

impl<S: Sink> SinkTask<S> {
    /// Two-phase commit, written once for every sink (C6): write, pre-commit on the aligned
    /// barrier, commit every pending handle up to a completed checkpoint, re-commit restored
    /// handles on start.
    pub(crate) async fn run(mut self) -> Result<TaskReport> {
        let node = self.node.clone();
        let err = |e| Error::sink(node.clone(), e);
        self.sink.open(&self.ctx).await.map_err(err)?;
        // Restored handles may or may not have committed before the crash; commit is idempotent.
        for (id, handle) in std::mem::take(&mut self.restored) {
            self.sink.commit(id, handle).await.map_err(err)?;
        }
        let records_out = metrics::counter!("watershed_records_out_total", "node" => node.clone());
        let mut pending: BTreeMap<CheckpointId, S::Handle> = BTreeMap::new();
        let mut report = TaskReport {
            node: node.clone(),
            ..Default::default()
        };
        let result: Result<()> = async {
            loop {
                tokio::select! {
                    biased;
                    r = self.complete.changed() => {
                        if r.is_err() { break; }
                        self.commit_completed(&mut pending).await?;
                    }
                    m = self.inputs.next() => match m {
                        Some(Message::Data(batch)) => {
                            let n = batch.len() as u64;
                            self.sink.write(batch).await.map_err(err)?;
                            report.records_in += n;
                            records_out.increment(n);
                        }
                        Some(Message::Barrier(id)) => {
                            let handle = self.sink.pre_commit(id).await.map_err(err)?;
                            pending.insert(id, handle);
                            let value = serde_json::to_value(pending.iter().collect::<Vec<_>>())
                                .map_err(|e| Error::state(&node, e))?;
                            let _ = self.acks.send(Ack { id, node: node.clone(), state: AckState::Sink(value) });
                        }
                        Some(Message::Watermark(_)) | Some(Message::Idle) => {}
                        None => break,
                    },
                }
            }
            // Input ended: wait for the checkpoints already pre-committed to complete.
            while !pending.is_empty() {
                if self.complete.changed().await.is_err() {
                    break;
                }
                self.commit_completed(&mut pending).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = self.sink.abort().await;
            return Err(e);
        }
        self.sink.close().await.map_err(err)?;
        Ok(report)
    }

    async fn commit_completed(
        &mut self,
        pending: &mut BTreeMap<CheckpointId, S::Handle>,
    ) -> Result<()> {
        let Some(done) = *self.complete.borrow_and_update() else {
            return Ok(());
        };
        while let Some(entry) = pending.first_entry() {
            if *entry.key() > done {
                break;
            }
            let (id, handle) = entry.remove_entry();
            self.sink
                .commit(id, handle)
                .await
                .map_err(|e| Error::sink(self.node.clone(), e))?;
        }
        Ok(())
    }
}

/// Routes each record to one of several outputs; control messages go to all of them.
pub(crate) async fn route<T: Send + 'static>(
    mut inputs: Inputs<T>,
    outs: Vec<Output<T>>,
    mut pick: impl FnMut(&Record<T>) -> usize + Send,
) -> Result<TaskReport> {
    let n = outs.len();
    let mut parts: Vec<Batch<T>> = (0..n).map(|_| Vec::new()).collect();
    while let Some(m) = inputs.next().await {
        match m {
            Message::Data(batch) => {
                let hint = batch.len() / n + 1;
                for r in batch {
                    let i = pick(&r);
                    parts[i].push(r);
                }
                for (i, part) in parts.iter_mut().enumerate() {
                    if !part.is_empty() {
                        let b = std::mem::replace(part, Vec::with_capacity(hint));
                        if !outs[i].send(Message::Data(b)).await {
                            return Ok(TaskReport::default());
                        }
                    }
                }
            }
            Message::Watermark(w) => broadcast(&outs, || Message::Watermark(w)).await,
            Message::Idle => broadcast(&outs, || Message::Idle).await,
            Message::Barrier(id) => broadcast(&outs, || Message::Barrier(id)).await,
        }
    }
    Ok(TaskReport::default())
}

async fn broadcast<T>(outs: &[Output<T>], make: impl Fn() -> Message<T>) {
    for o in outs {
        o.send(make()).await;
    }
}

/// Sends every message to every output (records cloned).
pub(crate) async fn fan_out<T: Clone + Send + 'static>(
    mut inputs: Inputs<T>,
    outs: Vec<Output<T>>,
) -> Result<TaskReport> {
    while let Some(m) = inputs.next().await {
        match m {
            Message::Data(batch) => {
                let (last, rest) = outs.split_last().expect("fan-out has outputs");
                for o in rest {
                    o.send(Message::Data(batch.clone())).await;
                }
                last.send(Message::Data(batch)).await;
            }
            Message::Watermark(w) => broadcast(&outs, || Message::Watermark(w)).await,
            Message::Idle => broadcast(&outs, || Message::Idle).await,
            Message::Barrier(id) => broadcast(&outs, || Message::Barrier(id)).await,
        }
    }
    Ok(TaskReport::default())
}
