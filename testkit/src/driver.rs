//! [`TestDriver`]: runs a pipeline function on the real runtime with driver-fed inputs, one
//! deterministic step at a time.

use crate::error::{Result, TestkitError};
use crate::input::{Entry, InputLog};
use crate::wiring::{Registry, TestPipeline};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use watershed_core::{
    CheckpointId, CheckpointStore, EventTime, Pipeline, PipelineConfig, RunSummary,
};

type Wiring = Box<dyn Fn(&mut TestPipeline<'_>)>;
type Configure = Box<dyn Fn(PipelineConfig) -> PipelineConfig>;

/// One run of the pipeline: its own tokio runtime, so that dropping it stops every task at
/// once, as a crash of the process would.
struct Run {
    runtime: Runtime,
    handle: JoinHandle<watershed_core::Result<RunSummary>>,
}

enum State {
    Running(Run),
    /// The pipeline failed; `restart` recovers from its last checkpoint.
    Failed,
    Finished(RunSummary),
}

/// Builds a [`TestDriver`]; see [`TestDriver::builder`].
pub struct TestDriverBuilder {
    wiring: Wiring,
    configure: Configure,
}

impl TestDriverBuilder {
    /// Adjusts the pipeline's configuration (parallelism, channel capacity, error policy), as
    /// the function's production `main` would. The driver then sets what it needs to stay
    /// deterministic: an in-memory checkpoint store shared by every run, no periodic
    /// checkpoints (it takes its own), no signal handling.
    pub fn configure(
        mut self,
        f: impl Fn(PipelineConfig) -> PipelineConfig + 'static,
    ) -> TestDriverBuilder {
        self.configure = Box::new(f);
        self
    }

    /// Calls the pipeline function and starts the pipeline.
    pub fn build(self) -> Result<TestDriver> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(TestkitError::InsideRuntime);
        }
        let (progress, _) = watch::channel(0);
        let mut driver = TestDriver {
            wiring: self.wiring,
            configure: self.configure,
            store: CheckpointStore::memory(),
            registry: Registry::default(),
            progress,
            state: State::Failed,
            dirty: false,
        };
        driver.start()?;
        Ok(driver)
    }
}

/// Runs a pipeline function under test, the way Kafka Streams' `TopologyTestDriver` runs a
/// topology: feed records with event times into named inputs, move watermarks by hand, read
/// what each named output committed, restart from the last checkpoint, finish.
///
/// The function runs on Watershed's real runtime (chaining, parallelism, checkpoints,
/// two-phase-commit sinks), with one in-memory log per input instead of a broker. Every read
/// of an output first takes a checkpoint that covers everything sent, and waits until every
/// output has committed it: what is read is then exactly what production would have committed
/// at that point, with no sleep and no timing. Records sent between reads may be processed in
/// any interleaving, as in production; the committed result does not depend on it.
///
/// The driver runs its own tokio runtime: use it from a plain `#[test]`.
pub struct TestDriver {
    wiring: Wiring,
    configure: Configure,
    store: CheckpointStore,
    registry: Registry,
    progress: watch::Sender<u64>,
    state: State,
    /// Something was sent since the last checkpoint.
    dirty: bool,
}

