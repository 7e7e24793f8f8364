//! The test driver, with real operators: what a user's test of their pipeline function can rely
//! on.

use std::time::Duration;
use watershed_core::{EventTime, KeyedStream, Stream, TumblingWindows, Window};
use watershed_operators::{prelude::*, Count, WindowResult};
use watershed_testkit::{TestDriver, TestPipeline, TestkitError};

const MINUTE: i64 = 60_000;

type Counts = WindowResult<String, u64>;

/// Views per page per minute: the kind of function a user tests.
fn page_counts(views: Stream<String>) -> Stream<WindowResult<String, u64>> {
    views
        .key_by(|page: &String| page.clone())
        .window(TumblingWindows::of(Duration::from_secs(60)))
        .aggregate(Count)
}

fn counts_pipeline(p: &mut TestPipeline<'_>) {
    let views = p.input::<String>("views");
    p.output("counts", page_counts(views));
}

fn result(page: &str, minute: i64, count: u64) -> WindowResult<String, u64> {
    WindowResult {
        key: page.into(),
        window: Window {
            start: EventTime(minute * MINUTE),
            end: EventTime((minute + 1) * MINUTE),
        },
        value: count,
        is_update: false,
    }
}

fn sorted(mut v: Vec<WindowResult<String, u64>>) -> Vec<WindowResult<String, u64>> {
    v.sort_by(|a, b| (a.window.start, &a.key).cmp(&(b.window.start, &b.key)));
    v
}

/// Rule: a tumbling window fires, with its end − 1 as event time, only once the watermark
/// reaches its end − 1; before that nothing is output.
#[test]
fn window_counts_appear_only_when_the_watermark_reaches_the_window_end() {
    let mut driver = TestDriver::new(counts_pipeline).unwrap();
    driver
        .input("views")
        .unwrap()
        .send("/a".to_string(), EventTime(1_000))
        .send("/b".to_string(), EventTime(2_000))
        .send("/a".to_string(), EventTime(59_999))
        .send("/a".to_string(), EventTime(MINUTE + 5));
    driver.advance_watermark(EventTime(MINUTE - 2)).unwrap();
    assert!(driver.output::<Counts>("counts").unwrap().is_empty());

    driver.advance_watermark(EventTime(MINUTE - 1)).unwrap();
    let out = driver
        .output_with_times::<WindowResult<String, u64>>("counts")
        .unwrap();
    let mut values: Vec<_> = out.iter().map(|(v, _)| v.clone()).collect();
    values.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(values, vec![result("/a", 0, 2), result("/b", 0, 1)]);
    assert!(out.iter().all(|(_, t)| *t == EventTime(MINUTE - 1)));
}

/// Rule: keyed window state (here with two parallel instances) survives a restart: the window
/// fires once, with the records from before and after the restart.
#[test]
fn keyed_window_state_survives_a_restart() {
    let mut driver = TestDriver::builder(|p: &mut TestPipeline<'_>| {
        let views = p.input::<String>("views");
        let keyed: KeyedStream<String, String> = views.key_by(|v: &String| v.clone());
        let counts = keyed
            .parallelism(2)
            .window(TumblingWindows::of(Duration::from_secs(60)))
            .aggregate(Count);
        p.output("counts", counts);
    })
    .build()
    .unwrap();
    let pages = ["/a", "/b", "/c", "/a"];
    driver
        .input("views")
        .unwrap()
        .send_all(pages.iter().map(|p| (p.to_string(), EventTime(10))));
    driver.checkpoint().unwrap();
    driver.restart().unwrap();
    driver
        .input("views")
        .unwrap()
        .send("/a".to_string(), EventTime(20))
        .advance_watermark(EventTime(MINUTE - 1));
    let out = driver.output::<Counts>("counts").unwrap();
    assert_eq!(
        sorted(out),
        vec![result("/a", 0, 3), result("/b", 0, 1), result("/c", 0, 1)]
    );
}

/// Rule: a restart is a crash: records sent after the last checkpoint are not lost but replayed
/// from the input, and output committed before the crash is not repeated.
#[test]
fn records_not_yet_checkpointed_are_replayed_after_a_restart_and_output_is_not_repeated() {
    let mut driver = TestDriver::new(counts_pipeline).unwrap();
    driver
        .input("views")
        .unwrap()
        .send("/a".to_string(), EventTime(1))
        .advance_watermark(EventTime(MINUTE - 1));
    assert_eq!(
        driver.output::<Counts>("counts").unwrap(),
        vec![result("/a", 0, 1)]
    );
    driver
        .input("views")
        .unwrap()
        .send("/a".to_string(), EventTime(MINUTE + 1))
        .send("/b".to_string(), EventTime(MINUTE + 2));
    driver.restart().unwrap();
    driver.advance_watermark(EventTime(2 * MINUTE - 1)).unwrap();
    let out = driver.output::<Counts>("counts").unwrap();
    assert_eq!(out[0], result("/a", 0, 1));
    assert_eq!(
        sorted(out[1..].to_vec()),
        vec![result("/a", 1, 1), result("/b", 1, 1)]
    );
}

