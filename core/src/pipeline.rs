//! The typed pipeline API: build a graph of sources, operators and sinks, then run it.

use crate::checkpoint::{CheckpointId, CheckpointStore};
use crate::dead_letter::{DeadLetter, ErrorPolicy};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::operator::{Collector, Operator};
use crate::record::{Batch, Record};
use crate::runtime::coordinator::Coordinator;
use crate::runtime::inputs::Inputs;
use crate::runtime::tasks::{self, OperatorStage, Output, Rejects, SinkStage, SourceTask};
use crate::runtime::{Build, RunContext, TaskFactory, TaskFuture, TaskKind, TaskReport};
use crate::sink::{Sink, SinkContext};
use crate::source::Source;
use crate::watermark::WatermarkStrategy;
use futures::FutureExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

/// How a pipeline runs. Builder-style; every setting has a default.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub(crate) id: String,
    pub(crate) checkpoint_interval: Option<Duration>,
    pub(crate) store: Option<CheckpointStore>,
    pub(crate) channel_capacity: usize,
    pub(crate) parallelism: usize,
    pub(crate) max_poll_wait: Duration,
    pub(crate) error_policy: Option<ErrorPolicy>,
    pub(crate) handle_signals: bool,
    pub(crate) allow_non_restored_state: bool,
    pub(crate) watermark_alignment: Option<Duration>,
}

impl PipelineConfig {
    /// A configuration for the pipeline `id`. The id scopes its checkpoints: a restarted
    /// pipeline with the same id resumes from them.
    pub fn new(id: impl Into<String>) -> Self {
        PipelineConfig {
            id: id.into(),
            checkpoint_interval: Some(Duration::from_secs(10)),
            store: None,
            channel_capacity: 8,
            parallelism: 1,
            max_poll_wait: Duration::from_millis(100),
            error_policy: None,
            handle_signals: true,
            allow_non_restored_state: false,
            watermark_alignment: None,
        }
    }

    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Take a checkpoint this often (default 10 s).
    pub fn checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = Some(every);
        self
    }

    /// No periodic checkpoints; only the final one at shutdown or end of input.
    pub fn without_periodic_checkpoints(mut self) -> Self {
        self.checkpoint_interval = None;
        self
    }

    /// Where checkpoints go (default: local directory `.watershed/checkpoints`).
    pub fn checkpoint_store(mut self, store: CheckpointStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Capacity of each channel between tasks, in batches (default 8). Together with the
    /// sources' batch sizes this bounds the memory in flight: a full channel stops the sender.
    pub fn channel_capacity(mut self, batches: usize) -> Self {
        self.channel_capacity = batches.max(1);
        self
    }

    /// Default parallelism of keyed operators (default 1).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// How long a source poll may wait for data (default 100 ms); bounds checkpoint latency.
    pub fn max_poll_wait(mut self, wait: Duration) -> Self {
        self.max_poll_wait = wait;
        self
    }

    /// What to do with rejected records. Default: dead-letter when a dead-letter sink is set,
    /// otherwise fail.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = Some(policy);
        self
    }

    /// Whether SIGINT/SIGTERM stop the pipeline gracefully (default true). A second signal
    /// stops it at once, without the final checkpoint. The handlers stay installed after
    /// `run` returns (tokio cannot remove them); turn this off in programs that go on.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Restore even if the checkpoint holds state, positions or pending commits of nodes that
    /// are no longer in the pipeline (they are dropped; default false: such a restore fails,
    /// because a renamed sink would silently lose its pending output).
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    /// Watermark alignment (default off): where streams meet (a union, a join, a keyed
    /// operator fed by several upstream tasks), an input whose watermark is more than
    /// `max_drift` ahead of the combined watermark is not read until the others catch up. The
    /// fast input's channel fills and its source stops polling, so an input that runs ahead
    /// waits at the broker instead of in a join's or window's state: state stays bounded by
    /// the drift even when one source is much faster than the other (Flink's
    /// `withWatermarkAlignment`). Inputs are never held while a checkpoint barrier is being
    /// aligned. A slow input holds the others back until it goes idle, so give its
    /// [`WatermarkStrategy`](crate::WatermarkStrategy) an idleness timeout when it can fall
    /// silent.
    pub fn watermark_alignment(mut self, max_drift: Duration) -> Self {
        self.watermark_alignment = Some(max_drift);
        self
    }
}

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Records read by all sources.
    pub records_in: u64,
    /// Records written by all sinks (dead-letter sink excluded).
    pub records_out: u64,
    /// Records rejected by operators.
    pub rejected: u64,
    /// Checkpoints completed in this run.
    pub checkpoints: u64,
    /// The last completed checkpoint.
    pub last_checkpoint: Option<CheckpointId>,
}

