//! Clients for the local brokers, configured from the environment (see [`env`](mod@crate::env)); each
//! behind the cargo feature of its broker, so a crate that only wants the driver builds no SDK.

#[cfg(feature = "kafka")]
pub use self::kafka::*;
#[cfg(feature = "kinesis")]
pub use self::kinesis::*;
#[cfg(feature = "s3")]
pub use self::s3::*;

#[cfg(feature = "kafka")]
mod kafka {
    use crate::env::{kafka_brokers, unique};
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::time::Duration;

    /// A consumer of `topic` as a checker reads an output (feature `kafka`): in a group of its
    /// own, from the earliest offset, seeing only committed records (`read_committed`), so a
    /// test sees what a downstream exactly-once reader would.
    pub fn committed_consumer(topic: &str) -> BaseConsumer {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("group.id", unique("verify"))
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer is created");
        consumer.subscribe(&[topic]).expect("subscribed");
        consumer
    }

    /// Every record committed to `topic`, read to the end of each of its partitions (feature
    /// `kafka`); panics if the end is not reached `within`. Reading for a fixed few seconds is
    /// not enough: a new consumer's group join and first fetch take seconds on a busy machine.
    pub fn read_committed_to_end(
        topic: &str,
        within: Duration,
    ) -> Vec<rdkafka::message::OwnedMessage> {
        use rdkafka::error::KafkaError;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("group.id", unique("verify"))
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer is created");
        consumer.subscribe(&[topic]).expect("subscribed");
        let partitions = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("topic metadata")
            .topics()[0]
            .partitions()
            .len();
        let mut ended = std::collections::HashSet::new();
        let mut messages = Vec::new();
        let deadline = std::time::Instant::now() + within;
        while ended.len() < partitions && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => messages.push(m.detach()),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                _ => {}
            }
        }
        assert_eq!(
            ended.len(),
            partitions,
            "read {topic} to the end of every partition within {within:?}"
        );
        messages
    }

    /// An admin client of the Kafka at [`kafka_brokers`] (feature `kafka`).
    pub fn kafka_admin() -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .create()
            .expect("admin client is created")
    }

    /// Creates each topic with `partitions` partitions, replication 1 (feature `kafka`); panics
    /// if the broker refuses one.
    pub async fn create_topics(names: &[&str], partitions: i32) {
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = kafka_admin()
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("CreateTopics request answers (is the broker up? scripts/brokers up)");
        for result in results {
            result.expect("topic is created");
        }
    }
}

#[cfg(feature = "kinesis")]
mod kinesis {
    use crate::env::{aws_access_key_id, aws_region, aws_secret_access_key, kinesis_endpoint};
    use aws_config::{BehaviorVersion, ConfigLoader};
    use aws_sdk_kinesis::config::{Credentials, Region};

    /// The AWS configuration of the local Kinesis-API server (feature `kinesis`): its endpoint,
    /// region and static credentials from the environment. Add to it (a retry configuration,
    /// say) before `load()`.
    pub fn kinesis_config() -> ConfigLoader {
        let credentials = Credentials::new(
            aws_access_key_id(),
            aws_secret_access_key(),
            None,
            None,
            "watershed-test",
        );
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(kinesis_endpoint())
            .region(Region::new(aws_region()))
            .credentials_provider(credentials)
    }

    /// A Kinesis client of the local Kinesis-API server (feature `kinesis`), with the SDK's
    /// default retries.
    pub async fn kinesis_client() -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&kinesis_config().load().await)
    }

    /// Puts `records` (partition key, data) into `stream` with one PutRecords call (feature
    /// `kinesis`; at most 500) and returns the shard each record went to, in order. Panics
    /// unless every record was accepted: the local server does not throttle.
    pub async fn put_records(
        client: &aws_sdk_kinesis::Client,
        stream: &str,
        records: &[(String, Vec<u8>)],
    ) -> Vec<String> {
        use aws_sdk_kinesis::primitives::Blob;
        use aws_sdk_kinesis::types::PutRecordsRequestEntry;
        let entries: Vec<PutRecordsRequestEntry> = records
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
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
        assert_eq!(out.failed_record_count(), Some(0), "every record accepted");
        out.records()
            .iter()
            .map(|r| r.shard_id().expect("shard id").to_owned())
            .collect()
    }
}

#[cfg(feature = "s3")]
mod s3 {
    use crate::env::{
        aws_access_key_id, aws_region, aws_secret_access_key, s3_bucket, s3_endpoint,
    };
    use object_store::aws::{AmazonS3, AmazonS3Builder};

    /// An object store on the bucket [`s3_bucket`] of the S3 at [`s3_endpoint`] (feature `s3`):
    /// path-style requests over plain HTTP, as local S3 servers want them.
    pub fn s3_store() -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(s3_endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(s3_bucket())
            .with_region(aws_region())
            .with_access_key_id(aws_access_key_id())
            .with_secret_access_key(aws_secret_access_key())
            .build()
            .expect("S3 client is built")
    }
}
