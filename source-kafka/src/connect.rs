//! Reaching the cluster when a source or sink opens: a bounded metadata request, so a wrong
//! address fails in seconds with an error naming it, and the topics' existence.
//!
//! librdkafka retries an unreachable broker until each request's own timeout (60 s for
//! transactions) and then reports only `OperationTimedOut`. One metadata request with a short
//! timeout answers "is anyone there?" before anything waits longer.

use crate::error::KafkaError;
use crate::limits::TopicLimits;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaRespErr;
use std::time::Duration;

/// How long opening waits for the cluster to answer a metadata request.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// Which of `topics` exist, asking `client` with one metadata request per topic. Must run on a
/// blocking thread. A topic whose metadata names it unknown is missing; any other answer (a
/// leader election in progress, say) counts as existing, as it is not a reason to stop.
///
/// The client must not create topics by asking for them (`allow.auto.create.topics=false`, a
/// consumer's default): a producer's metadata request would create the missing topic.
pub(crate) fn missing_topics<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    let mut missing = Vec::new();
    for topic in topics {
        let metadata = client
            .fetch_metadata(Some(topic), timeout)
            .map_err(|error| KafkaError::Unreachable {
                brokers: brokers.to_string(),
                operation: format!("fetching metadata for topic `{topic}`"),
                timeout,
                error: Box::new(error),
            })?;
        let unknown = metadata.topics().iter().any(|t| {
            t.name() == topic
                && t.error() == Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        });
        if unknown || metadata.topics().is_empty() {
            missing.push(topic.clone());
        }
    }
    Ok(missing)
}

/// The output topic's limits, read with the admin API when a sink opens: first a bounded
/// metadata request (a wrong address or a missing topic fails here, by name), then the topic's
/// configuration. Configuration that cannot be read (no DescribeConfigs permission, say) falls
/// back to Kafka's defaults with a warning: the sink still refuses what a default topic would.
pub(crate) async fn topic_limits(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
    producer_max_bytes: usize,
) -> Result<TopicLimits, KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        config.set(k, v);
    }
    // The admin client is a producer underneath, and a producer's metadata request creates a
    // missing topic on brokers that allow it: this one only looks.
    config.set("allow.auto.create.topics", "false");
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(KafkaError::Config)?;
    let admin = std::sync::Arc::new(admin);
    let missing = {
        let (admin, brokers, topics) =
            (admin.clone(), brokers.to_string(), vec![topic.to_string()]);
        tokio::task::spawn_blocking(move || {
            missing_topics(admin.inner(), &brokers, &topics, CONNECT_TIMEOUT)
        })
        .await
        .map_err(|e| KafkaError::Invalid(format!("metadata request thread: {e}")))??
    };
    if !missing.is_empty() {
        return Err(KafkaError::MissingTopics {
            topics: missing,
            brokers: brokers.to_string(),
            operation: "opening the sink".into(),
            hint: String::new(),
        });
    }
    let options = AdminOptions::new().request_timeout(Some(CONNECT_TIMEOUT));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await;
    let resource = match described {
        Ok(mut results) if !results.is_empty() => {
            results.remove(0).map_err(|code| code.to_string())
        }
        Ok(_) => Err("no answer for the topic".to_string()),
        Err(e) => Err(e.to_string()),
    };
    Ok(match resource {
        Ok(resource) => TopicLimits::from_entries(
            topic,
            producer_max_bytes,
            resource
                .entries
                .iter()
                .map(|e| (e.name.as_str(), e.value.as_deref())),
        ),
        Err(error) => {
            tracing::warn!(topic, brokers, %error, "kafka: cannot read the output topic's configuration; checking records against Kafka's defaults (at most 1 h ahead, any age, 1 MiB)");
            TopicLimits::defaults(topic, producer_max_bytes)
        }
    })
}
