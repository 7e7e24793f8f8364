//! [`TestPipeline`]: what the user's pipeline function receives to declare its named inputs and
//! outputs, and the registry that keeps them (logs and committed output) across restarts.

use crate::error::{Result, TestkitError};
use crate::input::{AnyLog, InputLog, LogSource, MANUAL_DELAY_MS};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::{type_name, Any};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use watershed_core::connectors::{CollectHandle, CollectSink};
use watershed_core::{
    Batch, BoxError, CheckpointId, DeadLetter, Pipeline, PipelineConfig, Sink, SinkContext, Stream,
    WatermarkStrategy,
};

pub(crate) struct InputSlot {
    /// An `Arc<InputLog<T>>`.
    log: Box<dyn Any + Send>,
    type_name: &'static str,
    /// The same log, for what the driver does to every input alike.
    pub any: Arc<dyn AnyLog>,
}

pub(crate) struct OutputSlot {
    /// A `CollectSink<T>`: committed output survives restarts, like a topic.
    sink: Box<dyn Any + Send>,
    type_name: &'static str,
    /// The newest checkpoint this output pre-committed and committed.
    pub marks: Arc<Marks>,
}

/// How far an output got, for the waiting driver.
#[derive(Default)]
pub(crate) struct Marks {
    pre_committed: AtomicU64,
    committed: AtomicU64,
}

/// Every input and output ever declared, and which the current run declares.
#[derive(Default)]
pub(crate) struct Registry {
    pub inputs: BTreeMap<String, InputSlot>,
    pub outputs: BTreeMap<String, OutputSlot>,
    pub active_inputs: BTreeSet<String>,
    pub active_outputs: BTreeSet<String>,
}

fn known(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Registry {
    pub fn input<T: 'static>(&self, name: &str) -> Result<Arc<InputLog<T>>> {
        let slot = self
            .inputs
            .get(name)
            .filter(|_| self.active_inputs.contains(name))
            .ok_or_else(|| TestkitError::UnknownInput {
                name: name.into(),
                known: known(&self.active_inputs),
            })?;
        slot.log
            .downcast_ref::<Arc<InputLog<T>>>()
            .cloned()
            .ok_or_else(|| TestkitError::WrongType {
                name: name.into(),
                declared: slot.type_name,
                requested: type_name::<T>(),
            })
    }

    pub fn output<T: 'static>(&self, name: &str) -> Result<&CollectSink<T>> {
        let slot = self
            .outputs
            .get(name)
            .filter(|_| self.active_outputs.contains(name))
            .ok_or_else(|| TestkitError::UnknownOutput {
                name: name.into(),
                known: known(&self.active_outputs),
            })?;
        slot.sink
            .downcast_ref::<CollectSink<T>>()
            .ok_or_else(|| TestkitError::WrongType {
                name: name.into(),
                declared: slot.type_name,
                requested: type_name::<T>(),
            })
    }

    /// The inputs the current run declares.
    pub fn active_logs(&self) -> Vec<Arc<dyn AnyLog>> {
        self.active_inputs
            .iter()
            .filter_map(|n| self.inputs.get(n))
            .map(|slot| slot.any.clone())
            .collect()
    }

    /// True when every output the current run declares has committed checkpoint `id`, or
    /// takes no part in it. Checkpoint `id` completed, so every sink taking part in it has
    /// pre-committed it; one that has not (a dead-letter output nothing can reject into)
    /// takes no part and has nothing to commit.
    pub fn committed(&self, id: u64) -> bool {
        self.active_outputs
            .iter()
            .filter_map(|n| self.outputs.get(n))
            .all(|slot| {
                slot.marks.committed.load(Ordering::SeqCst) >= id
                    || slot.marks.pre_committed.load(Ordering::SeqCst) < id
            })
    }
}

/// What a pipeline function under test receives: it declares named inputs, wires them through
/// the user's processing code, and ends the results in named outputs.
///
/// The driver calls the function once per run (at the start and after every
/// [`restart`](crate::TestDriver::restart)), so it must declare the same names with the same
/// types each time, as a production `main` does.
pub struct TestPipeline<'a> {
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) registry: &'a mut Registry,
    pub(crate) errors: Vec<TestkitError>,
    pub(crate) progress: watch::Sender<u64>,
}

