//! [`Stream`]: a typed stream between two nodes, and the operations that build on it.

use super::describe::{NodeKind, Transport};
use super::graph::{operator_stage, sink_stage, Graph};
use super::keyed::KeyedStream;
use crate::config::PipelineConfig;
use crate::message::Message;
use crate::operator::Operator;
use crate::record::{Batch, Record};
use crate::runtime::inputs::Inputs;
use crate::runtime::tasks::{self, Keyed, Output};
use crate::runtime::{Build, TaskFactory, TaskKind, TaskReport};
use crate::sink::Sink;
use futures::FutureExt;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Either of two things; an operator that has a side output emits `Either<Main, Side>` and
/// [`Stream::split`] separates them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Either<L, R> {
    /// The main output.
    Left(L),
    /// The side output.
    Right(R),
}

/// The producing end of a stream: channels from running tasks, or a task (source or operator
/// chain) whose output is not attached yet, so the next operator can run in the same task.
pub(super) enum Head<T> {
    Channels(Vec<mpsc::Receiver<Message<T>>>),
    Pending { name: String, build: Build<T> },
}

/// A typed stream of records between two nodes of a pipeline.
///
/// Processing code is an ordinary function `Stream<A> -> Stream<B>`, so the same function serves
/// any source. Consecutive operators on one stream are chained into one task (as Flink chains
/// operators); channels appear only where streams shuffle, merge, fan out or reach a sink. A
/// stream must end in a sink; one that is dropped unconsumed is drained and discarded so it
/// never stalls its producer.
pub struct Stream<T: Send + 'static> {
    pub(super) graph: Arc<Mutex<Graph>>,
    pub(super) config: Arc<PipelineConfig>,
    head: Option<Head<T>>,
    /// The described nodes whose output this stream carries (several after a union).
    pub(super) from: Vec<String>,
}

impl<T: Send + 'static> Drop for Stream<T> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.graph.lock() {
            g.live_streams = g.live_streams.saturating_sub(1);
        }
        if self.head.is_none() {
            return;
        }
        let mut inputs = Inputs::new(self.materialize());
        let factory: TaskFactory = Box::new(move |_ctx| {
            Ok(async move {
                while inputs.next().await.is_some() {}
                Ok(TaskReport::default())
            }
            .boxed())
        });
        if let Ok(mut g) = self.graph.lock() {
            g.counter += 1;
            let name = format!("discard-{}", g.counter);
            g.description
                .add_node(&name, NodeKind::Discard, vec![name.clone()]);
            g.description
                .add_edges(&self.from, &name, Transport::Channel);
            g.tasks.push((name, factory));
        }
    }
}

