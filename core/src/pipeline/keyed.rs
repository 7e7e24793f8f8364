//! [`KeyedStream`]: a stream partitioned by key, and which instance a key belongs to.

use super::describe::{NodeKind, Transport};
use super::graph::operator_stage;
use super::stream::Stream;
use crate::config::PipelineConfig;
use crate::key_group::{instance_of_group, key_group_of, KeyBytes, KeyGroups};
use crate::operator::Operator;
use crate::runtime::inputs::Inputs;
use crate::runtime::tasks::{self, Keyed, Output};
use crate::runtime::TaskKind;
use futures::FutureExt;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// A stream partitioned by key; the next operator runs with keyed parallelism behind a hash
/// shuffle.
pub struct KeyedStream<T: Send + 'static, K> {
    pub(super) stream: Stream<T>,
    pub(super) key: KeyFn<T, K>,
    pub(super) parallelism: Option<usize>,
}

impl<T: Send + 'static, K: KeyBytes + Send + 'static> KeyedStream<T, K> {
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
    /// `name`. A key belongs to key group `key_group_of(key, max_parallelism)`, and instance `i`
    /// owns the key groups [`KeyGroupRange::for_instance`](crate::KeyGroupRange::for_instance)
    /// gives it, so it sees exactly the keys of those groups. Their states are checkpointed as
    /// `name.i`, by key group when the operator implements
    /// [`Operator::snapshot_key_groups`], so they restore at any parallelism.
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
        let max = stream.config.max_parallelism;
        let keyed = |i: usize| Keyed {
            operator: name.to_string(),
            groups: KeyGroups::for_instance(max, n, i),
        };
        let cap = stream.config.channel_capacity;
        stream
            .graph
            .lock()
            .expect("graph lock")
            .layout
            .insert(name.to_string(), n);
        if n == 1 {
            // One instance needs no shuffle; it chains onto its upstream like any operator.
            return stream.apply_stage(&format!("{name}.0"), make(0), Some(keyed(0)));
        }
        let shuffle = format!("{name}.shuffle");
        let channel = Transport::Channel;
        stream.describe_consumer(&shuffle, NodeKind::Exchange, vec![shuffle.clone()], channel);
        let instances = (0..n).map(|i| format!("{name}.{i}")).collect();
        describe_behind_exchange(&stream, &shuffle, name, instances);
        let inputs = stream.take_inputs();
        let mut parts: Vec<Inputs<T>> = Vec::with_capacity(n);
        {
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(cap)).unzip();
            let node = shuffle.clone();
            stream.push_task(
                &shuffle,
                Box::new(move |_| {
                    let outs = txs
                        .into_iter()
                        .map(|tx| Output::channel(tx, &node))
                        .collect();
                    // A parallelism above max_parallelism is refused before this runs; the clamp in
                    // instance_of_group keeps the index in range regardless.
                    let route = move |r: &crate::record::Record<T>| {
                        instance_of_group(key_group_of(&key(&r.value), max), max, n)
                    };
                    Ok(tasks::route(inputs, outs, route).boxed())
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
            let keyed = keyed(i);
            stream.push_task(
                &node,
                Box::new(move |ctx| {
                    let out = Output::channel(tx, &task_node);
                    let stage = operator_stage(ctx, task_node, op, out, Some(keyed))?;
                    let complete = ctx.complete_rx.clone();
                    Ok(
                        tasks::run_chain(inputs, Box::new(stage), complete, TaskKind::Operator)
                            .boxed(),
                    )
                }),
            );
            outs.push(rx);
        }
        stream.derive(outs, vec![name.to_string()])
    }
}

/// Records the keyed operator `name`, fed by its exchange `shuffle`.
fn describe_behind_exchange<T: Send + 'static>(
    stream: &Stream<T>,
    shuffle: &str,
    name: &str,
    instances: Vec<String>,
) {
    let mut g = stream.graph.lock().expect("graph lock");
    g.description
        .add_node(name, NodeKind::KeyedOperator, instances);
    g.description
        .add_edges(&[shuffle.to_string()], name, Transport::Partitioned);
}
