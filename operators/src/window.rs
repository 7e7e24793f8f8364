//! Keyed event-time window aggregation: tumbling, sliding and session windows, allowed
//! lateness with update firings, and a late side output.
//!
//! The rules are SEMANTICS.md T6/T7 (Flink's `WindowOperator`), copied into docs/windows.md:
//! - a window fires when the watermark `W ≥ end − 1`;
//! - with allowed lateness `L`, a window is late once `W ≥ end − 1 + L`; then its state is
//!   dropped and elements are no longer added to it;
//! - an element added to a window that has already fired fires it again at once: the full,
//!   accumulated result, flagged [`WindowResult::is_update`];
//! - an element none of whose windows accepts it goes to the late output when `ts + L ≤ W`
//!   (only if *all* its windows are late); an element in a gap of sliding windows with
//!   size < slide is counted as skipped.

use crate::aggregate::{Aggregator, Process, Reduce};
use crate::stateless::StreamOps;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::time::duration_millis;
use watershed_core::{
    BoxError, Collector, Either, EventTime, KeyedStream, Operator, Record, Stream, Window,
    WindowAssigner,
};

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

/// Window operations on a [`KeyedStream`].
pub trait KeyedStreamOps<T: Send + 'static, K>: Sized {
    /// Groups each key's records into the windows `assigner` gives.
    fn window<W: WindowAssigner + Clone>(self, assigner: W) -> WindowedStream<T, K, W>;

    /// Groups each key's records into consecutive panes of `n` elements (a global window with a
    /// count trigger that purges, SEMANTICS.md W5). A partial pane never fires. Panics if `n`
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
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
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
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
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
    /// too late for any window are counted in `watershed_late_records_dropped_total`; use
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

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// The state of one window of one key.
#[derive(Serialize, Deserialize)]
struct Slot<Acc> {
    window: Window,
    acc: Acc,
    /// When this slot's one registered timer is due: its max timestamp until it fires, then its
    /// cleanup time `max_ts + L`.
    timer: EventTime,
    /// Holds elements not yet reflected in an emitted result.
    pending: bool,
    /// A result for this window (or a session it absorbed) was emitted.
    emitted: bool,
}

/// A window of a non-merging assigner and every key's accumulator in it. All keys of a window
/// share its fire and cleanup times, so the window is the timer; grouping keys under it keeps the
/// per-record path to one small ordered-map lookup and one hash lookup with the state inline.
///
/// No per-key flags are needed: before the window fires every key's pane is pending; the firing
/// emits them all; after it, an element fires its key's update at once, and that is an update
/// exactly when the key was already in the window.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, Acc: Serialize",
    deserialize = "K: Deserialize<'de> + Hash + Eq, Acc: Deserialize<'de>"
))]
struct AlignedWindow<K, Acc> {
    window: Window,
    /// The watermark has passed `max_ts`: the window fired; it stays for allowed lateness.
    fired: bool,
    // As a list of pairs: JSON map keys must be strings, and keys may be any serde type.
    #[serde(with = "pairs")]
    keys: FxHashMap<K, Acc>,
}

