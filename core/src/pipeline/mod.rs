//! The typed pipeline API: build a graph of sources, operators and sinks, then run it.

mod describe;
mod graph;
mod keyed;
mod run;
mod stream;

pub use crate::config::PipelineConfig;
pub use crate::operator::FnOperator;
pub use crate::runtime::summary::RunSummary;
pub use describe::{EdgeDescription, NodeDescription, NodeKind, PipelineDescription, Transport};
pub use keyed::KeyedStream;
pub use stream::{Either, Stream};

use crate::dead_letter::DeadLetter;
use crate::error::Error;
use crate::runtime::inputs::Inputs;
use crate::runtime::tasks::Rejects;
use crate::runtime::tasks::{self, SourceTask};
use crate::runtime::{Build, RunContext, TaskKind, TaskReport};
use crate::sink::Sink;
use crate::source::Source;
use crate::watermark::WatermarkStrategy;
use futures::FutureExt;
use graph::{sink_stage, DeadLetterFactory, Graph};
use std::sync::{Arc, Mutex};
use stream::Head;
use tokio::sync::{mpsc, Notify};

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
    recent_rejections: crate::dead_letter::RecentRejections,
}

impl Pipeline {
    /// A new, empty pipeline.
    pub fn new(config: PipelineConfig) -> Self {
        Pipeline {
            config: Arc::new(config),
            graph: Arc::new(Mutex::new(Graph::default())),
            shutdown: Arc::new(Notify::new()),
            recent_rejections: Default::default(),
        }
    }

    /// The latest records the pipeline rejected, with node and reason, whatever its error
    /// policy (a status page shows them; `watershed-status` takes this handle).
    pub fn recent_rejections(&self) -> crate::dead_letter::RecentRejections {
        self.recent_rejections.clone()
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
            let rejects = watermarks.refuses().then(|| Rejects {
                node: node.clone(),
                policy: ctx.error_policy,
                dead_letters: ctx.dead_letter_sender(),
                count: ctx.rejected.clone(),
                recent: ctx.recent_rejections.clone(),
            });
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
                rejects,
            };
            Ok(task.run().boxed())
        });
        let mut g = self.graph.lock().expect("graph lock");
        g.claim(name);
        g.sources += 1;
        g.description
            .add_node(name, NodeKind::Source, vec![name.to_string()]);
        drop(g);
        Stream::new(
            self.graph.clone(),
            self.config.clone(),
            Head::Pending {
                name: name.to_string(),
                build,
            },
            vec![name.to_string()],
        )
    }

    /// The graph built so far: every source, operator, exchange and sink with its kind and
    /// parallelism, and the streams between them (as Kafka Streams' `Topology::describe`).
    /// Its `Display` is stable text for logs and tests; it serialises for tools (the status
    /// page draws it). Nothing connects or runs: call it before [`run`](Pipeline::run).
    pub fn describe(&self) -> PipelineDescription {
        let mut description = self.graph.lock().expect("graph lock").description.clone();
        description.pipeline = self.config.id.clone();
        description
    }

    /// Sets the dead-letter sink: rejected records go there with their reason (see
    /// [`ErrorPolicy`](crate::ErrorPolicy)). It commits with the same checkpoints as every other sink.
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
        g.description
            .add_node(name, NodeKind::DeadLetter, vec![name.to_string()]);
        g.dead_letter = Some((name.to_string(), factory));
    }
}
