//! The `Operator` trait: processing between sources and sinks.

use crate::dead_letter::DeadLetter;
use crate::error::BoxError;
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

    /// The operator's state for a checkpoint, `None` when stateless.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }

    /// Restores what [`snapshot`](Operator::snapshot) returned, before the first batch.
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let _ = state;
        Ok(())
    }
}
