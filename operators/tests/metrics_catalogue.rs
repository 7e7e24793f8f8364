//! The metrics catalogue (`watershed_core::metric_catalogue::CATALOGUE`) is complete: everything core
//! and the operators emit is in it, with the declared type, labels and unit.
//!
//! This test binary installs a global recorder, so it holds this one test only.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind as UtilKind;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::metric_catalogue::{self as m, MetricKind};
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_operators::Count;

/// (key, id)
type Ev = (u8, u32);

const N: u64 = 600;

/// Mostly in order, 5 ms apart; every 25th record from the 100th on is 400 ms behind: late
/// for the windows and the join (allowed lateness 0).
fn event(_split: usize, i: u64) -> Record<Ev> {
    let ts = i as i64 * 5;
    let ts = if i >= 100 && i.is_multiple_of(25) {
        ts - 400
    } else {
        ts
    };
    Record::new(((i % 3) as u8, i as u32), EventTime(ts))
}

fn kind_of(k: UtilKind) -> MetricKind {
    match k {
        UtilKind::Counter => MetricKind::Counter,
        UtilKind::Gauge => MetricKind::Gauge,
        UtilKind::Histogram => MetricKind::Histogram,
    }
}

/// Rule: every metric a pipeline emits — sources, operators (windows with and without a late
/// output, sliding-window gaps, dedupe, interval join), dead letters, sinks and checkpoints —
/// is in the catalogue, with the declared type, exactly the declared label keys and the
/// declared unit (after `describe_all`); every per-operator series carries the node name the
/// runtime gave the instance; late records are counted under the one name
/// `watershed_late_records_total` with `action` `dropped` or `side_output`; and no source file
/// of core or the operators but the catalogue spells a metric name as a literal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_metric_is_in_the_catalogue() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    m::describe_all();

    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(dir.path()).unwrap();
    let config = PipelineConfig::new("catalogue")
        .checkpoint_store(store)
        .checkpoint_interval(Duration::from_millis(5))
        .error_policy(ErrorPolicy::DeadLetter)
        .handle_signals(false);
    let p = Pipeline::new(config);
    let delay = || WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO);
    let source = GeneratorSource::new(1, N, event).batch_size(5);
    let paced = watershed_testkit::FailingSource::new(source, watershed_testkit::Fault::never())
        .pause_before_polls(Duration::from_micros(300));
    let mut streams = p.source("events", paced, delay()).fan_out(5).into_iter();
    let mut next = || streams.next().unwrap();

    // Dead letters: an operator rejects every 50th record.
    let checked = next().apply(
        "reject",
        FnOperator::new(|batch: Batch<Ev>, out: &mut Collector<Ev>| {
            for r in batch {
                if r.value.1.is_multiple_of(50) {
                    out.reject(DeadLetter::new("every 50th", Vec::new()));
                } else {
                    out.emit(r);
                }
            }
        }),
    );
    checked
        .key_by(|e: &Ev| e.0)
        .window(TumblingWindows::of(Duration::from_millis(10)))
        .aggregate_named("tumbling", Count)
        .sink("tumbling-out", CollectSink::new());
    let (results, late) = next()
        .key_by(|e: &Ev| e.0)
        .window(SlidingWindows::of(
            Duration::from_millis(2),
            Duration::from_millis(10),
        ))
        .aggregate_with_late_named("sliding", Count);
    results.sink("sliding-out", CollectSink::new());
    late.sink("sliding-late", CollectSink::new());
    next()
        .key_by(|e: &Ev| e.0)
        .dedupe_named("dedupe", Duration::from_secs(1))
        .sink("dedupe-out", CollectSink::new());
    next()
        .key_by(|e: &Ev| e.0)
        .interval_join(next().key_by(|e: &Ev| e.0))
        .between(0, 0)
        .named("join")
        .inner()
        .sink("join-out", CollectSink::new());
    p.dead_letter("dead-letters", CollectSink::new());
    p.run().await.expect("runs");

    let mut emitted: BTreeMap<&'static str, BTreeSet<Vec<(String, String)>>> = BTreeMap::new();
    for (key, unit, _help, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let name = key.name().to_string();
        let def = m::find(&name)
            .unwrap_or_else(|| panic!("`{name}` is emitted but not in the catalogue"));
        assert_eq!(kind_of(kind), def.kind, "type of {name}");
        assert_eq!(unit, Some(def.unit), "unit of {name}");
        let labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        let keys: BTreeSet<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        let declared: BTreeSet<&str> = def.labels.iter().copied().collect();
        assert_eq!(keys, declared, "label keys of {name}");
        for (k, v) in &labels {
            if k == m::LABEL_NODE {
                assert_ne!(v, m::UNNAMED_NODE, "{name} of a pipeline node is unnamed");
            }
        }
        if let DebugValue::Counter(0) = value {
            continue;
        }
        emitted.entry(def.name).or_default().insert(labels);
    }

    let series = |name: &str| emitted.get(name).cloned().unwrap_or_default();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<_> = v
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    };
    let sorted = |s: BTreeSet<Vec<(String, String)>>| -> BTreeSet<Vec<(String, String)>> {
        s.into_iter()
            .map(|mut v| {
                v.sort();
                v
            })
            .collect()
    };
    let late = sorted(series(m::LATE_RECORDS));
    for (node, action) in [
        ("tumbling.0", m::ACTION_DROPPED),
        ("sliding.0", m::ACTION_SIDE_OUTPUT),
        ("join.0", m::ACTION_DROPPED),
    ] {
        let want = pairs(&[(m::LABEL_NODE, node), (m::LABEL_ACTION, action)]);
        assert!(late.contains(&want), "late records of {node}: {late:?}");
    }
    for (name, node) in [
        (m::WINDOW_SKIPPED_RECORDS, "sliding.0"),
        (m::DEDUPE_DROPPED, "dedupe.0"),
        (m::RECORDS_REJECTED, "reject"),
        (m::RECORDS_IN, "events"),
        (m::RECORDS_OUT, "tumbling-out"),
    ] {
        let want = pairs(&[(m::LABEL_NODE, node)]);
        assert!(
            series(name).contains(&want),
            "{name}{{node={node}}}: {emitted:?}"
        );
    }
    for name in [
        m::END_TO_END_LATENCY,
        m::CHECKPOINT_DURATION,
        m::CHECKPOINTS,
    ] {
        assert!(emitted.contains_key(name), "{name} emitted: {emitted:?}");
    }

    // No metric name spelled as a literal outside the catalogue.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let catalogue = root.join("core/src/metric_catalogue.rs");
    for dir in ["core/src", "operators/src"] {
        for file in rust_files(&root.join(dir)) {
            if file == catalogue {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                assert!(
                    !code.contains("\"watershed_"),
                    "{}:{}: a metric name literal; add it to core/src/metric_catalogue.rs: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}
