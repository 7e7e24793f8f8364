//! Running the processing function over one batch with the core runtime: a bounded source of
//! the batch's records (with their shard and sequence origins) and sinks that collect what the
//! function emits and rejects.

use crate::event::{InputBatch, KinesisInput};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use watershed_core::{
    BoxError, CheckpointId, CheckpointStore, DeadLetter, Offset, Origin, Pipeline, PipelineConfig,
    Record, SequenceNumber, Sink, Source, SourceEvent, SplitRef, Stream, WatermarkStrategy,
};

/// The user's processing function, shared by every invocation of a container.
pub(crate) type Function<T> = Arc<dyn Fn(Stream<Bytes>) -> Stream<T> + Send + Sync>;

/// What the function produced for one batch.
pub(crate) struct Produced<T> {
    pub outputs: Vec<Record<T>>,
    pub dead_letters: Vec<DeadLetter>,
}

/// Runs `function` over `batch` in a fresh in-memory pipeline and returns what it emitted and
/// rejected. The batch is bounded, so the run ends with the final checkpoint, which fires
/// every window (the watermark reaches the end of time).
pub(crate) async fn run_batch<T>(
    name: &str,
    function: &Function<T>,
    watermarks: &WatermarkStrategy<Bytes>,
    batch: &InputBatch,
) -> Result<Produced<T>, watershed_core::Error>
where
    T: Clone + Send + Sync + 'static,
{
    let pipeline = Pipeline::new(
        PipelineConfig::new(name)
            .checkpoint_store(CheckpointStore::memory())
            .without_periodic_checkpoints()
            // The batch is all in memory: nothing to wait for between polls.
            .max_poll_wait(Duration::from_millis(1))
            .handle_signals(false),
    );
    let raw = pipeline.source("kinesis-batch", BatchSource::new(batch), watermarks.clone());
    let outputs = Collected::default();
    let dead_letters = Collected::default();
    function(raw).sink("outputs", outputs.clone());
    pipeline.dead_letter("dead-letters", dead_letters.clone());
    pipeline.run().await?;
    Ok(Produced {
        outputs: outputs.take(),
        dead_letters: dead_letters.take().into_iter().map(|r| r.value).collect(),
    })
}

/// A bounded source of one event batch: one split per shard, each record's origin its shard
/// and sequence number, its event time the arrival time (a watermark strategy with timestamps
/// may replace it).
struct BatchSource {
    /// Runs of consecutive records of one shard, in event order.
    runs: std::vec::IntoIter<(watershed_core::SplitId, Vec<Record<Bytes>>)>,
    announced: bool,
    shards: Vec<watershed_core::SplitId>,
    emitted: u64,
}

impl BatchSource {
    fn new(batch: &InputBatch) -> Self {
        let mut runs: Vec<(watershed_core::SplitId, Vec<Record<Bytes>>)> = Vec::new();
        let mut shards = Vec::new();
        for input in batch.records() {
            if !shards.contains(&input.shard) {
                shards.push(input.shard.clone());
            }
            let record = record_of(input);
            match runs.last_mut() {
                Some((shard, run)) if *shard == input.shard => run.push(record),
                _ => runs.push((input.shard.clone(), vec![record])),
            }
        }
        BatchSource {
            runs: runs.into_iter(),
            announced: false,
            shards,
            emitted: 0,
        }
    }
}

fn record_of(input: &KinesisInput) -> Record<Bytes> {
    let origin = Origin {
        source: Arc::new(SplitRef {
            stream: input.stream.clone(),
            split: input.shard.clone(),
        }),
        offset: Offset::Sequence(Arc::new(SequenceNumber {
            number: input.sequence.clone(),
            sub: 0,
        })),
    };
    Record::new(input.data.clone(), input.arrival)
        .with_key(Bytes::from(input.partition_key.clone()))
        .with_origin(origin)
}

#[async_trait]
impl Source for BatchSource {
    type Item = Bytes;
    type Position = u64;

    async fn open(&mut self, _restored: Option<u64>) -> Result<(), BoxError> {
        Ok(())
    }

    async fn poll(&mut self, _max_wait: Duration) -> Result<SourceEvent<Bytes>, BoxError> {
        if !self.announced {
            // Every shard holds event time back until its records are in.
            if let Some(shard) = self.shards.pop() {
                return Ok(SourceEvent::SplitAdded(shard));
            }
            self.announced = true;
        }
        Ok(match self.runs.next() {
            Some((split, records)) => {
                self.emitted += records.len() as u64;
                SourceEvent::Batch { split, records }
            }
            None => SourceEvent::Finished,
        })
    }

    fn position(&self) -> u64 {
        self.emitted
    }
}

/// Collects what reaches it, with origins, once the final checkpoint commits.
struct Collected<T> {
    shared: Arc<Mutex<Vec<Record<T>>>>,
    epoch: Vec<Record<T>>,
    pending: Vec<Record<T>>,
}

impl<T> Default for Collected<T> {
    fn default() -> Self {
        Collected {
            shared: Arc::default(),
            epoch: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl<T> Clone for Collected<T> {
    fn clone(&self) -> Self {
        Collected {
            shared: self.shared.clone(),
            epoch: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl<T> Collected<T> {
    fn take(&self) -> Vec<Record<T>> {
        // A poisoned lock only means another clone panicked mid-push; the data is still whole.
        std::mem::take(&mut *self.shared.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl<T: Send + Sync + 'static> Sink for Collected<T> {
    type Item = T;
    type Handle = ();

    async fn write(&mut self, batch: Vec<Record<T>>) -> Result<(), BoxError> {
        self.epoch.extend(batch);
        Ok(())
    }

    async fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<(), BoxError> {
        self.pending.append(&mut self.epoch);
        Ok(())
    }

    async fn commit(&mut self, _checkpoint: CheckpointId, _handle: ()) -> Result<(), BoxError> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.append(&mut self.pending);
        Ok(())
    }
}
