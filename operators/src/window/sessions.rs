//! Merging (session) windows: each key's open sessions as slots with one event-time timer each,
//! merging an element's proto-window with the sessions it touches, and firing and dropping a
//! key's sessions when their timers come due.

use super::core::{cleanup_time, WindowCore};
use super::WindowResult;
use crate::aggregate::Aggregator;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hash;
use watershed_core::{EventTime, Record, Window, WindowAssigner};

/// The state of one window of one key.
#[derive(Serialize, Deserialize)]
pub(super) struct Slot<Acc> {
    pub(super) window: Window,
    pub(super) acc: Acc,
    /// When this slot's one registered timer is due: its max timestamp until it fires, then its
    /// cleanup time `max_ts + L`.
    pub(super) timer: EventTime,
    /// Holds elements not yet reflected in an emitted result.
    pub(super) pending: bool,
    /// A result for this window (or a session it absorbed) was emitted.
    pub(super) emitted: bool,
}

/// Takes every slot whose window intersects `proto` (touching included) out of `slots` into
/// `absorbed` and returns the cover of them all and `proto`. A key's sessions are pairwise
/// disjoint and not touching, so one pass finds every window the growing cover reaches.
fn take_intersecting<Acc>(
    slots: &mut Vec<Slot<Acc>>,
    proto: Window,
    absorbed: &mut Vec<Slot<Acc>>,
) -> Window {
    let mut merged = proto;
    let mut j = 0;
    while j < slots.len() {
        if slots[j].window.intersects(&merged) {
            let s = slots.swap_remove(j);
            merged = merged.cover(&s.window);
            absorbed.push(s);
        } else {
            j += 1;
        }
    }
    merged
}

