//! Sliding windows: each element is in exactly the aligned windows that contain it; one in a
//! gap (size < slide) is in none and counted as skipped.

mod window_properties;

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use watershed_core::Window;
use window_properties::*;

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
