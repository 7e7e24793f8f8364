//! The lease table in DynamoDB: creating it, reading it, and the conditional writes that make
//! a lease belong to exactly one worker at a time.
//!
//! Every write that needs the lease to be in a known state is conditional on `leaseCounter`
//! (and, for the owner's writes, on `leaseOwner`): of two workers writing the same lease from
//! the same observed state, exactly one succeeds, and a worker that lost its lease can no
//! longer renew it or write its checkpoint (fencing).

use super::lease::{attr, Lease, LeaseCheckpoint};
use crate::error::{code, detail, KinesisError};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Expression placeholders for the attribute names (`checkpoint` is a DynamoDB reserved
/// word, so every name goes through a placeholder).
const NAMES: [(&str, &str); 7] = [
    ("#key", attr::KEY),
    ("#owner", attr::OWNER),
    ("#counter", attr::COUNTER),
    ("#cp", attr::CHECKPOINT),
    ("#sub", attr::SUB),
    ("#switches", attr::SWITCHES),
    ("#pending", attr::PENDING),
];

/// How long `ensure` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// One conditional UpdateItem, described by its expressions.
struct Update<'a> {
    operation: &'static str,
    key: &'a str,
    set: String,
    condition: String,
    values: Vec<(&'static str, AttributeValue)>,
}

/// A lease table: the calls the coordinator makes, each timed into
/// `watershed_kinesis_lease_table_seconds{table,operation}`.
#[derive(Clone, Debug)]
pub struct LeaseTable {
    client: Client,
    table: String,
    endpoint: String,
}

impl LeaseTable {
    /// The table `table` through `client`; `endpoint` is only for errors.
    pub fn new(client: Client, table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        LeaseTable {
            client,
            table: table.into(),
            endpoint: endpoint.into(),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    fn error<E, R>(
        &self,
        operation: &'static str,
        shard: Option<&str>,
        e: &SdkError<E, R>,
    ) -> KinesisError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        KinesisError::LeaseTable {
            operation,
            table: self.table.clone(),
            shard: shard.map(str::to_owned),
            endpoint: self.endpoint.clone(),
            detail: detail(e),
        }
    }

    fn timed(&self, operation: &'static str, started: Instant) {
        metrics::histogram!(
            crate::metric_catalogue::LEASE_TABLE_SECONDS,
            "table" => self.table.clone(),
            "operation" => operation,
        )
        .record(started.elapsed().as_secs_f64());
    }

    /// Creates the table when it does not exist (on-demand capacity, hash key `leaseKey`) and
    /// waits until it is ACTIVE.
    pub async fn ensure(&self) -> Result<(), KinesisError> {
        let deadline = Instant::now() + TABLE_ACTIVE_TIMEOUT;
        let mut created = false;
        loop {
            match self.status().await? {
                Some(TableStatus::Active) => return Ok(()),
                None if !created => {
                    self.create_table().await?;
                    created = true;
                }
                status if Instant::now() > deadline => {
                    return Err(KinesisError::LeaseTable {
                        operation: "DescribeTable",
                        table: self.table.clone(),
                        shard: None,
                        endpoint: self.endpoint.clone(),
                        detail: format!("not ACTIVE after {TABLE_ACTIVE_TIMEOUT:?} ({status:?})"),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The table's status, `None` when it does not exist.
    async fn status(&self) -> Result<Option<TableStatus>, KinesisError> {
        let started = Instant::now();
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        self.timed("DescribeTable", started);
        match out {
            Ok(out) => Ok(out.table().and_then(|t| t.table_status()).cloned()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.error("DescribeTable", None, &e)),
        }
    }

    async fn create_table(&self) -> Result<(), KinesisError> {
        let started = Instant::now();
        let out = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr::KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key schema has its required fields"),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr::KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute definition has its required fields"),
            )
            .send()
            .await;
        self.timed("CreateTable", started);
        match out {
            Ok(_) => {
                tracing::info!(table = %self.table, "lease table created");
                Ok(())
            }
            // Another worker created it first.
            Err(e) if code(&e) == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(self.error("CreateTable", None, &e)),
        }
    }

    /// Every lease (a consistent scan: a lease just written is seen).
    pub async fn scan(&self) -> Result<Vec<Lease>, KinesisError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let started = Instant::now();
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await;
            self.timed("Scan", started);
            let out = out.map_err(|e| self.error("Scan", None, &e))?;
            leases.extend(out.items().iter().filter_map(Lease::from_item));
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(leases),
            }
        }
    }

    /// One lease, `None` when there is none for `shard`.
    pub async fn get(&self, shard: &str) -> Result<Option<Lease>, KinesisError> {
        let started = Instant::now();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::KEY, AttributeValue::S(shard.to_owned()))
            .consistent_read(true)
            .send()
            .await;
        self.timed("GetItem", started);
        let out = out.map_err(|e| self.error("GetItem", Some(shard), &e))?;
        Ok(out.item().and_then(Lease::from_item))
    }

    /// Puts a new lease unless one exists for its shard; true when this call created it.
    pub async fn create(&self, lease: &Lease) -> Result<bool, KinesisError> {
        let started = Instant::now();
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", attr::KEY)
            .send()
            .await;
        self.timed("PutItem", started);
        match out {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.error("PutItem", Some(&lease.key), &e)),
        }
    }

    /// Deletes a lease (tests, and tidying leases of expired shards).
    pub async fn delete(&self, shard: &str) -> Result<(), KinesisError> {
        let started = Instant::now();
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::KEY, AttributeValue::S(shard.to_owned()))
            .send()
            .await;
        self.timed("DeleteItem", started);
        out.map(|_| ())
            .map_err(|e| self.error("DeleteItem", Some(shard), &e))
    }

    /// Takes `observed` for `worker` if its counter is still the one observed (an expired or
    /// released lease); `None` when another write came first.
    pub async fn take(
        &self,
        observed: &Lease,
        worker: &str,
    ) -> Result<Option<Lease>, KinesisError> {
        self.update(Update {
            operation: "TakeLease",
            key: &observed.key,
            set: "SET #owner = :me, #counter = #counter + :one, \
                  #switches = if_not_exists(#switches, :zero) + :one REMOVE #pending"
                .into(),
            condition: "#counter = :counter".into(),
            values: vec![
                (":me", s(worker)),
                (":one", n(1)),
                (":zero", n(0)),
                (":counter", n(observed.counter)),
            ],
        })
        .await
    }

    /// Renews `held` (increments its counter); `None` when the lease was lost (taken by
    /// another worker after it expired). The returned lease shows a pending hand-over.
    pub async fn renew(&self, held: &Lease, worker: &str) -> Result<Option<Lease>, KinesisError> {
        self.update(Update {
            operation: "RenewLease",
            key: &held.key,
            set: "SET #counter = #counter + :one".into(),
            condition: "#counter = :counter AND #owner = :me".into(),
            values: vec![
                (":me", s(worker)),
                (":one", n(1)),
                (":counter", n(held.counter)),
            ],
        })
        .await
    }

    /// Writes a checkpoint into `held` (fenced: only while this worker still holds it at the
    /// counter it knows); `None` when the lease was lost.
    pub async fn checkpoint(
        &self,
        held: &Lease,
        worker: &str,
        checkpoint: &LeaseCheckpoint,
    ) -> Result<Option<Lease>, KinesisError> {
        let (cp, sub) = checkpoint.values();
        self.update(Update {
            operation: "UpdateCheckpoint",
            key: &held.key,
            set: "SET #cp = :cp, #sub = :sub, #switches = :zero, #counter = #counter + :one".into(),
            condition: "#counter = :counter AND #owner = :me".into(),
            values: vec![
                (":me", s(worker)),
                (":cp", cp),
                (":sub", sub),
                (":zero", n(0)),
                (":one", n(1)),
                (":counter", n(held.counter)),
            ],
        })
        .await
    }

    /// Asks the owner of `observed` to hand it over to `worker` (sets `pendingOwner`; the
    /// counter is left alone, so the owner keeps renewing until its checkpoint). False when the
    /// owner changed or another worker asked first.
    pub async fn request_hand_over(
        &self,
        observed: &Lease,
        worker: &str,
    ) -> Result<bool, KinesisError> {
        let owner = observed.owner.as_deref().unwrap_or_default();
        let out = self
            .update(Update {
                operation: "RequestHandOver",
                key: &observed.key,
                set: "SET #pending = :me".into(),
                condition: "#owner = :owner AND attribute_not_exists(#pending)".into(),
                values: vec![(":me", s(worker)), (":owner", s(owner))],
            })
            .await?;
        Ok(out.is_some())
    }

    /// Gives `held` up: to its pending owner when one asked for it, otherwise to whoever takes
    /// it next. False when it was no longer this worker's.
    pub async fn release(&self, held: &Lease, worker: &str) -> Result<bool, KinesisError> {
        let mut values = vec![
            (":me", s(worker)),
            (":one", n(1)),
            (":counter", n(held.counter)),
        ];
        let (set, condition) = match &held.pending_owner {
            Some(next) => {
                values.push((":next", s(next)));
                values.push((":zero", n(0)));
                (
                    "SET #owner = :next, #counter = #counter + :one, \
                     #switches = if_not_exists(#switches, :zero) + :one REMOVE #pending",
                    "#counter = :counter AND #owner = :me AND #pending = :next",
                )
            }
            None => (
                "SET #counter = #counter + :one REMOVE #owner",
                "#counter = :counter AND #owner = :me",
            ),
        };
        let out = self
            .update(Update {
                operation: "ReleaseLease",
                key: &held.key,
                set: set.into(),
                condition: condition.into(),
                values,
            })
            .await?;
        Ok(out.is_some())
    }

    /// Runs a conditional UpdateItem; `None` when its condition failed.
    async fn update(&self, update: Update<'_>) -> Result<Option<Lease>, KinesisError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::KEY, AttributeValue::S(update.key.to_owned()))
            .update_expression(&update.set)
            // Never create a lease by updating one that was deleted.
            .condition_expression(format!("attribute_exists(#key) AND ({})", update.condition))
            .return_values(ReturnValue::AllNew);
        for (placeholder, name) in NAMES {
            // DynamoDB refuses names the expressions do not use.
            if placeholder == "#key"
                || update.set.contains(placeholder)
                || update.condition.contains(placeholder)
            {
                request = request.expression_attribute_names(placeholder, name);
            }
        }
        for (placeholder, value) in update.values {
            request = request.expression_attribute_values(placeholder, value);
        }
        let started = Instant::now();
        let out = request.send().await;
        self.timed(update.operation, started);
        match out {
            Ok(out) => Ok(out.attributes().and_then(Lease::from_item)),
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(self.error(update.operation, Some(update.key), &e)),
        }
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: u64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}
