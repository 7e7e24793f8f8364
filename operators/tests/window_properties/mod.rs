//! Shared by the window property tests (`window_*_properties.rs`): the operator under test
//! behind one assigner type, the reference model (the oracle), the scripts that drive both, and
//! the generators. Each test file states one rule and checks it on 1,000 generated cases.
//!
//! The rules (copied from the project's semantics reference, see docs/windows.md):
//! - tumbling `start = ts − floor_mod(ts − offset, size)`, window `[start, start + size)`;
//! - sliding: every `[s, s + size)` with `s ≡ offset (mod slide)` and `s ≤ ts < s + size`;
//! - sessions: proto-window `[ts, ts + gap)`, elements merge when `next − prev ≤ gap`;
//! - fire at `W ≥ end − 1`; a window is late (dropped, no more elements) at `W ≥ end − 1 + L`;
//!   an element goes to the late output iff none of its windows accepts it and `ts + L ≤ W`.
//!
//! The drivers call `process` / `on_watermark` / `snapshot` / `restore` on the operator
//! directly, so a thousand cases run in well under a second each.

// Each test file is its own crate and uses only part of this module and its re-exports.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;
use std::time::Duration;
use watershed_core::key_group::{instance_of_group, key_group_of, KeyBytes};
use watershed_core::{
    Either, EventTime, SessionWindows, SlidingWindows, TumblingWindows, Window, WindowAssigner,
};
use watershed_operators::{Process, WindowAggregateWithLate, WindowResult};

mod generators;
mod reference;
mod script;

pub use generators::*;
pub use reference::*;
pub use script::*;

/// The instance of `n` a key is routed to, as the runtime's shuffle does (128 key groups).
pub fn partition_of<K: KeyBytes>(key: &K, n: usize) -> usize {
    instance_of_group(key_group_of(key, 128), 128, n)
}

/// An element: (key, event time, unique id). The aggregate is the sorted ids of the window, so
/// a result shows exactly which elements a window holds.
pub type Ev = (u8, i64, u32);
pub type Ids = Process<fn(&[Ev]) -> Vec<u32>>;
pub type Op = WindowAggregateWithLate<Ev, u8, Windows, Ids>;
pub type Out = Either<WindowResult<u8, Vec<u32>>, Ev>;

pub fn ids_of(xs: &[Ev]) -> Vec<u32> {
    let mut v: Vec<u32> = xs.iter().map(|e| e.2).collect();
    v.sort_unstable();
    v
}

/// The three time assigners behind one type, so one operator type serves every property.
#[derive(Clone, Copy, Debug)]
pub enum Spec {
    Tumbling { size: i64, offset: i64 },
    Sliding { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
}

#[derive(Clone, Debug)]
pub struct Windows(Spec);

impl WindowAssigner for Windows {
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        let ms = |v: i64| Duration::from_millis(v as u64);
        match self.0 {
            Spec::Tumbling { size, offset } => TumblingWindows::of(ms(size))
                .with_offset(offset)
                .assign(ts, out),
            Spec::Sliding {
                size,
                slide,
                offset,
            } => SlidingWindows::of(ms(size), ms(slide))
                .with_offset(offset)
                .assign(ts, out),
            Spec::Session { gap } => SessionWindows::with_gap(ms(gap)).assign(ts, out),
        }
    }

    fn is_merging(&self) -> bool {
        matches!(self.0, Spec::Session { .. })
    }
}

pub fn new_op(spec: Spec, lateness: i64) -> Op {
    WindowAggregateWithLate::new(
        Arc::new(|e: &Ev| e.0),
        Windows(spec),
        Process(ids_of as fn(&[Ev]) -> Vec<u32>),
    )
    .with_allowed_lateness(lateness)
}

pub fn win(start: i64, end: i64) -> Window {
    Window::new(EventTime(start), EventTime(end))
}
