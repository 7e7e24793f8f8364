//! Where the local brokers are, from the environment, and names no earlier run used.
//!
//! Broker tests and benchmarks read their endpoints from the variables `scripts/brokers` and CI
//! set; each function falls back to the address `scripts/brokers up` serves, so a test run on a
//! developer's machine needs no configuration:
//!
//! | function | variable | default |
//! | --- | --- | --- |
//! | [`kafka_brokers`] | `WATERSHED_KAFKA_BROKERS` | `127.0.0.1:9092` |
//! | [`kinesis_endpoint`] | `WATERSHED_KINESIS_ENDPOINT` | `http://127.0.0.1:4568` |
//! | [`s3_endpoint`] | `WATERSHED_S3_ENDPOINT` | `http://127.0.0.1:9000` |
//! | [`s3_bucket`] | `WATERSHED_S3_BUCKET` | `watershed-test` |
//! | [`aws_region`] | `AWS_REGION` | `us-east-1` |
//! | [`aws_access_key_id`] | `AWS_ACCESS_KEY_ID` | `test` |
//! | [`aws_secret_access_key`] | `AWS_SECRET_ACCESS_KEY` | `test` |

use std::time::{SystemTime, UNIX_EPOCH};

/// The value of the environment variable `name`, or `default` when it is unset (or not
/// Unicode).
///
/// ```
/// let v = watershed_testkit::env::env_or("WATERSHED_TESTKIT_DOCTEST_UNSET", "fallback");
/// assert_eq!(v, "fallback");
/// ```
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The Kafka bootstrap servers: `WATERSHED_KAFKA_BROKERS`, default `127.0.0.1:9092`.
pub fn kafka_brokers() -> String {
    env_or("WATERSHED_KAFKA_BROKERS", "127.0.0.1:9092")
}

/// The Kinesis-API endpoint: `WATERSHED_KINESIS_ENDPOINT`, default `http://127.0.0.1:4568`.
pub fn kinesis_endpoint() -> String {
    env_or("WATERSHED_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
}

/// The S3 endpoint: `WATERSHED_S3_ENDPOINT`, default `http://127.0.0.1:9000`.
pub fn s3_endpoint() -> String {
    env_or("WATERSHED_S3_ENDPOINT", "http://127.0.0.1:9000")
}

/// The S3 bucket tests write to: `WATERSHED_S3_BUCKET`, default `watershed-test`.
pub fn s3_bucket() -> String {
    env_or("WATERSHED_S3_BUCKET", "watershed-test")
}

/// The AWS region: `AWS_REGION`, default `us-east-1`.
pub fn aws_region() -> String {
    env_or("AWS_REGION", "us-east-1")
}

/// The AWS access key id: `AWS_ACCESS_KEY_ID`, default `test` (what the local servers accept).
pub fn aws_access_key_id() -> String {
    env_or("AWS_ACCESS_KEY_ID", "test")
}

/// The AWS secret access key: `AWS_SECRET_ACCESS_KEY`, default `test`.
pub fn aws_secret_access_key() -> String {
    env_or("AWS_SECRET_ACCESS_KEY", "test")
}

/// A name no earlier run used: `prefix-PID-NANOS`, so tests that share a broker (and reruns of
/// the same test) never see each other's topics, streams, groups or objects.
///
/// ```
/// let a = watershed_testkit::env::unique("orders");
/// assert!(a.starts_with(&format!("orders-{}-", std::process::id())));
/// ```
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
