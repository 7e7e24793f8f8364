//! A conformance suite that any bounded [`Source`] implementation runs in its own tests: its
//! position means the next record, so a restore neither skips nor repeats one.
//!
//! The suite reads the whole input once as the reference, then for several cut points reads
//! up to the cut, stores the position through JSON as a checkpoint does, drops the instance (a
//! crash) and reads the rest with a fresh instance opened at that position. Per split, the
//! records before the cut followed by those after it must be the reference, exactly.

use crate::error::{Result, TestkitError};
use std::collections::BTreeMap;
use std::time::Duration;
use watershed_core::{BoxError, Source, SourceEvent};

/// The rules the suite checks, in the order it checks them.
pub const SOURCE_RULES: [&str; 3] = [
    "a bounded source finishes",
    "a position taken before the first poll restores to the start",
    "a restored position resumes at the next record: nothing skipped, nothing repeated",
];

/// Tells records apart.
type Describe<T> = Box<dyn Fn(&T) -> String>;

/// Records seen, per split, in split order.
type Seen = BTreeMap<String, Vec<String>>;

/// The conformance suite for a bounded source; see the module documentation.
pub struct SourceSuite<S: Source> {
    make: Box<dyn Fn() -> S>,
    describe: Describe<S::Item>,
    max_polls: usize,
}

impl<S: Source> SourceSuite<S> {
    /// A suite over fresh instances from `make` (each reading the same bounded input from its
    /// start) and `describe`, which tells records apart (two equal descriptions in one split
    /// count as the same record seen twice only if the input holds it once).
    pub fn new(
        make: impl Fn() -> S + 'static,
        describe: impl Fn(&S::Item) -> String + 'static,
    ) -> Self {
        SourceSuite {
            make: Box::new(make),
            describe: Box::new(describe),
            max_polls: 100_000,
        }
    }

    /// Polls allowed for one full read before the source counts as not finishing (default
    /// 100 000).
    pub fn max_polls(mut self, n: usize) -> Self {
        self.max_polls = n.max(1);
        self
    }

    /// Runs every rule. Returns the rules checked; the first broken one is an error naming it.
    pub async fn run(self) -> Result<Vec<&'static str>> {
        let mut source = self.open(None).await?;
        let (reference, polls) = self.read(&mut source, None).await?;
        step("close", source.close().await)?;

        let fresh = self.open(None).await?;
        let start = to_checkpoint(&fresh.position())?;
        drop(fresh);
        let mut restored = self.open(Some(from_checkpoint::<S>(&start)?)).await?;
        let (all, _) = self.read(&mut restored, None).await?;
        compare(
            SOURCE_RULES[1],
            "restored before the first poll",
            &reference,
            &Seen::new(),
            &all,
        )?;

        // Cuts after the first poll, in the middle and just before the end.
        let mut cuts = vec![1, polls / 2, polls.saturating_sub(1)];
        cuts.dedup();
        for cut in cuts.into_iter().filter(|&c| c > 0 && c < polls) {
            let mut first = self.open(None).await?;
            let (before, _) = self.read(&mut first, Some(cut)).await?;
            let position = to_checkpoint(&first.position())?;
            drop(first); // the crash, right after the checkpoint took the position
            let mut second = self.open(Some(from_checkpoint::<S>(&position)?)).await?;
            let (after, _) = self.read(&mut second, None).await?;
            let when = format!("restored after poll {cut} of {polls}");
            compare(SOURCE_RULES[2], &when, &reference, &before, &after)?;
        }
        Ok(SOURCE_RULES.to_vec())
    }

    async fn open(&self, restored: Option<S::Position>) -> Result<S> {
        let mut source = (self.make)();
        step("open", source.open(restored).await)?;
        Ok(source)
    }

    /// Reads until the source finishes, or for `limit` polls; returns what it read and how many
    /// polls that took.
    async fn read(&self, source: &mut S, limit: Option<usize>) -> Result<(Seen, usize)> {
        let mut seen = Seen::new();
        let wait = Duration::from_millis(10);
        for polls in 0..self.max_polls {
            if limit == Some(polls) {
                return Ok((seen, polls));
            }
            match step("poll", source.poll(wait).await)? {
                SourceEvent::Batch { split, records } => seen
                    .entry(split.to_string())
                    .or_default()
                    .extend(records.iter().map(|r| (self.describe)(&r.value))),
                SourceEvent::Finished => return Ok((seen, polls + 1)),
                _ => {}
            }
        }
        Err(TestkitError::Conformance {
            rule: SOURCE_RULES[0],
            detail: format!("not finished after {} polls", self.max_polls),
        })
    }
}

fn compare(
    rule: &'static str,
    when: &str,
    reference: &Seen,
    before: &Seen,
    after: &Seen,
) -> Result<()> {
    let splits = reference.keys().chain(before.keys()).chain(after.keys());
    for split in splits {
        let mut joined = before.get(split).cloned().unwrap_or_default();
        joined.extend(after.get(split).cloned().unwrap_or_default());
        let want = reference.get(split).cloned().unwrap_or_default();
        if joined != want {
            let at = want.iter().zip(&joined).take_while(|(a, b)| a == b).count();
            return Err(TestkitError::Conformance {
                rule,
                detail: format!(
                    "{when}: split `{split}` read {} records, not {}; first difference at record \
                     {at}: expected {:?}, read {:?}",
                    joined.len(),
                    want.len(),
                    want.get(at),
                    joined.get(at),
                ),
            });
        }
    }
    Ok(())
}

fn step<T>(what: &str, r: Result<T, BoxError>) -> Result<T> {
    r.map_err(|error| TestkitError::Connector {
        step: what.to_string(),
        error,
    })
}

fn to_checkpoint<P: serde::Serialize>(position: &P) -> Result<serde_json::Value> {
    serde_json::to_value(position).map_err(|e| TestkitError::Connector {
        step: "serializing the position".into(),
        error: e.into(),
    })
}

fn from_checkpoint<S: Source>(stored: &serde_json::Value) -> Result<S::Position> {
    serde_json::from_value(stored.clone()).map_err(|e| TestkitError::Connector {
        step: "deserializing the position".into(),
        error: e.into(),
    })
}
