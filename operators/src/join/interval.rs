//! Interval join: `left.ts + lower ≤ right.ts ≤ left.ts + upper`, event time, per key.

use crate::key_groups::snapshot_groups;
use crate::node_counter::NodeCounter;
use bytes::Bytes;
use metrics::Label;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;
use watershed_core::metric_catalogue as m;
use watershed_core::{
    BoxError, Collector, Either, EventTime, KeyBytes, KeyGroupSnapshot, KeyGroups, Operator,
    OperatorContext, Record,
};

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// One key's buffered elements of both sides, by event time.
struct Sides<L, R> {
    /// Left elements and whether each has matched (for the left-outer result).
    left: BTreeMap<i64, Vec<(L, bool)>>,
    right: BTreeMap<i64, Vec<R>>,
}

impl<L, R> Default for Sides<L, R> {
    fn default() -> Self {
        Sides {
            left: BTreeMap::new(),
            right: BTreeMap::new(),
        }
    }
}

/// The keyed interval-join operator over the union of both inputs (`Either::Left` /
/// `Either::Right`), emitting `(left, Some(right))` for each matching pair and, in left-outer
/// mode, `(left, None)` for each left element that matched nothing.
///
/// Rules (Flink's `IntervalJoinOperator`, with Watershed's lateness rule T1):
/// - a left element at `a` and a right element at `b` with the same key match iff
///   `a + lower ≤ b ≤ a + upper`; the pair is stamped `max(a, b)`;
/// - an element with `ts ≤ watermark` is late: it is dropped and counted
///   (`late_records`, `watershed_late_records_total{action="dropped"}`), because partners it could
///   have matched may already be gone — except in an unbounded join (`[i64::MIN, i64::MAX]`),
///   whose state is only dropped at the end of input, so late elements still join;
/// - a left element is kept until the watermark reaches `a + upper` (no right element still
///   to come can match it); a right element until it reaches `b − lower`. State per key is
///   therefore bounded by what arrives within the interval and the out-of-orderness, not by
///   the input;
/// - left outer: a left element that matched nothing is emitted as `(left, None)` when it is
///   dropped from state, stamped `a + max(upper, 0)`, so it is never behind the watermark the
///   operator forwarded before it.
///
/// The watermark it reacts to is the minimum of both inputs' (the runtime combines the
/// watermarks of a union that way: the minimum over inputs that are not idle).
pub struct IntervalJoin<L, R, K> {
    key: KeyFn<Either<L, R>, K>,
    lower: i64,
    upper: i64,
    outer: bool,
    watermark: EventTime,
    keys: FxHashMap<K, Sides<L, R>>,
    /// When a key has state due for cleanup; stale entries (already cleaned) are skipped.
    timers: BTreeMap<i64, Vec<K>>,
    buffered: usize,
    late: u64,
    late_counter: NodeCounter,
}

