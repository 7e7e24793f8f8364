//! Watershed operators: the reusable steps between sources and sinks.
//!
//! Bring the extension traits into scope with `use watershed_operators::prelude::*;`, then
//! write processing code as ordinary functions over [`Stream`](watershed_core::Stream)s:
//!
//! ```
//! use std::time::Duration;
//! use watershed_core::{Stream, TumblingWindows};
//! use watershed_operators::{prelude::*, Count, WindowResult};
//!
//! fn views_per_page(views: Stream<String>) -> Stream<WindowResult<String, u64>> {
//!     views
//!         .filter(|page| !page.is_empty())
//!         .key_by(|page| page.clone())
//!         .window(TumblingWindows::of(Duration::from_secs(60)))
//!         .aggregate(Count)
//! }
//! ```
#![deny(missing_docs)]

mod aggregate;
mod count_window;
mod dedupe;
pub mod enrich;
pub mod join;
mod key_groups;
mod node_counter;
mod stateless;
mod window;

pub use aggregate::{
    Aggregator, ApproxDistinctCount, Count, DistinctCount, Max, Mean, Min, Process, Reduce, Sum,
    TopK,
};
pub use count_window::{CountWindowAggregate, CountWindowedStream};
pub use dedupe::Dedupe;
pub use enrich::{
    Enrich, EnrichOps, MissingKey, ReferenceError, ReferenceTable, ReferenceTableBuilder,
    TableFormat, TableVersion,
};
pub use join::{
    CoGrouped, IntervalJoin, IntervalJoinBuilder, JoinConfigError, JoinOps, JoinPanes, TableJoin,
    TableJoinBuilder, WindowJoinBuilder, WindowJoined,
};
pub use stateless::{DecodeOps, StreamOps};
pub use window::{
    KeyedStreamOps, WindowAggregate, WindowAggregateWithLate, WindowResult, WindowedStream,
};

// docs/windows.md is the user guide for windows; its snippets run as doctests here.
#[doc = include_str!("../../docs/windows.md")]
#[cfg(doctest)]
pub struct WindowsGuide;

// docs/joins.md is the user guide for joins and enrichment; its snippets run as doctests here.
#[doc = include_str!("../../docs/joins.md")]
#[cfg(doctest)]
pub struct JoinsGuide;

/// The extension traits, for `use watershed_operators::prelude::*`.
pub mod prelude {
    pub use crate::enrich::EnrichOps;
    pub use crate::join::JoinOps;
    pub use crate::stateless::{DecodeOps, StreamOps};
    pub use crate::window::KeyedStreamOps;
}
