//! The builder API: [`KeyedStreamOps`] turns a keyed stream into a [`WindowedStream`], whose
//! methods choose the aggregation and build the window operator for each parallel instance.

use super::{WindowAggregate, WindowAggregateWithLate, WindowResult};
use crate::aggregate::{Aggregator, Process, Reduce};
use crate::stateless::StreamOps;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::time::Duration;
use watershed_core::time::duration_millis;
use watershed_core::{KeyBytes, KeyedStream, Stream, WindowAssigner};

/// Window operations on a [`KeyedStream`].
pub trait KeyedStreamOps<T: Send + 'static, K>: Sized {
    /// Groups each key's records into the windows `assigner` gives.
    fn window<W: WindowAssigner + Clone>(self, assigner: W) -> WindowedStream<T, K, W>;

    /// Groups each key's records into consecutive panes of `n` elements (a global window with a
    /// count trigger that purges). A partial pane never fires. Panics if `n`
    /// is 0.
    fn count_window(self, n: u64) -> crate::count_window::CountWindowedStream<T, K>;

    /// Passes the first record of each key and drops later records of that key within `ttl`
    /// of it in event time (see [`Dedupe`](crate::Dedupe)).
    fn dedupe(self, ttl: Duration) -> Stream<T>;

    /// [`dedupe`](Self::dedupe) with an explicit node name for its state.
    fn dedupe_named(self, name: &str, ttl: Duration) -> Stream<T>;
}

impl<T, K> KeyedStreamOps<T, K> for KeyedStream<T, K>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
{
    fn window<W: WindowAssigner + Clone>(self, assigner: W) -> WindowedStream<T, K, W> {
        WindowedStream {
            keyed: self,
            assigner,
            lateness: 0,
        }
    }

    fn count_window(self, n: u64) -> crate::count_window::CountWindowedStream<T, K> {
        crate::count_window::CountWindowedStream::new(self, n)
    }

    fn dedupe(self, ttl: Duration) -> Stream<T> {
        let name = self.auto_name("dedupe");
        self.dedupe_named(&name, ttl)
    }

    fn dedupe_named(self, name: &str, ttl: Duration) -> Stream<T> {
        let key = self.key_fn();
        self.process(name, move |_| crate::dedupe::Dedupe::new(key.clone(), ttl))
    }
}

/// A keyed stream grouped into windows, waiting for its aggregation.
pub struct WindowedStream<T: Send + 'static, K, W> {
    keyed: KeyedStream<T, K>,
    assigner: W,
    lateness: i64,
}

impl<T, K, W> WindowedStream<T, K, W>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
    W: WindowAssigner + Clone,
{
    /// Keeps each window's state for `lateness` after it fires: elements arriving meanwhile
    /// update it and fire it again (results flagged `is_update`). Default 0.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = duration_millis(lateness);
        self
    }

    /// Aggregates each window of each key with `agg`; a result is emitted when the watermark
    /// reaches the window's end − 1, with the window's max timestamp as its event time. Records
    /// too late for any window are counted in `watershed_late_records_total{action="dropped"}`; use
    /// [`aggregate_with_late`](Self::aggregate_with_late) to keep them.
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
        let (assigner, lateness) = (self.assigner, self.lateness);
        self.keyed.process(name, move |_| {
            WindowAggregate::new(key.clone(), assigner.clone(), agg.clone())
                .with_allowed_lateness(lateness)
        })
    }

    /// Like [`aggregate`](Self::aggregate), and also returns the late side output: the records
    /// that arrived after all their windows were past allowed lateness (`ts + L ≤ watermark`).
    pub fn aggregate_with_late<A: Aggregator<T>>(
        self,
        agg: A,
    ) -> (Stream<WindowResult<K, A::Output>>, Stream<T>) {
        let name = self.keyed.auto_name("window");
        self.aggregate_with_late_named(&name, agg)
    }

    /// Like [`aggregate_with_late`](Self::aggregate_with_late), with an explicit node name.
    pub fn aggregate_with_late_named<A: Aggregator<T>>(
        self,
        name: &str,
        agg: A,
    ) -> (Stream<WindowResult<K, A::Output>>, Stream<T>) {
        let key = self.keyed.key_fn();
        let (assigner, lateness) = (self.assigner, self.lateness);
        self.keyed
            .process(name, move |_| {
                WindowAggregateWithLate::new(key.clone(), assigner.clone(), agg.clone())
                    .with_allowed_lateness(lateness)
            })
            .split()
    }

    /// Folds each window's elements with `f(acc, element)` (associative, for sessions).
    pub fn reduce<F>(self, f: F) -> Stream<WindowResult<K, T>>
    where
        T: Clone + Serialize + DeserializeOwned,
        F: Fn(T, &T) -> T + Clone + Send + Sync + 'static,
    {
        // A fired window always holds at least one element, so the fold is always Some.
        self.aggregate(Reduce(f)).filter_map(|r| {
            let WindowResult {
                key,
                window,
                value,
                is_update,
            } = r;
            value.map(|value| WindowResult {
                key,
                window,
                value,
                is_update,
            })
        })
    }

    /// Hands all elements of each window to `f` when it fires. State grows with the window's
    /// element count; prefer [`aggregate`](Self::aggregate) when an incremental form exists.
    pub fn process<O, F>(self, f: F) -> Stream<WindowResult<K, O>>
    where
        T: Clone + Serialize + DeserializeOwned,
        O: Send + 'static,
        F: Fn(&[T]) -> O + Clone + Send + Sync + 'static,
    {
        self.aggregate(Process(f))
    }
}
