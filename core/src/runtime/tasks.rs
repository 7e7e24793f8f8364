//! The task loops. Each is written once and shared by every source, operator and sink.

use super::inputs::Inputs;
use super::source_gauges::SourceGauges;
use super::{Ack, AckState, SourceControl, TaskKind, TaskReport};
use crate::checkpoint::CheckpointId;
use crate::dead_letter::{DeadLetter, ErrorPolicy};
use crate::error::{BoxError, Error, Result};
use crate::key_group::KeyGroups;
use crate::message::Message;
use crate::metric_catalogue as m;
use crate::operator::{Collector, Operator};
use crate::record::{Batch, Record};
use crate::source::{Source, SourceEvent};
use crate::time::EventTime;
use crate::watermark::{WatermarkStrategy, WatermarkUpdate};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub(crate) use super::output::{Downstream, Output};

pub(crate) struct SourceTask<S: Source> {
    pub node: String,
    pub source: S,
    pub strategy: WatermarkStrategy<S::Item>,
    pub restored: Option<S::Position>,
    /// Per-split maximum event times from the restored checkpoint.
    pub restored_event_times: std::collections::BTreeMap<String, i64>,
    pub out: Output<S::Item>,
    pub control: mpsc::UnboundedReceiver<SourceControl>,
    pub complete: watch::Receiver<Option<CheckpointId>>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub finished: mpsc::UnboundedSender<String>,
    /// Where [`SourceEvent::CheckpointRequested`] goes: the coordinator.
    pub checkpoint_requests: mpsc::UnboundedSender<String>,
    pub max_wait: Duration,
    /// Where records the watermark strategy refuses go (only when it may refuse any).
    pub rejects: Option<Rejects>,
}

