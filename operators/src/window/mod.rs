//! Keyed event-time window aggregation: tumbling, sliding and session windows, allowed
//! lateness with update firings, and a late side output.
//!
//! The rules are Flink's `WindowOperator`'s, also stated in docs/windows.md:
//! - a window fires when the watermark `W ≥ end − 1`;
//! - with allowed lateness `L`, a window is late once `W ≥ end − 1 + L`; then its state is
//!   dropped and elements are no longer added to it;
//! - an element added to a window that has already fired fires it again at once: the full,
//!   accumulated result, flagged [`WindowResult::is_update`];
//! - an element none of whose windows accepts it goes to the late output when `ts + L ≤ W`
//!   (only if *all* its windows are late); an element in a gap of sliding windows with
//!   size < slide is counted as skipped.
//!
//! The code is split by concept:
//! - `stream`: the builder API ([`KeyedStreamOps::window`], [`WindowedStream`]);
//! - `operator`: the two operators ([`WindowAggregate`], [`WindowAggregateWithLate`]);
//! - `core`: the keyed state machine both operators share, routing elements and late records;
//! - `aligned`: non-merging (tumbling, sliding) windows, their state and firing;
//! - `sessions`: merging (session) windows, their state, merging and firing;
//! - `snapshot` and `groups`: checkpoint state, whole and by key group.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use watershed_core::Window;

mod aligned;
mod core;
mod groups;
mod operator;
mod sessions;
mod snapshot;
mod stream;

pub use operator::{WindowAggregate, WindowAggregateWithLate};
pub use stream::{KeyedStreamOps, WindowedStream};

/// The result of one window for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult<K, V> {
    /// The key.
    pub key: K,
    /// The window, `[start, end)`.
    pub window: Window,
    /// The aggregated value over every element the window holds so far.
    pub value: V,
    /// True when this result supersedes one emitted earlier for the same key: a late firing of
    /// the same window, or a session that absorbed an already emitted session (the window then
    /// differs; nothing is retracted). False for the first result of a window.
    #[serde(default)]
    pub is_update: bool,
}

/// How an operator finds a record's key; shared by every instance a stream's builder makes.
type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;
