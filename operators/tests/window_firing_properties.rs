//! Firing: no window fires before the watermark reaches `end − 1`, each fires once at the first
//! watermark that does, and the operator's watermark never goes back.

mod window_properties;

use proptest::prelude::*;
use std::collections::BTreeSet;
use watershed_core::Either;
use window_properties::*;

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
