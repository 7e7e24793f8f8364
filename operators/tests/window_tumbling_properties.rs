//! Tumbling windows: each element is in exactly one window, at the floor-mod start.

mod window_properties;

use proptest::prelude::*;
use std::collections::BTreeMap;
use window_properties::*;

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
