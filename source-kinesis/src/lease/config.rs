//! [`LeaseConfig`]: which lease table, which worker, and the timing of leases.

use aws_config::retry::RetryConfig;
use aws_config::Region;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::Client;
use std::time::Duration;

/// How a [`KinesisSource`](crate::KinesisSource) shares its stream with other workers through
/// a lease table in DynamoDB (see `docs/kinesis.md`, "Sharing a stream between workers").
///
/// Every worker of one application names the same table and a worker id of its own:
///
/// ```no_run
/// # use watershed_source_kinesis::{KinesisSource, LeaseConfig};
/// let source = KinesisSource::builder("orders")
///     .leases(LeaseConfig::new("orders-app-leases", "worker-1"))
///     .build();
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LeaseConfig {
    /// The lease table (one per application and stream), created when missing.
    pub table: String,
    /// This worker's id, unique among the application's workers (e.g. host name and pid).
    pub worker_id: String,
    /// A lease whose counter did not change for this long is expired and may be taken
    /// (default 10 s, as the KCL's failover time).
    pub lease_duration: Duration,
    /// How often held leases are renewed (default a third of the lease duration, so that two
    /// renewals may fail before others consider the lease expired).
    pub renewal_interval: Duration,
    /// How often the table is scanned to take available leases and balance (default 5 s).
    pub take_interval: Duration,
    /// Leases stolen from the most loaded worker per take round (default 1, as the KCL).
    pub max_steals_per_round: usize,
    /// How long a lease asked for by another worker may wait for this worker's checkpoint
    /// before it is handed over anyway (default 60 s).
    pub hand_over_timeout: Duration,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) client: Option<Client>,
}

impl LeaseConfig {
    /// Leases in `table` for the worker `worker_id`, with the default timing.
    pub fn new(table: impl Into<String>, worker_id: impl Into<String>) -> Self {
        let lease_duration = Duration::from_secs(10);
        LeaseConfig {
            table: table.into(),
            worker_id: worker_id.into(),
            lease_duration,
            renewal_interval: lease_duration / 3,
            take_interval: Duration::from_secs(5),
            max_steals_per_round: 1,
            hand_over_timeout: Duration::from_secs(60),
            endpoint_url: None,
            region: None,
            credentials: None,
            client: None,
        }
    }

    /// Lease duration; the renewal interval becomes a third of it (at least 100 ms).
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration.max(Duration::from_millis(300));
        self.renewal_interval = self.lease_duration / 3;
        self
    }

    /// How often held leases are renewed (kept below the lease duration).
    pub fn renewal_interval(mut self, every: Duration) -> Self {
        self.renewal_interval = every
            .max(Duration::from_millis(50))
            .min(self.lease_duration / 2);
        self
    }

    /// How often the table is scanned for leases to take or steal.
    pub fn take_interval(mut self, every: Duration) -> Self {
        self.take_interval = every.max(Duration::from_millis(50));
        self
    }

    /// Leases stolen per take round (0: never steal, only take released or expired ones).
    pub fn max_steals_per_round(mut self, n: usize) -> Self {
        self.max_steals_per_round = n;
        self
    }

    /// How long a requested hand-over waits for a checkpoint.
    pub fn hand_over_timeout(mut self, timeout: Duration) -> Self {
        self.hand_over_timeout = timeout;
        self
    }

    /// The DynamoDB endpoint (for a local DynamoDB-API server).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The region of the table (default: the environment's).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Fixed credentials instead of the default chain.
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(crate::config::static_credentials(
            access_key_id,
            secret_access_key,
        ));
        self
    }

    /// A ready DynamoDB client (its endpoint, region and credentials are used as they are).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The client and, for errors, the endpoint it calls.
    pub(crate) async fn build_client(&self) -> (Client, String) {
        let endpoint = self
            .endpoint_url
            .clone()
            .unwrap_or_else(|| "the regional DynamoDB endpoint".to_owned());
        if let Some(client) = &self.client {
            return (client.clone(), endpoint);
        }
        let given =
            self.region.is_some() && self.credentials.is_some() && self.endpoint_url.is_some();
        let sdk = crate::config::base_sdk_config(given).await;
        // Lease calls are retried by the coordinator's next round, not by the SDK: a renewal
        // that waits out SDK backoff could outlive the lease it renews.
        let mut builder =
            aws_sdk_dynamodb::config::Builder::from(&sdk).retry_config(RetryConfig::disabled());
        if let Some(region) = &self.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(credentials) = &self.credentials {
            builder = builder.credentials_provider(credentials.clone());
        }
        (Client::from_conf(builder.build()), endpoint)
    }
}