impl<L, R, K> IntervalJoin<L, R, K>
where
    L: Clone,
    R: Clone,
    K: Hash + Eq + Clone,
{
    /// An inner interval join by `key` with bounds `[lower, upper]` in milliseconds (both
    /// inclusive). Bounds with `lower > upper` match nothing.
    pub fn new(key: KeyFn<Either<L, R>, K>, lower: i64, upper: i64) -> Self {
        IntervalJoin {
            key,
            lower,
            upper,
            outer: false,
            watermark: EventTime::MIN,
            keys: FxHashMap::default(),
            timers: BTreeMap::new(),
            buffered: 0,
            late: 0,
            late_counter: NodeCounter::new(
                m::LATE_RECORDS,
                vec![Label::from_static_parts(m::LABEL_ACTION, m::ACTION_DROPPED)],
            ),
        }
    }

    /// Left-outer mode: unmatched left elements are emitted with `None`.
    pub fn left_outer(mut self) -> Self {
        self.outer = true;
        self
    }

    /// Elements currently buffered over all keys, both sides: the operator's state size.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Keys with buffered elements.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Elements dropped because they arrived behind the watermark.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// The watermark the operator has acted on.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    fn left_cleanup(&self, a: i64) -> i64 {
        a.saturating_add(self.upper)
    }

    fn right_cleanup(&self, b: i64) -> i64 {
        b.saturating_sub(self.lower)
    }

    /// True for `[i64::MIN, i64::MAX]`: every pair of a key, whatever the arrival order.
    fn unbounded(&self) -> bool {
        self.lower == i64::MIN && self.upper == i64::MAX
    }

    fn add(&mut self, record: Record<Either<L, R>>, out: &mut Collector<(L, Option<R>)>) {
        let ts = record.timestamp.0;
        // An unbounded join cleans nothing before the end of input, so no partner of a late
        // element can be gone: it is joined, not dropped.
        if ts <= self.watermark.0 && !self.unbounded() {
            self.late += 1;
            return;
        }
        let key = (self.key)(&record.value);
        let Record {
            value,
            key: rkey,
            headers,
            origin,
            ..
        } = record;
        // Metadata is copied only into results, so an element that matches nothing costs none.
        let meta = |pair: (L, Option<R>), at: i64| Record {
            value: pair,
            key: rkey.clone(),
            timestamp: EventTime(at),
            headers: headers.clone(),
            origin: origin.clone(),
        };
        let (lower, upper) = (self.lower, self.upper);
        let sides = match self.keys.get_mut(&key) {
            Some(s) => s,
            None => self.keys.entry(key.clone()).or_default(),
        };
        let cleanup = match value {
            Either::Left(l) => {
                let mut matched = false;
                if lower <= upper {
                    let (from, to) = (ts.saturating_add(lower), ts.saturating_add(upper));
                    for (&b, rs) in sides.right.range(from..=to) {
                        for r in rs {
                            matched = true;
                            out.emit(meta((l.clone(), Some(r.clone())), ts.max(b)));
                        }
                    }
                }
                sides.left.entry(ts).or_default().push((l, matched));
                ts.saturating_add(upper)
            }
            Either::Right(r) => {
                if lower <= upper {
                    // a + lower ≤ b ≤ a + upper  ⇔  b − upper ≤ a ≤ b − lower
                    let (from, to) = (ts.saturating_sub(upper), ts.saturating_sub(lower));
                    for (&a, ls) in sides.left.range_mut(from..=to) {
                        for (l, matched) in ls.iter_mut() {
                            *matched = true;
                            out.emit(meta((l.clone(), Some(r.clone())), ts.max(a)));
                        }
                    }
                }
                sides.right.entry(ts).or_default().push(r);
                ts.saturating_sub(lower)
            }
        };
        self.buffered += 1;
        let due = self.timers.entry(cleanup).or_default();
        // Consecutive elements of one key often share a cleanup time; one entry serves them.
        if due.last() != Some(&key) {
            due.push(key);
        }
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Collector<(L, Option<R>)>) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        let wm = watermark.0;
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > wm {
                break;
            }
            for key in entry.remove() {
                self.clean_key(&key, out);
            }
        }
    }

    /// Drops the key's elements no future element can match; emits unmatched lefts (outer).
    fn clean_key(&mut self, key: &K, out: &mut Collector<(L, Option<R>)>) {
        let wm = self.watermark.0;
        let (lower, upper, outer) = (self.lower, self.upper, self.outer);
        let left_due = |a: i64| a.saturating_add(upper) <= wm;
        let right_due = |b: i64| b.saturating_sub(lower) <= wm;
        let Some(sides) = self.keys.get_mut(key) else {
            return;
        };
        let mut removed = 0;
        while let Some(entry) = sides.left.first_entry() {
            if !left_due(*entry.key()) {
                break;
            }
            let a = *entry.key();
            let ls = entry.remove();
            removed += ls.len();
            if outer {
                let at = EventTime(a.saturating_add(upper.max(0)));
                for (l, matched) in ls {
                    if !matched {
                        out.emit(Record::new((l, None), at));
                    }
                }
            }
        }
        while let Some(entry) = sides.right.first_entry() {
            if !right_due(*entry.key()) {
                break;
            }
            removed += entry.remove().len();
        }
        if sides.left.is_empty() && sides.right.is_empty() {
            self.keys.remove(key);
        }
        self.buffered -= removed;
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a, K, L, R> {
    watermark: EventTime,
    late: u64,
    keys: Vec<KeyStateRef<'a, K, L, R>>,
}

#[derive(Serialize)]
struct KeyStateRef<'a, K, L, R> {
    key: &'a K,
    left: Vec<(i64, &'a Vec<(L, bool)>)>,
    right: Vec<(i64, &'a Vec<R>)>,
}

#[derive(Deserialize)]
struct Snapshot<K, L, R> {
    watermark: EventTime,
    late: u64,
    keys: Vec<KeyState<K, L, R>>,
}

#[derive(Deserialize)]
struct KeyState<K, L, R> {
    key: K,
    left: Vec<(i64, Vec<(L, bool)>)>,
    right: Vec<(i64, Vec<R>)>,
}

impl<L, R, K> Operator for IntervalJoin<L, R, K>
where
    L: Clone + Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
{
    type In = Either<L, R>;
    type Out = (L, Option<R>);

    fn open(&mut self, ctx: &OperatorContext) {
        self.late_counter.open(&ctx.node);
    }

    fn process(
        &mut self,
        batch: Vec<Record<Either<L, R>>>,
        out: &mut Collector<(L, Option<R>)>,
    ) -> Result<(), BoxError> {
        let late_before = self.late;
        for r in batch {
            self.add(r, out);
        }
        if self.late > late_before {
            self.late_counter.increment(self.late - late_before);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<(L, Option<R>)>,
    ) -> Result<(), BoxError> {
        self.advance(watermark, out);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        // Keys are stored as fields of a list entry, so tuple and unit keys work.
        let keys = self.keys.iter().map(|(key, s)| key_state(key, s)).collect();
        Ok(Some(serde_json::to_vec(&SnapshotRef {
            watermark: self.watermark,
            late: self.late,
            keys,
        })?))
    }

    /// Each key group as the blob [`snapshot`](Operator::snapshot) writes, restricted to the
    /// group's keys; the late count goes with the first group of the range only.
    fn snapshot_key_groups(
        &mut self,
        groups: &KeyGroups,
    ) -> Result<Option<KeyGroupSnapshot>, BoxError> {
        let (watermark, late) = (self.watermark, self.late);
        let split = snapshot_groups(groups, self.keys.iter(), |totals, entries| {
            Ok(serde_json::to_vec(&SnapshotRef {
                watermark,
                late: if totals { late } else { 0 },
                keys: entries.into_iter().map(|(k, s)| key_state(k, s)).collect(),
            })?)
        })?;
        Ok(Some(split))
    }

    /// The groups' keys together; late counts add up, and the watermark floor is the lowest of
    /// the groups' (instances of one operator acted on the same watermarks, so they agree).
    fn restore_key_groups(
        &mut self,
        _groups: &KeyGroups,
        states: &[(u16, Bytes)],
    ) -> Result<(), BoxError> {
        self.clear();
        let mut floor: Option<EventTime> = None;
        for (_, state) in states {
            let snap: Snapshot<K, L, R> = serde_json::from_slice(state)?;
            floor = Some(floor.map_or(snap.watermark, |f| f.min(snap.watermark)));
            self.late += snap.late;
            self.insert_keys(snap.keys);
        }
        self.watermark = floor.unwrap_or(EventTime::MIN);
        Ok(())
    }

    /// Restores buffered elements and the watermark the operator had acted on, as a floor: a
    /// replayed element meets the same lateness decision it met before the failure.
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let snap: Snapshot<K, L, R> = serde_json::from_slice(state)?;
        self.clear();
        self.watermark = snap.watermark;
        self.late = snap.late;
        self.insert_keys(snap.keys);
        Ok(())
    }
}

fn key_state<'a, K, L, R>(key: &'a K, s: &'a Sides<L, R>) -> KeyStateRef<'a, K, L, R> {
    KeyStateRef {
        key,
        left: s.left.iter().map(|(t, v)| (*t, v)).collect(),
        right: s.right.iter().map(|(t, v)| (*t, v)).collect(),
    }
}

impl<L: Clone, R: Clone, K: Hash + Eq + Clone> IntervalJoin<L, R, K> {
    /// Empties the state before a restore.
    fn clear(&mut self) {
        self.keys.clear();
        self.timers.clear();
        self.buffered = 0;
        self.late = 0;
    }

    /// Adds restored keys' elements and their cleanup timers.
    fn insert_keys(&mut self, keys: Vec<KeyState<K, L, R>>) {
        for ks in keys {
            let mut sides = Sides::default();
            for (a, ls) in ks.left {
                self.buffered += ls.len();
                self.timers
                    .entry(self.left_cleanup(a))
                    .or_default()
                    .push(ks.key.clone());
                sides.left.insert(a, ls);
            }
            for (b, rs) in ks.right {
                self.buffered += rs.len();
                self.timers
                    .entry(self.right_cleanup(b))
                    .or_default()
                    .push(ks.key.clone());
                sides.right.insert(b, rs);
            }
            self.keys.insert(ks.key, sides);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op = IntervalJoin<u32, u32, u8>;

    fn op() -> Op {
        IntervalJoin::new(
            Arc::new(|e: &Either<u32, u32>| match e {
                Either::Left(v) | Either::Right(v) => (*v / 100) as u8,
            }),
            -2,
            3,
        )
    }

    fn feed(op: &mut Op, items: &[(Either<u32, u32>, i64)]) -> Vec<((u32, Option<u32>), i64)> {
        let mut out = Collector::default();
        let batch = items
            .iter()
            .map(|(v, t)| Record::new(v.clone(), EventTime(*t)))
            .collect();
        op.process(batch, &mut out).unwrap();
        out.take()
            .0
            .into_iter()
            .map(|r| (r.value, r.timestamp.0))
            .collect()
    }

    #[test]
    fn interval_bounds_are_inclusive_and_pairs_carry_the_later_timestamp() {
        let mut op = op().left_outer();
        assert!(feed(&mut op, &[(Either::Left(1), 10)]).is_empty());
        // 8 = 10 − 2 and 13 = 10 + 3 match; 7 and 14 do not.
        let got = feed(
            &mut op,
            &[
                (Either::Right(2), 7),
                (Either::Right(3), 8),
                (Either::Right(4), 13),
                (Either::Right(5), 14),
            ],
        );
        assert_eq!(got, vec![((1, Some(3)), 10), ((1, Some(4)), 13)]);
        // Another key never matches.
        assert!(feed(&mut op, &[(Either::Right(102), 10)]).is_empty());
    }

    #[test]
    fn left_outer_emits_an_unmatched_left_once_the_watermark_passes_its_interval() {
        let mut op = op().left_outer();
        feed(&mut op, &[(Either::Left(1), 10)]);
        let mut out = Collector::default();
        op.on_watermark(EventTime(12), &mut out).unwrap();
        assert!(out.take().0.is_empty(), "a right at 13 may still come");
        op.on_watermark(EventTime(13), &mut out).unwrap();
        let (got, _) = out.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value, (1, None));
        assert_eq!(got[0].timestamp, EventTime(13));
        assert_eq!(op.buffered(), 0, "state is dropped with the result");
    }

    #[test]
    fn an_unbounded_join_pairs_late_elements_too() {
        let mut op = IntervalJoin::new(
            Arc::new(|e: &Either<u32, u32>| match e {
                Either::Left(v) | Either::Right(v) => (*v / 100) as u8,
            }),
            i64::MIN,
            i64::MAX,
        );
        feed(&mut op, &[(Either::Left(1), 1_000)]);
        let mut out = Collector::default();
        op.on_watermark(EventTime(5_000), &mut out).unwrap();
        assert_eq!(
            op.buffered(),
            1,
            "nothing is cleaned before the end of input"
        );
        assert_eq!(
            feed(&mut op, &[(Either::Right(2), -7)]),
            vec![((1, Some(2)), 1_000)]
        );
        assert_eq!(op.late_records(), 0);
        op.on_watermark(EventTime::MAX, &mut out).unwrap();
        assert_eq!(op.buffered(), 0);
    }

    #[test]
    fn late_elements_are_dropped_and_state_restores() {
        let mut op = op();
        feed(&mut op, &[(Either::Left(1), 10), (Either::Right(2), 20)]);
        let mut out = Collector::default();
        op.on_watermark(EventTime(15), &mut out).unwrap();
        assert!(feed(&mut op, &[(Either::Right(3), 12)]).is_empty());
        assert_eq!(op.late_records(), 1);
        let snap = op.snapshot().unwrap().unwrap();
        let mut restored = self::op();
        restored.restore(&snap).unwrap();
        assert_eq!(restored.buffered(), op.buffered());
        assert_eq!(restored.watermark(), EventTime(15));
        assert_eq!(
            feed(&mut restored, &[(Either::Left(4), 18)]),
            vec![((4, Some(2)), 20)]
        );
    }
}