impl RunSummary {
    pub(crate) fn add(&mut self, r: TaskReport) {
        match r.kind {
            TaskKind::Source => self.records_in += r.records_in,
            TaskKind::Sink | TaskKind::Operator | TaskKind::DeadLetter | TaskKind::Internal => {}
        }
    }
}

/// Stops a running pipeline gracefully: sources stop, everything drains, a final checkpoint is
/// taken and committed, then [`Pipeline::run`] returns.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    notify: Arc<Notify>,
}

impl ShutdownHandle {
    /// Requests a graceful stop. Idempotent.
    pub fn shutdown(&self) {
        self.notify.notify_one();
    }
}

type DeadLetterFactory = Box<
    dyn FnOnce(&mut RunContext, Vec<mpsc::Receiver<Message<DeadLetter>>>) -> Result<TaskFuture>
        + Send,
>;

#[derive(Default)]
struct Graph {
    tasks: Vec<(String, TaskFactory)>,
    sinks: Vec<(String, TaskFactory)>,
    dead_letter: Option<(String, DeadLetterFactory)>,
    names: HashSet<String>,
    layout: BTreeMap<String, usize>,
    counter: usize,
    sources: usize,
    live_streams: usize,
    error: Option<Error>,
}

impl Graph {
    fn claim(&mut self, name: &str) {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid && self.error.is_none() {
            self.error = Some(Error::Config(format!(
                "node name `{name}` must be non-empty ASCII letters, digits, '-', '_' or '.'"
            )));
        }
        if !self.names.insert(name.to_string()) && self.error.is_none() {
            self.error = Some(Error::Config(format!("node name `{name}` is used twice")));
        }
    }
}

/// A pipeline under construction. Add sources with [`source`](Pipeline::source), transform the
/// streams, end them in sinks, then [`run`](Pipeline::run).
///
/// ```
/// use std::time::Duration;
/// use watershed_core::{connectors::{CollectSink, GeneratorSource}, *};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let pipeline = Pipeline::new(
///     PipelineConfig::new("doc-example").checkpoint_store(CheckpointStore::memory()),
/// );
/// let numbers = pipeline.source(
///     "numbers",
///     GeneratorSource::new(2, 1_000, |split, i| Record::new(i * 10 + split as u64, EventTime(i as i64))),
///     WatermarkStrategy::monotonous(),
/// );
/// let collected = CollectSink::new();
/// numbers.sink("out", collected.clone());
/// let summary = pipeline.run().await?;
/// assert_eq!(summary.records_in, 2_000);
/// assert_eq!(collected.values().len(), 2_000);
/// # Ok(()) }
/// ```
pub struct Pipeline {
    config: Arc<PipelineConfig>,
    graph: Arc<Mutex<Graph>>,
    shutdown: Arc<Notify>,
}

