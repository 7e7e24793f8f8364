//! [`Pipeline::run`]: check the graph, restore, start every task, and hand them to the
//! coordinator.

use super::graph::Graph;
use super::Pipeline;
use crate::checkpoint::{CheckpointStore, RestoreRules};
use crate::config::PipelineConfig;
use crate::dead_letter::ErrorPolicy;
use crate::error::{Error, Result};
use crate::key_group::MAX_MAX_PARALLELISM;
use crate::runtime::coordinator::{Coordinator, Signals};
use crate::runtime::summary::RunSummary;
use crate::runtime::{RunContext, TaskFuture, TaskReport};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

type Tasks = JoinSet<(String, Result<TaskReport>)>;

impl Pipeline {
    /// Runs the pipeline until its bounded sources end or it is shut down, restoring the latest
    /// complete checkpoint first.
    pub async fn run(self) -> Result<RunSummary> {
        // Listen first: a signal while the checkpoint is restored or the tasks open must stop
        // the pipeline gracefully, not kill it (nor be lost).
        let signals = Signals::new(self.config.handle_signals);
        let mut graph = std::mem::take(&mut *self.graph.lock().expect("graph lock"));
        let policy = validate(&mut graph, &self.config)?;
        let store = match &self.config.store {
            Some(s) => s.clone(),
            None => CheckpointStore::local(".watershed/checkpoints")?,
        };
        let pipeline = self.config.id.clone();
        let rules = RestoreRules {
            on_corrupt: self.config.on_corrupt_checkpoint,
            nodes: &graph.names,
            layout: &graph.layout,
            max_parallelism: self.config.max_parallelism,
            allow_non_restored_state: self.config.allow_non_restored_state,
        };
        let restore = crate::checkpoint::restore(&store, &pipeline, rules).await?;
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let restored_id = restore.manifest.as_ref().map(|m| m.id);
        let (complete_tx, complete_rx) = watch::channel(restored_id);
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let mut ctx = RunContext {
            config: self.config.clone(),
            restored: restore.manifest,
            restored_states: restore.states,
            ack_tx,
            complete_rx,
            finished_tx,
            checkpoint_requests: requests_tx,
            source_controls: Vec::new(),
            participants: 0,
            dead_letters: Vec::new(),
            dead_letter_enabled: policy == ErrorPolicy::DeadLetter,
            error_policy: policy,
            rejected: Arc::new(AtomicU64::new(0)),
            recent_rejections: self.recent_rejections.clone(),
            records_out: Arc::new(AtomicU64::new(0)),
        };
        let (rejected, records_out) = (ctx.rejected.clone(), ctx.records_out.clone());
        let tasks = start(&mut graph, &mut ctx)?;
        let coordinator = Coordinator {
            pipeline,
            store,
            interval: self.config.checkpoint_interval,
            next_id: restore.next_id,
            participants: ctx.participants,
            source_count: ctx.source_controls.len(),
            sources: std::mem::take(&mut ctx.source_controls),
            acks: ack_rx,
            finished: finished_rx,
            requests: requests_rx,
            complete: complete_tx,
            shutdown: self.shutdown.clone(),
            signals,
            layout: std::mem::take(&mut graph.layout),
            max_parallelism: self.config.max_parallelism,
        };
        drop(ctx);
        let mut summary = coordinator.run(tasks).await?;
        summary.rejected = rejected.load(Ordering::Relaxed);
        summary.records_out = records_out.load(Ordering::Relaxed);
        Ok(summary)
    }
}

/// Refuses a graph that cannot run, and decides the error policy.
fn validate(graph: &mut Graph, config: &PipelineConfig) -> Result<ErrorPolicy> {
    if let Some(e) = graph.error.take() {
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
    if config.checkpoint_interval == Some(Duration::ZERO) {
        return Err(Error::Config(
            "checkpoint interval must be positive (use without_periodic_checkpoints)".into(),
        ));
    }
    validate_max_parallelism(graph, config)?;
    let has_dead_letter = graph.dead_letter.is_some();
    let policy = config.error_policy.unwrap_or(if has_dead_letter {
        ErrorPolicy::DeadLetter
    } else {
        ErrorPolicy::Fail
    });
    if policy == ErrorPolicy::DeadLetter && !has_dead_letter {
        return Err(Error::Config(
            "error policy is DeadLetter but no dead-letter sink is set (Pipeline::dead_letter)"
                .into(),
        ));
    }
    Ok(policy)
}

/// `max_parallelism` is in `1..=32768` and no keyed operator runs more instances than there
/// are key groups.
fn validate_max_parallelism(graph: &Graph, config: &PipelineConfig) -> Result<()> {
    let max = config.max_parallelism;
    if !(1..=MAX_MAX_PARALLELISM).contains(&max) {
        return Err(Error::Config(format!(
            "max_parallelism is {max}; it must be between 1 and {MAX_MAX_PARALLELISM} (key groups are numbered in 16 bits)"
        )));
    }
    if let Some((operator, p)) = graph.layout.iter().find(|(_, p)| **p > max) {
        return Err(Error::Config(format!(
            "keyed operator `{operator}` has parallelism {p}, above max_parallelism {max}: an instance would own no key group. Lower its parallelism or raise PipelineConfig::max_parallelism (which cannot change once the pipeline has checkpoints)"
        )));
    }
    Ok(())
}

/// Builds and spawns every task; the dead-letter task last, once every task that can reject
/// a record has asked for its channel.
fn start(graph: &mut Graph, ctx: &mut RunContext) -> Result<Tasks> {
    let mut tasks = JoinSet::new();
    let factories = std::mem::take(&mut graph.tasks)
        .into_iter()
        .chain(std::mem::take(&mut graph.sinks));
    for (name, factory) in factories {
        let fut = factory(ctx)?;
        spawn_guarded(&mut tasks, name, fut);
    }
    if let Some((name, factory)) = graph.dead_letter.take() {
        let rxs = std::mem::take(&mut ctx.dead_letters);
        let fut = factory(ctx, rxs)?;
        spawn_guarded(&mut tasks, name, fut);
    }
    Ok(tasks)
}

/// Spawns a task whose panic becomes an [`Error::Task`] naming it.
fn spawn_guarded(tasks: &mut Tasks, name: String, fut: TaskFuture) {
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
}
