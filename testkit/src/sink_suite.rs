//! An exactly-once conformance suite that any [`Sink`] implementation runs in its own tests.
//!
//! The suite drives sink instances by hand, as the runtime's two-phase commit does, including
//! the crashes between its steps: handles go through JSON as they do through a checkpoint, and a
//! "crash" drops an instance and opens a fresh one with [`SinkContext::restored_from`]. Records
//! are numbered; the connector says how to make the record numbered `n` and how to read back
//! the numbers that are visible at its destination.
//!
//! As in a pipeline, every instance after the first is opened restored from the newest
//! completed checkpoint (a sink may name its output after it), and checkpoint ids only grow.

use crate::error::{Result, TestkitError};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use watershed_core::{BoxError, CheckpointId, Record, Sink, SinkContext};

type Visible = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<u64>, BoxError>> + Send>>>;

/// The rules the suite checks, in the order it checks them.
pub const SINK_RULES: [&str; 6] = [
    "nothing written is visible before its epoch commits",
    "pre_commit then commit delivers an epoch exactly once",
    "commit is idempotent: repeated by a fresh instance after a crash, it delivers nothing more",
    "a pre-committed epoch whose commit never ran is committed by a new instance given its handle",
    "an aborted epoch, or one not pre-committed before a crash, is never delivered",
    "records the sink refuses (take_rejected) are not delivered",
];

/// The exactly-once conformance suite for a sink; see the module documentation.
///
/// ```no_run
/// # async fn f() -> watershed_testkit::Result<()> {
/// use watershed_core::connectors::CollectSink;
/// use watershed_testkit::SinkSuite;
/// let shared = CollectSink::<u64>::new();
/// let reader = shared.clone();
/// SinkSuite::new(move || shared.clone(), |n| n, move || {
///     let values = reader.values();
///     async move { Ok(values) }
/// })
/// .run()
/// .await?;
/// # Ok(()) }
/// ```
pub struct SinkSuite<S: Sink> {
    make: Box<dyn Fn() -> S>,
    item: Box<dyn Fn(u64) -> S::Item>,
    visible: Visible,
    refused: Option<Box<dyn Fn(u64) -> S::Item>>,
    ctx: SinkContext,
}

impl<S: Sink> SinkSuite<S> {
    /// A suite over sinks from `make` (each call a new instance writing to the same, initially
    /// empty destination), records from `item` (record `n` must be told apart from the others
    /// once visible), and `visible`, which reads the numbers of every record visible at the
    /// destination (once per occurrence: a duplicate must show twice).
    pub fn new<V, Fut>(
        make: impl Fn() -> S + 'static,
        item: impl Fn(u64) -> S::Item + 'static,
        visible: V,
    ) -> Self
    where
        V: Fn() -> Fut + 'static,
        Fut: Future<Output = Result<Vec<u64>, BoxError>> + Send + 'static,
    {
        SinkSuite {
            make: Box::new(make),
            item: Box::new(item),
            visible: Box::new(move || Box::pin(visible())),
            refused: None,
            ctx: SinkContext::new("conformance", "sink"),
        }
    }

    /// How to make a record numbered `n` that the sink refuses in `write` (for the last rule);
    /// without it, that rule is not checked.
    pub fn refused_item(mut self, item: impl Fn(u64) -> S::Item + 'static) -> Self {
        self.refused = Some(Box::new(item));
        self
    }