impl Pipeline {
    /// A new, empty pipeline.
    pub fn new(config: PipelineConfig) -> Self {
        Pipeline {
            config: Arc::new(config),
            graph: Arc::new(Mutex::new(Graph::default())),
            shutdown: Arc::new(Notify::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// A handle that stops the running pipeline gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            notify: self.shutdown.clone(),
        }
    }

    /// Adds a source named `name` (the name keys its position in checkpoints: keep it stable).
    pub fn source<S: Source>(
        &self,
        name: &str,
        source: S,
        watermarks: WatermarkStrategy<S::Item>,
    ) -> Stream<S::Item> {
        let node = name.to_string();
        let build: Build<S::Item> = Box::new(move |ctx: &mut RunContext, out| {
            let restored = match ctx.restored.as_ref().and_then(|m| m.sources.get(&node)) {
                Some(v) => Some(
                    serde_json::from_value::<S::Position>(v.clone())
                        .map_err(|e| Error::state(&node, e))?,
                ),
                None => None,
            };
            let restored_event_times = ctx
                .restored
                .as_ref()
                .and_then(|m| m.source_event_times.get(&node).cloned())
                .unwrap_or_default();
            let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
            ctx.source_controls.push(ctl_tx);
            ctx.participate();
            let task = SourceTask {
                node: node.clone(),
                source,
                strategy: watermarks,
                restored,
                restored_event_times,
                out,
                control: ctl_rx,
                complete: ctx.complete_rx.clone(),
                acks: ctx.ack_tx.clone(),
                finished: ctx.finished_tx.clone(),
                checkpoint_requests: ctx.checkpoint_requests.clone(),
                max_wait: ctx.config.max_poll_wait,
            };
            Ok(task.run().boxed())
        });
        let mut g = self.graph.lock().expect("graph lock");
        g.claim(name);
        g.sources += 1;
        drop(g);
        Stream::new(
            self.graph.clone(),
            self.config.clone(),
            Head::Pending {
                name: name.to_string(),
                build,
            },
        )
    }

    /// Sets the dead-letter sink: rejected records go there with their reason (see
    /// [`ErrorPolicy`]). It commits with the same checkpoints as every other sink.
    pub fn dead_letter<S: Sink<Item = DeadLetter>>(&self, name: &str, sink: S) {
        let node = name.to_string();
        let factory: DeadLetterFactory = Box::new(move |ctx, rxs| {
            if rxs.is_empty() {
                // Nothing can reject a record (no operator, or not the DeadLetter policy): the
                // sink takes no part in checkpoints, but still commits what it had pending.
                let mut stage = sink_stage(ctx, node, sink, false, false)?;
                return Ok(async move {
                    tasks::Downstream::start(&mut stage).await?;
                    tasks::Downstream::finish(&mut stage).await?;
                    Ok(TaskReport::default())
                }
                .boxed());
            }
            let stage = sink_stage(ctx, node, sink, false, true)?;
            let complete = ctx.complete_rx.clone();
            Ok(tasks::run_chain(
                Inputs::new(rxs),
                Box::new(stage),
                complete,
                TaskKind::DeadLetter,
            )
            .boxed())
        });
        let mut g = self.graph.lock().expect("graph lock");
        g.claim(name);
        g.dead_letter = Some((name.to_string(), factory));
    }

    /// Runs the pipeline until its bounded sources end or it is shut down, restoring the latest
    /// complete checkpoint first.
    pub async fn run(self) -> Result<RunSummary> {
        let graph = std::mem::take(&mut *self.graph.lock().expect("graph lock"));
        if let Some(e) = graph.error {
            return Err(e);
        }
        if graph.sources == 0 {
            return Err(Error::Config("a pipeline needs at least one source".into()));
        }
        if graph.live_streams > 0 {
            // Its producer would fill the channel and stall every checkpoint.
            return Err(Error::Config(format!(
                "{} stream(s) are still alive when the pipeline runs: end each in a sink, or drop it before run() (a `let _x = ...` binding keeps it alive)",
                graph.live_streams
            )));
        }
        if self.config.checkpoint_interval == Some(Duration::ZERO) {
            return Err(Error::Config(
                "checkpoint interval must be positive (use without_periodic_checkpoints)".into(),
            ));
        }
        let policy = self
            .config
            .error_policy
            .unwrap_or(if graph.dead_letter.is_some() {
                ErrorPolicy::DeadLetter
            } else {
                ErrorPolicy::Fail
            });
        if policy == ErrorPolicy::DeadLetter && graph.dead_letter.is_none() {
            return Err(Error::Config(
                "error policy is DeadLetter but no dead-letter sink is set (Pipeline::dead_letter)"
                    .into(),
            ));
        }
        let store = match &self.config.store {
            Some(s) => s.clone(),
            None => CheckpointStore::local(".watershed/checkpoints")?,
        };
        let pipeline = self.config.id.clone();
        let restored = store.latest(&pipeline).await?;
        let mut restored_states = HashMap::new();
        if let Some(m) = &restored {
            for (node, parallelism) in &graph.layout {
                let before = m.layout.get(node).copied().unwrap_or(*parallelism);
                if before != *parallelism {
                    return Err(Error::Config(format!(
                        "keyed operator `{node}` had parallelism {before} in checkpoint {} and has {parallelism} now; rescaling state is not supported",
                        m.id
                    )));
                }
            }
            let unknown: Vec<&String> = m
                .sources
                .keys()
                .chain(m.sinks.keys())
                .chain(m.operators.keys())
                .filter(|n| !graph.names.contains(*n))
                .collect();
            if !unknown.is_empty() && !self.config.allow_non_restored_state {
                return Err(Error::Config(format!(
                    "checkpoint {} holds state of nodes not in this pipeline: {unknown:?}; rename them back, or set allow_non_restored_state(true) to drop it",
                    m.id
                )));
            }
            for (node, path) in &m.operators {
                restored_states.insert(node.clone(), store.read_state(path).await?);
            }
            tracing::info!(%pipeline, checkpoint = m.id.0, "restoring");
        }
        let next_id = restored
            .as_ref()
            .map(|m| m.id.next())
            .unwrap_or(CheckpointId(1));
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let (complete_tx, complete_rx) = watch::channel(restored.as_ref().map(|m| m.id));
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let mut ctx = RunContext {
            config: self.config.clone(),
            restored,
            restored_states,
            ack_tx,
            complete_rx,
            finished_tx,
            checkpoint_requests: requests_tx,
            source_controls: Vec::new(),
            participants: 0,
            dead_letters: Vec::new(),
            dead_letter_enabled: policy == ErrorPolicy::DeadLetter,
            error_policy: policy,
            rejected: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            records_out: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let rejected = ctx.rejected.clone();
        let records_out = ctx.records_out.clone();
        let mut tasks = JoinSet::new();
        let spawn = |tasks: &mut JoinSet<_>, name: String, fut: TaskFuture| {
            tasks.spawn(async move {
                let r = AssertUnwindSafe(fut).catch_unwind().await;
                let r = r.unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    Err(Error::Task {
                        node: name.clone(),
                        message,
                    })
                });
                (name, r)
            });
        };
        for (name, factory) in graph.tasks.into_iter().chain(graph.sinks) {
            let fut = factory(&mut ctx)?;
            spawn(&mut tasks, name, fut);
        }
        if let Some((name, factory)) = graph.dead_letter {
            let rxs = std::mem::take(&mut ctx.dead_letters);
            let fut = factory(&mut ctx, rxs)?;
            spawn(&mut tasks, name, fut);
        }
        let source_count = ctx.source_controls.len();
        let coordinator = Coordinator {
            pipeline,
            store,
            interval: self.config.checkpoint_interval,
            next_id,
            participants: ctx.participants,
            sources: std::mem::take(&mut ctx.source_controls),
            source_count,
            acks: ack_rx,
            finished: finished_rx,
            requests: requests_rx,
            complete: complete_tx,
            shutdown: self.shutdown.clone(),
            handle_signals: self.config.handle_signals,
            layout: graph.layout,
        };
        drop(ctx);
        let mut summary = coordinator.run(tasks).await?;
        summary.rejected = rejected.load(std::sync::atomic::Ordering::Relaxed);
        summary.records_out = records_out.load(std::sync::atomic::Ordering::Relaxed);
        Ok(summary)
    }
}

