//! Lateness: updates within allowed lateness, the late output beyond it, cleanup at exactly
//! `max_ts + L`, and an element late for only some sliding windows.

mod window_properties;

use proptest::prelude::*;
use window_properties::*;

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
