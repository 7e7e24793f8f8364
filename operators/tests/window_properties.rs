//! The eight window properties of issue 4, each checked against a small reference model written
//! here, on 1,000 generated cases each.
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

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{
    partition_of, Collector, Either, EventTime, Operator, Record, SessionWindows, SlidingWindows,
    TumblingWindows, Window, WindowAssigner,
};
use watershed_operators::{Process, WindowAggregateWithLate, WindowResult};

/// An element: (key, event time, unique id). The aggregate is the sorted ids of the window, so
/// a result shows exactly which elements a window holds.
type Ev = (u8, i64, u32);
type Ids = Process<fn(&[Ev]) -> Vec<u32>>;
type Op = WindowAggregateWithLate<Ev, u8, Windows, Ids>;
type Out = Either<WindowResult<u8, Vec<u32>>, Ev>;

fn ids_of(xs: &[Ev]) -> Vec<u32> {
    let mut v: Vec<u32> = xs.iter().map(|e| e.2).collect();
    v.sort_unstable();
    v
}

/// The three time assigners behind one type, so one operator type serves every property.
#[derive(Clone, Copy, Debug)]
enum Spec {
    Tumbling { size: i64, offset: i64 },
    Sliding { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
}

#[derive(Clone, Debug)]
struct Windows(Spec);

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

fn new_op(spec: Spec, lateness: i64) -> Op {
    WindowAggregateWithLate::new(
        Arc::new(|e: &Ev| e.0),
        Windows(spec),
        Process(ids_of as fn(&[Ev]) -> Vec<u32>),
    )
    .with_allowed_lateness(lateness)
}

fn win(start: i64, end: i64) -> Window {
    Window::new(EventTime(start), EventTime(end))
}

// ---------------------------------------------------------------------------------------------
// Reference model: window assignment by the formulas, by brute force where that is clearer.

/// The windows of `ts`, straight from the definitions.
fn ref_windows(spec: Spec, ts: i64) -> Vec<Window> {
    match spec {
        Spec::Tumbling { size, offset } => {
            let start = ts - (ts - offset).rem_euclid(size);
            vec![win(start, start + size)]
        }
        Spec::Sliding {
            size,
            slide,
            offset,
        } => (ts - size + 1..=ts)
            .filter(|s| (s - offset).rem_euclid(slide) == 0)
            .map(|s| win(s, s + size))
            .collect(),
        Spec::Session { gap } => vec![win(ts, ts + gap)],
    }
}

/// Flink's semantics simulated naively: every window of every key is looked at on every
/// watermark; sessions merge by scanning all of the key's sessions.
struct Reference {
    spec: Spec,
    lateness: i64,
    wm: i64,
    // (key, window) → (ids, emitted, pending)
    wins: BTreeMap<(u8, Window), (BTreeSet<u32>, bool, bool)>,
    results: Vec<(u8, Window, Vec<u32>, bool)>,
    late: BTreeSet<u32>,
    skipped: u64,
}

impl Reference {
    fn new(spec: Spec, lateness: i64) -> Self {
        Reference {
            spec,
            lateness,
            wm: i64::MIN,
            wins: BTreeMap::new(),
            results: Vec::new(),
            late: BTreeSet::new(),
            skipped: 0,
        }
    }

    fn is_late(&self, w: &Window) -> bool {
        (w.end.0 - 1).saturating_add(self.lateness) <= self.wm
    }

    fn emit(&mut self, k: u8, w: Window) {
        let e = self.wins.get_mut(&(k, w)).unwrap();
        self.results
            .push((k, w, e.0.iter().copied().collect(), e.1));
        e.1 = true;
        e.2 = false;
    }

