//! [`Pipeline::describe`](super::Pipeline::describe): the graph a pipeline was built into, as a
//! value to log, test against, or draw (as Kafka Streams' `Topology::describe`).
//!
//! The description is recorded while the graph is built, so it names exactly the nodes that
//! will run, in the order they were declared, and costs nothing once the pipeline runs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The graph of a pipeline: its nodes in declaration order and the streams between them.
///
/// Its [`Display`](fmt::Display) is stable text (one node per line, its outgoing edges
/// indented below it) meant for logs and for comparing with an expected file in tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineDescription {
    /// The pipeline's id ([`PipelineConfig::new`](crate::PipelineConfig::new)).
    pub pipeline: String,
    /// Every node, in the order the pipeline declared it.
    pub nodes: Vec<NodeDescription>,
    /// Every stream between two nodes, in the order the pipeline declared it.
    pub edges: Vec<EdgeDescription>,
}

/// One node of a pipeline's graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeDescription {
    /// The node's name (a keyed operator's, without the instance suffix).
    pub name: String,
    /// What the node does.
    pub kind: NodeKind,
    /// How many instances run it.
    pub parallelism: usize,
    /// The names its instances report under, in the `node` label of the metrics and in
    /// checkpoints: the name itself, or `name.0`, `name.1`, … for a keyed operator.
    pub instances: Vec<String>,
}

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum NodeKind {
    /// Reads records from outside ([`Pipeline::source`](super::Pipeline::source)).
    Source,
    /// Transforms records ([`Stream::apply`](super::Stream::apply)).
    Operator,
    /// Transforms the records of the keys it owns, one instance per share of the key groups
    /// ([`KeyedStream::process`](super::KeyedStream::process)).
    KeyedOperator,
    /// Routes each record to the instance of the next keyed operator that owns its key.
    Exchange,
    /// Copies every record to several streams ([`Stream::fan_out`](super::Stream::fan_out)).
    FanOut,
    /// Separates a main output from a side output ([`Stream::split`](super::Stream::split)).
    Split,
    /// Writes records out ([`Stream::sink`](super::Stream::sink)).
    Sink,
    /// Writes the records rejected anywhere in the pipeline
    /// ([`Pipeline::dead_letter`](super::Pipeline::dead_letter)).
    DeadLetter,
    /// Drains a stream that was dropped without a sink.
    Discard,
}

impl NodeKind {
    /// The kind as one word: the JSON value and the [`PipelineDescription`] text use it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Source => "source",
            NodeKind::Operator => "operator",
            NodeKind::KeyedOperator => "keyed-operator",
            NodeKind::Exchange => "exchange",
            NodeKind::FanOut => "fan-out",
            NodeKind::Split => "split",
            NodeKind::Sink => "sink",
            NodeKind::DeadLetter => "dead-letter",
            NodeKind::Discard => "discard",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EdgeDescription {
    /// The producing node's name.
    pub from: String,
    /// The consuming node's name.
    pub to: String,
    /// How records travel.
    pub transport: Transport,
}

/// How records travel along an edge: what it costs, and where back-pressure shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Transport {
    /// A function call inside one task: no channel, no copy.
    Chained,
    /// A bounded channel between two tasks.
    Channel,
    /// One bounded channel per instance of a keyed operator, chosen by the record's key.
    Partitioned,
}

impl Transport {
    /// The transport as one word: the JSON value and the [`PipelineDescription`] text use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Chained => "chained",
            Transport::Channel => "channel",
            Transport::Partitioned => "partitioned",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PipelineDescription {
    /// The node named `name`, if any.
    pub fn node(&self, name: &str) -> Option<&NodeDescription> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node whose instance reports under `instance` (a metric's `node` label).
    pub fn node_of_instance(&self, instance: &str) -> Option<&NodeDescription> {
        self.nodes
            .iter()
            .find(|n| n.instances.iter().any(|i| i == instance))
    }

    pub(super) fn add_node(&mut self, name: &str, kind: NodeKind, instances: Vec<String>) {
        self.nodes.push(NodeDescription {
            name: name.to_string(),
            kind,
            parallelism: instances.len(),
            instances,
        });
    }

    pub(super) fn add_edges(&mut self, from: &[String], to: &str, transport: Transport) {
        self.edges.extend(from.iter().map(|f| EdgeDescription {
            from: f.clone(),
            to: to.to_string(),
            transport,
        }));
    }
}

impl fmt::Display for PipelineDescription {
    /// ```text
    /// pipeline orders (5 nodes, 4 edges)
    ///   source orders
    ///     -> parse (chained)
    ///   keyed-operator totals x2 [totals.0, totals.1]
    ///     -> out (channel)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {} ({} nodes, {} edges)",
            self.pipeline,
            self.nodes.len(),
            self.edges.len()
        )?;
        for node in &self.nodes {
            write!(f, "  {} {}", node.kind, node.name)?;
            if node.instances != [node.name.as_str()] {
                write!(f, " x{} [{}]", node.parallelism, node.instances.join(", "))?;
            }
            writeln!(f)?;
            for edge in self.edges.iter().filter(|e| e.from == node.name) {
                writeln!(f, "    -> {} ({})", edge.to, edge.transport)?;
            }
        }
        Ok(())
    }
}