fn sink_stage<S: Sink>(
    ctx: &mut RunContext,
    node: String,
    sink: S,
    counts_as_output: bool,
    participates: bool,
) -> Result<SinkStage<S>> {
    if participates {
        ctx.participate();
    }
    let restored = match ctx.restored.as_ref().and_then(|m| m.sinks.get(&node)) {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::state(&node, e))?,
        None => Vec::new(),
    };
    Ok(SinkStage {
        ctx: SinkContext {
            pipeline: ctx.config.id.clone(),
            node: node.clone(),
            restored_checkpoint: ctx.restored_checkpoint(),
        },
        records_out: metrics::counter!("watershed_records_out_total", "node" => node.clone()),
        latency: metrics::histogram!("watershed_end_to_end_latency_seconds", "node" => node.clone()),
        node,
        sink,
        restored,
        pending: BTreeMap::new(),
        acks: ctx.ack_tx.clone(),
        written: counts_as_output.then(|| ctx.records_out.clone()),
    })
}

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
enum Head<T> {
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
    graph: Arc<Mutex<Graph>>,
    config: Arc<PipelineConfig>,
    head: Option<Head<T>>,
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
            g.tasks.push((name, factory));
        }
    }
}

impl<T: Send + 'static> Stream<T> {
    fn new(graph: Arc<Mutex<Graph>>, config: Arc<PipelineConfig>, head: Head<T>) -> Self {
        graph.lock().expect("graph lock").live_streams += 1;
        Stream {
            graph,
            config,
            head: Some(head),
        }
    }

    fn derive<U: Send + 'static>(&self, rxs: Vec<mpsc::Receiver<Message<U>>>) -> Stream<U> {
        Stream::new(self.graph.clone(), self.config.clone(), Head::Channels(rxs))
    }

    /// Attaches a channel to a pending head (starting its task) and returns the receivers.
    fn materialize(&mut self) -> Vec<mpsc::Receiver<Message<T>>> {
        match self.head.take() {
            None => Vec::new(),
            Some(Head::Channels(rxs)) => rxs,
            Some(Head::Pending { name, build }) => {
                let (tx, rx) = mpsc::channel(self.config.channel_capacity);
                let factory: TaskFactory = Box::new(move |ctx| build(ctx, Output::Channel(tx)));
                self.graph
                    .lock()
                    .expect("graph lock")
                    .tasks
                    .push((name, factory));
                vec![rx]
            }
        }
    }

    fn take_inputs(&mut self) -> Inputs<T> {
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

    fn push_task(&self, name: &str, factory: TaskFactory) {
        let mut g = self.graph.lock().expect("graph lock");
        g.claim(name);
        g.tasks.push((name.to_string(), factory));
    }

    /// Adds an operator named `name` (the name keys its state in checkpoints). It runs in the
    /// same task as the operator or source before it when that one feeds only this stream.
    pub fn apply<O: Operator<In = T>>(mut self, name: &str, op: O) -> Stream<O::Out> {
        self.graph.lock().expect("graph lock").claim(name);
        let node = name.to_string();
        let head = match self.head.take() {
            Some(Head::Pending {
                name: task,
                build: upstream,
            }) => Head::Pending {
                name: task,
                build: Box::new(move |ctx, out| {
                    let stage = operator_stage(ctx, node, op, out)?;
                    upstream(ctx, Output::Chained(Box::new(stage)))
                }),
            },
            other => {
                self.head = other;
                let inputs = self.take_inputs();
                Head::Pending {
                    name: node.clone(),
                    build: Box::new(move |ctx, out| {
                        let stage = operator_stage(ctx, node, op, out)?;
                        let complete = ctx.complete_rx.clone();
                        Ok(
                            tasks::run_chain(inputs, Box::new(stage), complete, TaskKind::Operator)
                                .boxed(),
                        )
                    }),
                }
            }
        };
        Stream::new(self.graph.clone(), self.config.clone(), head)
    }

    /// Ends the current chain: what follows runs in its own task, behind a bounded channel (to
    /// spread CPU-heavy steps over cores, as Flink's `startNewChain`).
    pub fn start_new_chain(mut self) -> Stream<T> {
        let rxs = self.materialize();
        self.derive(rxs)
    }

    /// Merges two streams of the same type. Watermarks combine as the minimum; checkpoint
    /// barriers are aligned across both.
    pub fn union(mut self, mut other: Stream<T>) -> Stream<T> {
        let mut rxs = self.materialize();
        rxs.append(&mut other.materialize());
        self.derive(rxs)
    }

    /// Partitions the stream by key: records with equal keys go to the same instance of the next
    /// keyed operator.
    pub fn key_by<K, F>(self, key: F) -> KeyedStream<T, K>
    where
        K: Hash + Send + 'static,
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
        let inputs = self.take_inputs();
        let name = self.auto_name("fan-out");
        let outs = txs.into_iter().map(Output::Channel).collect();
        self.push_task(
            &name,
            Box::new(move |_| Ok(tasks::fan_out(inputs, outs).boxed())),
        );
        rxs.into_iter().map(|rx| self.derive(vec![rx])).collect()
    }
}

