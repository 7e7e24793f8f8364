//! Join properties of issue 9, each checked against a nested-loop reference written here, on
//! 1,000 generated cases each:
//!
//! - interval join, inner and left outer: exactly the pairs `a + lower ≤ b ≤ a + upper` of
//!   equal keys (and, outer, each unmatched left once), every result stamped no earlier than
//!   the watermark forwarded before it, and the state after each watermark holds exactly the
//!   elements some future element could still match;
//! - window join over tumbling, sliding and session windows: exactly the pairs of equal keys
//!   that share a window;
//! - both: results independent of parallelism (keys hashed to N instances) and of a
//!   checkpoint/restore at any point of the input.
//!
//! Inputs are "within the watermark bound": event-time disorder never exceeds the watermark
//! delay, so no element is late and the reference can ignore arrival order (sessions aside,
//! which close when the watermark passes their end, see `ref_window`).
//!
//! The drivers call `process` / `on_watermark` / `snapshot` / `restore` on the operators
//! directly, so a thousand cases run in about a second each.

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::key_group::{instance_of_group, key_group_of, KeyBytes};
use watershed_core::{
    Collector, Either, EventTime, Operator, Record, SessionWindows, SlidingWindows,
    TumblingWindows, Window, WindowAssigner,
};

/// The instance of `n` a key is routed to, as the runtime's shuffle does (128 key groups).
fn partition_of<K: KeyBytes>(key: &K, n: usize) -> usize {
    instance_of_group(key_group_of(key, 128), 128, n)
}
use watershed_operators::{CoGrouped, IntervalJoin, JoinPanes, WindowAggregate, WindowResult};

/// An element of either side: (key, unique id).
type Ev = (u8, u32);
type In = Either<Ev, Ev>;
/// A generated element: (key, left side?, arrival-order base time, event-time jitter).
type Gen = (u8, bool, i64, i64);

/// Bounded out-of-orderness of the generated inputs, and the watermark delay.
const DELAY: i64 = 20;
const CASES: u32 = 1000;

#[derive(Clone, Debug)]
enum Step {
    Batch(Vec<(In, i64)>),
    Watermark(i64),
}

/// Arrival order sorted by `base`, event time `base + jitter` with `jitter ≤ DELAY`: every
/// element is ahead of the bounded-out-of-orderness watermark `max_ts − DELAY − 1`. Batches
/// are cut at `cuts`; a watermark follows every batch; the input ends with `MAX`.
fn script(events: &[Gen], cuts: &[usize]) -> Vec<Step> {
    let mut evs: Vec<(usize, &Gen)> = events.iter().enumerate().collect();
    evs.sort_by_key(|(i, e)| (e.2, *i));
    let mut steps = Vec::new();
    let mut max_ts = i64::MIN;
    let mut wm = i64::MIN;
    let mut rest = &evs[..];
    let mut c = 0;
    while !rest.is_empty() {
        let n = cuts.get(c).copied().unwrap_or(3).clamp(1, rest.len());
        c += 1;
        let (now, later) = rest.split_at(n);
        rest = later;
        let batch = now
            .iter()
            .map(|(i, &(k, left, base, jitter))| {
                let ts = base + jitter;
                max_ts = max_ts.max(ts);
                let ev = (k, *i as u32);
                (
                    if left {
                        Either::Left(ev)
                    } else {
                        Either::Right(ev)
                    },
                    ts,
                )
            })
            .collect();
        steps.push(Step::Batch(batch));
        let w = max_ts - DELAY - 1;
        if w > wm {
            wm = w;
            steps.push(Step::Watermark(w));
        }
    }
    steps.push(Step::Watermark(i64::MAX));
    steps
}

fn all_events(steps: &[Step]) -> Vec<(In, i64)> {
    steps
        .iter()
        .flat_map(|s| match s {
            Step::Batch(b) => b.clone(),
            Step::Watermark(_) => Vec::new(),
        })
        .collect()
}

fn events() -> impl Strategy<Value = (Vec<Gen>, Vec<usize>)> {
    (
        prop::collection::vec((0u8..3, any::<bool>(), 0i64..300, 0i64..=DELAY), 0..40),
        prop::collection::vec(1usize..6, 0..40),
    )
}

fn key_of(e: &In) -> u8 {
    match e {
        Either::Left(v) | Either::Right(v) => v.0,
    }
}

