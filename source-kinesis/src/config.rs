//! Which stream, and how to reach it: shared by the source and the sink.

use crate::error::KinesisError;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::Client;

/// A stream, by name or by ARN (`arn:aws:kinesis:…:stream/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamRef {
    /// A stream name, in the configured account and region.
    Name(String),
    /// A stream ARN (needed for cross-account access).
    Arn(String),
}

impl StreamRef {
    /// `s` as an ARN when it starts with `arn:`, otherwise as a name.
    pub fn parse(s: impl Into<String>) -> Self {
        let s = s.into();
        if s.starts_with("arn:") {
            StreamRef::Arn(s)
        } else {
            StreamRef::Name(s)
        }
    }

    /// The name or ARN, for messages and metric labels.
    pub fn as_str(&self) -> &str {
        match self {
            StreamRef::Name(s) | StreamRef::Arn(s) => s,
        }
    }
}

/// Sets the stream name or ARN on any Kinesis request builder that has both setters.
macro_rules! with_stream {
    ($builder:expr, $stream:expr) => {
        match $stream {
            $crate::config::StreamRef::Name(name) => $builder.stream_name(name),
            $crate::config::StreamRef::Arn(arn) => $builder.stream_arn(arn),
        }
    };
}
pub(crate) use with_stream;

/// How to reach Kinesis: region, credentials, endpoint.
///
/// By default everything comes from the standard AWS chain (environment, profile, IMDS/ECS),
/// including `AWS_REGION` and `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_KINESIS`. The setters
/// override it. The SDK's own retries are switched off for the clients built here: the
/// source and sink retry themselves, with jittered backoff, so that every throttling event is
/// counted and PutRecords resends only the failed entries instead of whole requests.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    region: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<Credentials>,
    sdk_config: Option<SdkConfig>,
    client: Option<Client>,
}

impl AwsOptions {
    /// Configuration from the standard AWS chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The AWS region (otherwise from `AWS_REGION`, the profile, or IMDS).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// A Kinesis endpoint, e.g. a local server or a VPC endpoint (otherwise from
    /// `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL`, else the regional AWS endpoint).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Static credentials instead of the default chain (tests, local servers).
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(static_credentials(access_key_id, secret_access_key));
        self
    }

    /// A fully prepared SDK configuration (the other settings still override it).
    pub fn sdk_config(mut self, config: SdkConfig) -> Self {
        self.sdk_config = Some(config);
        self
    }

    /// An existing client: its HTTP connection pool, credentials cache and endpoint are shared
    /// (one pool for many sources and sinks). The other settings still override it, and its
    /// SDK retries are switched off in the copy used here, as for every client of this crate.
    /// A client built with `RetryConfig::disabled()` and a region, with no other setting here,
    /// is used as it is (no copy is built).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The client, and the endpoint it calls (named in errors).
    pub(crate) async fn build_client(&self) -> Result<(Client, String), KinesisError> {
        if let Some(client) = &self.client {
            // Rebuilding a client from its configuration costs more CPU than reading thousands
            // of records: use the given one when there is nothing to change.
            let unchanged = self.region.is_none()
                && self.endpoint_url.is_none()
                && self.credentials.is_none()
                && client.config().region().is_some()
                && client
                    .config()
                    .retry_config()
                    .is_some_and(|r| r.max_attempts() <= 1);
            let client = if unchanged {
                client.clone()
            } else {
                self.finish(client.config().to_builder())?
            };
            // The SDK does not say which endpoint a given client calls.
            let endpoint = self
                .endpoint_url
                .clone()
                .unwrap_or_else(|| format!("the given client's endpoint ({})", regional(&client)));
            return Ok((client, endpoint));
        }
        let sdk = match &self.sdk_config {
            Some(c) => c.clone(),
            None => {
                let given = self.region.is_some()
                    && self.credentials.is_some()
                    && self.endpoint_url.is_some();
                base_sdk_config(given).await
            }
        };
        let client = self.finish(aws_sdk_kinesis::config::Builder::from(&sdk))?;
        let endpoint = match (&self.endpoint_url, sdk.endpoint_url()) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url.to_owned(),
            (None, None) => regional(&client),
        };
        Ok((client, endpoint))
    }

    fn finish(&self, builder: aws_sdk_kinesis::config::Builder) -> Result<Client, KinesisError> {
        // Retries happen in this crate (see the type's documentation).
        let mut builder = builder.retry_config(RetryConfig::disabled());
        if let Some(region) = &self.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(credentials) = &self.credentials {
            builder = builder.credentials_provider(credentials.clone());
        }
        let config = builder.build();
        if config.region().is_none() {
            return Err(KinesisError::Config(
                "no AWS region: set AWS_REGION or AwsOptions::region".into(),
            ));
        }
        Ok(Client::from_conf(config))
    }
}

/// Fixed credentials, under the provider name every client of this crate gives them.
pub(crate) fn static_credentials(
    access_key_id: impl Into<String>,
    secret_access_key: impl Into<String>,
) -> Credentials {
    Credentials::new(
        access_key_id.into(),
        secret_access_key.into(),
        None,
        None,
        "watershed-static",
    )
}

/// The SDK configuration a client starts from. With region, credentials and endpoint all
/// given (`everything_given`), none of the default chain, which reads profile files and may
/// probe the instance metadata service before it gives up; otherwise the default chain.
pub(crate) async fn base_sdk_config(everything_given: bool) -> SdkConfig {
    if everything_given {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build()
    } else {
        aws_config::defaults(BehaviorVersion::latest()).load().await
    }
}

/// The public endpoint of the client's region (what the SDK calls when no endpoint is set).
fn regional(client: &Client) -> String {
    match client.config().region() {
        Some(region) => format!("https://kinesis.{region}.amazonaws.com"),
        None => "the regional Kinesis endpoint".to_owned(),
    }
}