/// Rule: where two inputs meet, the watermark is the slower one's: a window fires only once
/// both inputs' watermarks passed its end.
#[test]
fn unioned_inputs_fire_windows_only_when_both_watermarks_pass() {
    let mut driver = TestDriver::new(|p: &mut TestPipeline<'_>| {
        let web = p.input::<String>("web");
        let app = p.input::<String>("app");
        p.output("counts", page_counts(web.union(app)));
    })
    .unwrap();
    driver
        .input("web")
        .unwrap()
        .send("/a".to_string(), EventTime(5));
    driver
        .input("app")
        .unwrap()
        .send("/a".to_string(), EventTime(7));
    driver
        .input::<String>("web")
        .unwrap()
        .advance_watermark(EventTime(MINUTE - 1));
    assert!(driver.output::<Counts>("counts").unwrap().is_empty());
    driver
        .input::<String>("app")
        .unwrap()
        .advance_watermark(EventTime(MINUTE - 1));
    assert_eq!(
        driver.output::<Counts>("counts").unwrap(),
        vec![result("/a", 0, 2)]
    );
}

/// Rule: a record at or before the watermark whose window has fired is late: dropped, the
/// window does not fire again.
#[test]
fn a_late_record_is_dropped_after_its_window_fired() {
    let mut driver = TestDriver::new(counts_pipeline).unwrap();
    driver
        .input("views")
        .unwrap()
        .send("/a".to_string(), EventTime(100))
        .advance_watermark(EventTime(MINUTE - 1))
        .send("/a".to_string(), EventTime(200));
    driver.advance_watermark(EventTime(5 * MINUTE)).unwrap();
    assert_eq!(
        driver.output::<Counts>("counts").unwrap(),
        vec![result("/a", 0, 1)]
    );
}

/// Rule: with `input_following_records`, records move the watermark as in production
/// (monotonous: to the newest event time − 1), without a hand-moved watermark.
#[test]
fn an_input_following_records_moves_the_watermark_with_them() {
    let mut driver = TestDriver::new(|p: &mut TestPipeline<'_>| {
        let views = p.input_following_records::<String>("views", Duration::ZERO);
        p.output("counts", page_counts(views));
    })
    .unwrap();
    driver
        .input("views")
        .unwrap()
        .send("/a".to_string(), EventTime(10))
        .send("/a".to_string(), EventTime(MINUTE - 1));
    assert!(driver.output::<Counts>("counts").unwrap().is_empty());
    driver
        .input("views")
        .unwrap()
        .send("/b".to_string(), EventTime(MINUTE));
    assert_eq!(
        driver.output::<Counts>("counts").unwrap(),
        vec![result("/a", 0, 2)]
    );
}

/// Rule: finishing ends every input, so every open window fires; afterwards input is refused
/// with `Finished`, and the outputs stay readable.
#[test]
fn finish_fires_every_open_window_then_refuses_input() {
    let mut driver = TestDriver::new(counts_pipeline).unwrap();
    driver
        .input("views")
        .unwrap()
        .send("/a".to_string(), EventTime(1))
        .send("/a".to_string(), EventTime(3 * MINUTE));
    let summary = driver.finish().unwrap();
    assert_eq!(summary.records_in, 2);
    assert_eq!(
        driver.output::<Counts>("counts").unwrap(),
        vec![result("/a", 0, 1), result("/a", 3, 1)]
    );
    assert!(matches!(
        driver.input::<String>("views"),
        Err(TestkitError::Finished)
    ));
    assert!(matches!(driver.restart(), Err(TestkitError::Finished)));
}

/// Rule: an input name the pipeline function did not declare is an error naming the declared
/// inputs, not a panic; so is an output name.
#[test]
fn an_unknown_input_or_output_name_is_an_error_naming_the_declared_ones() {
    let mut driver = TestDriver::new(counts_pipeline).unwrap();
    let err = driver.input::<String>("clicks").err().unwrap();
    assert!(matches!(err, TestkitError::UnknownInput { .. }));
    assert_eq!(
        err.to_string(),
        "no input named `clicks`; the pipeline function declares: `views`"
    );
    let err = driver.output::<u64>("totals").unwrap_err();
    assert!(err.to_string().contains("`counts`"), "{err}");
}

/// Rule: using an input with another record type than the function declared is an error
/// naming both types.
#[test]
fn an_input_used_with_another_type_is_an_error_naming_both_types() {
    let mut driver = TestDriver::new(counts_pipeline).unwrap();
    let err = driver.input::<u64>("views").err().unwrap();
    let text = err.to_string();
    assert!(text.contains("String") && text.contains("u64"), "{text}");
}

