//! Reaching the cluster when a source or sink opens: a bounded metadata request, so a wrong
//! address fails in seconds with an error naming it, and the topics' existence.
//!
//! librdkafka retries an unreachable broker until each request's own timeout (60 s for
//! transactions) and then reports only `OperationTimedOut`. One metadata request with a short
//! timeout answers "is anyone there?" before anything waits longer.
//!
//! A request that times out does not say why, and a cluster that refuses the credentials or
//! whose certificate is not trusted looks the same as one that is not there. librdkafka says
//! why only in error events on the client's main queue, which the source's group consumer
//! (its main queue is redirected to the consumer queue) and the sink's admin client never
//! serve at open. So [`reach`] asks with a client of its own and serves its main queue.

use crate::error::KafkaError;
use crate::limits::TopicLimits;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long opening waits for the cluster to answer a metadata request.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// How often [`reach`] looks at what its client heard while the cluster does not answer: a
/// refusal arrives within a round trip or two, so it is reported in about this long.
const PROBE_STEP: Duration = Duration::from_millis(500);

/// Whether a librdkafka property says how to reach and authenticate to the cluster (rather
/// than how to produce or consume), so that every client of a source or sink can be given it.
pub(crate) fn is_connection_property(key: &str) -> bool {
    const PREFIXES: [&str; 7] = [
        "security.",
        "sasl.",
        "ssl.",
        "ssl_",
        "socket.",
        "client.",
        "broker.address.",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || key == "enable.ssl.certificate.verification"
}

/// The connection properties among `properties`, in their order.
pub(crate) fn connection_properties(properties: &[(String, String)]) -> Vec<(String, String)> {
    properties
        .iter()
        .filter(|(k, _)| is_connection_property(k))
        .cloned()
        .collect()
}

/// Why the cluster turned the probe away, as librdkafka reported it.
enum Refusal {
    Credentials(String),
    Tls(String),
}

/// Keeps the first refusal librdkafka reports; other errors (connection refused, brokers
/// down) only mean "not there yet" and are left to the deadline.
#[derive(Default)]
struct ProbeContext {
    refusal: Mutex<Option<Refusal>>,
}

impl ClientContext for ProbeContext {
    // The error events carry the same reasons as the log lines: logging them too would say
    // everything twice.
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {}

    fn error(&self, error: RdError, reason: &str) {
        let refusal = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => Refusal::Credentials(reason.to_string()),
            Some(RDKafkaErrorCode::SSL) => Refusal::Tls(reason.to_string()),
            _ => return,
        };
        let mut first = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(refusal);
    }
}

impl ConsumerContext for ProbeContext {}

/// Whether the cluster at `brokers` answers a client with these connection properties, within
/// [`CONNECT_TIMEOUT`], and which of `topics` it does not have ([`missing_topics`], asked with
/// the same client). A refused password or an untrusted certificate fails as such, in about a
/// second, instead of as unreachable after the timeout. The first request asks about the first
/// topic (all topics when there is none; a large cluster's full metadata is worth avoiding).
/// Blocks: run it on a blocking thread.
pub(crate) fn reach(
    brokers: &str,
    connection: &[(String, String)],
    topics: &[String],
) -> Result<Vec<String>, KafkaError> {
    let topic = topics.first().map(String::as_str);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("allow.auto.create.topics", "false");
    for (k, v) in connection {
        config.set(k, v);
    }
    // Without a group id its main queue is its own, and `poll` serves the error events.
    let probe: BaseConsumer<ProbeContext> = config
        .create_with_context(ProbeContext::default())
        .map_err(KafkaError::Config)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let step = PROBE_STEP.min(deadline.saturating_duration_since(Instant::now()));
        let error = match probe.client().fetch_metadata(topic, step) {
            Ok(_) => return missing_topics(probe.client(), brokers, topics, CONNECT_TIMEOUT),
            Err(error) => error,
        };
        while probe.poll(Duration::ZERO).is_some() {}
        let refusal = probe
            .context()
            .refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let brokers = brokers.to_string();
        match refusal {
            Some(Refusal::Credentials(reason)) => {
                return Err(KafkaError::CredentialsRefused { brokers, reason })
            }
            Some(Refusal::Tls(reason)) => return Err(KafkaError::TlsFailed { brokers, reason }),
            None if Instant::now() >= deadline => {
                return Err(KafkaError::Unreachable {
                    brokers,
                    operation: match topic {
                        Some(topic) => format!("fetching metadata for topic `{topic}`"),
                        None => "fetching the cluster's metadata".into(),
                    },
                    timeout: CONNECT_TIMEOUT,
                    error: Box::new(error),
                })
            }
            None => {}
        }
    }
}

/// How long a topic the cluster calls unknown is asked about again before it counts as
/// missing: a broker learns of a topic created a moment ago only when it replays the
/// controller's metadata (asynchronously, and slower under load), so "create the topic, then
/// start the pipeline" must not fail on that moment.
const CREATION_GRACE: Duration = Duration::from_secs(3);

/// Which of `topics` exist, asking `client` with one metadata request per topic (and again
/// for those unknown, for up to [`CREATION_GRACE`]). Must run on a blocking thread. A topic
/// whose metadata names it unknown is missing; any other answer (a leader election in
/// progress, say) counts as existing, as it is not a reason to stop.
///
/// The client must not create topics by asking for them (`allow.auto.create.topics=false`, a
/// consumer's default): a producer's metadata request would create the missing topic.
pub(crate) fn missing_topics<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    let deadline = Instant::now() + CREATION_GRACE;
    let mut missing = unknown_topics(client, brokers, topics, timeout)?;
    while !missing.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        missing = unknown_topics(client, brokers, &missing, timeout)?;
    }
    Ok(missing)
}

/// One metadata request per topic: those the cluster does not know now.
fn unknown_topics<C: ClientContext>(
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
    let missing = {
        let (brokers, connection, topics) = (
            brokers.to_string(),
            connection_properties(properties),
            vec![topic.to_string()],
        );
        tokio::task::spawn_blocking(move || reach(&brokers, &connection, &topics))
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
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        config.set(k, v);
    }
    // The admin client is a producer underneath, and a producer's metadata request creates a
    // missing topic on brokers that allow it: this one only looks.
    config.set("allow.auto.create.topics", "false");
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(KafkaError::Config)?;
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
