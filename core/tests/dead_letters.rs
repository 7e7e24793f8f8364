//! Records the pipeline rejects: with a dead-letter sink they go there with their reason and
//! the pipeline goes on; under the fail policy the first one stops the pipeline.

mod common;

use common::{config, numbers};
use serde::{Deserialize, Serialize};
use watershed_core::connectors::{CollectSink, JsonLinesSource};
use watershed_core::*;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Reading {
    id: u32,
}

#[tokio::test]
async fn malformed_record_reaches_the_dead_letter_sink_with_its_reason_and_the_pipeline_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(
        &path,
        "{\"id\":1}\nnot json\n{\"id\":2}\n{\"id\":\"three\"}\n{\"id\":4}\n",
    )
    .unwrap();
    let p = Pipeline::new(config("dlq", &CheckpointStore::memory()));
    let good = CollectSink::<Reading>::new();
    let dead = CollectSink::<DeadLetter>::new();
    p.source(
        "file",
        JsonLinesSource::new([&path]),
        WatermarkStrategy::none(),
    )
    .apply(
        "decode",
        FnOperator::new(|batch: Batch<bytes::Bytes>, out: &mut Collector<Reading>| {
            for r in batch {
                match serde_json::from_slice::<Reading>(&r.value) {
                    Ok(v) => out.emit(r.map(|_| v)),
                    Err(e) => out.reject(
                        DeadLetter::new(e.to_string(), r.value.clone())
                            .at(r.origin.clone(), r.timestamp),
                    ),
                }
            }
        }),
    )
    .sink("good", good.clone());
    p.dead_letter("dead", dead.clone());
    let summary = p.run().await.unwrap();
    assert_eq!(summary.rejected, 2);
    assert_eq!(
        good.values(),
        vec![Reading { id: 1 }, Reading { id: 2 }, Reading { id: 4 }]
    );
    let dead = dead.values();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload, bytes::Bytes::from_static(b"not json"));
    assert!(
        dead[0].reason.contains("expected"),
        "reason: {}",
        dead[0].reason
    );
    assert_eq!(dead[0].node, "decode");
    assert_eq!(dead[0].origin.as_ref().unwrap().offset, Offset::Number(9));
    assert!(
        dead[1].reason.contains("invalid type"),
        "reason: {}",
        dead[1].reason
    );
}

#[tokio::test]
async fn rejected_record_fails_the_pipeline_under_the_fail_policy() {
    let p =
        Pipeline::new(config("fail", &CheckpointStore::memory()).error_policy(ErrorPolicy::Fail));
    p.source("n", numbers(1, 10), WatermarkStrategy::none())
        .apply(
            "reject-five",
            FnOperator::new(|batch: Batch<u64>, out: &mut Collector<u64>| {
                for r in batch {
                    if r.value == 50 {
                        out.reject(DeadLetter::new("five is not allowed", "50"));
                    } else {
                        out.emit(r);
                    }
                }
            }),
        )
        .sink("out", CollectSink::new());
    match p.run().await {
        Err(Error::Record { node, reason, .. }) => {
            assert_eq!(node, "reject-five");
            assert_eq!(reason, "five is not allowed");
        }
        other => panic!("expected a record error, got {other:?}"),
    }
}
