//! The graph a pipeline is built into before it runs: named task factories, and the stages
//! (operator, sink) each factory builds once the restored checkpoint is known.

use super::describe::PipelineDescription;
use crate::checkpoint::key_group_states;
use crate::dead_letter::DeadLetter;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::metric_catalogue as m;
use crate::operator::{Collector, Operator, OperatorContext};
use crate::runtime::sink_stage::SinkStage;
use crate::runtime::tasks::{Keyed, OperatorStage, Output, Rejects};
use crate::runtime::{RunContext, TaskFactory, TaskFuture};
use crate::sink::{Sink, SinkContext};
use std::collections::{BTreeMap, HashSet};
use tokio::sync::mpsc;

pub(super) type DeadLetterFactory = Box<
    dyn FnOnce(&mut RunContext, Vec<mpsc::Receiver<Message<DeadLetter>>>) -> Result<TaskFuture>
        + Send,
>;

#[derive(Default)]
pub(super) struct Graph {
    pub(super) tasks: Vec<(String, TaskFactory)>,
    pub(super) sinks: Vec<(String, TaskFactory)>,
    pub(super) dead_letter: Option<(String, DeadLetterFactory)>,
    pub(super) names: HashSet<String>,
    pub(super) layout: BTreeMap<String, usize>,
    pub(super) counter: usize,
    pub(super) sources: usize,
    pub(super) live_streams: usize,
    pub(super) error: Option<Error>,
    /// What [`Pipeline::describe`](super::Pipeline::describe) returns, recorded as the graph
    /// is built (the task factories above cannot be inspected).
    pub(super) description: PipelineDescription,
}

impl Graph {
    pub(super) fn claim(&mut self, name: &str) {
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

pub(super) fn sink_stage<S: Sink>(
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
    // The dead-letter sink (the only one not counted as output) has nowhere to send what it
    // refuses but an error.
    let rejects = counts_as_output.then(|| Rejects {
        node: node.clone(),
        policy: ctx.error_policy,
        dead_letters: ctx.dead_letter_sender(),
        count: ctx.rejected.clone(),
        recent: ctx.recent_rejections.clone(),
    });
    Ok(SinkStage {
        ctx: SinkContext {
            pipeline: ctx.config.id.clone(),
            node: node.clone(),
            restored_checkpoint: ctx.restored_checkpoint(),
        },
        records_out: metrics::counter!(m::RECORDS_OUT, m::LABEL_NODE => node.clone()),
        latency: metrics::histogram!(m::END_TO_END_LATENCY, m::LABEL_NODE => node.clone()),
        pending_commits: metrics::gauge!(m::SINK_PENDING_COMMITS, m::LABEL_NODE => node.clone()),
        node,
        sink,
        restored,
        pending: BTreeMap::new(),
        acks: ctx.ack_tx.clone(),
        written: counts_as_output.then(|| ctx.records_out.clone()),
        rejects,
    })
}

pub(super) fn operator_stage<O: Operator>(
    ctx: &mut RunContext,
    node: String,
    mut op: O,
    out: Output<O::Out>,
    keyed: Option<Keyed>,
) -> Result<OperatorStage<O>> {
    restore_operator(ctx, &node, &mut op, keyed.as_ref())?;
    op.open(&OperatorContext::new(ctx.config.id.clone(), node.clone()));
    ctx.participate();
    Ok(OperatorStage {
        records_in: metrics::counter!(m::OPERATOR_RECORDS_IN, m::LABEL_NODE => node.clone()),
        records_out: metrics::counter!(m::OPERATOR_RECORDS_OUT, m::LABEL_NODE => node.clone()),
        node: node.clone(),
        op,
        out,
        acks: ctx.ack_tx.clone(),
        rejects: Rejects {
            node,
            policy: ctx.error_policy,
            dead_letters: ctx.dead_letter_sender(),
            count: ctx.rejected.clone(),
            recent: ctx.recent_rejections.clone(),
        },
        collector: Collector::default(),
        keyed,
    })
}

/// Restores an operator from the checkpoint: a keyed instance gets the key groups it owns when
/// the checkpoint holds its operator's state by key group (from instances of any parallelism);
/// otherwise the operator gets its own node's blob, if any.
fn restore_operator<O: Operator>(
    ctx: &RunContext,
    node: &str,
    op: &mut O,
    keyed: Option<&Keyed>,
) -> Result<()> {
    let err = |e| Error::operator(node.to_string(), e);
    if let (Some(keyed), Some(manifest)) = (keyed, ctx.restored.as_ref()) {
        let range = keyed.groups.range();
        let states = &ctx.restored_states;
        if let Some(groups) = key_group_states(manifest, states, &keyed.operator, range) {
            if !groups.is_empty() {
                op.restore_key_groups(&keyed.groups, &groups).map_err(err)?;
            }
            return Ok(());
        }
    }
    if let Some(state) = ctx.restored_states.get(node) {
        op.restore(state).map_err(err)?;
    }
    Ok(())
}