/// (De)serializes a map as a sequence of `(key, value)` pairs.
mod pairs {
    use rustc_hash::FxHashMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::hash::Hash;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &FxHashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<FxHashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Hash + Eq,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// The keyed window state machine, shared by the operators with and without a late output.
struct WindowCore<T, K, W, A: Aggregator<T>> {
    key: KeyFn<T, K>,
    assigner: W,
    agg: A,
    lateness: i64,
    merging: bool,
    watermark: EventTime,
    // Non-merging assigners: open windows ordered by (end, start), so firing and cleanup pop a
    // prefix (with one allowed lateness for all, cleanup order is end order too).
    aligned: BTreeMap<(EventTime, EventTime), AlignedWindow<K, A::Acc>>,
    // Merging assigners (sessions): each key's open sessions.
    keys: FxHashMap<K, Vec<Slot<A::Acc>>>,
    // Event-time timers: every slot has exactly one, at `slot.timer`; firing pops a prefix.
    timers: BTreeMap<EventTime, FxHashSet<K>>,
    scratch: Vec<Window>,
    merge_scratch: Vec<Slot<A::Acc>>,
    late: u64,
    skipped: u64,
}

/// `max_ts + L`, saturating (T7 `cleanupTime`).
#[inline]
fn cleanup_time(w: &Window, lateness: i64) -> EventTime {
    EventTime(w.max_timestamp().0.saturating_add(lateness))
}

impl<T, K, W, A> WindowCore<T, K, W, A>
where
    K: Hash + Eq + Clone,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    fn new(key: KeyFn<T, K>, assigner: W, agg: A) -> Self {
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
        }
    }

    fn register(timers: &mut BTreeMap<EventTime, FxHashSet<K>>, at: EventTime, key: &K) {
        let set = timers.entry(at).or_default();
        if !set.contains(key) {
            set.insert(key.clone());
        }
    }

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

    fn process(
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
            metrics::counter!("watershed_late_records_total").increment(late_n);
        }
        if skipped_n > 0 {
            self.skipped += skipped_n;
            metrics::counter!("watershed_window_skipped_records_total").increment(skipped_n);
        }
    }

    /// Non-merging windows: add to each window that is not late. True if any took it.
    fn add_aligned(
        &mut self,
        r: &Record<T>,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) -> bool {
        let mut key: Option<K> = None;
        let wm = self.watermark;
        for w in &self.scratch {
            if cleanup_time(w, self.lateness) <= wm {
                continue;
            }
            let k = key.get_or_insert_with(|| (self.key)(&r.value));
            let win = self
                .aligned
                .entry((w.end, w.start))
                .or_insert_with(|| AlignedWindow {
                    window: *w,
                    // A window first seen after the watermark passed its end (a late element
                    // within allowed lateness) counts as fired: its results fire at once.
                    fired: w.max_timestamp() <= wm,
                    keys: FxHashMap::default(),
                });
            // Look up before inserting so that only a key's first element in a window clones it.
            let (acc, existed) = match win.keys.get_mut(k) {
                Some(acc) => (acc, true),
                None => (
                    win.keys
                        .entry(k.clone())
                        .or_insert_with(|| self.agg.create()),
                    false,
                ),
            };
            self.agg.add(acc, &r.value);
            if win.fired {
                // Within allowed lateness after the firing: fire the update now (T7).
                emit(Self::pane_result(&self.agg, k, *w, acc, existed));
            }
        }
        key.is_some()
    }

    fn pane_result(
        agg: &A,
        key: &K,
        window: Window,
        acc: &A::Acc,
        is_update: bool,
    ) -> Record<WindowResult<K, A::Output>> {
        let r = WindowResult {
            key: key.clone(),
            window,
            value: agg.finish(acc),
            is_update,
        };
        Record::new(r, window.max_timestamp())
    }

    /// Fires the non-merging windows the watermark reached and drops those past lateness.
    fn advance_aligned(&mut self, emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>)) {
        let wm = self.watermark;
        let mut expired = 0;
        for win in self.aligned.values_mut() {
            if win.window.max_timestamp() > wm {
                break;
            }
            if !win.fired {
                win.fired = true;
                for (key, acc) in win.keys.iter() {
                    emit(Self::pane_result(&self.agg, key, win.window, acc, false));
                }
            }
            if cleanup_time(&win.window, self.lateness) <= wm {
                expired += 1;
            }
        }
        // Cleanup times are in window order, so the expired windows are a prefix.
        for _ in 0..expired {
            self.aligned.pop_first();
        }
    }

    /// Merging (session) windows: merge the proto-window with every window of the key it
    /// intersects, touching included (W4). A late proto-window still bridges open sessions.
    fn add_merging(
        &mut self,
        r: &Record<T>,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) -> bool {
        let key = (self.key)(&r.value);
        let mut accepted = false;
        for i in 0..self.scratch.len() {
            let proto = self.scratch[i];
            let slots = match self.keys.get_mut(&key) {
                Some(s) => s,
                None => self.keys.entry(key.clone()).or_default(),
            };
            // A key's sessions are pairwise disjoint and not touching, so one pass finds every
            // window the proto-window's cover reaches.
            let mut merged = proto;
            // Reused across elements: merging must not allocate per record.
            let mut absorbed = std::mem::take(&mut self.merge_scratch);
            absorbed.clear();
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
            if absorbed.is_empty() && cleanup_time(&proto, self.lateness) <= self.watermark {
                if slots.is_empty() {
                    self.keys.remove(&key);
                }
                self.merge_scratch = absorbed;
                continue;
            }
            accepted = true;
            if absorbed.len() == 1 && absorbed[0].window == merged {
                // The element lies inside one session without extending it: same window, same
                // timer; only the accumulator changes (and a fired session updates at once).
                if let Some(mut slot) = absorbed.pop() {
                    self.agg.add(&mut slot.acc, &r.value);
                    if slot.window.max_timestamp() <= self.watermark {
                        emit(Self::result(&self.agg, &key, &mut slot));
                    } else {
                        slot.pending = true;
                    }
                    slots.push(slot);
                }
                self.merge_scratch = absorbed;
                continue;
            }
            // Keep the earliest window's accumulator first so order-sensitive aggregates
            // (process) see elements in session order.
            absorbed.sort_by_key(|s| s.window.start);
            let mut acc = None;
            let mut emitted = false;
            for s in absorbed.iter_mut() {
                emitted |= s.emitted;
            }
            for s in absorbed.drain(..) {
                Self::unregister(&mut self.timers, slots, s.timer, &key);
                match acc.as_mut() {
                    None => acc = Some(s.acc),
                    Some(a) => self.agg.merge(a, s.acc),
                }
            }
            self.merge_scratch = absorbed;
            let mut acc = acc.unwrap_or_else(|| self.agg.create());
            self.agg.add(&mut acc, &r.value);
            let mut slot = Slot {
                window: merged,
                acc,
                timer: EventTime::MIN,
                pending: true,
                emitted,
            };
            Self::settle(
                &self.agg,
                self.lateness,
                self.watermark,
                &mut self.timers,
                &key,
                &mut slot,
                emit,
            );
            slots.push(slot);
        }
        accepted
    }

    fn advance(
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

    /// Runs every due timer of `key`: fire windows whose end has passed, drop late ones.
    fn fire_key(&mut self, key: K, emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>)) {
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

    fn open_windows(&self) -> usize {
        let aligned: usize = self.aligned.values().map(|w| w.keys.len()).sum();
        aligned + self.keys.values().map(Vec::len).sum::<usize>()
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a, K, Acc> {
    watermark: EventTime,
    late: u64,
    skipped: u64,
    aligned: Vec<&'a AlignedWindow<K, Acc>>,
    keys: Vec<(&'a K, &'a Vec<Slot<Acc>>)>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "K: Deserialize<'de> + Hash + Eq, Acc: Deserialize<'de>"))]