    /// Runs every rule, in order, on one destination. Returns the rules checked; the first
    /// broken one is an error naming it.
    pub async fn run(self) -> Result<Vec<&'static str>> {
        let mut delivered = Vec::new();
        self.delivers_exactly_once(&mut delivered).await?;
        self.commit_is_idempotent(&mut delivered).await?;
        self.recovery_commits(&mut delivered).await?;
        self.aborted_is_never_delivered(&mut delivered).await?;
        let mut checked = SINK_RULES[..5].to_vec();
        if self.refused.is_some() {
            self.refused_are_not_delivered(&mut delivered).await?;
            checked.push(SINK_RULES[5]);
        }
        Ok(checked)
    }

    async fn delivers_exactly_once(&self, delivered: &mut Vec<u64>) -> Result<()> {
        let mut sink = self.open(None).await?;
        self.write(&mut sink, &[1, 2]).await?;
        self.write(&mut sink, &[3]).await?;
        self.expect(SINK_RULES[0], delivered, "after write").await?;
        let handle = step("pre_commit", sink.pre_commit(CheckpointId(1)).await)?;
        self.expect(SINK_RULES[0], delivered, "after pre_commit")
            .await?;
        step("commit", sink.commit(CheckpointId(1), handle).await)?;
        delivered.extend([1, 2, 3]);
        self.expect(SINK_RULES[1], delivered, "after commit")
            .await?;
        close(sink).await
    }

    async fn commit_is_idempotent(&self, delivered: &mut Vec<u64>) -> Result<()> {
        let mut sink = self.open(Some(CheckpointId(1))).await?;
        self.write(&mut sink, &[4, 5]).await?;
        let handle = step("pre_commit", sink.pre_commit(CheckpointId(2)).await)?;
        let stored = to_checkpoint(&handle)?;
        step("commit", sink.commit(CheckpointId(2), handle).await)?;
        delivered.extend([4, 5]);
        drop(sink); // the crash: after the commit, before the checkpoint knew of it
        let mut again = self.open(Some(CheckpointId(2))).await?;
        let handle = from_checkpoint::<S>(&stored)?;
        step(
            "repeated commit",
            again.commit(CheckpointId(2), handle).await,
        )?;
        self.expect(SINK_RULES[2], delivered, "after the repeated commit")
            .await?;
        close(again).await
    }

    async fn recovery_commits(&self, delivered: &mut Vec<u64>) -> Result<()> {
        let mut sink = self.open(Some(CheckpointId(2))).await?;
        self.write(&mut sink, &[6, 7]).await?;
        let handle = step("pre_commit", sink.pre_commit(CheckpointId(3)).await)?;
        let stored = to_checkpoint(&handle)?;
        drop((sink, handle)); // the crash: pre-committed, never committed
        self.expect(SINK_RULES[3], delivered, "after the crash")
            .await?;
        let mut next = self.open(Some(CheckpointId(3))).await?;
        let handle = from_checkpoint::<S>(&stored)?;
        step(
            "recovery commit",
            next.commit(CheckpointId(3), handle).await,
        )?;
        delivered.extend([6, 7]);
        self.expect(SINK_RULES[3], delivered, "after the recovery commit")
            .await?;
        close(next).await
    }

    async fn aborted_is_never_delivered(&self, delivered: &mut Vec<u64>) -> Result<()> {
        let mut sink = self.open(Some(CheckpointId(3))).await?;
        self.write(&mut sink, &[8, 9]).await?;
        step("abort", sink.abort().await)?;
        self.write(&mut sink, &[10]).await?;
        let handle = step("pre_commit", sink.pre_commit(CheckpointId(4)).await)?;
        step("commit", sink.commit(CheckpointId(4), handle).await)?;
        delivered.push(10);
        self.expect(SINK_RULES[4], delivered, "after abort, then a commit")
            .await?;
        self.write(&mut sink, &[11]).await?;
        drop(sink); // the crash: written, not pre-committed
        let mut next = self.open(Some(CheckpointId(4))).await?;
        self.write(&mut next, &[12]).await?;
        let handle = step("pre_commit", next.pre_commit(CheckpointId(5)).await)?;
        step("commit", next.commit(CheckpointId(5), handle).await)?;
        delivered.push(12);
        self.expect(SINK_RULES[4], delivered, "after a crash before pre_commit")
            .await?;
        close(next).await
    }

    async fn refused_are_not_delivered(&self, delivered: &mut Vec<u64>) -> Result<()> {
        let Some(refused) = &self.refused else {
            return Ok(());
        };
        let mut sink = self.open(Some(CheckpointId(5))).await?;
        let batch = vec![
            Record::new((self.item)(13), watershed_core::EventTime(13)),
            Record::new(refused(14), watershed_core::EventTime(14)),
        ];
        step("write", sink.write(batch).await)?;
        let mut rejected = sink.take_rejected();
        let handle = step("pre_commit", sink.pre_commit(CheckpointId(6)).await)?;
        rejected.extend(sink.take_rejected());
        if rejected.len() != 1 {
            return Err(broken(
                SINK_RULES[5],
                format!("take_rejected returned {} records, not 1", rejected.len()),
            ));
        }
        step("commit", sink.commit(CheckpointId(6), handle).await)?;
        delivered.push(13);
        self.expect(SINK_RULES[5], delivered, "after the commit")
            .await?;
        close(sink).await
    }

    async fn open(&self, restored: Option<CheckpointId>) -> Result<S> {
        let mut sink = (self.make)();
        let ctx = match restored {
            Some(id) => self.ctx.clone().restored_from(id),
            None => self.ctx.clone(),
        };
        step("open", sink.open(&ctx).await)?;
        Ok(sink)
    }

    async fn write(&self, sink: &mut S, numbers: &[u64]) -> Result<()> {
        let batch = numbers
            .iter()
            .map(|&n| Record::new((self.item)(n), watershed_core::EventTime(n as i64)))
            .collect();
        step("write", sink.write(batch).await)
    }

    /// Checks that exactly `delivered` is visible, each once.
    async fn expect(&self, rule: &'static str, delivered: &[u64], when: &str) -> Result<()> {
        let seen = step("reading what is visible", (self.visible)().await)?;
        let (want, got) = (counts(delivered), counts(&seen));
        if want == got {
            return Ok(());
        }
        Err(broken(
            rule,
            format!("{when}: expected visible {want:?} (number: times), found {got:?}"),
        ))
    }
}

fn counts(numbers: &[u64]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for n in numbers {
        *m.entry(*n).or_insert(0) += 1;
    }
    m
}

fn broken(rule: &'static str, detail: String) -> TestkitError {
    TestkitError::Conformance { rule, detail }
}

fn step<T>(what: &str, r: Result<T, BoxError>) -> Result<T> {
    r.map_err(|error| TestkitError::Connector {
        step: what.to_string(),
        error,
    })
}

async fn close<S: Sink>(mut sink: S) -> Result<()> {
    step("close", sink.close().await)
}

/// The handle as the checkpoint stores it.
fn to_checkpoint<H: serde::Serialize>(handle: &H) -> Result<serde_json::Value> {
    serde_json::to_value(handle).map_err(|e| TestkitError::Connector {
        step: "serializing the handle".into(),
        error: e.into(),
    })
}

fn from_checkpoint<S: Sink>(stored: &serde_json::Value) -> Result<S::Handle> {
    serde_json::from_value(stored.clone()).map_err(|e| TestkitError::Connector {
        step: "deserializing the handle".into(),
        error: e.into(),
    })
}
