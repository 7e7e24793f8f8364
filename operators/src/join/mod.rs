//! Stream joins: interval joins, window joins and updating-table (changelog) joins of two keyed
//! streams.
//!
//! Each join runs as one keyed operator over the union of both inputs, tagged
//! [`Either::Left`] / [`Either::Right`]: both sides of a key meet in the same operator
//! instance, the operator's watermark is the minimum of both inputs' (an idle input does not hold it back), and
//! checkpoint barriers are aligned across both, so a join's state is consistent with both
//! inputs' positions. The user guide with runnable snippets is `docs/joins.md`.
//!
//! ```
//! use watershed_core::{EventTime, Stream};
//! use watershed_operators::prelude::*;
//!
//! /// Clicks that follow an impression of the same ad within 10 s.
//! fn attributed(impressions: Stream<(u32, u64)>, clicks: Stream<(u32, u64)>) -> Stream<((u32, u64), (u32, u64))> {
//!     impressions
//!         .key_by(|i| i.0)
//!         .interval_join(clicks.key_by(|c| c.0))
//!         .between(0, 10_000)
//!         .inner()
//! }
//! ```

mod interval;
mod table;
mod window;

pub use interval::IntervalJoin;
pub use table::TableJoin;
pub use window::{CoGrouped, JoinPanes, WindowJoined};

use crate::aggregate::Aggregator;
use crate::stateless::StreamOps;
use crate::window::KeyedStreamOps;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::sync::Arc;
use thiserror::Error;
use watershed_core::{
    Collector, Either, FnOperator, KeyBytes, KeyedStream, Record, Stream, WindowAssigner,
};

/// An invalid join configuration.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JoinConfigError {
    /// The interval's lower bound is above its upper bound: nothing could ever match.
    #[error("interval join bounds [{lower}, {upper}] ms are empty: lower must be ≤ upper")]
    EmptyInterval {
        /// The lower bound, ms.
        lower: i64,
        /// The upper bound, ms.
        upper: i64,
    },
}

/// Joins on a [`KeyedStream`]; the other input is keyed the same way (same key type, its own
/// key function).
pub trait JoinOps<L: Send + 'static, K>: Sized {
    /// An event-time interval join with `right`: pairs `(l, r)` with equal keys and
    /// `l.ts + lower ≤ r.ts ≤ l.ts + upper` (bounds from
    /// [`between`](IntervalJoinBuilder::between), default `[0, 0]`).
    fn interval_join<R: Send + 'static>(
        self,
        right: KeyedStream<R, K>,
    ) -> IntervalJoinBuilder<L, R, K>;

    /// A window join with `right`: pairs `(l, r)` with equal keys in the same window of
    /// `assigner` (tumbling, sliding, session), emitted when the window fires.
    fn window_join<R: Send + 'static, W: WindowAssigner + Clone>(
        self,
        right: KeyedStream<R, K>,
        assigner: W,
    ) -> WindowJoinBuilder<L, R, K, W>;

    /// A join with the table a changelog describes (KStream–KTable): `value(c)` is the new
    /// value of `c`'s key, `None` deletes it; each element of this stream joins its key's
    /// value at the moment it arrives.
    fn join_table<C, V, F>(
        self,
        changelog: KeyedStream<C, K>,
        value: F,
    ) -> TableJoinBuilder<L, C, K, V>
    where
        C: Send + 'static,
        F: Fn(C) -> Option<V> + Send + Sync + 'static;
}

impl<L, K> JoinOps<L, K> for KeyedStream<L, K>
where
    L: Send + 'static,
    K: Hash + KeyBytes + Send + 'static,
{
    fn interval_join<R: Send + 'static>(
        self,
        right: KeyedStream<R, K>,
    ) -> IntervalJoinBuilder<L, R, K> {
        IntervalJoinBuilder {
            inputs: Inputs::new(self, right),
            lower: 0,
            upper: 0,
        }
    }

    fn window_join<R: Send + 'static, W: WindowAssigner + Clone>(
        self,
        right: KeyedStream<R, K>,
        assigner: W,
    ) -> WindowJoinBuilder<L, R, K, W> {
        WindowJoinBuilder {
            inputs: Inputs::new(self, right),
            assigner,
        }
    }

    fn join_table<C, V, F>(
        self,
        changelog: KeyedStream<C, K>,
        value: F,
    ) -> TableJoinBuilder<L, C, K, V>
    where
        C: Send + 'static,
        F: Fn(C) -> Option<V> + Send + Sync + 'static,
    {
        TableJoinBuilder {
            inputs: Inputs::new(self, changelog),
            value: Arc::new(value),
        }
    }
}