impl<L: Send + 'static, R: Send + 'static> Stream<Either<L, R>> {
    /// Separates a main output (`Left`) from a side output (`Right`).
    pub fn split(mut self) -> (Stream<L>, Stream<R>) {
        let (ltx, lrx) = mpsc::channel(self.config.channel_capacity);
        let (rtx, rrx) = mpsc::channel(self.config.channel_capacity);
        let mut inputs = self.take_inputs();
        let name = self.auto_name("split");
        let (mut left, mut right) = (Output::Channel(ltx), Output::Channel(rtx));
        let factory: TaskFactory = Box::new(move |_| {
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
        (self.derive(vec![lrx]), self.derive(vec![rrx]))
    }
}

fn operator_stage<O: Operator>(
    ctx: &mut RunContext,
    node: String,
    mut op: O,
    out: Output<O::Out>,
) -> Result<OperatorStage<O>> {
    if let Some(state) = ctx.restored_states.get(&node) {
        op.restore(state)
            .map_err(|e| Error::operator(node.clone(), e))?;
    }
    ctx.participate();
    Ok(OperatorStage {
        node: node.clone(),
        op,
        out,
        acks: ctx.ack_tx.clone(),
        rejects: Rejects {
            node,
            policy: ctx.error_policy,
            dead_letters: ctx.dead_letter_sender(),
            count: ctx.rejected.clone(),
        },
        collector: Collector::default(),
    })
}

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// A stream partitioned by key; the next operator runs with keyed parallelism behind a hash
/// shuffle.
pub struct KeyedStream<T: Send + 'static, K> {
    stream: Stream<T>,
    key: KeyFn<T, K>,
    parallelism: Option<usize>,
}

/// Which of `n` instances a key belongs to. Stable across runs and Rust versions (FxHash), so
/// restored keyed state meets its keys again.
pub fn partition_of<K: Hash + ?Sized>(key: &K, n: usize) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    // Multiply-shift uses the high bits, which FxHash mixes best.
    ((h.finish() as u128 * n as u128) >> 64) as usize
}