/// Runs `test` on `CASES` generated cases; on failure panics with the shrunk minimal input.
fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let ran = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |v| {
        ran.set(ran.get() + 1);
        test(v)
    });
    match result {
        Ok(()) => println!("{name}: {} cases passed", ran.get()),
        Err(e) => panic!("{name}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Interval join.

/// A result: (left id, right id or None, event time).
type Pair = (u32, Option<u32>, i64);
type IJoin = IntervalJoin<Ev, Ev, u8>;

fn interval_op(lower: i64, upper: i64, outer: bool) -> IJoin {
    let op = IntervalJoin::new(Arc::new(key_of), lower, upper);
    if outer {
        op.left_outer()
    } else {
        op
    }
}

fn pairs_of(out: &mut Collector<(Ev, Option<Ev>)>, into: &mut Vec<Pair>) {
    for r in out.take().0 {
        let (l, r2) = r.value;
        into.push((l.1, r2.map(|r| r.1), r.timestamp.0));
    }
}

/// Feeds `steps` and checks, after each step, that nothing emitted is behind the watermark the
/// operator had forwarded before it.
fn drive_interval(op: &mut IJoin, steps: &[Step]) -> Result<Vec<Pair>, TestCaseError> {
    let mut got = Vec::new();
    for s in steps {
        let forwarded = op.watermark().0;
        let mut out = Collector::default();
        let mut now = Vec::new();
        match s {
            Step::Batch(b) => op
                .process(
                    b.iter()
                        .map(|(v, t)| Record::new(v.clone(), EventTime(*t)))
                        .collect(),
                    &mut out,
                )
                .unwrap(),
            Step::Watermark(w) => op.on_watermark(EventTime(*w), &mut out).unwrap(),
        }
        pairs_of(&mut out, &mut now);
        for p in &now {
            prop_assert!(
                p.2 > forwarded,
                "result {p:?} is behind the forwarded watermark {forwarded}"
            );
        }
        got.extend(now);
    }
    got.sort();
    Ok(got)
}

/// The nested loop: every left against every right.
fn ref_interval(all: &[(In, i64)], lower: i64, upper: i64, outer: bool) -> Vec<Pair> {
    let mut out = Vec::new();
    for (l, a) in all {
        let Either::Left(l) = l else { continue };
        let mut matched = false;
        for (r, b) in all {
            let Either::Right(r) = r else { continue };
            if l.0 == r.0 && a + lower <= *b && *b <= a + upper {
                matched = true;
                out.push((l.1, Some(r.1), (*a).max(*b)));
            }
        }
        if outer && !matched {
            out.push((l.1, None, a + upper.max(0)));
        }
    }
    out.sort();
    out
}

/// Elements some future on-time element could still match at watermark `wm`.
fn ref_live(seen: &[(In, i64)], lower: i64, upper: i64, wm: i64) -> usize {
    seen.iter()
        .filter(|(v, t)| match v {
            Either::Left(_) => t + upper > wm,
            Either::Right(_) => t - lower > wm,
        })
        .count()
}

fn bounds() -> impl Strategy<Value = (i64, i64)> {
    (-40i64..40, 0i64..60).prop_map(|(lower, width)| (lower, lower + width))
}

fn interval_matches_nested_loop(outer: bool) {
    let name = if outer {
        "interval_left_outer_equals_nested_loop"
    } else {
        "interval_inner_equals_nested_loop"
    };
    check(
        name,
        (events(), bounds()),
        |((evs, cuts), (lower, upper))| {
            let steps = script(&evs, &cuts);
            let mut op = interval_op(lower, upper, outer);
            let got = drive_interval(&mut op, &steps)?;
            prop_assert_eq!(
                &got,
                &ref_interval(&all_events(&steps), lower, upper, outer)
            );
            prop_assert_eq!(op.late_records(), 0);
            prop_assert_eq!(op.buffered(), 0, "MAX watermark clears all state");
            // State bound: after each watermark exactly the elements that can still match remain.
            let mut op = interval_op(lower, upper, outer);
            let mut seen = Vec::new();
            for s in &steps {
                let mut out = Collector::default();
                match s {
                    Step::Batch(b) => {
                        seen.extend(b.iter().cloned());
                        op.process(
                            b.iter()
                                .map(|(v, t)| Record::new(v.clone(), EventTime(*t)))
                                .collect(),
                            &mut out,
                        )
                        .unwrap();
                    }
                    Step::Watermark(w) => {
                        op.on_watermark(EventTime(*w), &mut out).unwrap();
                        prop_assert_eq!(op.buffered(), ref_live(&seen, lower, upper, *w));
                    }
                }
            }
            Ok(())
        },
    );
}

/// Rule: an inner interval join emits exactly the pairs of equal keys with
/// `a + lower ≤ b ≤ a + upper`, once each, stamped `max(a, b)`; state holds only elements a
/// future element can match.
#[test]
fn interval_inner_join_equals_the_nested_loop_reference() {
    interval_matches_nested_loop(false);
}

/// Rule: a left-outer interval join adds each left that matched nothing, once, as
/// `(left, None)` stamped `a + max(upper, 0)`, after the watermark passed its interval.
#[test]
fn interval_left_outer_join_equals_the_nested_loop_reference() {
    interval_matches_nested_loop(true);
}

// ---------------------------------------------------------------------------------------------
// Window join.

#[derive(Clone, Copy, Debug)]
enum Spec {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

#[derive(Clone, Debug)]
struct Windows(Spec);

impl WindowAssigner for Windows {
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        let ms = |v: i64| Duration::from_millis(v as u64);
        match self.0 {
            Spec::Tumbling { size } => TumblingWindows::of(ms(size)).assign(ts, out),
            Spec::Sliding { size, slide } => {
                SlidingWindows::of(ms(size), ms(slide)).assign(ts, out)
            }
            Spec::Session { gap } => SessionWindows::with_gap(ms(gap)).assign(ts, out),
        }
    }

    fn is_merging(&self) -> bool {
        matches!(self.0, Spec::Session { .. })
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (1i64..60).prop_map(|size| Spec::Tumbling { size }),
        (1i64..60, 1i64..30).prop_map(|(size, slide)| Spec::Sliding { size, slide }),
        (1i64..30).prop_map(|gap| Spec::Session { gap }),
    ]
}

type WJoin = WindowAggregate<In, u8, Windows, JoinPanes>;
/// A window-join result: (key, window, left id, right id); stamped with the window's max ts.
type WPair = (u8, Window, u32, u32);

fn window_op(spec: Spec) -> WJoin {
    WindowAggregate::new(Arc::new(key_of), Windows(spec), JoinPanes)
}

fn wpairs(out: &mut Collector<CoGrouped<u8, Ev, Ev>>, into: &mut Vec<WPair>) {
    for r in out.take().0 {
        assert_eq!(r.timestamp, r.value.window.max_timestamp());
        let WindowResult {
            key, window, value, ..
        } = r.value;
        for l in &value.0 {
            for rr in &value.1 {
                into.push((key, window, l.1, rr.1));
            }
        }
    }
}

fn step_window(op: &mut WJoin, s: &Step, into: &mut Vec<WPair>) {
    let mut out = Collector::default();
    match s {
        Step::Batch(b) => op
            .process(
                b.iter()
                    .map(|(v, t)| Record::new(v.clone(), EventTime(*t)))
                    .collect(),
                &mut out,
            )
            .unwrap(),
        Step::Watermark(w) => op.on_watermark(EventTime(*w), &mut out).unwrap(),
    }
    wpairs(&mut out, into);
}

fn drive_window(op: &mut WJoin, steps: &[Step]) -> Vec<WPair> {
    let mut got = Vec::new();
    for s in steps {
        step_window(op, s, &mut got);
    }
    got.sort();
    got
}

fn win(start: i64, end: i64) -> Window {
    Window::new(EventTime(start), EventTime(end))
}

/// The nested loop over windows: tumbling and sliding windows by their definitions (every
/// `[s, s + size)` containing ts with `s ≡ 0 mod slide`); sessions by merging, in arrival
/// order, each element's `[ts, ts + gap)` with the key's open sessions it touches, a session
/// closing once the watermark reaches its end − 1.
fn ref_window(spec: Spec, steps: &[Step]) -> Vec<WPair> {
    // (key, window) → (left ids, right ids)
    type Panes = BTreeMap<(u8, Window), (Vec<u32>, Vec<u32>)>;
    let mut open: Panes = BTreeMap::new();
    let mut out = Vec::new();
    let close = |open: &mut Panes, out: &mut Vec<WPair>, wm: i64| {
        let due: Vec<(u8, Window)> = open
            .keys()
            .filter(|(_, w)| w.end.0 - 1 <= wm)
            .copied()
            .collect();
        for kw in due {
            let (ls, rs) = open.remove(&kw).unwrap();
            for l in &ls {
                for r in &rs {
                    out.push((kw.0, kw.1, *l, *r));
                }
            }
        }
    };
    for s in steps {
        match s {
            Step::Watermark(w) => close(&mut open, &mut out, *w),
            Step::Batch(b) => {
                for (v, ts) in b {
                    let (k, id, left) = match v {
                        Either::Left(e) => (e.0, e.1, true),
                        Either::Right(e) => (e.0, e.1, false),
                    };
                    let windows: Vec<Window> = match spec {
                        Spec::Tumbling { size } => {
                            let start = ts - ts.rem_euclid(size);
                            vec![win(start, start + size)]
                        }
                        Spec::Sliding { size, slide } => (ts - size + 1..=*ts)
                            .filter(|s| s.rem_euclid(slide) == 0)
                            .map(|s| win(s, s + size))
                            .collect(),
                        Spec::Session { gap } => {
                            let mut merged = win(*ts, ts + gap);
                            let mut panes = (Vec::new(), Vec::new());
                            loop {
                                let touching: Vec<(u8, Window)> = open
                                    .keys()
                                    .filter(|(kk, w)| {
                                        *kk == k && w.start <= merged.end && w.end >= merged.start
                                    })
                                    .copied()
                                    .collect();
                                if touching.is_empty() {
                                    break;
                                }
                                for kw in touching {
                                    let (ls, rs) = open.remove(&kw).unwrap();
                                    panes.0.extend(ls);
                                    panes.1.extend(rs);
                                    merged = merged.cover(&kw.1);
                                }
                            }
                            open.insert((k, merged), panes);
                            vec![merged]
                        }
                    };
                    for w in windows {
                        let e = open.entry((k, w)).or_default();
                        if left {
                            e.0.push(id)
                        } else {
                            e.1.push(id)
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Rule: a window join emits exactly the `(left, right)` pairs of equal keys that share a
/// window (tumbling, sliding; sessions formed by the elements of both sides), each once, when
/// the window fires.
#[test]
fn window_join_equals_the_nested_loop_reference() {
    check(
        "window_join_equals_nested_loop",
        (events(), spec()),
        |((evs, cuts), spec)| {
            let steps = script(&evs, &cuts);
            let mut op = window_op(spec);
            let got = drive_window(&mut op, &steps);
            prop_assert_eq!(got, ref_window(spec, &steps));
            prop_assert_eq!(op.late_records(), 0);
            prop_assert_eq!(op.open_windows(), 0);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Parallelism and checkpoint/restore.

/// Each batch split by `partition_of(key, n)` as the runtime's shuffle does; every instance
/// gets every watermark.
fn partitioned(steps: &[Step], n: usize, i: usize) -> Vec<Step> {
    steps
        .iter()
        .map(|s| match s {
            Step::Batch(b) => Step::Batch(
                b.iter()
                    .filter(|(v, _)| partition_of(&key_of(v), n) == i)
                    .cloned()
                    .collect(),
            ),
            Step::Watermark(w) => Step::Watermark(*w),
        })
        .collect()
}

/// Rule: with the keys hashed to N instances, the union of the instances' results equals one
/// instance's, for interval (outer, which includes inner) and window joins.
#[test]
fn join_results_are_independent_of_parallelism() {
    check(
        "join_parallelism_n_equals_1",
        (events(), bounds(), spec(), 2usize..5),
        |((evs, cuts), (lower, upper), spec, n)| {
            let steps = script(&evs, &cuts);
            let one = drive_interval(&mut interval_op(lower, upper, true), &steps)?;
            let mut many = Vec::new();
            for i in 0..n {
                let part = partitioned(&steps, n, i);
                many.extend(drive_interval(&mut interval_op(lower, upper, true), &part)?);
            }
            many.sort();
            prop_assert_eq!(many, one);
            let one = drive_window(&mut window_op(spec), &steps);
            let mut many = Vec::new();
            for i in 0..n {
                many.extend(drive_window(
                    &mut window_op(spec),
                    &partitioned(&steps, n, i),
                ));
            }
            many.sort();
            prop_assert_eq!(many, one);
            Ok(())
        },
    );
}

/// Rule: snapshot at any point, restore into a fresh operator and continue: the results before
/// the snapshot plus those after equal an uninterrupted run, none missing, none twice.
#[test]
fn join_results_are_independent_of_a_checkpoint_restore_cut() {
    check(
        "join_restore_at_any_cut_equals_uninterrupted",
        (events(), bounds(), spec(), any::<prop::sample::Index>()),
        |((evs, cuts), (lower, upper), spec, cut)| {
            let steps = script(&evs, &cuts);
            let cut = cut.index(steps.len() + 1);
            let (before, after) = steps.split_at(cut);

            let whole = drive_interval(&mut interval_op(lower, upper, true), &steps)?;
            let mut first = interval_op(lower, upper, true);
            let mut got = drive_interval(&mut first, before)?;
            let snap = first.snapshot().unwrap().unwrap();
            let mut second = interval_op(lower, upper, true);
            second.restore(&snap).unwrap();
            got.extend(drive_interval(&mut second, after)?);
            got.sort();
            prop_assert_eq!(got, whole);

            let whole = drive_window(&mut window_op(spec), &steps);
            let mut first = window_op(spec);
            let mut got = drive_window(&mut first, before);
            let snap = first.snapshot().unwrap().unwrap();
            let mut second = window_op(spec);
            second.restore(&snap).unwrap();
            got.extend(drive_window(&mut second, after));
            got.sort();
            prop_assert_eq!(got, whole);
            Ok(())
        },
    );
}