impl<T: Send + 'static> Stream<T> {
    pub(super) fn new(
        graph: Arc<Mutex<Graph>>,
        config: Arc<PipelineConfig>,
        head: Head<T>,
        from: Vec<String>,
    ) -> Self {
        graph.lock().expect("graph lock").live_streams += 1;
        Stream {
            graph,
            config,
            head: Some(head),
            from,
        }
    }

    /// A stream of the same pipeline fed by `rxs`, carrying the output of the nodes `from`.
    pub(super) fn derive<U: Send + 'static>(
        &self,
        rxs: Vec<mpsc::Receiver<Message<U>>>,
        from: Vec<String>,
    ) -> Stream<U> {
        Stream::new(
            self.graph.clone(),
            self.config.clone(),
            Head::Channels(rxs),
            from,
        )
    }

    /// How the next node will receive this stream: in the same task while the producing task
    /// has no output yet, else through a channel.
    fn next_transport(&self) -> Transport {
        match self.head {
            Some(Head::Pending { .. }) => Transport::Chained,
            _ => Transport::Channel,
        }
    }

    /// Records node `name` as consuming this stream by `transport`.
    pub(super) fn describe_consumer(
        &self,
        name: &str,
        kind: NodeKind,
        instances: Vec<String>,
        transport: Transport,
    ) {
        let mut g = self.graph.lock().expect("graph lock");
        g.description.add_node(name, kind, instances);
        g.description.add_edges(&self.from, name, transport);
    }

    /// Attaches a channel to a pending head (starting its task) and returns the receivers.
    fn materialize(&mut self) -> Vec<mpsc::Receiver<Message<T>>> {
        match self.head.take() {
            None => Vec::new(),
            Some(Head::Channels(rxs)) => rxs,
            Some(Head::Pending { name, build }) => {
                let (tx, rx) = mpsc::channel(self.config.channel_capacity);
                // Metric handles are made when the pipeline runs, under its recorder.
                let node = name.clone();
                let factory: TaskFactory =
                    Box::new(move |ctx| build(ctx, Output::channel(tx, &node)));
                self.graph
                    .lock()
                    .expect("graph lock")
                    .tasks
                    .push((name, factory));
                vec![rx]
            }
        }
    }

    pub(super) fn take_inputs(&mut self) -> Inputs<T> {
        Inputs::aligned(self.materialize(), self.config.watermark_alignment)
    }

    /// The pipeline's configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// A node name `base-N` not used before, for operators the user did not name.
    pub fn auto_name(&self, base: &str) -> String {
        let mut g = self.graph.lock().expect("graph lock");
        loop {
            g.counter += 1;
            let name = format!("{base}-{}", g.counter);
            if !g.names.contains(&name) {
                return name;
            }
        }
    }

    pub(super) fn push_task(&self, name: &str, factory: TaskFactory) {
        let mut g = self.graph.lock().expect("graph lock");
        g.claim(name);
        g.tasks.push((name.to_string(), factory));
    }

    /// Adds an operator named `name` (the name keys its state in checkpoints). It runs in the
    /// same task as the operator or source before it when that one feeds only this stream.
    pub fn apply<O: Operator<In = T>>(self, name: &str, op: O) -> Stream<O::Out> {
        self.apply_stage(name, op, None)
    }

    /// [`apply`](Self::apply), for a keyed operator instance too.
    pub(super) fn apply_stage<O: Operator<In = T>>(
        mut self,
        name: &str,
        op: O,
        keyed: Option<Keyed>,
    ) -> Stream<O::Out> {
        self.graph.lock().expect("graph lock").claim(name);
        // A keyed operator of one instance runs here, named `operator.0`; it is described
        // under its operator's name like any keyed operator.
        let (described, kind) = match &keyed {
            Some(k) => (k.operator.clone(), NodeKind::KeyedOperator),
            None => (name.to_string(), NodeKind::Operator),
        };
        let transport = self.next_transport();
        self.describe_consumer(&described, kind, vec![name.to_string()], transport);
        let node = name.to_string();
        let head = match self.head.take() {
            Some(Head::Pending {
                name: task,
                build: upstream,
            }) => Head::Pending {
                name: task,
                build: Box::new(move |ctx, out| {
                    let stage = operator_stage(ctx, node, op, out, keyed)?;
                    upstream(ctx, Output::Chained(Box::new(stage)))
                }),
            },
            other => {
                self.head = other;
                let inputs = self.take_inputs();
                Head::Pending {
                    name: node.clone(),
                    build: Box::new(move |ctx, out| {
                        let stage = operator_stage(ctx, node, op, out, keyed)?;
                        let complete = ctx.complete_rx.clone();
                        Ok(
                            tasks::run_chain(inputs, Box::new(stage), complete, TaskKind::Operator)
                                .boxed(),
                        )
                    }),
                }
            }
        };
        Stream::new(
            self.graph.clone(),
            self.config.clone(),
            head,
            vec![described],
        )
    }

    /// Ends the current chain: what follows runs in its own task, behind a bounded channel (to
    /// spread CPU-heavy steps over cores, as Flink's `startNewChain`).
    pub fn start_new_chain(mut self) -> Stream<T> {
        let rxs = self.materialize();
        let from = std::mem::take(&mut self.from);
        self.derive(rxs, from)
    }

    /// Merges two streams of the same type. Watermarks combine as the minimum; checkpoint
    /// barriers are aligned across both.
    pub fn union(mut self, mut other: Stream<T>) -> Stream<T> {
        let mut rxs = self.materialize();
        rxs.append(&mut other.materialize());
        let mut from = std::mem::take(&mut self.from);
        from.append(&mut other.from);
        self.derive(rxs, from)
    }

    /// Partitions the stream by key: records with equal keys go to the same instance of the next
    /// keyed operator.
    pub fn key_by<K, F>(self, key: F) -> KeyedStream<T, K>
    where
        K: Send + 'static,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedStream {
            stream: self,
            key: Arc::new(key),
            parallelism: None,
        }
    }

    /// Ends the stream in `sink`, named `name` (the name keys its pending commits in
    /// checkpoints). The sink runs in the task of the operator or source before it when that
    /// one feeds only this stream.
    pub fn sink<S: Sink<Item = T>>(mut self, name: &str, sink: S) {
        let transport = self.next_transport();
        self.describe_consumer(name, NodeKind::Sink, vec![name.to_string()], transport);
        let node = name.to_string();
        let (task, factory): (String, TaskFactory) = match self.head.take() {
            Some(Head::Pending {
                name: task,
                build: upstream,
            }) => (
                task,
                Box::new(move |ctx| {
                    let stage = sink_stage(ctx, node, sink, true, true)?;
                    upstream(ctx, Output::Chained(Box::new(stage)))
                }),
            ),
            other => {
                self.head = other;
                let inputs = self.take_inputs();
                (
                    node.clone(),
                    Box::new(move |ctx| {
                        let stage = sink_stage(ctx, node, sink, true, true)?;
                        let complete = ctx.complete_rx.clone();
                        Ok(
                            tasks::run_chain(inputs, Box::new(stage), complete, TaskKind::Sink)
                                .boxed(),
                        )
                    }),
                )
            }
        };
        let mut g = self.graph.lock().expect("graph lock");
        g.claim(name);
        g.sinks.push((task, factory));
    }

    /// `n` copies of the stream, for fanning out to several sinks or branches.
    pub fn fan_out(mut self, n: usize) -> Vec<Stream<T>>
    where
        T: Clone,
    {
        let n = n.max(1);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| mpsc::channel(self.config.channel_capacity))
            .unzip();
        let name = self.auto_name("fan-out");
        self.describe_consumer(
            &name,
            NodeKind::FanOut,
            vec![name.clone()],
            Transport::Channel,
        );
        let inputs = self.take_inputs();
        let node = name.clone();
        self.push_task(
            &name,
            Box::new(move |_| {
                let outs = txs
                    .into_iter()
                    .map(|tx| Output::channel(tx, &node))
                    .collect();
                Ok(tasks::fan_out(inputs, outs).boxed())
            }),
        );
        rxs.into_iter()
            .map(|rx| self.derive(vec![rx], vec![name.clone()]))
            .collect()
    }
}

