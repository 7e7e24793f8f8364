//! The reference model, the oracle every property is checked against: window assignment
//! straight from the formulas, and Flink's semantics simulated naively. Kept as written when
//! the properties were first stated (only made `pub` to be shared); change the operator, not
//! this.

use super::{win, Ev, Spec, Step};
use std::collections::{BTreeMap, BTreeSet};
use watershed_core::Window;

/// The windows of `ts`, straight from the definitions.
pub fn ref_windows(spec: Spec, ts: i64) -> Vec<Window> {
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
pub struct Reference {
    spec: Spec,
    lateness: i64,
    wm: i64,
    // (key, window) → (ids, emitted, pending)
    wins: BTreeMap<(u8, Window), (BTreeSet<u32>, bool, bool)>,
    pub results: Vec<(u8, Window, Vec<u32>, bool)>,
    pub late: BTreeSet<u32>,
    pub skipped: u64,
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

/// Runs a script through the reference model. Beside the model so that only the fields the
/// properties compare need to be `pub`.
pub fn reference(spec: Spec, lateness: i64, steps: &[Step]) -> Reference {
    let mut r = Reference::new(spec, lateness);
    for s in steps {
        match s {
            Step::Batch(evs) => evs.iter().for_each(|e| r.add(*e)),
            Step::Wm(w) => r.watermark(*w),
        }
    }
    r
}