impl TestDriver {
    /// A driver for the pipeline function `wiring`, with the default configuration.
    pub fn new(wiring: impl Fn(&mut TestPipeline<'_>) + 'static) -> Result<TestDriver> {
        Self::builder(wiring).build()
    }

    /// A builder, to adjust the pipeline's configuration first.
    pub fn builder(wiring: impl Fn(&mut TestPipeline<'_>) + 'static) -> TestDriverBuilder {
        TestDriverBuilder {
            wiring: Box::new(wiring),
            configure: Box::new(|c| c),
        }
    }

    /// The named input, to send records and watermarks into. Its record type is the one the
    /// pipeline function declared; another type is an error.
    pub fn input<T: Clone + Send + 'static>(&mut self, name: &str) -> Result<TestInput<'_, T>> {
        if let State::Finished(_) = self.state {
            return Err(TestkitError::Finished);
        }
        let log = self.registry.input::<T>(name)?;
        Ok(TestInput { driver: self, log })
    }

    /// Moves the watermark of every input to `to` (inputs already past it stay where they are).
    pub fn advance_watermark(&mut self, to: EventTime) -> Result<&mut Self> {
        if let State::Finished(_) = self.state {
            return Err(TestkitError::Finished);
        }
        for log in self.registry.active_logs() {
            log.append_watermark(to);
        }
        self.dirty = true;
        Ok(self)
    }

    /// Takes a checkpoint covering everything sent so far and waits until every operator has
    /// processed it and every output has committed it; returns its id.
    pub fn checkpoint(&mut self) -> Result<CheckpointId> {
        let run = match &mut self.state {
            State::Running(run) => run,
            State::Failed => return Err(TestkitError::NotRunning),
            State::Finished(_) => return Err(TestkitError::Finished),
        };
        let logs = self.registry.active_logs();
        for log in &logs {
            let control = log.control();
            let mut sync = control.sync();
            sync.target = Some(log.len());
            sync.covered_by = None;
            drop(sync);
            control.wake.notify_one();
        }
        let registry = &self.registry;
        let mut changes = self.progress.subscribe();
        let done = run.runtime.block_on(async {
            loop {
                changes.borrow_and_update();
                if let Some(id) = covered(&logs).filter(|id| registry.committed(id.0)) {
                    return Ok(id);
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    ended = &mut run.handle => return Err(ended),
                }
            }
        });
        match done {
            Ok(id) => {
                self.dirty = false;
                Ok(id)
            }
            Err(ended) => {
                self.state = State::Failed;
                Err(match ended {
                    Ok(Err(e)) => TestkitError::Pipeline(e),
                    _ => TestkitError::Stopped,
                })
            }
        }
    }

    /// Every value the named output has committed so far, in commit order (across restarts,
    /// each exactly once). Takes a checkpoint first when something was sent since the last.
    /// After a failure, what was committed before it.
    pub fn output<T>(&mut self, name: &str) -> Result<Vec<T>>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Ok(self
            .output_with_times::<T>(name)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// Like [`output`](Self::output), with each value's event time.
    pub fn output_with_times<T>(&mut self, name: &str) -> Result<Vec<(T, EventTime)>>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        if self.dirty && matches!(self.state, State::Running(_)) {
            self.checkpoint()?;
        }
        let sink = self.registry.output::<T>(name)?;
        Ok(sink
            .records()
            .into_iter()
            .map(|r| (r.value, r.timestamp))
            .collect())
    }

    /// Stops the pipeline as a crash would (every task dropped at once, nothing flushed), calls
    /// the pipeline function again and restores the last complete checkpoint: operator state
    /// comes back from it, and inputs replay what it did not cover. Returns once the restored
    /// pipeline has caught up. Also the way back after the pipeline failed.
    pub fn restart(&mut self) -> Result<()> {
        if let State::Finished(_) = self.state {
            return Err(TestkitError::Finished);
        }
        // Dropping the runtime drops every task of the run: a crash, not a graceful stop.
        self.state = State::Failed;
        for slot in self.registry.inputs.values() {
            *slot.any.control().sync() = Default::default();
        }
        self.start()?;
        self.checkpoint()?;
        Ok(())
    }

    /// Ends every input: the watermark goes to its maximum, so every open window fires, then
    /// the pipeline takes its final checkpoint, commits it and stops. Returns the run's summary
    /// (of this run only, since the last restart); outputs stay readable.
    pub fn finish(&mut self) -> Result<RunSummary> {
        let run = match std::mem::replace(&mut self.state, State::Failed) {
            State::Running(run) => run,
            State::Failed => return Err(TestkitError::NotRunning),
            State::Finished(summary) => {
                self.state = State::Finished(summary);
                return Err(TestkitError::Finished);
            }
        };
        for log in self.registry.active_logs() {
            log.append_end();
        }
        let Run { runtime, handle } = run;
        let summary = match runtime.block_on(handle) {
            Ok(Ok(summary)) => summary,
            Ok(Err(e)) => return Err(TestkitError::Pipeline(e)),
            Err(_) => return Err(TestkitError::Stopped),
        };
        self.dirty = false;
        self.state = State::Finished(summary.clone());
        Ok(summary)
    }

    /// Builds the pipeline from the function and spawns its run on a fresh runtime.
    fn start(&mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(TestkitError::Runtime)?;
        let config = (self.configure)(PipelineConfig::new("testkit"))
            .checkpoint_store(self.store.clone())
            .without_periodic_checkpoints()
            .handle_signals(false);
        let pipeline = Pipeline::new(config);
        self.registry.active_inputs.clear();
        self.registry.active_outputs.clear();
        let mut wiring = TestPipeline {
            pipeline: &pipeline,
            registry: &mut self.registry,
            errors: Vec::new(),
            progress: self.progress.clone(),
        };
        (self.wiring)(&mut wiring);
        if let Some(e) = wiring.errors.into_iter().next() {
            return Err(e);
        }
        if self.registry.active_inputs.is_empty() {
            return Err(TestkitError::NoInputs);
        }
        let handle = runtime.spawn(pipeline.run());
        self.state = State::Running(Run { runtime, handle });
        self.dirty = true;
        Ok(())
    }
}

/// The newest checkpoint that covered the sync target of every input, once all have one.
fn covered(logs: &[Arc<dyn crate::input::AnyLog>]) -> Option<CheckpointId> {
    let mut newest = CheckpointId(0);
    for log in logs {
        let sync = log.control().sync();
        if sync.target.is_some() {
            return None;
        }
        newest = newest.max(sync.covered_by?);
    }
    Some(newest)
}

/// A named input of a running [`TestDriver`]: send records with event times, move its
/// watermark. Borrowed from the driver for a few calls: `driver.input("clicks")?.send(…)`.
pub struct TestInput<'a, T> {
    driver: &'a mut TestDriver,
    log: Arc<InputLog<T>>,
}

impl<T: Clone + Send + 'static> TestInput<'_, T> {
    /// Sends one record with event time `time`.
    pub fn send(&mut self, value: T, time: EventTime) -> &mut Self {
        self.send_all([(value, time)])
    }

    /// Sends records in order, each with its event time.
    pub fn send_all(&mut self, records: impl IntoIterator<Item = (T, EventTime)>) -> &mut Self {
        self.log
            .append(records.into_iter().map(|(v, t)| Entry::Record(v, t)));
        self.driver.dirty = true;
        self
    }

    /// Moves this input's watermark to `to`: it promises no more records at or before `to`
    /// (a later record at or before it is late). A watermark never goes back.
    pub fn advance_watermark(&mut self, to: EventTime) -> &mut Self {
        self.log.append([Entry::Watermark(to)]);
        self.driver.dirty = true;
        self
    }
}