impl<T: Send + 'static, K: Hash + Send + 'static> KeyedStream<T, K> {
    /// Parallelism of the next keyed operator (default: the pipeline's).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = Some(n.max(1));
        self
    }

    /// The key function.
    pub fn key_fn(&self) -> KeyFn<T, K> {
        self.key.clone()
    }

    /// The pipeline's configuration.
    pub fn config(&self) -> &PipelineConfig {
        self.stream.config()
    }

    /// A node name `base-N` not used before.
    pub fn auto_name(&self, base: &str) -> String {
        self.stream.auto_name(base)
    }

    /// Runs `make(i)` as instance `i` of `n` parallel instances of a keyed operator named
    /// `name`; instance `i` sees exactly the keys with [`partition_of`]`(key, n) == i`. Their
    /// states are checkpointed as `name.i`.
    pub fn process<O, F>(self, name: &str, mut make: F) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        F: FnMut(usize) -> O,
    {
        let KeyedStream {
            mut stream,
            key,
            parallelism,
        } = self;
        let n = parallelism.unwrap_or(stream.config.parallelism);
        let cap = stream.config.channel_capacity;
        stream
            .graph
            .lock()
            .expect("graph lock")
            .layout
            .insert(name.to_string(), n);
        if n == 1 {
            // One instance needs no shuffle; it chains onto its upstream like any operator.
            return stream.apply(&format!("{name}.0"), make(0));
        }
        let inputs = stream.take_inputs();
        let mut parts: Vec<Inputs<T>> = Vec::with_capacity(n);
        {
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(cap)).unzip();
            let outs = txs.into_iter().map(Output::Channel).collect();
            let shuffle = format!("{name}.shuffle");
            stream.push_task(
                &shuffle,
                Box::new(move |_| {
                    Ok(
                        tasks::route(inputs, outs, move |r| partition_of(&key(&r.value), n))
                            .boxed(),
                    )
                }),
            );
            parts.extend(rxs.into_iter().map(|rx| Inputs::new(vec![rx])));
        }
        let mut outs = Vec::with_capacity(n);
        for (i, inputs) in parts.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(cap);
            let node = format!("{name}.{i}");
            let op = make(i);
            let task_node = node.clone();
            stream.push_task(
                &node,
                Box::new(move |ctx| {
                    let stage = operator_stage(ctx, task_node, op, Output::Channel(tx))?;
                    let complete = ctx.complete_rx.clone();
                    Ok(
                        tasks::run_chain(inputs, Box::new(stage), complete, TaskKind::Operator)
                            .boxed(),
                    )
                }),
            );
            outs.push(rx);
        }
        stream.derive(outs)
    }
}

/// An operator from a closure over whole batches; the building block for stateless operators.
pub struct FnOperator<I, O, F> {
    f: F,
    _types: std::marker::PhantomData<fn(I) -> O>,
}

impl<I, O, F> FnOperator<I, O, F>
where
    F: FnMut(Batch<I>, &mut Collector<O>) + Send + 'static,
{
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        FnOperator {
            f,
            _types: std::marker::PhantomData,
        }
    }
}

impl<I, O, F> Operator for FnOperator<I, O, F>
where
    I: Send + 'static,
    O: Send + 'static,
    F: FnMut(Batch<I>, &mut Collector<O>) + Send + 'static,
{
    type In = I;
    type Out = O;

    fn process(
        &mut self,
        batch: Batch<I>,
        out: &mut Collector<O>,
    ) -> std::result::Result<(), crate::BoxError> {
        (self.f)(batch, out);
        Ok(())
    }
}
