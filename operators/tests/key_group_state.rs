//! Every keyed stateful operator's state by key group, operator by operator: snapshotted by
//! instances at one parallelism and restored by instances at another, it gives the output of
//! one operator that was never interrupted.

use bytes::Bytes;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::key_group::{instance_of_group, key_group_of, KeyBytes};
use watershed_core::{Collector, Either, EventTime, KeyGroups, Operator, Record};
use watershed_operators::{Count, CountWindowAggregate, Dedupe, IntervalJoin, TableJoin};

const MAX: usize = 128;

/// Feeds `batch` then the watermark `wm`, and returns what came out, as sortable strings.
fn feed<O: Operator>(op: &mut O, batch: Vec<Record<O::In>>, wm: EventTime) -> Vec<String>
where
    O::Out: Debug,
{
    let mut out = Collector::default();
    op.process(batch, &mut out).unwrap();
    op.on_watermark(wm, &mut out).unwrap();
    let (records, _) = out.take();
    records
        .iter()
        .map(|r| format!("{:?}@{}", r.value, r.timestamp.0))
        .collect()
}

/// Runs `first` at parallelism `from`, checkpoints by key group, restores at parallelism `to`,
/// runs `second`; returns the sorted output of the second part, and that of one uninterrupted
/// operator.
fn rescaled<O, K>(
    make: impl Fn() -> O,
    key: impl Fn(&O::In) -> K,
    first: (Vec<Record<O::In>>, EventTime),
    second: (Vec<Record<O::In>>, EventTime),
    (from, to): (usize, usize),
) -> (Vec<String>, Vec<String>)
where
    O: Operator,
    O::In: Clone,
    O::Out: Debug,
    K: KeyBytes,
{
    let instance =
        |r: &Record<O::In>, p: usize| instance_of_group(key_group_of(&key(&r.value), MAX), MAX, p);
    let mut reference = make();
    feed(&mut reference, first.0.clone(), first.1);
    let mut expected = feed(&mut reference, second.0.clone(), second.1);
    expected.sort();

    let mut states: Vec<(u16, Bytes)> = Vec::new();
    for i in 0..from {
        let mut op = make();
        let part = first
            .0
            .iter()
            .filter(|r| instance(r, from) == i)
            .cloned()
            .collect();
        feed(&mut op, part, first.1);
        let groups = KeyGroups::for_instance(MAX, from, i);
        let snap = op
            .snapshot_key_groups(&groups)
            .unwrap()
            .expect("state by key group");
        states.extend(snap.into_iter().map(|(g, s)| (g, Bytes::from(s))));
    }
    let mut got = Vec::new();
    for j in 0..to {
        let groups = KeyGroups::for_instance(MAX, to, j);
        let mine: Vec<(u16, Bytes)> = states
            .iter()
            .filter(|(g, _)| groups.range().contains(*g))
            .cloned()
            .collect();
        let mut op = make();
        if !mine.is_empty() {
            op.restore_key_groups(&groups, &mine).unwrap();
        }
        let part = second
            .0
            .iter()
            .filter(|r| instance(r, to) == j)
            .cloned()
            .collect();
        got.extend(feed(&mut op, part, second.1));
    }
    got.sort();
    (got, expected)
}

fn records<T>(items: impl IntoIterator<Item = (T, i64)>) -> Vec<Record<T>> {
    items
        .into_iter()
        .map(|(v, t)| Record::new(v, EventTime(t)))
        .collect()
}

/// Rule: dedupe remembers every key across a rescale from 3 to 2 instances.
#[test]
fn dedupe_state_restores_at_another_parallelism() {
    let make = || Dedupe::new(Arc::new(|v: &u64| v % 37), Duration::from_millis(150));
    let first = records((0..200u64).map(|i| (i, i as i64)));
    let second = records((200..400u64).map(|i| (i, i as i64)));
    let (got, expected) = rescaled(
        make,
        |v| v % 37,
        (first, EventTime(150)),
        (second, EventTime(300)),
        (3, 2),
    );
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

/// Rule: count-window panes carry over a rescale from 2 to 5 instances.
#[test]
fn count_window_panes_restore_at_another_parallelism() {
    let make = || CountWindowAggregate::new(Arc::new(|v: &u64| v % 23), 7, Count);
    let first = records((0..100u64).map(|i| (i, i as i64)));
    let second = records((100..300u64).map(|i| (i, i as i64)));
    let (got, expected) = rescaled(
        make,
        |v| v % 23,
        (first, EventTime(0)),
        (second, EventTime(0)),
        (2, 5),
    );
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

type Side = Either<(u64, u32), (u64, u32)>;

fn side_key(e: &Side) -> u64 {
    match e {
        Either::Left((k, _)) | Either::Right((k, _)) => *k,
    }
}

/// Rule: an interval join's buffered elements (both sides) carry over a rescale from 4 to 3.
#[test]
fn interval_join_buffers_restore_at_another_parallelism() {
    let make = || IntervalJoin::new(Arc::new(side_key), -20, 20).left_outer();
    let items = |from: u32, to: u32| {
        records((from..to).map(|i| {
            let k = u64::from(i % 17);
            let e = if i % 2 == 0 {
                Either::Left((k, i))
            } else {
                Either::Right((k, i))
            };
            (e, i64::from(i))
        }))
    };
    let (got, expected) = rescaled(
        make,
        side_key,
        (items(0, 150), EventTime(100)),
        (items(150, 300), EventTime(400)),
        (4, 3),
    );
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

/// Rule: a table join's table carries over a rescale from 1 to 4 instances.
#[test]
fn table_join_table_restores_at_another_parallelism() {
    type Change = (String, Option<u32>);
    type In = Either<String, Change>;
    let key = |e: &In| match e {
        Either::Left(s) => s.clone(),
        Either::Right((k, _)) => k.clone(),
    };
    let make = move || TableJoin::new(Arc::new(key), Arc::new(|c: Change| c.1)).left();
    let first = records((0..60u32).map(|i| (Either::Right((format!("k{}", i % 20), Some(i))), 0)));
    let second = records((0..40u32).map(|i| (Either::Left(format!("k{}", i % 25)), 1)));
    let (got, expected) = rescaled(
        make,
        key,
        (first, EventTime(0)),
        (second, EventTime(1)),
        (1, 4),
    );
    assert_eq!(expected.len(), 40);
    assert_eq!(got, expected);
}
