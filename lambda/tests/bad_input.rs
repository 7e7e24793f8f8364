//! Bad input: payloads that are not Kinesis events, empty batches, batches Lambda would never
//! send, and a processing function that fails.

mod common;

use bytes::Bytes;
use common::{event, record, sequence};
use serde_json::json;
use watershed_core::Stream;
use watershed_lambda::{KinesisHandler, LambdaError, MemoryTarget};
use watershed_operators::prelude::*;

fn handler(outputs: MemoryTarget<u64>) -> KinesisHandler<u64> {
    KinesisHandler::builder(
        "bad",
        |raw: Stream<Bytes>| raw.decode_json::<u64>(),
        outputs,
    )
    .build()
}

async fn error_for(payload: serde_json::Value) -> LambdaError {
    let outputs = MemoryTarget::new();
    let err = handler(outputs.clone())
        .handle(&payload)
        .await
        .expect_err("must be refused");
    assert!(
        outputs.records().is_empty(),
        "nothing is delivered from a refused event"
    );
    err
}

/// Rule: a payload that is not a Kinesis event is refused with the JSON problem, not a panic.
#[tokio::test]
async fn a_payload_that_is_not_a_kinesis_event_is_refused_with_what_is_wrong() {
    for (payload, expected) in [
        (json!("hello"), "invalid type"),
        (json!({}), "missing field `Records`"),
        (
            json!({ "Records": [{ "eventID": "shardId-0:1" }] }),
            "missing field `kinesis`",
        ),
        (json!({ "Records": "x" }), "invalid type"),
    ] {
        let err = error_for(payload.clone()).await;
        assert!(
            matches!(err, LambdaError::MalformedEvent { .. }),
            "{payload}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("not a Kinesis event") && message.contains(expected),
            "{message}"
        );
    }
}

/// Rule: data that is not base64 refuses the event (Lambda always encodes it, so the event was
/// damaged on the way), naming the problem.
#[tokio::test]
async fn record_data_that_is_not_base64_is_refused() {
    let mut payload = event("shardId-0", &[b"1".to_vec()]);
    payload["Records"][0]["kinesis"]["data"] = json!("%%% not base64 %%%");
    let err = error_for(payload).await;
    assert!(matches!(err, LambdaError::MalformedEvent { .. }), "{err:?}");
}

/// Rule: an empty batch is answered with no failures, and nothing is delivered.
#[tokio::test]
async fn an_empty_batch_is_answered_with_no_failures() {
    let outputs = MemoryTarget::new();
    let response = handler(outputs.clone())
        .handle(&json!({ "Records": [] }))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(outputs.records().is_empty());
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({ "batchItemFailures": [] })
    );
}

/// Rule: a record whose eventID names no shard is refused with its sequence number: without
/// the shard, a failure could not be reported.
#[tokio::test]
async fn a_record_without_a_shard_is_refused_with_its_sequence_number() {
    let mut payload = event("shardId-0", &[b"1".to_vec()]);
    payload["Records"][0]["eventID"] = json!("no-colon-here");
    let err = error_for(payload).await;
    assert!(matches!(err, LambdaError::NoShard { .. }), "{err:?}");
    assert!(err.to_string().contains(&sequence(0)), "{err}");
}

/// Rule: a sequence number that is not decimal, or records of a shard out of sequence order,
/// are refused naming the shard and the sequence numbers.
#[tokio::test]
async fn bad_or_unordered_sequence_numbers_are_refused_naming_shard_and_sequence() {
    let mut payload = event("shardId-9", &[b"1".to_vec()]);
    payload["Records"][0]["kinesis"]["sequenceNumber"] = json!("12ab");
    let err = error_for(payload).await;
    assert!(matches!(err, LambdaError::BadSequence { .. }), "{err:?}");
    assert!(err.to_string().contains("shardId-9") && err.to_string().contains("12ab"));

    let records = vec![
        record("shardId-9", 5, "k", b"1", 1.0),
        record("shardId-9", 4, "k", b"2", 2.0),
    ];
    let err = error_for(json!({ "Records": records })).await;
    assert!(matches!(err, LambdaError::OutOfOrder { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("shardId-9")
            && message.contains(&sequence(4))
            && message.contains(&sequence(5)),
        "{message}"
    );
}

/// Rule: a processing function that fails fails the invocation (Lambda retries the whole
/// batch), with an error naming the shard and the batch's first sequence number.
#[tokio::test]
async fn a_failing_function_fails_the_invocation_naming_shard_and_first_sequence() {
    let outputs = MemoryTarget::<u64>::new();
    let handler = KinesisHandler::builder(
        "bad",
        |raw: Stream<Bytes>| {
            raw.map(|b: Bytes| {
                assert!(b.len() < 3, "a record the function cannot handle");
                b.len() as u64
            })
        },
        outputs.clone(),
    )
    .build();
    let payload = event("shardId-4", &[b"1".to_vec(), b"1234".to_vec()]);
    let err = handler
        .handle(&payload)
        .await
        .expect_err("the function panics");
    assert!(matches!(err, LambdaError::Pipeline { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("shardId-4") && message.contains(&sequence(0)),
        "{message}"
    );
    assert!(outputs.records().is_empty());
}