impl TestPipeline<'_> {
    /// A named input whose watermark moves only when the driver moves it
    /// ([`TestInput::advance_watermark`](crate::TestInput::advance_watermark)) or at
    /// [`finish`](crate::TestDriver::finish): records may arrive in any order.
    pub fn input<T: Clone + Send + 'static>(&mut self, name: &str) -> Stream<T> {
        self.declare_input(name, MANUAL_DELAY_MS)
    }

    /// A named input whose watermark also follows its records as in production with
    /// `WatermarkStrategy::bounded_out_of_orderness(delay)`: after a record at `t` it is at
    /// least `t − delay − 1` (zero delay: `WatermarkStrategy::monotonous()`).
    pub fn input_following_records<T: Clone + Send + 'static>(
        &mut self,
        name: &str,
        delay: Duration,
    ) -> Stream<T> {
        let ms = i64::try_from(delay.as_millis()).unwrap_or(MANUAL_DELAY_MS);
        self.declare_input(name, ms.min(MANUAL_DELAY_MS))
    }

    /// The pipeline's configuration (parallelism, channel capacity), as the function's
    /// production `main` would see it.
    pub fn config(&self) -> &PipelineConfig {
        self.pipeline.config()
    }

    /// Ends `stream` in the named output: the driver reads what it committed with
    /// [`TestDriver::output`](crate::TestDriver::output).
    pub fn output<T>(&mut self, name: &str, stream: Stream<T>)
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let sink = self.declare_output::<T>(name);
        stream.sink(name, sink);
    }

    /// Sends the records the pipeline rejects (an operator's `Collector::reject`, a sink's
    /// refusal, a record a watermark strategy refuses) to the named output, as the pipeline's
    /// dead-letter sink; read them with `driver.output::<DeadLetter>(name)`. Without it the
    /// pipeline's error policy decides (by default a rejected record fails the pipeline).
    pub fn dead_letters(&mut self, name: &str) {
        let sink = self.declare_output::<DeadLetter>(name);
        self.pipeline.dead_letter(name, sink);
    }

    fn declare_output<T>(&mut self, name: &str) -> OutputSink<T>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        if !self.registry.active_outputs.insert(name.to_string()) {
            self.errors
                .push(TestkitError::DuplicateName { name: name.into() });
        }
        let slot = self
            .registry
            .outputs
            .entry(name.to_string())
            .or_insert_with(|| OutputSlot {
                sink: Box::new(CollectSink::<T>::new()),
                type_name: type_name::<T>(),
                marks: Arc::default(),
            });
        let inner = match slot.sink.downcast_ref::<CollectSink<T>>() {
            Some(sink) => sink.clone(),
            None => {
                self.errors.push(TestkitError::WrongType {
                    name: name.into(),
                    declared: slot.type_name,
                    requested: type_name::<T>(),
                });
                CollectSink::new()
            }
        };
        OutputSink {
            inner,
            marks: slot.marks.clone(),
            progress: self.progress.clone(),
        }
    }

    fn declare_input<T: Clone + Send + 'static>(&mut self, name: &str, delay_ms: i64) -> Stream<T> {
        if !self.registry.active_inputs.insert(name.to_string()) {
            self.errors
                .push(TestkitError::DuplicateName { name: name.into() });
        }
        let progress = self.progress.clone();
        let slot = self
            .registry
            .inputs
            .entry(name.to_string())
            .or_insert_with(|| {
                let log = Arc::new(InputLog::<T>::new(progress.clone()));
                InputSlot {
                    any: log.clone(),
                    log: Box::new(log),
                    type_name: type_name::<T>(),
                }
            });
        let log = match slot.log.downcast_ref::<Arc<InputLog<T>>>() {
            Some(log) => log.clone(),
            None => {
                self.errors.push(TestkitError::WrongType {
                    name: name.into(),
                    declared: slot.type_name,
                    requested: type_name::<T>(),
                });
                Arc::new(InputLog::new(progress))
            }
        };
        let delay = Duration::from_millis(delay_ms.unsigned_abs());
        self.pipeline.source(
            name,
            LogSource::new(name, log, delay_ms),
            WatermarkStrategy::bounded_out_of_orderness(delay),
        )
    }
}

/// A named output: core's exactly-once [`CollectSink`], which also tells the driver which
/// checkpoint it committed last (the driver reads an output only once it has committed the
/// checkpoint covering everything sent).
struct OutputSink<T> {
    inner: CollectSink<T>,
    marks: Arc<Marks>,
    progress: watch::Sender<u64>,
}

#[async_trait]
impl<T> Sink for OutputSink<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Item = T;
    type Handle = CollectHandle<T>;

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
        self.inner.open(ctx).await
    }

    async fn write(&mut self, batch: Batch<T>) -> Result<(), BoxError> {
        self.inner.write(batch).await
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<CollectHandle<T>, BoxError> {
        let handle = self.inner.pre_commit(checkpoint).await?;
        self.marks
            .pre_committed
            .fetch_max(checkpoint.0, Ordering::SeqCst);
        Ok(handle)
    }

    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: CollectHandle<T>,
    ) -> Result<(), BoxError> {
        self.inner.commit(checkpoint, handle).await?;
        self.marks
            .committed
            .fetch_max(checkpoint.0, Ordering::SeqCst);
        self.progress.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        self.inner.abort().await
    }
}
