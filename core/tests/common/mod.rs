//! What the pipeline tests share: a numbered input, the test configuration, and a stateful
//! operator whose output shows any lost or doubled record or state update.
#![allow(dead_code)] // each test file uses a part

use std::collections::HashMap;
use std::time::Duration;
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;

/// `splits` splits of `per_split` records each: record `i` of split `s` is `i * 10 + s` at
/// event time `i`, in batches of 16.
pub fn numbers(splits: usize, per_split: u64) -> GeneratorSource<u64> {
    GeneratorSource::new(splits, per_split, |s, i| {
        Record::new(i * 10 + s as u64, EventTime(i as i64))
    })
    .batch_size(16)
}

/// A test pipeline on `store`: a checkpoint every 3 ms (so that checkpoints fall between
/// batches), parallelism 2, no signal handling.
pub fn config(id: &str, store: &CheckpointStore) -> PipelineConfig {
    PipelineConfig::new(id)
        .checkpoint_store(store.clone())
        .checkpoint_interval(Duration::from_millis(3))
        .parallelism(2)
        .handle_signals(false)
}

/// `v`, sorted: output of parallel tasks compared regardless of order.
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Keyed running count: emits `(key, count so far)` per record, so restored state shows in
/// every later output (a lost or doubled record or state update, or a count of 154 restored as
/// 254, gives wrong output from then on).
#[derive(Default)]
pub struct RunningCount {
    counts: HashMap<u64, u64>,
}

impl Operator for RunningCount {
    type In = u64;
    type Out = (u64, u64);

    fn process(
        &mut self,
        batch: Batch<u64>,
        out: &mut Collector<(u64, u64)>,
    ) -> Result<(), BoxError> {
        for r in batch {
            let key = r.value % 7;
            let c = self.counts.entry(key).or_default();
            *c += 1;
            out.emit(r.with_value((key, *c)));
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(serde_json::to_vec(&self.counts)?))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.counts = serde_json::from_slice(state)?;
        Ok(())
    }
}
