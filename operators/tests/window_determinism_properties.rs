//! The same results whatever the delivery: any arrival order within the watermark bound, any
//! parallelism, and a checkpoint and restore at any point.

mod window_properties;

use proptest::prelude::*;
use watershed_core::Operator;
use window_properties::*;

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
