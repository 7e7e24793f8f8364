//! Configuration from the standard AWS environment only (its own test binary, because it sets
//! process environment variables): `AWS_ENDPOINT_URL`, `AWS_REGION` and credentials from the
//! environment, and a stream addressed by ARN.

mod common;

use common::*;
use watershed_core::connectors::CollectSink;
use watershed_core::CheckpointStore;
use watershed_source_kinesis::{AwsOptions, KinesisSink, KinesisSource, StartPosition};

/// Rule (issue 6): `AWS_ENDPOINT_URL` (and the rest of the default AWS chain) configures the
/// source and the sink when no setting overrides it, and a stream ARN works like its name.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn aws_endpoint_url_from_the_environment_and_a_stream_arn_are_honoured() {
    const N: usize = 200;
    // This binary runs only this test, so changing the process environment affects no other.
    std::env::set_var("AWS_ENDPOINT_URL", endpoint());
    std::env::set_var("AWS_REGION", env_or("AWS_REGION", "us-east-1"));
    std::env::set_var("AWS_ACCESS_KEY_ID", env_or("AWS_ACCESS_KEY_ID", "test"));
    std::env::set_var(
        "AWS_SECRET_ACCESS_KEY",
        env_or("AWS_SECRET_ACCESS_KEY", "test"),
    );
    let stream = TestStream::create("ws-env", 1).await;
    let arn = stream.arn().await;
    assert!(arn.starts_with("arn:"), "{arn}");

    let sink = KinesisSink::builder(&arn).aws(AwsOptions::new()).build();
    assert_eq!(write_with(sink, &keyed_records(N, 7, 0)).await, N as u64);

    let source = KinesisSource::builder(&arn)
        .aws(AwsOptions::new())
        .start_position(StartPosition::TrimHorizon)
        .build();
    let collected = CollectSink::new();
    read("env", &CheckpointStore::memory(), source, &collected, |n| {
        n >= N
    })
    .await;
    assert_once_and_ordered(&collected.values(), N);
    stream.delete().await;
}
