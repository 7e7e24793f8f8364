//! The keyed window state machine both operators share: it routes each element to its windows
//! (aligned or sessions), sends the ones no window accepts to the late output or counts them as
//! skipped, and advances event time. The operators differ only in what they do with late records.

use super::aligned::AlignedWindow;
use super::sessions::Slot;
use super::{KeyFn, WindowResult};
use crate::aggregate::Aggregator;
use crate::node_counter::NodeCounter;
use metrics::Label;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use std::hash::Hash;
use watershed_core::metric_catalogue as m;
use watershed_core::{EventTime, Record, Window, WindowAssigner};

/// The keyed window state machine, shared by the operators with and without a late output.
pub(super) struct WindowCore<T, K, W, A: Aggregator<T>> {
    pub(super) key: KeyFn<T, K>,
    pub(super) assigner: W,
    pub(super) agg: A,
    pub(super) lateness: i64,
    pub(super) merging: bool,
    pub(super) watermark: EventTime,
    // Non-merging assigners: open windows ordered by (end, start), so firing and cleanup pop a
    // prefix (with one allowed lateness for all, cleanup order is end order too).
    pub(super) aligned: BTreeMap<(EventTime, EventTime), AlignedWindow<K, A::Acc>>,
    // Merging assigners (sessions): each key's open sessions.
    pub(super) keys: FxHashMap<K, Vec<Slot<A::Acc>>>,
    // Event-time timers: every slot has exactly one, at `slot.timer`; firing pops a prefix.
    pub(super) timers: BTreeMap<EventTime, FxHashSet<K>>,
    pub(super) scratch: Vec<Window>,
    pub(super) merge_scratch: Vec<Slot<A::Acc>>,
    pub(super) late: u64,
    pub(super) skipped: u64,
    // `watershed_late_records_total{action=...}`: what the operator does with late records.
    pub(super) late_counter: NodeCounter,
    pub(super) skipped_counter: NodeCounter,
}

/// `max_ts + L`, saturating (Flink's `cleanupTime`).
#[inline]
pub(super) fn cleanup_time(w: &Window, lateness: i64) -> EventTime {
    EventTime(w.max_timestamp().0.saturating_add(lateness))
}

impl<T, K, W, A> WindowCore<T, K, W, A>
where
    K: Hash + Eq + Clone,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    /// `late_action`: what the operator does with late records (an `ACTION_*` label value).
    pub(super) fn new(key: KeyFn<T, K>, assigner: W, agg: A, late_action: &'static str) -> Self {
        let merging = assigner.is_merging();
        WindowCore {
            key,
            assigner,
            agg,
            lateness: 0,
            merging,
            watermark: EventTime::MIN,
            aligned: BTreeMap::new(),
            keys: FxHashMap::default(),
            timers: BTreeMap::new(),
            scratch: Vec::new(),
            merge_scratch: Vec::new(),
            late: 0,
            skipped: 0,
            late_counter: NodeCounter::new(
                m::LATE_RECORDS,
                vec![Label::from_static_parts(m::LABEL_ACTION, late_action)],
            ),
            skipped_counter: NodeCounter::new(m::WINDOW_SKIPPED_RECORDS, Vec::new()),
        }
    }

    pub(super) fn register(timers: &mut BTreeMap<EventTime, FxHashSet<K>>, at: EventTime, key: &K) {
        let set = timers.entry(at).or_default();
        if !set.contains(key) {
            set.insert(key.clone());
        }
    }

    /// Adds a batch: each element to its windows, or to `late` when all of them are past
    /// allowed lateness.
    pub(super) fn process(
        &mut self,
        batch: Vec<Record<T>>,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
        late: &mut impl FnMut(Record<T>),
    ) {
        let mut late_n = 0;
        let mut skipped_n = 0;
        for r in batch {
            self.scratch.clear();
            self.assigner.assign(r.timestamp, &mut self.scratch);
            let accepted = if self.merging {
                self.add_merging(&r, emit)
            } else {
                self.add_aligned(&r, emit)
            };
            if accepted {
                continue;
            }
            let element_late = r.timestamp.0.saturating_add(self.lateness) <= self.watermark.0;
            if element_late {
                late_n += 1;
                late(r);
            } else {
                // Only a gap between sliding windows leaves an on-time element windowless.
                skipped_n += 1;
            }
        }
        if late_n > 0 {
            self.late += late_n;
            self.late_counter.increment(late_n);
        }
        if skipped_n > 0 {
            self.skipped += skipped_n;
            self.skipped_counter.increment(skipped_n);
        }
    }

    /// Acts on a new watermark: fires the windows it reached and drops those past lateness.
    pub(super) fn advance(
        &mut self,
        watermark: EventTime,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        self.advance_aligned(emit);
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let keys = entry.remove();
            for key in keys {
                self.fire_key(key, emit);
            }
        }
    }

    /// Registers the metrics of node `node`.
    pub(super) fn open(&mut self, node: &str) {
        self.late_counter.open(node);
        self.skipped_counter.open(node);
    }

    /// Open windows over all keys: one per key in each aligned window, one per session.
    pub(super) fn open_windows(&self) -> usize {
        let aligned: usize = self.aligned.values().map(|w| w.keys.len()).sum();
        aligned + self.keys.values().map(Vec::len).sum::<usize>()
    }
}
