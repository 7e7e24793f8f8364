//! The two window operators, [`WindowAggregate`] and [`WindowAggregateWithLate`]: thin
//! [`Operator`] shells over the shared [`WindowCore`] that differ only in where late records
//! go (dropped and counted, or emitted as a side output). A macro writes both so that their
//! public methods and checkpoint paths cannot drift apart.

use super::core::WindowCore;
use super::{KeyFn, WindowResult};
use crate::aggregate::Aggregator;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use watershed_core::metric_catalogue as m;
use watershed_core::{
    BoxError, Collector, Either, EventTime, KeyBytes, KeyGroupSnapshot, KeyGroups, Operator,
    OperatorContext, Record, WindowAssigner,
};

macro_rules! window_operator {
    ($(#[$doc:meta])* $name:ident, $out:ty, $late_action:expr, |$emit_out:ident, $r:ident| $on_result:expr, |$late_out:ident, $l:ident| $on_late:expr) => {
        $(#[$doc])*
        pub struct $name<T, K, W, A: Aggregator<T>> {
            core: WindowCore<T, K, W, A>,
        }

        impl<T, K, W, A> $name<T, K, W, A>
        where
            K: Hash + Eq + Clone,
            W: WindowAssigner,
            A: Aggregator<T>,
        {
            /// An operator keyed by `key`, windowed by `assigner`, aggregating with `agg`,
            /// with allowed lateness 0.
            pub fn new(key: KeyFn<T, K>, assigner: W, agg: A) -> Self {
                $name {
                    core: WindowCore::new(key, assigner, agg, $late_action),
                }
            }

            /// Allowed lateness in milliseconds (negative counts as 0).
            pub fn with_allowed_lateness(mut self, lateness_ms: i64) -> Self {
                self.core.lateness = lateness_ms.max(0);
                self
            }

            /// Records that arrived after all their windows were past allowed lateness.
            pub fn late_records(&self) -> u64 {
                self.core.late
            }

            /// Records that fell in a gap between sliding windows (size < slide).
            pub fn skipped_records(&self) -> u64 {
                self.core.skipped
            }

            /// Open windows over all keys: what the operator's state holds.
            pub fn open_windows(&self) -> usize {
                self.core.open_windows()
            }

            /// The watermark the operator has acted on.
            pub fn watermark(&self) -> EventTime {
                self.core.watermark
            }
        }

        impl<T, K, W, A> Operator for $name<T, K, W, A>
        where
            T: Send + 'static,
            K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
            W: WindowAssigner,
            A: Aggregator<T>,
        {
            type In = T;
            type Out = $out;

            fn process(
                &mut self,
                batch: Vec<Record<T>>,
                out: &mut Collector<Self::Out>,
            ) -> Result<(), BoxError> {
                let $emit_out = &mut *out;
                // Late records are rare; collect them, then hand them on after the batch.
                let mut lates: Vec<Record<T>> = Vec::new();
                self.core.process(
                    batch,
                    &mut |$r| $on_result,
                    &mut |l| lates.push(l),
                );
                for $l in lates {
                    let $late_out = &mut *$emit_out;
                    $on_late;
                }
                Ok(())
            }

            fn on_watermark(
                &mut self,
                watermark: EventTime,
                out: &mut Collector<Self::Out>,
            ) -> Result<(), BoxError> {
                let $emit_out = out;
                self.core.advance(watermark, &mut |$r| $on_result);
                Ok(())
            }

            fn open(&mut self, ctx: &OperatorContext) {
                self.core.open(&ctx.node);
            }

            fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
                Ok(Some(self.core.snapshot()?))
            }

            fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
                self.core.restore(state)
            }

            fn snapshot_key_groups(
                &mut self,
                groups: &KeyGroups,
            ) -> Result<Option<KeyGroupSnapshot>, BoxError> {
                Ok(Some(self.core.snapshot_key_groups(groups)?))
            }

            fn restore_key_groups(
                &mut self,
                _groups: &KeyGroups,
                states: &[(u16, bytes::Bytes)],
            ) -> Result<(), BoxError> {
                self.core.restore_key_groups(states)
            }
        }
    };
}

window_operator!(
    /// Keyed window aggregation with event-time firing, allowed lateness and update firings.
    ///
    /// Windows fire when the watermark reaches `end − 1` and their state is
    /// dropped once it reaches `end − 1 + allowed lateness`. Records too late for all of
    /// their windows are counted (`late_records`,
    /// `watershed_late_records_total{action="dropped"}`) and dropped;
    /// [`WindowAggregateWithLate`] emits them instead.
    WindowAggregate,
    WindowResult<K, A::Output>,
    m::ACTION_DROPPED,
    |out, r| out.emit(r),
    |_out, l| drop(l)
);

window_operator!(
    /// [`WindowAggregate`] with a late side output: results as `Either::Left`, records too
    /// late for all of their windows as `Either::Right` (counted in
    /// `watershed_late_records_total{action="side_output"}`);
    /// [`Stream::split`](watershed_core::Stream::split) separates them.
    WindowAggregateWithLate,
    Either<WindowResult<K, A::Output>, T>,
    m::ACTION_SIDE_OUTPUT,
    |out, r| out.emit(r.map(Either::Left)),
    |out, l| out.emit(l.map(Either::Right))
);