impl<L: Send + 'static, R: Send + 'static> Stream<Either<L, R>> {
    /// Separates a main output (`Left`) from a side output (`Right`).
    pub fn split(mut self) -> (Stream<L>, Stream<R>) {
        let (ltx, lrx) = mpsc::channel(self.config.channel_capacity);
        let (rtx, rrx) = mpsc::channel(self.config.channel_capacity);
        let name = self.auto_name("split");
        self.describe_consumer(
            &name,
            NodeKind::Split,
            vec![name.clone()],
            Transport::Channel,
        );
        let mut inputs = self.take_inputs();
        let node = name.clone();
        let factory: TaskFactory = Box::new(move |_| {
            let (mut left, mut right) = (Output::channel(ltx, &node), Output::channel(rtx, &node));
            Ok(async move {
                while let Some(m) = inputs.next().await {
                    match m {
                        Message::Data(batch) => {
                            let mut ls: Batch<L> = Vec::new();
                            let mut rs: Batch<R> = Vec::new();
                            for r in batch {
                                let Record {
                                    value,
                                    key,
                                    timestamp,
                                    headers,
                                    origin,
                                } = r;
                                match value {
                                    Either::Left(v) => ls.push(Record {
                                        value: v,
                                        key,
                                        timestamp,
                                        headers,
                                        origin,
                                    }),
                                    Either::Right(v) => rs.push(Record {
                                        value: v,
                                        key,
                                        timestamp,
                                        headers,
                                        origin,
                                    }),
                                }
                            }
                            if !ls.is_empty() {
                                left.send(Message::Data(ls)).await?;
                            }
                            if !rs.is_empty() {
                                right.send(Message::Data(rs)).await?;
                            }
                        }
                        Message::Watermark(w) => {
                            left.send(Message::Watermark(w)).await?;
                            right.send(Message::Watermark(w)).await?;
                        }
                        Message::Idle => {
                            left.send(Message::Idle).await?;
                            right.send(Message::Idle).await?;
                        }
                        Message::Barrier(id) => {
                            left.send(Message::Barrier(id)).await?;
                            right.send(Message::Barrier(id)).await?;
                        }
                    }
                }
                Ok(TaskReport::default())
            }
            .boxed())
        });
        self.push_task(&name, factory);
        let from = vec![name];
        (
            self.derive(vec![lrx], from.clone()),
            self.derive(vec![rrx], from),
        )
    }
}