impl<T, K, W, A> WindowCore<T, K, W, A>
where
    K: Hash + Eq + Clone,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    /// Drops `key`'s timer at `at` unless another of its slots still needs it.
    fn unregister(
        timers: &mut BTreeMap<EventTime, FxHashSet<K>>,
        slots: &[Slot<A::Acc>],
        at: EventTime,
        key: &K,
    ) {
        if slots.iter().any(|s| s.timer == at) {
            return;
        }
        if let Some(set) = timers.get_mut(&at) {
            set.remove(key);
            if set.is_empty() {
                timers.remove(&at);
            }
        }
    }

    fn result(agg: &A, key: &K, slot: &mut Slot<A::Acc>) -> Record<WindowResult<K, A::Output>> {
        let r = WindowResult {
            key: key.clone(),
            window: slot.window,
            value: agg.finish(&slot.acc),
            is_update: slot.emitted,
        };
        slot.emitted = true;
        slot.pending = false;
        Record::new(r, slot.window.max_timestamp())
    }

    /// Puts a slot that just received elements on the right timer: if the watermark has passed
    /// its end it fires at once (a late firing) and waits for cleanup; otherwise for its end.
    fn settle(
        agg: &A,
        lateness: i64,
        watermark: EventTime,
        timers: &mut BTreeMap<EventTime, FxHashSet<K>>,
        key: &K,
        slot: &mut Slot<A::Acc>,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) {
        let max_ts = slot.window.max_timestamp();
        slot.timer = if max_ts <= watermark {
            emit(Self::result(agg, key, slot));
            cleanup_time(&slot.window, lateness)
        } else {
            max_ts
        };
        Self::register(timers, slot.timer, key);
    }

    /// Merging (session) windows: merge the proto-window with every window of the key it
    /// intersects, touching included. A late proto-window still bridges open sessions.
    pub(super) fn add_merging(
        &mut self,
        r: &Record<T>,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) -> bool {
        let key = (self.key)(&r.value);
        let mut accepted = false;
        for i in 0..self.scratch.len() {
            let proto = self.scratch[i];
            accepted |= self.merge_proto(&key, proto, r, emit);
        }
        accepted
    }

    /// Adds `r` through one proto-window: to the session it lies in, or to a new session
    /// covering the proto-window and every session it reaches. False if the proto-window is
    /// late and reaches no open session, so the element is not taken.
    fn merge_proto(
        &mut self,
        key: &K,
        proto: Window,
        r: &Record<T>,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) -> bool {
        let slots = match self.keys.get_mut(key) {
            Some(s) => s,
            None => self.keys.entry(key.clone()).or_default(),
        };
        // Reused across elements: merging must not allocate per record.
        let mut absorbed = std::mem::take(&mut self.merge_scratch);
        absorbed.clear();
        let merged = take_intersecting(slots, proto, &mut absorbed);
        let accepted =
            if absorbed.is_empty() && cleanup_time(&proto, self.lateness) <= self.watermark {
                if slots.is_empty() {
                    self.keys.remove(key);
                }
                false
            } else if absorbed.len() == 1 && absorbed[0].window == merged {
                // The element lies inside one session without extending it: same window, same
                // timer; only the accumulator changes (and a fired session updates at once).
                if let Some(mut slot) = absorbed.pop() {
                    self.agg.add(&mut slot.acc, &r.value);
                    if slot.window.max_timestamp() <= self.watermark {
                        emit(Self::result(&self.agg, key, &mut slot));
                    } else {
                        slot.pending = true;
                    }
                    slots.push(slot);
                }
                true
            } else {
                let mut slot = Self::merge_slots(
                    &self.agg,
                    &mut self.timers,
                    slots,
                    &mut absorbed,
                    key,
                    merged,
                );
                self.agg.add(&mut slot.acc, &r.value);
                Self::settle(
                    &self.agg,
                    self.lateness,
                    self.watermark,
                    &mut self.timers,
                    key,
                    &mut slot,
                    emit,
                );
                slots.push(slot);
                true
            };
        self.merge_scratch = absorbed;
        accepted
    }

    /// Merges the absorbed sessions' accumulators into one pending slot for `merged` (an empty
    /// one when none was absorbed) and drops their timers. The caller settles its timer.
    fn merge_slots(
        agg: &A,
        timers: &mut BTreeMap<EventTime, FxHashSet<K>>,
        slots: &[Slot<A::Acc>],
        absorbed: &mut Vec<Slot<A::Acc>>,
        key: &K,
        merged: Window,
    ) -> Slot<A::Acc> {
        // Keep the earliest window's accumulator first so order-sensitive aggregates
        // (process) see elements in session order.
        absorbed.sort_by_key(|s| s.window.start);
        let mut acc = None;
        let mut emitted = false;
        for s in absorbed.iter_mut() {
            emitted |= s.emitted;
        }
        for s in absorbed.drain(..) {
            Self::unregister(timers, slots, s.timer, key);
            match acc.as_mut() {
                None => acc = Some(s.acc),
                Some(a) => agg.merge(a, s.acc),
            }
        }
        Slot {
            window: merged,
            acc: acc.unwrap_or_else(|| agg.create()),
            timer: EventTime::MIN,
            pending: true,
            emitted,
        }
    }

    /// Runs every due timer of `key`: fire windows whose end has passed, drop late ones.
    pub(super) fn fire_key(
        &mut self,
        key: K,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) {
        let Some(slots) = self.keys.get_mut(&key) else {
            return;
        };
        let wm = self.watermark;
        // Fire in window order, as Flink fires timers in timestamp order.
        slots.sort_by_key(|s| (s.window.end, s.window.start));
        let mut i = 0;
        while i < slots.len() {
            let slot = &mut slots[i];
            if slot.timer > wm {
                i += 1;
                continue;
            }
            if slot.pending && slot.window.max_timestamp() <= wm {
                emit(Self::result(&self.agg, &key, slot));
            }
            let cleanup = cleanup_time(&slot.window, self.lateness);
            if cleanup <= wm {
                slots.remove(i);
            } else {
                slot.timer = cleanup;
                Self::register(&mut self.timers, cleanup, &key);
                i += 1;
            }
        }
        if slots.is_empty() {
            self.keys.remove(&key);
        }
    }
}