/// Both inputs of a join and the settings every join shares.
struct Inputs<L: Send + 'static, R: Send + 'static, K> {
    left: KeyedStream<L, K>,
    right: KeyedStream<R, K>,
    parallelism: Option<usize>,
    name: Option<String>,
}

impl<L: Send + 'static, R: Send + 'static, K: Hash + KeyBytes + Send + 'static> Inputs<L, R, K> {
    fn new(left: KeyedStream<L, K>, right: KeyedStream<R, K>) -> Self {
        Inputs {
            left,
            right,
            parallelism: None,
            name: None,
        }
    }

    fn name(&self, base: &str) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.left.auto_name(base),
        }
    }

    /// The union of both inputs, tagged by side and keyed by the side's key function. The tags
    /// are applied in the inputs' own tasks (parallelism 1 chains without a shuffle), so the
    /// only shuffle is the join's.
    fn union(self, name: &str) -> KeyedStream<Either<L, R>, K> {
        let (kl, kr) = (self.left.key_fn(), self.right.key_fn());
        let left = self
            .left
            .parallelism(1)
            .process(&format!("{name}.left"), |_| {
                FnOperator::new(|batch: Vec<Record<L>>, out: &mut Collector<Either<L, R>>| {
                    out.emit_batch(batch.into_iter().map(|r| r.map(Either::Left)).collect())
                })
            });
        let right = self
            .right
            .parallelism(1)
            .process(&format!("{name}.right"), |_| {
                FnOperator::new(|batch: Vec<Record<R>>, out: &mut Collector<Either<L, R>>| {
                    out.emit_batch(batch.into_iter().map(|r| r.map(Either::Right)).collect())
                })
            });
        let keyed = left.union(right).key_by(move |e: &Either<L, R>| match e {
            Either::Left(l) => kl(l),
            Either::Right(r) => kr(r),
        });
        match self.parallelism {
            Some(n) => keyed.parallelism(n),
            None => keyed,
        }
    }
}

macro_rules! shared_settings {
    () => {
        /// Parallelism of the join operator (default: the pipeline's). The parallelism set on
        /// the input keyed streams is not used: the join shuffles both inputs once, by key.
        pub fn parallelism(mut self, n: usize) -> Self {
            self.inputs.parallelism = Some(n.max(1));
            self
        }

        /// The join's node name, which keys its state in checkpoints (default: generated from
        /// the order operators are added; name it to keep state across pipeline changes).
        /// Its inputs are tagged by nodes `{name}.left` and `{name}.right`.
        pub fn named(mut self, name: &str) -> Self {
            self.inputs.name = Some(name.to_string());
            self
        }
    };
}

/// An interval join under construction; finish it with [`inner`](Self::inner) or
/// [`left_outer`](Self::left_outer).
pub struct IntervalJoinBuilder<L: Send + 'static, R: Send + 'static, K> {
    inputs: Inputs<L, R, K>,
    lower: i64,
    upper: i64,
}

