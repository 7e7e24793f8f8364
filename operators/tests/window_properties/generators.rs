//! Generators of assigners and disordered inputs, and the runner that checks a property on
//! `CASES` of them.

use super::Spec;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

pub fn events(max: usize) -> impl Strategy<Value = Vec<(u8, i64)>> {
    prop::collection::vec((0u8..3, -120i64..120), 0..max)
}

pub fn tumbling() -> impl Strategy<Value = Spec> {
    (1i64..40)
        .prop_flat_map(|size| (Just(size), -(size - 1)..size))
        .prop_map(|(size, offset)| Spec::Tumbling { size, offset })
}

pub fn sliding() -> impl Strategy<Value = Spec> {
    (1i64..40, 1i64..20)
        .prop_flat_map(|(size, slide)| (Just(size), Just(slide), -(slide - 1)..slide))
        .prop_map(|(size, slide, offset)| Spec::Sliding {
            size,
            slide,
            offset,
        })
}

pub fn session() -> impl Strategy<Value = Spec> {
    (1i64..30).prop_map(|gap| Spec::Session { gap })
}

pub fn any_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![tumbling(), sliding(), session()]
}

/// (events, jitter per event, batch cuts) for disordered arrival.
pub fn disordered(
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
pub const SESSION_SLACK: i64 = 1;

pub const CASES: u32 = 1000;

/// Runs `test` on `CASES` generated cases and prints how many passed (visible with
/// `--nocapture`); on failure panics with the shrunk minimal input.
pub fn check<S: Strategy>(
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
