//! Metrics as CloudWatch embedded metric format (its own test binary: the recorder is global).

mod common;

use bytes::Bytes;
use common::event;
use watershed_core::Stream;
use watershed_lambda::{flush_emf, install_emf, KinesisHandler, MemoryTarget};
use watershed_operators::prelude::*;

/// Rule: after an invocation, the EMF lines (JSON, one per line) carry the namespace, the
/// function dimension and the handler's counts of records, outputs and dead letters, as
/// CloudWatch reads them.
#[tokio::test]
async fn an_invocation_is_written_as_emf_lines_with_its_counts() {
    let collector = install_emf("Watershed", "clicks-fn").expect("first recorder");
    let handler = KinesisHandler::builder(
        "emf",
        |raw: Stream<Bytes>| raw.decode_json::<u64>(),
        MemoryTarget::new(),
    )
    .build();
    let payloads = [
        b"1".to_vec(),
        b"x".to_vec(),
        b"3".to_vec(),
        b"4".to_vec(),
        b"5".to_vec(),
    ];
    handler
        .handle(&event("shardId-0", &payloads))
        .await
        .unwrap();
    let mut out = Vec::new();
    flush_emf(collector, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let line = lines
        .iter()
        .find(|l| l.get("watershed_lambda_records_total").is_some())
        .unwrap_or_else(|| panic!("no line with the record count: {text}"));
    let aws = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(aws["Namespace"], "Watershed", "{text}");
    assert_eq!(aws["Dimensions"][0][0], "function", "{text}");
    assert_eq!(line["function"], "clicks-fn");
    assert_eq!(line["watershed_lambda_records_total"], 5, "{text}");
    assert_eq!(line["watershed_lambda_outputs_total"], 4, "{text}");
    assert_eq!(line["watershed_lambda_dead_letters_total"], 1, "{text}");
    let names: Vec<&str> = aws["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    assert!(
        names.contains(&"watershed_lambda_records_total"),
        "{names:?}"
    );
}
