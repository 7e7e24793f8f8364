//! Count windows: a global window per key with a purging count trigger (it fires and clears every `n` elements).

use crate::aggregate::Aggregator;
use crate::key_groups::{decode_groups, snapshot_groups};
use crate::window::WindowResult;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use std::sync::Arc;
use watershed_core::{
    BoxError, Collector, EventTime, KeyBytes, KeyGroupSnapshot, KeyGroups, KeyedStream, Operator,
    Record, Stream, Window,
};

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// A keyed stream grouped into panes of `n` elements, waiting for its aggregation.
pub struct CountWindowedStream<T: Send + 'static, K> {
    keyed: KeyedStream<T, K>,
    n: u64,
}

impl<T, K> CountWindowedStream<T, K>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(keyed: KeyedStream<T, K>, n: u64) -> Self {
        assert!(n > 0, "count window size must be positive");
        CountWindowedStream { keyed, n }
    }

    /// Aggregates every `n` consecutive elements of a key (in arrival order) with `agg`.
    /// Results carry [`Window::GLOBAL`] and, as event time, the largest timestamp of the pane.
    pub fn aggregate<A: Aggregator<T>>(self, agg: A) -> Stream<WindowResult<K, A::Output>> {
        let name = self.keyed.auto_name("count-window");
        self.aggregate_named(&name, agg)
    }

    /// Like [`aggregate`](Self::aggregate), with an explicit node name for its state.
    pub fn aggregate_named<A: Aggregator<T>>(
        self,
        name: &str,
        agg: A,
    ) -> Stream<WindowResult<K, A::Output>> {
        let key = self.keyed.key_fn();
        let n = self.n;
        self.keyed.process(name, move |_| {
            CountWindowAggregate::new(key.clone(), n, agg.clone())
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Pane<Acc> {
    acc: Acc,
    count: u64,
    max_ts: EventTime,
}

/// Keyed count-window aggregation: fires and purges a key's pane at its `n`-th element. Event
/// time plays no part: the global window is never late and partial panes never fire.
pub struct CountWindowAggregate<T, K, A: Aggregator<T>> {
    key: KeyFn<T, K>,
    n: u64,
    agg: A,
    panes: FxHashMap<K, Pane<A::Acc>>,
}

impl<T, K: Hash + Eq, A: Aggregator<T>> CountWindowAggregate<T, K, A> {
    /// Panes of `n` elements per key (`n = 0` counts as 1).
    pub fn new(key: KeyFn<T, K>, n: u64, agg: A) -> Self {
        CountWindowAggregate {
            key,
            n: n.max(1),
            agg,
            panes: FxHashMap::default(),
        }
    }

    /// Keys holding a partial pane.
    pub fn open_panes(&self) -> usize {
        self.panes.len()
    }
}

impl<T, K, A> Operator for CountWindowAggregate<T, K, A>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
    A: Aggregator<T>,
{
    type In = T;
    type Out = WindowResult<K, A::Output>;

    fn process(
        &mut self,
        batch: Vec<Record<T>>,
        out: &mut Collector<Self::Out>,
    ) -> Result<(), BoxError> {
        for r in &batch {
            let key = (self.key)(&r.value);
            // Look up before inserting so that only a key's first element clones it.
            let pane = match self.panes.get_mut(&key) {
                Some(p) => p,
                None => self.panes.entry(key.clone()).or_insert_with(|| Pane {
                    acc: self.agg.create(),
                    count: 0,
                    max_ts: EventTime::MIN,
                }),
            };
            self.agg.add(&mut pane.acc, &r.value);
            pane.count += 1;
            pane.max_ts = pane.max_ts.max(r.timestamp);
            if pane.count >= self.n {
                // Purging trigger: the pane's state goes with its result.
                if let Some(pane) = self.panes.remove(&key) {
                    out.emit(Record::new(
                        WindowResult {
                            key,
                            window: Window::GLOBAL,
                            value: self.agg.finish(&pane.acc),
                            is_update: false,
                        },
                        pane.max_ts,
                    ));
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let panes: Vec<(&K, &Pane<A::Acc>)> = self.panes.iter().collect();
        Ok(Some(serde_json::to_vec(&panes)?))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let panes: Vec<(K, Pane<A::Acc>)> = serde_json::from_slice(state)?;
        self.panes = panes.into_iter().collect();
        Ok(())
    }

    /// Each key group as the blob [`snapshot`](Operator::snapshot) writes, restricted to the
    /// group's keys.
    fn snapshot_key_groups(
        &mut self,
        groups: &KeyGroups,
    ) -> Result<Option<KeyGroupSnapshot>, BoxError> {
        let split = snapshot_groups(groups, self.panes.iter(), |_, panes| {
            Ok(serde_json::to_vec(&panes)?)
        })?;
        Ok(Some(split))
    }

    fn restore_key_groups(
        &mut self,
        _groups: &KeyGroups,
        states: &[(u16, Bytes)],
    ) -> Result<(), BoxError> {
        let panes: Vec<(K, Pane<A::Acc>)> = decode_groups(states)?;
        self.panes = panes.into_iter().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Sum;

    #[test]
    fn w5_count_window_fires_every_n_elements_per_key_and_never_on_a_partial_pane() {
        let mut op =
            CountWindowAggregate::new(Arc::new(|v: &(u8, i64)| v.0), 3, Sum(|v: &(u8, i64)| v.1));
        let batch = (0..8)
            .map(|i| Record::new((i % 2, i as i64), EventTime(i as i64 * 10)))
            .collect();
        let mut out = Collector::default();
        op.process(batch, &mut out).unwrap();
        op.on_watermark(EventTime::MAX, &mut out).unwrap();
        let (results, _) = out.take();
        let got: Vec<(u8, i64, i64)> = results
            .iter()
            .map(|r| (r.value.key, r.value.value, r.timestamp.0))
            .collect();
        // Key 0 gets 0, 2, 4 then 6 (partial); key 1 gets 1, 3, 5 then 7 (partial).
        assert_eq!(got, vec![(0, 6, 40), (1, 9, 50)]);
        assert_eq!(op.open_panes(), 2);
        let snap = op.snapshot().unwrap().unwrap();
        let mut restored =
            CountWindowAggregate::new(Arc::new(|v: &(u8, i64)| v.0), 3, Sum(|v: &(u8, i64)| v.1));
        restored.restore(&snap).unwrap();
        let mut out = Collector::default();
        let batch = vec![
            Record::new((0, 100), EventTime(80)),
            Record::new((0, 1000), EventTime(90)),
        ];
        restored.process(batch, &mut out).unwrap();
        let (results, _) = out.take();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].value.value, 6 + 100 + 1000);
    }
}
