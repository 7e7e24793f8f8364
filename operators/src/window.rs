//! Keyed event-time window aggregation.

use crate::aggregate::Aggregator;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use watershed_core::{
    BoxError, Collector, EventTime, KeyedStream, Operator, Record, Stream, Window, WindowAssigner,
};

/// The result of one window for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult<K, V> {
    /// The key.
    pub key: K,
    /// The window, `[start, end)`.
    pub window: Window,
    /// The aggregated value.
    pub value: V,
}

/// Window operations on a [`KeyedStream`].
pub trait KeyedStreamOps<T: Send + 'static, K>: Sized {
    /// Groups each key's records into the windows `assigner` gives.
    fn window<W: WindowAssigner + Clone>(self, assigner: W) -> WindowedStream<T, K, W>;
}

impl<T: Send + 'static, K: Hash + Send + 'static> KeyedStreamOps<T, K> for KeyedStream<T, K> {
    fn window<W: WindowAssigner + Clone>(self, assigner: W) -> WindowedStream<T, K, W> {
        WindowedStream {
            keyed: self,
            assigner,
        }
    }
}

/// A keyed stream grouped into windows, waiting for its aggregation.
pub struct WindowedStream<T: Send + 'static, K, W> {
    keyed: KeyedStream<T, K>,
    assigner: W,
}

impl<T, K, W> WindowedStream<T, K, W>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    W: WindowAssigner + Clone,
{
    /// Aggregates each window of each key with `agg`; a result is emitted when the watermark
    /// reaches the window's end − 1, with the window's max timestamp as its event time.
    pub fn aggregate<A: Aggregator<T>>(self, agg: A) -> Stream<WindowResult<K, A::Output>> {
        let name = self.keyed.auto_name("window");
        self.aggregate_named(&name, agg)
    }

    /// Like [`aggregate`](Self::aggregate), with an explicit node name for its state.
    pub fn aggregate_named<A: Aggregator<T>>(
        self,
        name: &str,
        agg: A,
    ) -> Stream<WindowResult<K, A::Output>> {
        let key = self.keyed.key_fn();
        let assigner = self.assigner;
        self.keyed.process(name, move |_| {
            WindowAggregate::new(key.clone(), assigner.clone(), agg.clone())
        })
    }
}

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Keyed window aggregation with event-time firing.
///
/// Windows fire when the watermark reaches `end − 1` (SEMANTICS.md T6) and their state is
/// dropped then (allowed lateness 0, T7). A record whose every window has already fired is late:
/// it is counted in `watershed_late_records_dropped_total`.
pub struct WindowAggregate<T, K, W, A: Aggregator<T>> {
    key: KeyFn<T, K>,
    assigner: W,
    agg: A,
    // Ordered by (end, start) so firing pops a prefix.
    windows: BTreeMap<(EventTime, EventTime), HashMap<K, A::Acc>>,
    watermark: EventTime,
    scratch: Vec<Window>,
    late: u64,
}

impl<T, K, W, A: Aggregator<T>> WindowAggregate<T, K, W, A> {
    /// An operator keyed by `key`, windowed by `assigner`, aggregating with `agg`.
    pub fn new(key: KeyFn<T, K>, assigner: W, agg: A) -> Self {
        WindowAggregate {
            key,
            assigner,
            agg,
            windows: BTreeMap::new(),
            watermark: EventTime::MIN,
            scratch: Vec::new(),
            late: 0,
        }
    }

    /// Records dropped as late so far.
    pub fn late_records(&self) -> u64 {
        self.late
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot<K, Acc> {
    windows: Vec<(Window, Vec<(K, Acc)>)>,
}

impl<T, K, W, A> Operator for WindowAggregate<T, K, W, A>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    type In = T;
    type Out = WindowResult<K, A::Output>;

    fn process(
        &mut self,
        batch: Vec<Record<T>>,
        _out: &mut Collector<Self::Out>,
    ) -> Result<(), BoxError> {
        let mut late = 0;
        for r in &batch {
            self.scratch.clear();
            self.assigner.assign(r.timestamp, &mut self.scratch);
            let mut key = None;
            for w in &self.scratch {
                if w.max_timestamp() <= self.watermark {
                    continue;
                }
                let k = key.get_or_insert_with(|| (self.key)(&r.value));
                let per_key = self.windows.entry((w.end, w.start)).or_default();
                let acc = match per_key.get_mut(k) {
                    Some(acc) => acc,
                    None => per_key
                        .entry(k.clone())
                        .or_insert_with(|| self.agg.create()),
                };
                self.agg.add(acc, &r.value);
            }
            if key.is_none() {
                late += 1;
            }
        }
        if late > 0 {
            self.late += late;
            metrics::counter!("watershed_late_records_dropped_total").increment(late);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<Self::Out>,
    ) -> Result<(), BoxError> {
        self.watermark = self.watermark.max(watermark);
        while let Some(entry) = self.windows.first_entry() {
            let (end, start) = *entry.key();
            let window = Window::new(start, end);
            if window.max_timestamp() > self.watermark {
                break;
            }
            for (key, acc) in entry.remove() {
                let value = self.agg.finish(&acc);
                out.emit(Record::new(
                    WindowResult { key, window, value },
                    window.max_timestamp(),
                ));
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let snap = Snapshot {
            windows: self
                .windows
                .iter()
                .map(|(&(end, start), keys)| {
                    (Window::new(start, end), keys.iter().collect::<Vec<_>>())
                })
                .collect::<Vec<_>>(),
        };
        Ok(Some(serde_json::to_vec(&snap)?))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let snap: Snapshot<K, A::Acc> = serde_json::from_slice(state)?;
        self.windows = snap
            .windows
            .into_iter()
            .map(|(w, keys)| ((w.end, w.start), keys.into_iter().collect()))
            .collect();
        Ok(())
    }
}
