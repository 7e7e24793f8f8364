//! Scripts: batches of records interleaved with watermarks, the drivers that feed them to the
//! operator and to the reference model, and the views the properties compare outputs by.

use super::{new_op, Ev, Op, Out, Spec};
use std::collections::{BTreeMap, BTreeSet};
use watershed_core::{Collector, Either, EventTime, Operator, Record, Window};

#[derive(Clone, Debug)]
pub enum Step {
    Batch(Vec<Ev>),
    Wm(i64),
}

/// Arrival order: events sorted by `ts + jitter`, cut into batches of `cuts`; after each batch
/// the bounded-out-of-orderness watermark `max_ts − delay − 1`; at the end the watermark MAX
/// that closes a bounded input. With `delay ≥ max jitter` no element is late.
pub fn script(events: &[(u8, i64)], jitter: &[i64], cuts: &[usize], delay: i64) -> Vec<Step> {
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

pub fn batch(evs: &[Ev]) -> Vec<Record<Ev>> {
    evs.iter()
        .map(|e| Record::new(*e, EventTime(e.1)))
        .collect()
}

/// One emitted record and the operator's watermark when it was emitted.
#[derive(Clone, Debug)]
pub struct Emitted {
    pub wm: i64,
    pub out: Out,
}

pub fn step(op: &mut Op, s: &Step, into: &mut Vec<Emitted>) {
    let mut c: Collector<Out> = Collector::default();
    match s {
        Step::Batch(evs) => op.process(batch(evs), &mut c).unwrap(),
        Step::Wm(w) => op.on_watermark(EventTime(*w), &mut c).unwrap(),
    }
    let wm = op.watermark().0;
    into.extend(c.take().0.into_iter().map(|r| Emitted { wm, out: r.value }));
}

pub fn drive(op: &mut Op, steps: &[Step]) -> Vec<Emitted> {
    let mut out = Vec::new();
    for s in steps {
        step(op, s, &mut out);
    }
    out
}

pub type Res = (u8, Window, Vec<u32>, bool);
/// Each (key, window)'s firings in emission order: (ids, is_update).
pub type Firings = BTreeMap<(u8, Window), Vec<(Vec<u32>, bool)>>;

/// Results grouped per (key, window) in emission order, and the late ids.
pub fn split(out: &[Emitted]) -> (Firings, BTreeSet<u32>) {
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

pub fn group(results: &[Res]) -> Firings {
    let mut g = Firings::new();
    for (k, w, ids, upd) in results {
        g.entry((*k, *w)).or_default().push((ids.clone(), *upd));
    }
    g
}

/// Everything an operator emitted, as a sorted multiset (order across keys is not specified).
pub fn multiset(out: &[Emitted]) -> Vec<String> {
    let mut v: Vec<String> = out.iter().map(|e| format!("{:?}", e.out)).collect();
    v.sort();
    v
}

/// Runs a hand-written script and lists the results and the late ids in emission order, for
/// the worked examples.
pub fn run_examples(spec: Spec, lateness: i64, steps: &[Step]) -> (Vec<Res>, Vec<u32>) {
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
