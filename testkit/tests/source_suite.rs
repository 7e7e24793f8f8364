//! The source conformance suite, run against core's bounded sources and against a source
//! broken on purpose.

use async_trait::async_trait;
use std::io::Write;
use std::time::Duration;
use watershed_core::connectors::{GeneratorPosition, GeneratorSource, JsonLinesSource};
use watershed_core::{BoxError, EventTime, Record, Source, SourceEvent};
use watershed_testkit::{SourceSuite, TestkitError, SOURCE_RULES};

fn generator() -> GeneratorSource<u64> {
    GeneratorSource::sized(vec![25, 0, 40], |s, i| {
        Record::new(s as u64 * 1_000 + i, EventTime(i as i64))
    })
    .batch_size(7)
}

/// Rule: core's `GeneratorSource` (uneven and empty splits, several batches per split) passes
/// the source suite.
#[tokio::test]
async fn generator_source_resumes_at_the_next_record() {
    let checked = SourceSuite::new(generator, |v: &u64| v.to_string())
        .run()
        .await
        .unwrap();
    assert_eq!(checked, SOURCE_RULES.to_vec());
}

/// Rule: core's `JsonLinesSource` (two files, a position that is a byte offset) passes the
/// source suite.
#[tokio::test]
async fn json_lines_source_resumes_at_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (f, lines) in [("a.jsonl", 30), ("b.jsonl", 11)] {
        let path = dir.path().join(f);
        let mut file = std::fs::File::create(&path).unwrap();
        for i in 0..lines {
            writeln!(file, "{{\"file\":\"{f}\",\"line\":{i}}}").unwrap();
        }
        paths.push(path);
    }
    let checked = SourceSuite::new(
        move || JsonLinesSource::new(paths.clone()).batch_size(4),
        |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned(),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(checked.len(), 3);
}

/// A generator whose position is one record behind: a restore repeats a record.
struct Repeats(GeneratorSource<u64>);

#[async_trait]
impl Source for Repeats {
    type Item = u64;
    type Position = GeneratorPosition;

    async fn open(&mut self, restored: Option<GeneratorPosition>) -> Result<(), BoxError> {
        self.0.open(restored).await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<u64>, BoxError> {
        self.0.poll(max_wait).await
    }

    fn position(&self) -> GeneratorPosition {
        let mut p = self.0.position();
        p.next.iter_mut().for_each(|n| *n = n.saturating_sub(1));
        p
    }
}

/// Rule: the suite catches a source whose position is not the next record (here one behind,
/// so a restore repeats a record), naming the split and the repeated record.
#[tokio::test]
async fn the_suite_catches_a_position_that_repeats_a_record() {
    let err = SourceSuite::new(|| Repeats(generator()), |v: &u64| v.to_string())
        .run()
        .await
        .unwrap_err();
    match err {
        TestkitError::Conformance { rule, detail } => {
            assert_eq!(rule, SOURCE_RULES[2]);
            assert!(detail.contains("gen-0"), "{detail}");
        }
        other => panic!("expected a broken rule, got {other}"),
    }
}

/// Rule: a source that never finishes is reported as breaking "a bounded source finishes",
/// not left to hang the test.
#[tokio::test]
async fn the_suite_reports_a_source_that_never_finishes() {
    let err = SourceSuite::new(|| generator().unbounded(), |v: &u64| v.to_string())
        .max_polls(50)
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, TestkitError::Conformance { rule, .. } if rule == SOURCE_RULES[0]),
        "{err}"
    );
}