impl<L, R, K> IntervalJoinBuilder<L, R, K>
where
    L: Clone + Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
{
    shared_settings!();

    /// Bounds in milliseconds, both inclusive: `l.ts + lower ≤ r.ts ≤ l.ts + upper`. Negative
    /// values reach back in time (`between(-5_000, 0)`: rights up to 5 s before the left).
    /// Panics when `lower > upper`, a configuration bug; [`try_between`](Self::try_between)
    /// returns the error instead.
    pub fn between(self, lower: i64, upper: i64) -> Self {
        self.try_between(lower, upper)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An unbounded join, `between(i64::MIN, i64::MAX)`: every pair of a key once, whatever
    /// the order and lateness of the elements; state is only dropped when both inputs end, so
    /// it grows with the input (for bounded inputs, or keys that stop).
    pub fn unbounded(mut self) -> Self {
        self.lower = i64::MIN;
        self.upper = i64::MAX;
        self
    }

    /// [`between`](Self::between), with an error for empty bounds.
    pub fn try_between(mut self, lower: i64, upper: i64) -> Result<Self, JoinConfigError> {
        if lower > upper {
            return Err(JoinConfigError::EmptyInterval { lower, upper });
        }
        self.lower = lower;
        self.upper = upper;
        Ok(self)
    }

    /// Every matching pair once, stamped with the later of the two timestamps.
    pub fn inner(self) -> Stream<(L, R)> {
        self.build(false)
            .filter_map(|(l, r): (L, Option<R>)| r.map(|r| (l, r)))
    }

    /// Every matching pair once, and each left element that matched nothing once, as
    /// `(l, None)`, when the watermark passes `l.ts + upper` (stamped `l.ts + max(upper, 0)`).
    pub fn left_outer(self) -> Stream<(L, Option<R>)> {
        self.build(true)
    }

    fn build(self, outer: bool) -> Stream<(L, Option<R>)> {
        let name = self.inputs.name("interval-join");
        let (lower, upper) = (self.lower, self.upper);
        let keyed = self.inputs.union(&name);
        let key = keyed.key_fn();
        keyed.process(&name, move |_| {
            let op = IntervalJoin::new(key.clone(), lower, upper);
            if outer {
                op.left_outer()
            } else {
                op
            }
        })
    }
}

/// A window join under construction; finish it with [`inner`](Self::inner) or
/// [`co_group`](Self::co_group).
pub struct WindowJoinBuilder<L: Send + 'static, R: Send + 'static, K, W> {
    inputs: Inputs<L, R, K>,
    assigner: W,
}

impl<L, R, K, W> WindowJoinBuilder<L, R, K, W>
where
    L: Clone + Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
    W: WindowAssigner + Clone,
{
    shared_settings!();

    /// Every `(l, r)` pair of each key and window once, when the window fires, stamped with the
    /// window's max timestamp.
    pub fn inner(self) -> Stream<WindowJoined<L, R>> {
        self.co_group()
            .flat_map(|r: CoGrouped<K, L, R>| window::pairs(r.window, r.value))
    }

    /// Both sides' elements of each key and window, when the window fires (also windows that
    /// only one side reached: the basis of outer window joins).
    pub fn co_group(self) -> Stream<CoGrouped<K, L, R>> {
        let name = self.inputs.name("window-join");
        let assigner = self.assigner;
        self.inputs
            .union(&name)
            .window(assigner)
            .aggregate_named(&name, JoinPanes)
    }
}

// `JoinPanes` must aggregate the tagged union the builder feeds it.
const _: fn() = || {
    fn is_aggregator<A: Aggregator<Either<u8, u8>>>() {}
    is_aggregator::<JoinPanes>();
};

type ValueFn<C, V> = Arc<dyn Fn(C) -> Option<V> + Send + Sync>;

/// A table join under construction; finish it with [`inner`](Self::inner) or
/// [`left`](Self::left).
pub struct TableJoinBuilder<S: Send + 'static, C: Send + 'static, K, V> {
    inputs: Inputs<S, C, K>,
    value: ValueFn<C, V>,
}

impl<S, C, K, V> TableJoinBuilder<S, C, K, V>
where
    S: Send + 'static,
    C: Send + 'static,
    K: Hash + Eq + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    shared_settings!();

    /// Each stream element whose key has a value, with that value.
    pub fn inner(self) -> Stream<(S, V)> {
        self.build(false)
            .filter_map(|(s, v): (S, Option<V>)| v.map(|v| (s, v)))
    }

    /// Each stream element, with its key's value or `None`.
    pub fn left(self) -> Stream<(S, Option<V>)> {
        self.build(true)
    }

    fn build(self, outer: bool) -> Stream<(S, Option<V>)> {
        let name = self.inputs.name("table-join");
        let value = self.value;
        let keyed = self.inputs.union(&name);
        let key = keyed.key_fn();
        keyed.process(&name, move |_| {
            let op = TableJoin::new(key.clone(), value.clone());
            if outer {
                op.left()
            } else {
                op
            }
        })
    }
}
