//! A counter of one operator instance, labelled with the instance's node.

use metrics::{Counter, Label};
use watershed_core::metric_catalogue::{LABEL_NODE, UNNAMED_NODE};

/// A counter of one operator instance, registered once: in `Operator::open` with the node the
/// runtime names, or on first use with [`UNNAMED_NODE`] when the operator runs outside a
/// pipeline (a unit test driving it directly). Never registered per record or per batch.
pub(crate) struct NodeCounter {
    name: &'static str,
    /// Labels besides `node`.
    labels: Vec<Label>,
    handle: Option<Counter>,
}

impl NodeCounter {
    /// The counter `name` (a constant of `watershed_core::metric_catalogue`) with `labels` besides `node`.
    pub(crate) fn new(name: &'static str, labels: Vec<Label>) -> Self {
        NodeCounter {
            name,
            labels,
            handle: None,
        }
    }

    /// Registers the handle of node `node`.
    pub(crate) fn open(&mut self, node: &str) {
        let mut labels = Vec::with_capacity(self.labels.len() + 1);
        labels.push(Label::new(LABEL_NODE, node.to_owned()));
        labels.extend(self.labels.iter().cloned());
        self.handle = Some(metrics::counter!(self.name, labels));
    }

    /// Adds `n`.
    pub(crate) fn increment(&mut self, n: u64) {
        if self.handle.is_none() {
            self.open(UNNAMED_NODE);
        }
        if let Some(h) = &self.handle {
            h.increment(n);
        }
    }
}