/// Rule: a function that declares the same input twice, or none, is refused when the driver
/// is built.
#[test]
fn a_function_declaring_an_input_twice_or_none_is_refused() {
    let twice = TestDriver::new(|p: &mut TestPipeline<'_>| {
        let a = p.input::<String>("views");
        let b = p.input::<String>("views");
        p.output("out", a.union(b));
    });
    assert!(matches!(twice, Err(TestkitError::DuplicateName { name }) if name == "views"));
    let none = TestDriver::new(|_: &mut TestPipeline<'_>| {});
    assert!(matches!(none, Err(TestkitError::NoInputs)));
}

/// Rule: a panic in the user's function is reported by the driver as a pipeline error (with
/// the panic's message), not a panic of the test; a restart replays the record, so it fails
/// again as production would.
#[test]
fn a_panic_in_the_pipeline_is_an_error_and_a_restart_replays_the_record() {
    let mut driver = TestDriver::new(|p: &mut TestPipeline<'_>| {
        let n = p.input::<i64>("numbers");
        p.output(
            "doubled",
            n.map(|x: i64| {
                if x < 0 {
                    panic!("negative: {x}")
                } else {
                    x * 2
                }
            }),
        );
    })
    .unwrap();
    driver.input("numbers").unwrap().send(1i64, EventTime(1));
    assert_eq!(driver.output::<i64>("doubled").unwrap(), vec![2]);
    driver.input("numbers").unwrap().send(-1i64, EventTime(2));
    let err = driver.output::<i64>("doubled").unwrap_err();
    assert!(
        matches!(err, TestkitError::Pipeline(_)) && err.to_string().contains("negative: -1"),
        "{err}"
    );
    // What was committed before the failure stays readable; sending more is pointless until
    // a restart, and a checkpoint says so.
    assert_eq!(driver.output::<i64>("doubled").unwrap(), vec![2]);
    let again = driver.checkpoint().unwrap_err();
    assert!(matches!(again, TestkitError::NotRunning), "{again}");
    // The poisoned record is in the input for good: a restart replays it and fails again.
    assert!(matches!(driver.restart(), Err(TestkitError::Pipeline(_))));
}

/// Rule: the driver runs its own runtime, so building it inside a tokio runtime is an error
/// that says to use a plain #[test].
#[test]
fn building_the_driver_inside_a_tokio_runtime_is_an_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(async { TestDriver::new(counts_pipeline).err() })
        .unwrap();
    assert!(matches!(err, TestkitError::InsideRuntime), "{err}");
}

/// Rule: records the pipeline rejects (here undecodable JSON) reach the dead-letter output
/// with their reason and original bytes, and the good records are unaffected.
#[test]
fn rejected_records_reach_the_dead_letter_output_with_their_reason() {
    use watershed_core::DeadLetter;
    let mut driver = TestDriver::new(|p: &mut TestPipeline<'_>| {
        let raw = p.input::<bytes::Bytes>("raw");
        p.output("numbers", raw.decode_json::<u64>());
        p.dead_letters("errors");
    })
    .unwrap();
    driver
        .input("raw")
        .unwrap()
        .send(bytes::Bytes::from_static(b"7"), EventTime(1))
        .send(bytes::Bytes::from_static(b"not json"), EventTime(2))
        .send(bytes::Bytes::from_static(b"8"), EventTime(3));
    assert_eq!(driver.output::<u64>("numbers").unwrap(), vec![7, 8]);
    let errors = driver.output::<DeadLetter>("errors").unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(&errors[0].payload[..], b"not json");
    assert!(!errors[0].reason.is_empty());
}

/// Rule: a dead-letter output that nothing can reject into takes no part in checkpoints, and
/// the driver does not wait for it.
#[test]
fn a_dead_letter_output_nothing_rejects_into_does_not_hold_the_driver() {
    let mut driver = TestDriver::new(|p: &mut TestPipeline<'_>| {
        let n = p.input::<u64>("n");
        p.output("out", n);
        p.dead_letters("errors");
    })
    .unwrap();
    driver.input("n").unwrap().send(1u64, EventTime(1));
    assert_eq!(driver.output::<u64>("out").unwrap(), vec![1]);
    let none = driver
        .output::<watershed_core::DeadLetter>("errors")
        .unwrap();
    assert!(none.is_empty());
}

/// Rule: the function runs with the configuration the builder gives (here parallelism 3 for
/// every keyed operator), and results do not depend on it.
#[test]
fn the_configured_parallelism_gives_the_same_counts() {
    let mut driver = TestDriver::builder(counts_pipeline)
        .configure(|c| c.parallelism(3))
        .build()
        .unwrap();
    let pages = (0..30).map(|i| (format!("/p{}", i % 6), EventTime(i)));
    driver.input("views").unwrap().send_all(pages);
    driver.advance_watermark(EventTime(MINUTE - 1)).unwrap();
    let out = sorted(driver.output::<Counts>("counts").unwrap());
    let want: Vec<_> = (0..6).map(|p| result(&format!("/p{p}"), 0, 5)).collect();
    assert_eq!(out, want);
}
