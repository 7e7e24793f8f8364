use crate::checkpoint::CheckpointId;
use crate::error::BoxError;
use crate::record::{Batch, Record};
use crate::sink::Sink;
use crate::time::EventTime;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Shared<T> {
    committed: Vec<Record<T>>,
    committed_ids: BTreeSet<CheckpointId>,
    commits: u64,
}

/// Pending records of one checkpoint, carried in the checkpoint itself so that a restored
/// pipeline can commit them even though the process that wrote them is gone.
#[derive(Debug, Serialize, Deserialize)]
pub struct CollectHandle<T> {
    records: Vec<(T, i64)>,
}

/// An exactly-once in-memory sink for tests: records become visible in
/// [`values`](CollectSink::values) only when their checkpoint completes, and committing the same
/// checkpoint twice (as recovery does) adds nothing. Clones share the same collection, so a test
/// can hand one clone to a pipeline and read another, across several runs.
#[derive(Debug)]
pub struct CollectSink<T> {
    shared: Arc<Mutex<Shared<T>>>,
    epoch: Vec<(T, i64)>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink {
            shared: self.shared.clone(),
            epoch: Vec::new(),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink {
            shared: Arc::new(Mutex::new(Shared {
                committed: Vec::new(),
                committed_ids: BTreeSet::new(),
                commits: 0,
            })),
            epoch: Vec::new(),
        }
    }
}

impl<T: Clone> CollectSink<T> {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Committed records, in commit order.
    pub fn records(&self) -> Vec<Record<T>> {
        self.shared.lock().expect("collect lock").committed.clone()
    }

    /// Committed values, in commit order.
    pub fn values(&self) -> Vec<T> {
        let g = self.shared.lock().expect("collect lock");
        g.committed.iter().map(|r| r.value.clone()).collect()
    }

    /// How many `commit` calls made data visible (re-commits of a known checkpoint excluded).
    pub fn commits(&self) -> u64 {
        self.shared.lock().expect("collect lock").commits
    }
}

#[async_trait]
impl<T> Sink for CollectSink<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Item = T;
    type Handle = CollectHandle<T>;

    async fn write(&mut self, batch: Batch<T>) -> Result<(), BoxError> {
        self.epoch
            .extend(batch.into_iter().map(|r| (r.value, r.timestamp.0)));
        Ok(())
    }

    async fn pre_commit(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> Result<CollectHandle<T>, BoxError> {
        Ok(CollectHandle {
            records: std::mem::take(&mut self.epoch),
        })
    }

    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: CollectHandle<T>,
    ) -> Result<(), BoxError> {
        let mut g = self.shared.lock().expect("collect lock");
        if !g.committed_ids.insert(checkpoint) {
            return Ok(());
        }
        g.commits += 1;
        g.committed.extend(
            handle
                .records
                .into_iter()
                .map(|(v, ts)| Record::new(v, EventTime(ts))),
        );
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        self.epoch.clear();
        Ok(())
    }
}