    fn add(&mut self, (k, ts, id): Ev) {
        let mut accepted = false;
        for w in ref_windows(self.spec, ts) {
            let mut target = w;
            let mut ids = BTreeSet::from([id]);
            let mut emitted = false;
            if matches!(self.spec, Spec::Session { .. }) {
                let touching: Vec<Window> = self
                    .wins
                    .keys()
                    .filter(|(kk, o)| *kk == k && o.start <= w.end && o.end >= w.start)
                    .map(|(_, o)| *o)
                    .collect();
                if touching.is_empty() && self.is_late(&w) {
                    continue;
                }
                for o in touching {
                    let (oids, oem, _) = self.wins.remove(&(k, o)).unwrap();
                    target = target.cover(&o);
                    ids.extend(oids);
                    emitted |= oem;
                }
            } else if self.is_late(&w) {
                continue;
            }
            accepted = true;
            let e = self
                .wins
                .entry((k, target))
                .or_insert((BTreeSet::new(), emitted, false));
            e.0.extend(ids);
            e.2 = true;
            if target.end.0 - 1 <= self.wm {
                self.emit(k, target);
            }
        }
        if !accepted {
            if ts.saturating_add(self.lateness) <= self.wm {
                self.late.insert(id);
            } else {
                self.skipped += 1;
            }
        }
    }

