//! Session windows: disjoint per key, separated by more than the gap, covering their elements;
//! `next − prev = gap` still merges, and a late element within lateness bridges sessions.

mod window_properties;

use proptest::prelude::*;
use std::collections::BTreeMap;
use watershed_core::Window;
use window_properties::*;

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
