//! Helpers of the lease tests (`lease_table.rs`, `lease_workers.rs`): the local DynamoDB
//! (`scripts/brokers`' single-threaded moto on port 4569), fresh lease tables, and
//! coordinators with short lease durations.
#![allow(dead_code)]

use aws_config::BehaviorVersion;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use watershed_source_kinesis::{LeaseConfig, LeaseCoordinator};

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `WATERSHED_DYNAMODB_ENDPOINT`, else `scripts/brokers`' dynamodb service. Not the S3
/// endpoint, although that moto serves DynamoDB too: it is threaded, and applies both of two
/// concurrent conditional writes to one item.
pub fn dynamodb_endpoint() -> String {
    env_or("WATERSHED_DYNAMODB_ENDPOINT", "http://127.0.0.1:4569")
}

pub fn kinesis_endpoint() -> String {
    env_or("WATERSHED_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
}

/// A name no earlier run used.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Lease settings for `worker` in `table` on the local server: 2 s leases, rounds every 200 ms.
pub fn config(table: &str, worker: &str) -> LeaseConfig {
    LeaseConfig::new(table, worker)
        .endpoint_url(dynamodb_endpoint())
        .region(env_or("AWS_REGION", "us-east-1"))
        .static_credentials(
            env_or("AWS_ACCESS_KEY_ID", "test"),
            env_or("AWS_SECRET_ACCESS_KEY", "test"),
        )
        .lease_duration(Duration::from_secs(2))
        .take_interval(Duration::from_millis(200))
}

pub async fn coordinator(table: &str, worker: &str) -> LeaseCoordinator {
    LeaseCoordinator::connect(config(table, worker))
        .await
        .expect("lease table")
}

/// A plain DynamoDB client for the local server (to delete tables).
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        env_or("AWS_ACCESS_KEY_ID", "test"),
        env_or("AWS_SECRET_ACCESS_KEY", "test"),
        None,
        None,
        "watershed-test",
    );
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(dynamodb_endpoint())
        .region(aws_sdk_dynamodb::config::Region::new(env_or(
            "AWS_REGION",
            "us-east-1",
        )))
        .credentials_provider(credentials)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

pub async fn delete_table(table: &str) {
    let _ = dynamodb()
        .await
        .delete_table()
        .table_name(table)
        .send()
        .await;
}

/// Stands in for a source's checkpoint in tests of bare coordinators: leases another worker
/// asked for are released at once.
pub fn answer_hand_overs(c: &LeaseCoordinator) -> tokio::task::JoinHandle<()> {
    let c = c.clone();
    tokio::spawn(async move {
        loop {
            for lease in c.held().await {
                if lease.pending_owner.is_some() {
                    let _ = c.release(&lease.key).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A Kinesis client for the local server.
pub async fn kinesis() -> aws_sdk_kinesis::Client {
    let credentials = aws_sdk_kinesis::config::Credentials::new(
        env_or("AWS_ACCESS_KEY_ID", "test"),
        env_or("AWS_SECRET_ACCESS_KEY", "test"),
        None,
        None,
        "watershed-test",
    );
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(kinesis_endpoint())
        .region(aws_sdk_kinesis::config::Region::new(env_or(
            "AWS_REGION",
            "us-east-1",
        )))
        .credentials_provider(credentials)
        .load()
        .await;
    aws_sdk_kinesis::Client::new(&config)
}

/// Creates `stream` with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &aws_sdk_kinesis::Client, stream: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let status = out
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "stream never ACTIVE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts payloads `from..to` (as text, with as many partition keys) in PutRecords calls of 250,
/// resending entries the server refused.
pub async fn put(client: &aws_sdk_kinesis::Client, stream: &str, from: usize, to: usize) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let mut pending: Vec<usize> = (from..to).collect();
    for _ in 0..20 {
        if pending.is_empty() {
            return;
        }
        let mut failed = Vec::new();
        for chunk in pending.chunks(250) {
            let entries = chunk
                .iter()
                .map(|i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("key-{i}"))
                        .data(Blob::new(i.to_string()))
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = client
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .expect("PutRecords");
            for (i, r) in chunk.iter().zip(out.records()) {
                if r.error_code().is_some() {
                    failed.push(*i);
                }
            }
        }
        pending = failed;
    }
    assert!(
        pending.is_empty(),
        "{} records never accepted",
        pending.len()
    );
}
