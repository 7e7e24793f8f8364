//! Against the local moto server: dead letters of Lambda batches in S3 and in SQS, and the
//! description of records given up on in SQS.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::{event, sequence, Flaky};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use std::sync::Arc;
use watershed_core::Stream;
use watershed_lambda::{KinesisHandler, SinkTarget, SqsTarget};
use watershed_operators::prelude::*;
use watershed_sink_s3::S3Sink;

/// Rule: undecodable records of a batch land in S3 under the dead-letter prefix with reason,
/// origin (shard and sequence number) and payload; the same batch handled again (Lambda
/// retrying after a timeout, when the first response was lost) rewrites the same object, so
/// each dead letter is there once.
#[tokio::test]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn dead_letters_land_in_s3_once_with_reason_and_origin() {
    let s3 = Arc::new(watershed_sink_s3::amazon_s3_from_env().expect("S3 settings"));
    let prefix = format!("lambda-test/{}/dead-letters", std::process::id());
    let target = {
        let (s3, prefix) = (s3.clone(), prefix.clone());
        SinkTarget::new("lambda-test", "dead-letters", move || {
            Ok(S3Sink::s3_dead_letters(s3.clone(), &prefix).build()?)
        })
    };
    let (outputs, delivered) = Flaky::<u64>::failing_at(&[]);
    let handler = KinesisHandler::builder(
        "lambda-test",
        |raw: Stream<Bytes>| raw.decode_json::<u64>(),
        outputs,
    )
    .dead_letters(target)
    .build();
    let payload = event(
        "shardId-000000000005",
        &[b"1".to_vec(), b"{oops".to_vec(), b"3".to_vec()],
    );
    for _ in 0..2 {
        let response = handler.handle(&payload).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    // A memory target is not idempotent: it has both deliveries.
    assert_eq!(
        delivered
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.value)
            .collect::<Vec<_>>(),
        [1, 3, 1, 3]
    );

    let objects: Vec<_> = s3
        .list(Some(&prefix.as_str().into()))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        objects.len(),
        1,
        "one object, rewritten by the retry: {objects:?}"
    );
    let body = s3
        .get(&objects[0].location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["payload"], "{oops");
    assert!(lines[0]["reason"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    assert_eq!(
        lines[0]["origin"],
        format!("clicks/shardId-000000000005@{}/0", sequence(1))
    );
    for o in objects {
        s3.delete(&o.location).await.unwrap();
    }
}

/// An SQS client for moto (the same server as S3) and a fresh queue's URL.
async fn sqs_queue(name: &str) -> (aws_sdk_sqs::Client, String) {
    let endpoint =
        std::env::var("WATERSHED_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = format!("{name}-{}-{}", std::process::id(), fastrand_suffix());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create the SQS queue on moto")
        .queue_url
        .expect("queue URL");
    (client, url)
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_007
}

/// Receives until `n` messages arrived (or 30 s passed); returns their bodies as JSON with
/// their `kind` attribute.
async fn receive(client: &aws_sdk_sqs::Client, url: &str, n: usize) -> Vec<(String, Value)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && std::time::Instant::now() < deadline {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from moto's SQS");
        for m in out.messages() {
            let kind = m
                .message_attributes()
                .and_then(|a| a.get("kind"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            got.push((
                kind,
                serde_json::from_str(m.body().unwrap_or_default()).unwrap(),
            ));
        }
    }
    got
}

/// Rule: undecodable records arrive in the SQS queue, one message each, with their reason,
/// shard, sequence number, stream and original bytes (base64), and a `kind` attribute.
#[tokio::test]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn undecodable_records_reach_the_sqs_queue_with_reason_shard_and_sequence() {
    let (client, url) = sqs_queue("watershed-dead-letters").await;
    let (outputs, delivered) = Flaky::<u64>::failing_at(&[]);
    let handler = KinesisHandler::builder(
        "lambda-test",
        |raw: Stream<Bytes>| raw.decode_json::<u64>(),
        outputs,
    )
    .dead_letters(SqsTarget::new(client.clone(), &url))
    .build();
    // 25 records, every fifth undecodable, one of them too large for a message.
    let mut payloads: Vec<Vec<u8>> = (0..25)
        .map(|i| {
            if i % 5 == 4 {
                format!("{{\"broken\":{i}").into_bytes()
            } else {
                i.to_string().into_bytes()
            }
        })
        .collect();
    payloads[24] = vec![b'x'; 300_000];
    let response = handler
        .handle(&event("shardId-000000000009", &payloads))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(delivered.lock().unwrap().len(), 20);

    let mut messages = receive(&client, &url, 5).await;
    assert_eq!(messages.len(), 5, "{messages:?}");
    messages.sort_by(|a, b| {
        a.1["sequenceNumber"]
            .as_str()
            .cmp(&b.1["sequenceNumber"].as_str())
    });
    let b64 = base64::engine::general_purpose::STANDARD;
    for ((kind, body), i) in messages.iter().zip([4, 9, 14, 19, 24]) {
        assert_eq!(kind, "dead-letter");
        assert_eq!(body["kind"], "dead-letter");
        assert_eq!(body["shardId"], "shardId-000000000009");
        assert_eq!(body["sequenceNumber"], sequence(i));
        assert_eq!(body["stream"], "clicks");
        assert!(
            body["reason"].as_str().unwrap().contains("invalid JSON"),
            "{body}"
        );
        let data = b64.decode(body["data"].as_str().unwrap()).unwrap();
        if i == 24 {
            assert_eq!(body["dataTruncated"], true);
            assert_eq!(body["dataBytes"], 300_000);
            assert!(!data.is_empty() && data.len() < 262_144 && data.iter().all(|&b| b == b'x'));
        } else {
            assert_eq!(body["dataTruncated"], false);
            assert_eq!(data, payloads[i]);
        }
    }
    let _ = client.delete_queue().queue_url(&url).send().await;
}

/// Rule: records whose outputs keep failing to be delivered are given up on after the
/// configured attempts, and the SQS queue receives Lambda's on-failure record for them: shard,
/// first and last sequence number, batch size, the error.
#[tokio::test]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn records_given_up_reach_the_sqs_queue_as_on_failure_records() {
    let (client, url) = sqs_queue("watershed-on-failure").await;
    let (outputs, _) = Flaky::<u64>::failing_at(&[2, 3]);
    let handler = KinesisHandler::builder(
        "lambda-test",
        |raw: Stream<Bytes>| raw.decode_json::<u64>(),
        outputs,
    )
    .on_failure(SqsTarget::new(client.clone(), &url), 2)
    .build();
    let batch = watershed_lambda::InputBatch::from_json(&event(
        "shardId-000000000010",
        &[b"1".to_vec(), b"2".to_vec(), b"3".to_vec(), b"4".to_vec()],
    ))
    .unwrap();
    let first = handler.handle_batch(&batch).await.unwrap();
    assert_eq!(first.batch_item_failures[0].item_identifier, sequence(2));
    let second = handler.handle_batch(&batch.suffix(2)).await.unwrap();
    assert!(second.batch_item_failures.is_empty(), "{second:?}");

    let messages = receive(&client, &url, 1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (kind, body) = &messages[0];
    assert_eq!(kind, "failed-batch");
    let info = &body["KinesisBatchInfo"];
    assert_eq!(info["shardId"], "shardId-000000000010");
    assert_eq!(info["startSequenceNumber"], sequence(2));
    assert_eq!(info["endSequenceNumber"], sequence(3));
    assert_eq!(info["batchSize"], 2);
    assert_eq!(
        body["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(body["requestContext"]["approximateInvokeCount"], 2);
    assert!(
        body["responseContext"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("injected failure"),
        "{body}"
    );
    let _ = client.delete_queue().queue_url(&url).send().await;
}