struct Snapshot<K, Acc> {
    watermark: EventTime,
    late: u64,
    skipped: u64,
    aligned: Vec<AlignedWindow<K, Acc>>,
    keys: Vec<(K, Vec<Slot<Acc>>)>,
}

impl<T, K, W, A> WindowCore<T, K, W, A>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    fn snapshot(&self) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(&SnapshotRef {
            watermark: self.watermark,
            late: self.late,
            skipped: self.skipped,
            aligned: self.aligned.values().collect(),
            keys: self.keys.iter().collect(),
        })?)
    }

    /// Restores windows and timers. The watermark the operator had seen is restored too, as a
    /// floor: the runtime's watermark restarts at MIN and regenerates, and a replayed element
    /// must meet the same lateness decision it met before the failure. Windows that had not
    /// fired fire when the regenerated watermark passes their end.
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let snap: Snapshot<K, A::Acc> = serde_json::from_slice(state)?;
        self.watermark = snap.watermark;
        self.late = snap.late;
        self.skipped = snap.skipped;
        self.aligned = snap
            .aligned
            .into_iter()
            .map(|w| ((w.window.end, w.window.start), w))
            .collect();
        self.keys.clear();
        self.timers.clear();
        for (key, slots) in snap.keys {
            for s in &slots {
                Self::register(&mut self.timers, s.timer, &key);
            }
            self.keys.insert(key, slots);
        }
        Ok(())
    }
}

macro_rules! window_operator {
    ($(#[$doc:meta])* $name:ident, $out:ty, |$emit_out:ident, $r:ident| $on_result:expr, |$late_out:ident, $l:ident, $dropped:ident| $on_late:expr) => {
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
                    core: WindowCore::new(key, assigner, agg),
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
            K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
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
                #[allow(unused_mut)]
                let mut $dropped = 0u64;
                {
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
                }
                if $dropped > 0 {
                    metrics::counter!("watershed_late_records_dropped_total").increment($dropped);
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

            fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
                Ok(Some(self.core.snapshot()?))
            }

            fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
                self.core.restore(state)
            }
        }
    };
}

window_operator!(
    /// Keyed window aggregation with event-time firing, allowed lateness and update firings.
    ///
    /// Windows fire when the watermark reaches `end − 1` (SEMANTICS.md T6) and their state is
    /// dropped once it reaches `end − 1 + allowed lateness` (T7). Records too late for all of
    /// their windows are counted (`late_records`, `watershed_late_records_dropped_total`) and
    /// dropped; [`WindowAggregateWithLate`] emits them instead.
    WindowAggregate,
    WindowResult<K, A::Output>,
    |out, r| out.emit(r),
    |_out, _l, dropped| dropped += 1
);

window_operator!(
    /// [`WindowAggregate`] with a late side output: results as `Either::Left`, records too
    /// late for all of their windows as `Either::Right`; [`Stream::split`] separates them.
    WindowAggregateWithLate,
    Either<WindowResult<K, A::Output>, T>,
    |out, r| out.emit(r.map(Either::Left)),
    |out, l, _dropped| out.emit(l.map(Either::Right))
);
