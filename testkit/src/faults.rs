//! Failure-injecting wrappers for any [`Source`] or [`Sink`], to test that a pipeline recovers
//! exactly once from a failure at a chosen point.
//!
//! A [`Fault`] fires once: clones share its state, so a test hands a clone to each run of the
//! pipeline, the first run fails at the chosen point, and the next runs pass through.

use async_trait::async_trait;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use watershed_core::{
    Batch, BoxError, CheckpointId, DeadLetter, Sink, SinkContext, Source, SourceEvent,
};

/// Where a [`Fault`] fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailAt {
    /// On the poll (source) or write (sink) that takes the number of records past `n`, before
    /// the records are passed on.
    AfterRecords(u64),
    /// At the `k`-th `pre_commit` (1-based), before the sink pre-commits.
    PreCommit(u64),
    /// At the `k`-th `commit` (1-based), before the sink commits: recovery must commit it.
    Commit(u64),
    /// Right after the `k`-th `commit` (1-based) succeeded: recovery commits it again, which
    /// must deliver nothing twice.
    AfterCommit(u64),
}

/// How a [`Fault`] fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailWith {
    /// The call returns an error.
    Error,
    /// The call panics (the runtime reports the panic as the task's error).
    Panic,
}

#[derive(Debug, Default)]
struct Counts {
    records: u64,
    pre_commits: u64,
    commits: u64,
    fired: bool,
}

/// A failure that fires once at a chosen point; clones share it.
#[derive(Clone, Debug)]
pub struct Fault {
    at: FailAt,
    with: FailWith,
    counts: Arc<Mutex<Counts>>,
}

impl Fault {
    /// A fault that fails `with` an error or a panic at `at`.
    pub fn new(at: FailAt, with: FailWith) -> Fault {
        Fault {
            at,
            with,
            counts: Arc::default(),
        }
    }

    /// A fault that returns an error at `at`.
    pub fn error(at: FailAt) -> Fault {
        Fault::new(at, FailWith::Error)
    }

    /// A fault that panics at `at`.
    pub fn panic(at: FailAt) -> Fault {
        Fault::new(at, FailWith::Panic)
    }

    /// A fault that never fires: the failure-free run of a test that otherwise wraps its source
    /// or sink in a fault, so both runs use the same types.
    pub fn never() -> Fault {
        // No count of records reaches past u64::MAX.
        Fault::error(FailAt::AfterRecords(u64::MAX))
    }

    /// True once the fault has fired (so a test can check the failure it meant happened).
    pub fn fired(&self) -> bool {
        self.counts().fired
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // A poisoned lock means the fault's own panic: the counts are still right.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one event and fails if it is the chosen one (only once).
    fn check(&self, event: FailAt) -> Result<(), BoxError> {
        let message = {
            let mut c = self.counts();
            let hit = match (event, self.at) {
                (FailAt::AfterRecords(n), FailAt::AfterRecords(limit)) => {
                    c.records += n;
                    c.records > limit
                }
                (FailAt::PreCommit(_), FailAt::PreCommit(k)) => {
                    c.pre_commits += 1;
                    c.pre_commits == k
                }
                (FailAt::Commit(_), FailAt::Commit(k) | FailAt::AfterCommit(k)) => {
                    c.commits += 1;
                    matches!(self.at, FailAt::Commit(_)) && c.commits == k
                }
                (FailAt::AfterCommit(_), FailAt::AfterCommit(k)) => c.commits == k,
                _ => false,
            };
            if !hit || c.fired {
                return Ok(());
            }
            c.fired = true;
            format!("injected failure at {:?}", self.at)
        };
        match self.with {
            FailWith::Error => Err(message.into()),
            FailWith::Panic => panic!("{message}"),
        }
    }
}

/// A source that fails as its [`Fault`] says, and otherwise is `S`.
pub struct FailingSource<S> {
    inner: S,
    fault: Fault,
    pause: Duration,
}

impl<S: Source> FailingSource<S> {
    /// Wraps `source`; only [`FailAt::AfterRecords`] applies to a source.
    pub fn new(source: S, fault: Fault) -> Self {
        FailingSource {
            inner: source,
            fault,
            pause: Duration::ZERO,
        }
    }

    /// Sleeps `pause` before each poll, so that a fast bounded source does not finish before
    /// the first checkpoint: checkpoints then fall between batches, and a failure lands at a
    /// point after some checkpoint and before others.
    pub fn pause_before_polls(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

#[async_trait]
impl<S: Source> Source for FailingSource<S> {
    type Item = S::Item;
    type Position = S::Position;

    async fn open(&mut self, restored: Option<S::Position>) -> Result<(), BoxError> {
        self.inner.open(restored).await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<S::Item>, BoxError> {
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
        let event = self.inner.poll(max_wait).await?;
        if let SourceEvent::Batch { records, .. } = &event {
            self.fault
                .check(FailAt::AfterRecords(records.len() as u64))?;
        }
        Ok(event)
    }

    fn position(&self) -> S::Position {
        self.inner.position()
    }

    async fn checkpoint_complete(
        &mut self,
        id: CheckpointId,
        position: &S::Position,
    ) -> Result<(), BoxError> {
        self.inner.checkpoint_complete(id, position).await
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.inner.close().await
    }
}

/// A sink that fails as its [`Fault`] says, and otherwise is `S`.
pub struct FailingSink<S> {
    inner: S,
    fault: Fault,
}

impl<S: Sink> FailingSink<S> {
    /// Wraps `sink`.
    pub fn new(sink: S, fault: Fault) -> Self {
        FailingSink { inner: sink, fault }
    }
}

#[async_trait]
impl<S: Sink> Sink for FailingSink<S> {
    type Item = S::Item;
    type Handle = S::Handle;

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
        self.inner.open(ctx).await
    }

    async fn write(&mut self, batch: Batch<S::Item>) -> Result<(), BoxError> {
        self.fault.check(FailAt::AfterRecords(batch.len() as u64))?;
        self.inner.write(batch).await
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<S::Handle, BoxError> {
        self.fault.check(FailAt::PreCommit(0))?;
        self.inner.pre_commit(checkpoint).await
    }

    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: S::Handle,
    ) -> Result<(), BoxError> {
        self.fault.check(FailAt::Commit(0))?;
        self.inner.commit(checkpoint, handle).await?;
        self.fault.check(FailAt::AfterCommit(0))
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        self.inner.take_rejected()
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        self.inner.abort().await
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.inner.close().await
    }
}