    fn watermark(&mut self, wm: i64) {
        self.wm = self.wm.max(wm);
        let keys: Vec<(u8, Window)> = self.wins.keys().copied().collect();
        for (k, w) in keys {
            if self.wins[&(k, w)].2 && w.end.0 - 1 <= self.wm {
                self.emit(k, w);
            }
            if self.is_late(&w) {
                self.wins.remove(&(k, w));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scripts: batches of records interleaved with watermarks, and the drivers that feed them.

#[derive(Clone, Debug)]
enum Step {
    Batch(Vec<Ev>),
    Wm(i64),
}

/// Arrival order: events sorted by `ts + jitter`, cut into batches of `cuts`; after each batch
/// the bounded-out-of-orderness watermark `max_ts − delay − 1`; at the end the watermark MAX
/// that closes a bounded input. With `delay ≥ max jitter` no element is late.
fn script(events: &[(u8, i64)], jitter: &[i64], cuts: &[usize], delay: i64) -> Vec<Step> {
    let mut evs: Vec<(i64, Ev)> = events
        .iter()
        .enumerate()
        .map(|(i, &(k, ts))| {
            let j = jitter.get(i).copied().unwrap_or(0);
            (ts + j, (k, ts, i as u32))
        })
        .collect();
    evs.sort_by_key(|(arrival, e)| (*arrival, e.2));
    let mut steps = Vec::new();
    let mut max_ts = i64::MIN;
    let mut i = 0;
    let mut c = 0;
    while i < evs.len() {
        let n = cuts.get(c).copied().unwrap_or(1).max(1).min(evs.len() - i);
        c += 1;
        let batch: Vec<Ev> = evs[i..i + n].iter().map(|(_, e)| *e).collect();
        i += n;
        max_ts = batch.iter().map(|e| e.1).fold(max_ts, i64::max);
        steps.push(Step::Batch(batch));
        steps.push(Step::Wm(max_ts - delay - 1));
    }
    steps.push(Step::Wm(i64::MAX));
    steps
}

fn batch(evs: &[Ev]) -> Vec<Record<Ev>> {
    evs.iter()
        .map(|e| Record::new(*e, EventTime(e.1)))
        .collect()
}

/// One emitted record and the operator's watermark when it was emitted.
#[derive(Clone, Debug)]
struct Emitted {
    wm: i64,
    out: Out,
}

fn step(op: &mut Op, s: &Step, into: &mut Vec<Emitted>) {
    let mut c: Collector<Out> = Collector::default();
    match s {
        Step::Batch(evs) => op.process(batch(evs), &mut c).unwrap(),
        Step::Wm(w) => op.on_watermark(EventTime(*w), &mut c).unwrap(),
    }
    let wm = op.watermark().0;
    into.extend(c.take().0.into_iter().map(|r| Emitted { wm, out: r.value }));
}

fn drive(op: &mut Op, steps: &[Step]) -> Vec<Emitted> {
    let mut out = Vec::new();
    for s in steps {
        step(op, s, &mut out);
    }
    out
}

fn reference(spec: Spec, lateness: i64, steps: &[Step]) -> Reference {
    let mut r = Reference::new(spec, lateness);
    for s in steps {
        match s {
            Step::Batch(evs) => evs.iter().for_each(|e| r.add(*e)),
            Step::Wm(w) => r.watermark(*w),
        }
    }
    r
}

type Res = (u8, Window, Vec<u32>, bool);
/// Each (key, window)'s firings in emission order: (ids, is_update).
type Firings = BTreeMap<(u8, Window), Vec<(Vec<u32>, bool)>>;

/// Results grouped per (key, window) in emission order, and the late ids.
fn split(out: &[Emitted]) -> (Firings, BTreeSet<u32>) {
    let mut res = Firings::new();
    let mut late = BTreeSet::new();
    for e in out {
        match &e.out {
            Either::Left(r) => res
                .entry((r.key, r.window))
                .or_default()
                .push((r.value.clone(), r.is_update)),
            Either::Right(ev) => {
                late.insert(ev.2);
            }
        }
    }
    (res, late)
}

fn group(results: &[Res]) -> Firings {
    let mut g = Firings::new();
    for (k, w, ids, upd) in results {
        g.entry((*k, *w)).or_default().push((ids.clone(), *upd));
    }
    g
}

/// Everything an operator emitted, as a sorted multiset (order across keys is not specified).
fn multiset(out: &[Emitted]) -> Vec<String> {
    let mut v: Vec<String> = out.iter().map(|e| format!("{:?}", e.out)).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Generators.

fn events(max: usize) -> impl Strategy<Value = Vec<(u8, i64)>> {
    prop::collection::vec((0u8..3, -120i64..120), 0..max)
}

fn tumbling() -> impl Strategy<Value = Spec> {
    (1i64..40)
        .prop_flat_map(|size| (Just(size), -(size - 1)..size))
        .prop_map(|(size, offset)| Spec::Tumbling { size, offset })
}

fn sliding() -> impl Strategy<Value = Spec> {
    (1i64..40, 1i64..20)
        .prop_flat_map(|(size, slide)| (Just(size), Just(slide), -(slide - 1)..slide))
        .prop_map(|(size, slide, offset)| Spec::Sliding {
            size,
            slide,
            offset,
        })
}

fn session() -> impl Strategy<Value = Spec> {
    (1i64..30).prop_map(|gap| Spec::Session { gap })
}

fn any_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![tumbling(), sliding(), session()]
}

/// (events, jitter per event, batch cuts) for disordered arrival.
fn disordered(
    max: usize,
    max_jitter: i64,
) -> impl Strategy<Value = (Vec<(u8, i64)>, Vec<i64>, Vec<usize>)> {
    (
        events(max),
        prop::collection::vec(0..=max_jitter, max),
        prop::collection::vec(1usize..5, max),
    )
}

/// Extra watermark delay the session properties need. A session `[a, e)` fires at `W = e − 1`,
/// yet an element at `ts = e` is not late then (`e > W`) and would have merged with it
/// (`e − last = gap`): it starts a new session instead, as in Flink. So sessions come out the
/// same as from an unbounded buffer only when the watermark trails the disorder by one more
/// millisecond; with ties split across batches even sorted input needs it.
const SESSION_SLACK: i64 = 1;

const CASES: u32 = 1000;

/// Runs `test` on `CASES` generated cases and prints how many passed (visible with
/// `--nocapture`); on failure panics with the shrunk minimal input.
fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        // The runner is driven by hand, so there is no source file to persist failures next to;
        // a failure prints its minimal input instead.
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
// The eight properties.

/// 1. Each element is in exactly one tumbling window, `[start, start + size)` with
///    `start = ts − floor_mod(ts − offset, size)` (negative timestamps included).
#[test]
fn p1_tumbling_each_element_in_exactly_one_window_at_floor_mod_start() {
    check(
        "p1_tumbling_each_element_in_exactly_one_window_at_floor_mod_start",
        (tumbling(), disordered(40, 0)),
        |(spec, (evs, _, cuts))| {
            let Spec::Tumbling { size, offset } = spec else {
                unreachable!()
            };
            let steps = script(&evs, &[], &cuts, 0);
            let out = drive(&mut new_op(spec, 0), &steps);
            let (res, late) = split(&out);
            prop_assert!(late.is_empty());
            let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
            for ((k, w), firings) in &res {
                prop_assert_eq!(firings.len(), 1, "one firing per window without late data");
                for id in &firings[0].0 {
                    let (ek, ts) = evs[*id as usize];
                    *seen.entry(*id).or_default() += 1;
                    let start = ts - (ts - offset).rem_euclid(size);
                    prop_assert_eq!(*k, ek);
                    prop_assert_eq!(*w, win(start, start + size));
                }
            }
            prop_assert_eq!(seen.len(), evs.len());
            prop_assert!(seen.values().all(|&n| n == 1));
            Ok(())
        },
    );
}

/// 2. Each element is in exactly the sliding windows `[s, s + size)` with
///    `s ≡ offset (mod slide)` and `s ≤ ts < s + size`: ceil or floor of size/slide of them;
///    with size < slide an element in a gap gets none and is counted as skipped.
#[test]
fn p2_sliding_element_in_exactly_the_aligned_windows_containing_it() {
    check(
        "p2_sliding_element_in_exactly_the_aligned_windows_containing_it",
        (sliding(), disordered(40, 0)),
        |(spec, (evs, _, cuts))| {
            let Spec::Sliding { size, slide, .. } = spec else {
                unreachable!()
            };
            let steps = script(&evs, &[], &cuts, 0);
            let mut op = new_op(spec, 0);
            let out = drive(&mut op, &steps);
            let (res, late) = split(&out);
            prop_assert!(late.is_empty());
            let mut got: BTreeMap<u32, BTreeSet<Window>> = BTreeMap::new();
            for ((_, w), firings) in &res {
                prop_assert_eq!(firings.len(), 1);
                for id in &firings[0].0 {
                    got.entry(*id).or_default().insert(*w);
                }
            }
            let mut gaps = 0;
            for (i, &(_, ts)) in evs.iter().enumerate() {
                let want: BTreeSet<Window> = ref_windows(spec, ts).into_iter().collect();
                let n = want.len() as i64;
                if size >= slide {
                    prop_assert!(n == size / slide || n == (size + slide - 1) / slide);
                } else {
                    prop_assert!(n <= 1);
                }
                if want.is_empty() {
                    gaps += 1;
                }
                prop_assert_eq!(got.remove(&(i as u32)).unwrap_or_default(), want);
            }
            prop_assert_eq!(op.skipped_records(), gaps);
            Ok(())
        },
    );
}

/// 3. Sessions per key are disjoint, separated by more than `gap` between the last element
///    of one and the first of the next (`next − prev ≤ gap` merges), and cover their elements:
///    exactly the reference partition of the sorted timestamps.
#[test]
fn p3_session_windows_disjoint_separated_by_gap_and_covering_their_elements() {
    check(
        "p3_session_windows_disjoint_separated_by_gap_and_covering_their_elements",
        (session(), disordered(40, 0)),
        |(spec, (evs, _, cuts))| {
            let Spec::Session { gap } = spec else {
                unreachable!()
            };
            // Delay 1, not 0: see `SESSION_SLACK`.
            let steps = script(&evs, &[], &cuts, SESSION_SLACK);
            let out = drive(&mut new_op(spec, 0), &steps);
            let (res, late) = split(&out);
            prop_assert!(late.is_empty());
            // Reference: sort each key's elements, split where next − prev > gap.
            let mut want = Firings::new();
            for key in 0u8..3 {
                let mut mine: Vec<(i64, u32)> = evs
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.0 == key)
                    .map(|(i, e)| (e.1, i as u32))
                    .collect();
                mine.sort();
                let mut run: Vec<(i64, u32)> = Vec::new();
                let close = |run: &mut Vec<(i64, u32)>, want: &mut BTreeMap<_, _>| {
                    if let (Some(first), Some(last)) = (run.first(), run.last()) {
                        let mut ids: Vec<u32> = run.iter().map(|x| x.1).collect();
                        ids.sort();
                        want.insert((key, win(first.0, last.0 + gap)), vec![(ids, false)]);
                    }
                    run.clear();
                };
                for x in mine {
                    if run.last().is_some_and(|l| x.0 - l.0 > gap) {
                        close(&mut run, &mut want);
                    }
                    run.push(x);
                }
                close(&mut run, &mut want);
            }
            // The structural claims, stated directly as well.
            let mut per_key: BTreeMap<u8, Vec<Window>> = BTreeMap::new();
            for (k, w) in res.keys() {
                per_key.entry(*k).or_default().push(*w);
            }
            for ws in per_key.values() {
                for pair in ws.windows(2) {
                    // Last element of a session is at end − gap; the next starts at its first.
                    prop_assert!(pair[1].start.0 - (pair[0].end.0 - gap) > gap);
                }
            }
            prop_assert_eq!(res, want);
            Ok(())
        },
    );
}

/// 4. Any arrival order whose disorder stays within the watermark bound gives the same
///    final results as sorted input, for every assigner.
#[test]
fn p4_order_independence_within_watermark_bound() {
    check(
        "p4_order_independence_within_watermark_bound",
        (
            any_spec(),
            disordered(40, 30),
            prop::collection::vec(1usize..5, 40),
        ),
        |(spec, (evs, jitter, cuts), sorted_cuts)| {
            let disordered = drive(
                &mut new_op(spec, 0),
                &script(&evs, &jitter, &cuts, 30 + SESSION_SLACK),
            );
            let sorted = drive(
                &mut new_op(spec, 0),
                &script(&evs, &[], &sorted_cuts, SESSION_SLACK),
            );
            prop_assert!(
                split(&disordered).1.is_empty(),
                "delay ≥ jitter: nothing is late"
            );
            prop_assert_eq!(split(&disordered).0, split(&sorted).0);
            Ok(())
        },
    );
}

/// 5. Results with parallelism N (input partitioned by `partition_of(key, N)` over N
///    instances, every instance seeing every watermark) equal results with parallelism 1,
///    late data and allowed lateness included.
#[test]
fn p5_parallelism_n_equals_parallelism_1() {
    check(
        "p5_parallelism_n_equals_parallelism_1",
        (
            any_spec(),
            disordered(40, 40),
            0i64..20,
            0i64..20,
            2usize..5,
        ),
        |(spec, (evs, jitter, cuts), delay, lateness, n)| {
            let steps = script(&evs, &jitter, &cuts, delay);
            let one = drive(&mut new_op(spec, lateness), &steps);
            let mut all = Vec::new();
            for i in 0..n {
                let part: Vec<Step> = steps
                    .iter()
                    .map(|s| match s {
                        Step::Batch(evs) => Step::Batch(
                            evs.iter()
                                .filter(|e| partition_of(&e.0, n) == i)
                                .copied()
                                .collect(),
                        ),
                        Step::Wm(w) => Step::Wm(*w),
                    })
                    .collect();
                all.extend(drive(&mut new_op(spec, lateness), &part));
            }
            prop_assert_eq!(multiset(&all), multiset(&one));
            Ok(())
        },
    );
}

/// 6. Checkpoint at any step (mid-window included), lose the work done after it, restore
///    into a fresh operator whose watermark restarts at MIN, replay: the output before the
///    checkpoint plus the output after the restore equals the uninterrupted run's.
#[test]
fn p6_checkpoint_restore_at_any_point_equals_uninterrupted_run() {
    check(
        "p6_checkpoint_restore_at_any_point_equals_uninterrupted_run",
        (
            any_spec(),
            disordered(40, 40),
            0i64..20,
            0i64..20,
            any::<prop::sample::Index>(),
            0usize..4,
        ),
        |(spec, (evs, jitter, cuts), delay, lateness, at, lost)| {
            let steps = script(&evs, &jitter, &cuts, delay);
            let uninterrupted = drive(&mut new_op(spec, lateness), &steps);
            let k = at.index(steps.len() + 1);
            let mut first = new_op(spec, lateness);
            let mut out = drive(&mut first, &steps[..k]);
            let snap = first.snapshot().unwrap().unwrap();
            // Work after the checkpoint is lost with the crash.
            let _ = drive(&mut first, &steps[k..(k + lost).min(steps.len())]);
            let mut restored = new_op(spec, lateness);
            restored.restore(&snap).unwrap();
            // The runtime's watermark restarts at MIN and regenerates from below.
            let mut replay = vec![Step::Wm(i64::MIN)];
            if let Some(Step::Wm(w)) = steps[..k].iter().rev().find(|s| matches!(s, Step::Wm(_))) {
                replay.push(Step::Wm(w.saturating_sub(50)));
            }
            replay.extend_from_slice(&steps[k..]);
            out.extend(drive(&mut restored, &replay));
            prop_assert_eq!(multiset(&out), multiset(&uninterrupted));
            prop_assert_eq!(
                restored.open_windows(),
                0,
                "watermark MAX cleans every window"
            );
            Ok(())
        },
    );
}

/// 7. Lateness: an element beyond allowed lateness never changes an emitted result and
///    appears on the late output; one within allowed lateness produces an update whose value
///    equals the reference. Checked against the naive reference simulation, firing by firing.
#[test]
fn p7_lateness_updates_within_allowed_lateness_and_late_output_beyond() {
    check(
        "p7_lateness_updates_within_allowed_lateness_and_late_output_beyond",
        (any_spec(), disordered(40, 60), 0i64..20, 0i64..30),
        |(spec, (evs, jitter, cuts), delay, lateness)| {
            let steps = script(&evs, &jitter, &cuts, delay);
            let mut op = new_op(spec, lateness);
            let out = drive(&mut op, &steps);
            let want = reference(spec, lateness, &steps);
            let (res, late) = split(&out);
            prop_assert_eq!(&late, &want.late);
            prop_assert_eq!(op.late_records(), want.late.len() as u64);
            prop_assert_eq!(op.skipped_records(), want.skipped);
            // Late elements are in no result.
            for firings in res.values() {
                for (ids, _) in firings {
                    prop_assert!(ids.iter().all(|id| !late.contains(id)));
                }
            }
            prop_assert_eq!(res, group(&want.results));
            Ok(())
        },
    );
}

/// 8. Firing: no window fires before the watermark reaches its max timestamp (end − 1);
///    with allowed lateness 0 and no late data each fires exactly once, at the first
///    watermark ≥ end − 1; the operator's watermark never decreases, even when its input
///    regresses (as after a restore).
#[test]
fn p8_no_window_fires_before_watermark_reaches_end_minus_1() {
    check(
        "p8_no_window_fires_before_watermark_reaches_end_minus_1",
        (
            any_spec(),
            disordered(40, 20),
            prop::collection::vec((any::<prop::sample::Index>(), 0i64..100), 0..5),
        ),
        |(spec, (evs, jitter, cuts), regress)| {
            let mut steps = script(&evs, &jitter, &cuts, 20);
            for (at, by) in regress {
                let i = at.index(steps.len());
                let w = match steps[..i].iter().rev().find(|s| matches!(s, Step::Wm(_))) {
                    Some(Step::Wm(w)) => w.saturating_sub(by),
                    _ => i64::MIN,
                };
                steps.insert(i, Step::Wm(w));
            }
            let mut op = new_op(spec, 0);
            let mut out = Vec::new();
            let mut last_wm = i64::MIN;
            let mut input_wm = i64::MIN;
            for s in &steps {
                let before = out.len();
                let prev = op.watermark().0;
                step(&mut op, s, &mut out);
                if let Step::Wm(w) = s {
                    input_wm = input_wm.max(*w);
                }
                prop_assert!(op.watermark().0 >= last_wm, "watermark regressed");
                prop_assert_eq!(op.watermark().0, input_wm);
                last_wm = op.watermark().0;
                for e in &out[before..] {
                    if let Either::Left(r) = &e.out {
                        let max_ts = r.window.max_timestamp().0;
                        prop_assert!(max_ts <= e.wm, "{:?} fired at watermark {}", r.window, e.wm);
                        // Fired at the first watermark that reached it: the previous one did not.
                        prop_assert!(max_ts > prev, "{:?} fired late, at {}", r.window, e.wm);
                        prop_assert!(!r.is_update);
                    }
                }
            }
            let (res, late) = split(&out);
            prop_assert!(late.is_empty());
            prop_assert!(
                res.values().all(|f| f.len() == 1),
                "each window fires exactly once"
            );
            // ... and none is dropped without firing: every element that has a window is in one.
            let fired: BTreeSet<u32> = res.values().flat_map(|f| f[0].0.iter().copied()).collect();
            let windowed: BTreeSet<u32> = (0..evs.len() as u32)
                .filter(|&i| !ref_windows(spec, evs[i as usize].1).is_empty())
                .collect();
            prop_assert_eq!(fired, windowed);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Worked examples of the conventions, as plain tests.

fn run_examples(spec: Spec, lateness: i64, steps: &[Step]) -> (Vec<Res>, Vec<u32>) {
    let out = drive(&mut new_op(spec, lateness), steps);
    let mut res = Vec::new();
    let mut late = Vec::new();
    for e in out {
        match e.out {
            Either::Left(r) => res.push((r.key, r.window, r.value, r.is_update)),
            Either::Right(ev) => late.push(ev.2),
        }
    }
    (res, late)
}

#[test]
fn w4_sessions_merge_when_next_minus_prev_equals_gap() {
    let steps = vec![
        Step::Batch(vec![(0, 0, 0), (0, 10, 1), (0, 21, 2)]),
        Step::Wm(i64::MAX),
    ];
    let (res, _) = run_examples(Spec::Session { gap: 10 }, 0, &steps);
    assert_eq!(
        res,
        vec![
            (0, win(0, 20), vec![0, 1], false),
            (0, win(21, 31), vec![2], false)
        ]
    );
}

#[test]
fn w4_late_element_within_lateness_bridges_two_emitted_sessions_into_an_update() {
    // Sessions [0,10) and [15,25) fire at watermark 30; the element at 8 (late, within
    // lateness 100) has proto-window [8,18), which touches both: one session [0,25), fired at
    // once and flagged as an update of what was emitted.
    let steps = vec![
        Step::Batch(vec![(0, 0, 0), (0, 15, 1)]),
        Step::Wm(30),
        Step::Batch(vec![(0, 8, 2)]),
        Step::Wm(i64::MAX),
    ];
    let (res, late) = run_examples(Spec::Session { gap: 10 }, 100, &steps);
    assert!(late.is_empty());
    assert_eq!(
        res,
        vec![
            (0, win(0, 10), vec![0], false),
            (0, win(15, 25), vec![1], false),
            (0, win(0, 25), vec![0, 1, 2], true),
        ]
    );
}

#[test]
fn t7_cleanup_at_watermark_equal_to_max_timestamp_plus_lateness() {
    // Tumbling [0,10), lateness 5: the window is late at W = 9 + 5 = 14 (≥, not >).
    let spec = Spec::Tumbling {
        size: 10,
        offset: 0,
    };
    let steps = vec![
        Step::Batch(vec![(0, 1, 0)]),
        Step::Wm(9),
        Step::Batch(vec![(0, 2, 1)]),
        Step::Wm(13),
        Step::Batch(vec![(0, 3, 2)]),
        Step::Wm(14),
        Step::Batch(vec![(0, 4, 3)]),
        Step::Wm(i64::MAX),
    ];
    let (res, late) = run_examples(spec, 5, &steps);
    assert_eq!(
        res,
        vec![
            (0, win(0, 10), vec![0], false),
            (0, win(0, 10), vec![0, 1], true),
            (0, win(0, 10), vec![0, 1, 2], true),
        ]
    );
    assert_eq!(late, vec![3]);
}

#[test]
fn t7_element_late_for_some_sliding_windows_is_added_to_the_open_ones_only() {
    // size 10, slide 5: ts 7 is in [0,10) and [5,15). At W = 9, [0,10) has fired (L = 0,
    // so it is gone) and [5,15) is open: the element goes there, not to the late output.
    let spec = Spec::Sliding {
        size: 10,
        slide: 5,
        offset: 0,
    };
    let steps = vec![
        Step::Batch(vec![(0, 6, 0)]),
        Step::Wm(9),
        Step::Batch(vec![(0, 7, 1)]),
        Step::Wm(i64::MAX),
    ];
    let (res, late) = run_examples(spec, 0, &steps);
    assert!(late.is_empty());
    assert_eq!(
        res,
        vec![
            (0, win(0, 10), vec![0], false),
            (0, win(5, 15), vec![0, 1], false),
        ]
    );
}
