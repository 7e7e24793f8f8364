//! The `Operator` trait: processing between sources and sinks.

use crate::dead_letter::DeadLetter;
use crate::error::BoxError;
use crate::key_group::{KeyGroupSnapshot, KeyGroups};
use crate::record::{Batch, Record};
use crate::time::EventTime;

/// Collects what an operator emits for one call: records, and rejected inputs.
#[derive(Debug)]
pub struct Collector<T> {
    records: Vec<Record<T>>,
    rejected: Vec<DeadLetter>,
}

impl<T> Default for Collector<T> {
    fn default() -> Self {
        Collector {
            records: Vec::new(),
            rejected: Vec::new(),
        }
    }
}

impl<T> Collector<T> {
    /// An empty collector with room for `n` records.
    pub fn with_capacity(n: usize) -> Self {
        Collector {
            records: Vec::with_capacity(n),
            rejected: Vec::new(),
        }
    }

    /// Emits one record downstream.
    #[inline]
    pub fn emit(&mut self, record: Record<T>) {
        self.records.push(record);
    }

    /// Emits a whole batch downstream; when nothing else was emitted it is passed on as it is,
    /// without copying.
    pub fn emit_batch(&mut self, batch: Vec<Record<T>>) {
        if self.records.is_empty() {
            self.records = batch;
        } else {
            self.records.extend(batch);
        }
    }

    /// Emits many records downstream.
    pub fn emit_all(&mut self, records: impl IntoIterator<Item = Record<T>>) {
        self.records.extend(records);
    }

    /// Sends an input that could not be processed to the pipeline's error path (fail, skip or
    /// dead-letter, as the pipeline's [`ErrorPolicy`](crate::ErrorPolicy) says).
    pub fn reject(&mut self, dead: DeadLetter) {
        self.rejected.push(dead);
    }

    /// Number of records emitted so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes the emitted records and rejected inputs, leaving the collector empty.
    pub fn take(&mut self) -> (Vec<Record<T>>, Vec<DeadLetter>) {
        (
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.rejected),
        )
    }
}

/// What the runtime tells an operator instance before its first batch: where it runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OperatorContext {
    /// The pipeline's id.
    pub pipeline: String,
    /// The instance's node name (`window-1.0` for instance 0 of the keyed operator
    /// `window-1`): the [`LABEL_NODE`](crate::metric_catalogue::LABEL_NODE) of its metrics.
    pub node: String,
}

impl OperatorContext {
    /// The context of node `node` of pipeline `pipeline`.
    pub fn new(pipeline: impl Into<String>, node: impl Into<String>) -> Self {
        OperatorContext {
            pipeline: pipeline.into(),
            node: node.into(),
        }
    }
}

/// A processing step that turns batches of `In` into records of `Out`.
///
/// Operators are synchronous: they do CPU work on a batch and return. Stateless operators
/// (map, filter) only implement [`process`](Operator::process); stateful ones (windows, joins)
/// also react to watermarks and put their state into checkpoints. A keyed operator instance only
/// ever sees the keys that hash to it.
pub trait Operator: Send + 'static {
    /// Input payload.
    type In: Send + 'static;
    /// Output payload.
    type Out: Send + 'static;

    /// Processes one batch.
    fn process(
        &mut self,
        batch: Batch<Self::In>,
        out: &mut Collector<Self::Out>,
    ) -> Result<(), BoxError>;

    /// Event time advanced to `watermark`: fire what is due. The runtime forwards the watermark
    /// downstream after this returns, so emitted results precede it.
    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<Self::Out>,
    ) -> Result<(), BoxError> {
        let _ = (watermark, out);
        Ok(())
    }

    /// Called once by the runtime, after restore and before the first batch, with where the
    /// instance runs. Operators with metrics register their handles here, labelled with
    /// [`OperatorContext::node`]. The default does nothing.
    fn open(&mut self, ctx: &OperatorContext) {
        let _ = ctx;
    }

    /// The operator's state for a checkpoint, `None` when stateless.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }

    /// Restores what [`snapshot`](Operator::snapshot) returned, before the first batch.
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let _ = state;
        Ok(())
    }

    /// A keyed operator's state for a checkpoint, split by key group: `(group, state)` pairs,
    /// each group in `groups.range()` at most once, ascending. A checkpoint of such state can be
    /// restored at any parallelism (see docs/scaling.md).
    ///
    /// The default, `None`, falls back to [`snapshot`](Operator::snapshot): one blob per
    /// instance, which restores only at the parallelism it was written with. Implement it
    /// together with [`restore_key_groups`](Operator::restore_key_groups); split keyed state
    /// with [`KeyGroups::split`], and put state that is not per key (a watermark floor) into
    /// every group, since any one of them may be restored alone.
    fn snapshot_key_groups(
        &mut self,
        groups: &KeyGroups,
    ) -> Result<Option<KeyGroupSnapshot>, BoxError> {
        let _ = groups;
        Ok(None)
    }

    /// Restores the key groups this instance owns (`groups.range()`), written by
    /// [`snapshot_key_groups`](Operator::snapshot_key_groups) of instances of any parallelism.
    /// Called once, before the first batch, with every group of the range that had state;
    /// groups without state are absent.
    fn restore_key_groups(
        &mut self,
        groups: &KeyGroups,
        states: &[(u16, bytes::Bytes)],
    ) -> Result<(), BoxError> {
        let _ = (groups, states);
        Err("this operator wrote key-group state but does not implement restore_key_groups".into())
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