impl<S: Source> SourceTask<S> {
    /// The control loop every source shares: poll, assign timestamps and watermarks per split,
    /// inject barriers between polls, pass completed checkpoints on, stop on request.
    pub(crate) async fn run(mut self) -> Result<TaskReport> {
        let node = self.node.clone();
        let err = |e| Error::source(node.clone(), e);
        self.source.open(self.restored.take()).await.map_err(err)?;
        self.out.start().await?;
        let mut tracker = self.strategy.tracker();
        tracker.restore(std::mem::take(&mut self.restored_event_times));
        let mut pending: BTreeMap<CheckpointId, S::Position> = BTreeMap::new();
        let mut report = TaskReport {
            kind: TaskKind::Source,
            node: node.clone(),
            ..Default::default()
        };
        let records_in = metrics::counter!(m::RECORDS_IN, m::LABEL_NODE => node.clone());
        let mut gauges = SourceGauges::new(&node);
        let mut finished = false;
        let mut stop_at = None;
        'outer: loop {
            // A source whose poll never awaits anything pending (data already buffered, a
            // blocking client) would otherwise never yield: the task could not be aborted when
            // the pipeline fails, and would starve other tasks on its worker.
            tokio::task::consume_budget().await;
            while let Ok(SourceControl::Trigger { id, stop }) = self.control.try_recv() {
                if !self.barrier(id, &tracker, &mut pending).await? {
                    break 'outer;
                }
                if stop {
                    stop_at = Some(id);
                    break 'outer;
                }
            }
            notify_complete(
                &node,
                &mut self.source,
                &mut self.out,
                &mut self.complete,
                &mut pending,
            )
            .await?;
            if finished {
                // A finished source still answers checkpoint triggers until the final one.
                tokio::select! {
                    c = self.control.recv() => match c {
                        Some(SourceControl::Trigger { id, stop }) => {
                            if !self.barrier(id, &tracker, &mut pending).await? { break 'outer; }
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
                    if let Some(rejects) = self.rejects.as_mut() {
                        let refused = self.strategy.refuse_future(&mut records, EventTime::now());
                        if !refused.is_empty() {
                            metrics::counter!(m::RECORDS_FUTURE, m::LABEL_NODE => node.clone())
                                .increment(refused.len() as u64);
                            report.records_in += refused.len() as u64;
                            records_in.increment(refused.len() as u64);
                            rejects.handle(refused).await?;
                        }
                        if records.is_empty() {
                            continue;
                        }
                    }
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
                    if !self.out.send(Message::Data(records)).await? {
                        break;
                    }
                    while let Some(u) = tracker.update(now) {
                        if !self.out.send(update_message(u)).await? {
                            break;
                        }
                    }
                    gauges.update(&tracker, now);
                }
                SourceEvent::Progress { split, time } => {
                    let now = Instant::now();
                    tracker.observe(&split, time, now);
                    while let Some(u) = tracker.update(now) {
                        if !self.out.send(update_message(u)).await? {
                            break;
                        }
                    }
                }
                SourceEvent::SplitAdded(split) => tracker.split_added(&split, Instant::now()),
                SourceEvent::SplitRemoved(split) => {
                    tracker.split_removed(&split);
                    gauges.split_removed(&split);
                    while let Some(u) = tracker.update(Instant::now()) {
                        if !self.out.send(update_message(u)).await? {
                            break;
                        }
                    }
                }
                SourceEvent::Idle => {
                    // Nothing to do: let the scheduler run others, and let an abort land (a
                    // source that waits in a blocking client never reaches a pending await).
                    tokio::task::yield_now().await;
                    while let Some(u) = tracker.update(Instant::now()) {
                        if !self.out.send(update_message(u)).await? {
                            break;
                        }
                    }
                }
                SourceEvent::CheckpointRequested => {
                    let _ = self.checkpoint_requests.send(node.clone());
                }
                SourceEvent::Finished => {
                    finished = true;
                    gauges.update_now(&tracker, Instant::now());
                    // End of a bounded input closes every window.
                    if !self.out.send(Message::Watermark(EventTime::MAX)).await? {
                        break;
                    }
                    let _ = self.finished.send(node.clone());
                }
            }
        }
        // Closing the output lets downstream drain; then wait for the final checkpoint so the
        // broker commit of its position happens before the source closes.
        // The final barrier is out: wait for its checkpoint, so that the broker commit of the
        // source's position and the chained sinks' commits happen before the task ends.
        if let Some(stop_id) = stop_at {
            while pending.contains_key(&stop_id) || self.out.has_pending() {
                if self.complete.changed().await.is_err() {
                    break;
                }
                notify_complete(
                    &node,
                    &mut self.source,
                    &mut self.out,
                    &mut self.complete,
                    &mut pending,
                )
                .await?;
            }
            self.out.finish().await?;
        }
        // Dropping the output closes any channel, so downstream tasks drain and end.
        let SourceTask {
            mut source, out, ..
        } = self;
        drop(out);
        source.close().await.map_err(err)?;
        Ok(report)
    }
}

impl<S: Source> SourceTask<S> {
    /// Snapshots the position for checkpoint `id`, acknowledges it and sends its barrier
    /// downstream (and to the error path). `Ok(false)` when downstream is gone.
    async fn barrier(
        &mut self,
        id: CheckpointId,
        tracker: &crate::watermark::SplitWatermarks,
        pending: &mut BTreeMap<CheckpointId, S::Position>,
    ) -> Result<bool> {
        let position = self.source.position();
        let value = serde_json::to_value(&position).map_err(|e| Error::state(&self.node, e))?;
        pending.insert(id, position);
        let _ = self.acks.send(Ack {
            id,
            node: self.node.clone(),
            state: AckState::Source {
                position: value,
                event_times: tracker.snapshot(),
            },
        });
        if let Some(r) = &self.rejects {
            r.barrier(id).await;
        }
        self.out.send(Message::Barrier(id)).await
    }
}

async fn notify_complete<S: Source>(
    node: &str,
    source: &mut S,
    out: &mut Output<S::Item>,
    complete: &mut watch::Receiver<Option<CheckpointId>>,
    pending: &mut BTreeMap<CheckpointId, S::Position>,
) -> Result<()> {
    {
        let Some(done) = *complete.borrow_and_update() else {
            return Ok(());
        };
        // A later completion subsumes earlier ones: commit only the newest position.
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
        out.checkpoint_complete(done).await
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
    pub count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub recent: crate::dead_letter::RecentRejections,
}

impl Rejects {
    pub(crate) async fn handle(&mut self, rejected: Vec<DeadLetter>) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        self.count
            .fetch_add(rejected.len() as u64, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(m::RECORDS_REJECTED, m::LABEL_NODE => self.node.clone())
            .increment(rejected.len() as u64);
        self.recent.record(&self.node, &rejected);
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

/// One operator with its output: the body of an operator task, or a link of a chain.
pub(crate) struct OperatorStage<O: Operator> {
    pub node: String,
    pub op: O,
    pub out: Output<O::Out>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub rejects: Rejects,
    pub collector: Collector<O::Out>,
    /// Set for an instance of a keyed operator.
    pub keyed: Option<Keyed>,
    pub records_in: metrics::Counter,
    pub records_out: metrics::Counter,
}

/// What an instance of a keyed operator is: which operator, and which key groups it owns.
#[derive(Clone, Debug)]
pub(crate) struct Keyed {
    pub operator: String,
    pub groups: KeyGroups,
}

/// A key-group snapshot lists only groups the instance owns, ascending, each once: another
/// instance restoring a group twice, or a group restored nowhere, would corrupt state silently.
fn check_groups(groups: &[(u16, Vec<u8>)], keyed: &Keyed) -> std::result::Result<(), BoxError> {
    let range = keyed.groups.range();
    let mut last = None;
    for (g, _) in groups {
        if !range.contains(*g) || last.is_some_and(|l| l >= *g) {
            return Err(format!(
                "snapshot_key_groups returned key group {g}, which is out of order, repeated or outside the instance's range {range}"
            )
            .into());
        }
        last = Some(*g);
    }
    Ok(())
}

impl<O: Operator> OperatorStage<O> {
    /// The operator's state for a checkpoint: by key group when it is keyed and splits its
    /// state, one blob otherwise.
    fn snapshot(&mut self) -> Result<AckState> {
        let err = |e| Error::operator(self.node.clone(), e);
        if let Some(keyed) = &self.keyed {
            if let Some(groups) = self.op.snapshot_key_groups(&keyed.groups).map_err(err)? {
                check_groups(&groups, keyed).map_err(err)?;
                return Ok(AckState::KeyGroups {
                    operator: keyed.operator.clone(),
                    groups,
                });
            }
        }
        Ok(AckState::Operator(self.op.snapshot().map_err(err)?))
    }

    async fn flush(&mut self) -> Result<bool> {
        let (records, rejected) = self.collector.take();
        self.rejects.handle(rejected).await?;
        if records.is_empty() {
            return Ok(true);
        }
        self.records_out.increment(records.len() as u64);
        self.out.send(Message::Data(records)).await
    }
}

#[async_trait]
impl<O: Operator> Downstream<O::In> for OperatorStage<O> {
    async fn start(&mut self) -> Result<()> {
        self.out.start().await
    }

    async fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.out.checkpoint_complete(id).await
    }

    fn has_pending(&self) -> bool {
        self.out.has_pending()
    }

    async fn finish(&mut self) -> Result<()> {
        self.out.finish().await
    }

    async fn push(&mut self, m: Message<O::In>) -> Result<bool> {
        let err = |e| Error::operator(self.node.clone(), e);
        match m {
            Message::Data(batch) => {
                self.records_in.increment(batch.len() as u64);
                self.op.process(batch, &mut self.collector).map_err(err)?;
                self.flush().await
            }
            Message::Watermark(w) => {
                self.op.on_watermark(w, &mut self.collector).map_err(err)?;
                Ok(self.flush().await? && self.out.send(Message::Watermark(w)).await?)
            }
            Message::Idle => self.out.send(Message::Idle).await,
            Message::Barrier(id) => {
                let state = self.snapshot()?;
                let _ = self.acks.send(Ack {
                    id,
                    node: self.node.clone(),
                    state,
                });
                self.rejects.barrier(id).await;
                self.out.send(Message::Barrier(id)).await
            }
        }
    }
}

/// A task that feeds its inputs into a chain of operators and sinks, and passes checkpoint
/// completions to it.
pub(crate) async fn run_chain<T: Send + 'static>(
    mut inputs: Inputs<T>,
    mut head: Box<dyn Downstream<T>>,
    mut complete: watch::Receiver<Option<CheckpointId>>,
    kind: TaskKind,
) -> Result<TaskReport> {
    head.start().await?;
    let mut watching = true;
    loop {
        tokio::select! {
            biased;
            r = complete.changed(), if watching => match r {
                Ok(()) => {
                    let done = *complete.borrow_and_update();
                    if let Some(id) = done {
                        head.checkpoint_complete(id).await?;
                    }
                }
                Err(_) => watching = false,
            },
            m = inputs.next() => match m {
                Some(m) => {
                    if !head.push(m).await? {
                        return Ok(TaskReport::default());
                    }
                }
                None => break,
            },
        }
    }
    // Input ended: wait for the checkpoints already pre-committed to complete.
    while head.has_pending() {
        if complete.changed().await.is_err() {
            break;
        }
        let done = *complete.borrow_and_update();
        if let Some(id) = done {
            head.checkpoint_complete(id).await?;
        }
    }
    head.finish().await?;
    Ok(TaskReport {
        kind,
        ..Default::default()
    })
}

/// Routes each record to one of several outputs; control messages go to all of them.
pub(crate) async fn route<T: Send + 'static>(
    mut inputs: Inputs<T>,
    mut outs: Vec<Output<T>>,
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
                        if !outs[i].send(Message::Data(b)).await? {
                            return Ok(TaskReport::default());
                        }
                    }
                }
            }
            Message::Watermark(w) => broadcast(&mut outs, || Message::Watermark(w)).await?,
            Message::Idle => broadcast(&mut outs, || Message::Idle).await?,
            Message::Barrier(id) => broadcast(&mut outs, || Message::Barrier(id)).await?,
        }
    }
    Ok(TaskReport::default())
}

async fn broadcast<T: Send + 'static>(
    outs: &mut [Output<T>],
    make: impl Fn() -> Message<T>,
) -> Result<()> {
    for o in outs {
        o.send(make()).await?;
    }
    Ok(())
}

/// Sends every message to every output (records cloned).
pub(crate) async fn fan_out<T: Clone + Send + 'static>(
    mut inputs: Inputs<T>,
    mut outs: Vec<Output<T>>,
) -> Result<TaskReport> {
    while let Some(m) = inputs.next().await {
        match m {
            Message::Data(batch) => {
                let (last, rest) = outs.split_last_mut().expect("fan-out has outputs");
                for o in rest {
                    o.send(Message::Data(batch.clone())).await?;
                }
                last.send(Message::Data(batch)).await?;
            }
            Message::Watermark(w) => broadcast(&mut outs, || Message::Watermark(w)).await?,
            Message::Idle => broadcast(&mut outs, || Message::Idle).await?,
            Message::Barrier(id) => broadcast(&mut outs, || Message::Barrier(id)).await?,
        }
    }
    Ok(TaskReport::default())
}
