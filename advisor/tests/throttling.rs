//! Throttled and refused API calls, which the local Kinesis server (kinesis-mock) never
//! answers with: a fake HTTP client in place of the network answers the advisor's calls the
//! way Kinesis does when a shard's read limit or the account's ListShards rate is exceeded.
//! The SDK's own retries are off, so what is tested is the advisor's handling.

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::test_util::infallible_client_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use watershed_advisor::{open_shards, sample, AdvisorError, From};

const SHARDS: &str = r#"{"Shards":[{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}}]}"#;

/// `{"k": 1}`, arrived at 2025-11-25T17:00:00Z.
const ONE_RECORD: &str = r#"{"Records":[{"SequenceNumber":"1","ApproximateArrivalTimestamp":1764090000.0,"Data":"eyJrIjogMX0=","PartitionKey":"k"}],"NextShardIterator":"it-2","MillisBehindLatest":0}"#;
const CAUGHT_UP: &str = r#"{"Records":[],"NextShardIterator":"it-3","MillisBehindLatest":0}"#;

fn answer(status: u16, body: &str) -> http::Response<String> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(body.to_owned())
        .expect("response")
}

fn error(code: &str, message: &str) -> http::Response<String> {
    answer(
        400,
        &format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
    )
}

/// A client whose calls `respond` answers by operation name (`ListShards`, `GetRecords`, …).
fn fake_kinesis(
    respond: impl Fn(&str) -> http::Response<String> + Send + Sync + 'static,
) -> Client {
    let http_client = infallible_client_fn(move |request| {
        let target = request
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        respond(target.rsplit('.').next().unwrap_or_default())
    });
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .http_client(http_client)
        .build();
    Client::from_conf(config)
}

/// Rule: GetRecords answered with ProvisionedThroughputExceededException is waited out and
/// called again: the sample completes with the shard's record, no error, no panic.
#[tokio::test]
async fn throttled_reads_are_waited_out_and_the_sample_completes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let client = fake_kinesis(move |operation| match operation {
        "ListShards" => answer(200, SHARDS),
        "GetShardIterator" => answer(200, r#"{"ShardIterator":"it-1"}"#),
        "GetRecords" => match seen.fetch_add(1, Ordering::SeqCst) {
            0..=2 => error(
                "ProvisionedThroughputExceededException",
                "Rate exceeded for shard shardId-000000000000",
            ),
            3 => answer(200, ONE_RECORD),
            _ => answer(200, CAUGHT_UP),
        },
        other => error("UnknownOperationException", other),
    });
    let sampled = sample(
        &client,
        "orders",
        From::TrimHorizon,
        Duration::from_secs(20),
    )
    .await
    .expect("throttling is not an error");
    assert_eq!(sampled.shards.len(), 1);
    assert_eq!(
        sampled.shards[0].records, 1,
        "the record after the throttles"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 5,
        "three throttled calls, then two"
    );
}

/// Rule: a refused ListShards (its rate limit, LimitExceededException) ends the sample with an
/// error naming the stream and the service's code and message, not a panic.
#[tokio::test]
async fn a_refused_list_shards_names_the_stream_and_the_code() {
    let client = fake_kinesis(|_| error("LimitExceededException", "Rate exceeded for ListShards"));
    let error = open_shards(&client, "orders").await.expect_err("refused");
    assert!(
        matches!(error, AdvisorError::ListShards { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("orders"), "{message}");
    assert!(message.contains("LimitExceededException"), "{message}");
    assert!(
        message.contains("Rate exceeded for ListShards"),
        "{message}"
    );
}
