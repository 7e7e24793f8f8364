//! [`LeaseCoordinator`]: holds this worker's leases — renews them, takes released and expired
//! ones, steals towards a fair share, writes checkpoints into them, and gives them up.

use super::balance::{self, Plan};
use super::config::LeaseConfig;
use super::lease::{Lease, LeaseCheckpoint};
use super::table::LeaseTable;
use crate::error::KinesisError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

/// A lease this worker holds.
#[derive(Clone, Debug)]
struct Held {
    lease: Lease,
    /// Last successful write: a lease not renewed for a lease duration may already be
    /// another worker's, so it is given up locally.
    renewed: Instant,
}

#[derive(Debug, Default)]
struct State {
    held: BTreeMap<String, Held>,
    /// Other workers' leases: the counter last seen and when it was first seen at that value
    /// (the KCL's local expiry clock: no worker trusts another's clock).
    observed: HashMap<String, (u64, Instant)>,
    /// The table at the last scan.
    table: Vec<Lease>,
}

/// What the coordinator's counters have seen (also published as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseCounts {
    /// Leases taken (released, new or expired).
    pub taken: u64,
    /// Of those, expired ones (their owner stopped renewing).
    pub expired: u64,
    /// Leases handed over to this worker after it asked for them.
    pub stolen: u64,
    /// Leases lost (another worker took them, or renewals failed for a lease duration).
    pub lost: u64,
    /// Finished leases this worker deleted (their children had all started).
    pub deleted: u64,
}

/// The leases of one worker in one lease table. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct LeaseCoordinator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    table: LeaseTable,
    config: LeaseConfig,
    state: Mutex<State>,
    counts: std::sync::Mutex<LeaseCounts>,
    /// Bumped whenever the held leases or their hand-over requests change.
    changed: watch::Sender<u64>,
}

impl LeaseCoordinator {
    /// Connects to the table named in `config`, creating it when missing.
    pub async fn connect(config: LeaseConfig) -> Result<Self, KinesisError> {
        let (client, endpoint) = config.build_client().await;
        let table = LeaseTable::new(client, config.table.clone(), endpoint);
        table.ensure().await?;
        Ok(Self::new(table, config))
    }

    /// A coordinator on a table that exists.
    pub fn new(table: LeaseTable, config: LeaseConfig) -> Self {
        LeaseCoordinator {
            shared: Arc::new(Shared {
                table,
                config,
                state: Mutex::default(),
                counts: std::sync::Mutex::default(),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.shared.config.worker_id
    }

    /// The lease table.
    pub fn table(&self) -> &LeaseTable {
        &self.shared.table
    }

    /// The counters so far.
    pub fn counts(&self) -> LeaseCounts {
        *self.shared.counts.lock().expect("counts lock")
    }

    /// Changes whenever the held leases (or their hand-over requests) change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// The leases held now.
    pub async fn held(&self) -> Vec<Lease> {
        let state = self.shared.state.lock().await;
        state.held.values().map(|h| h.lease.clone()).collect()
    }

    /// Creates the leases in `leases` that the table does not have yet (as of the last scan;
    /// the write is conditional, so a lease another worker created meanwhile is kept).
    pub async fn create_missing(&self, leases: &[Lease]) -> Result<usize, KinesisError> {
        let known: Vec<String> = {
            let state = self.shared.state.lock().await;
            state.table.iter().map(|l| l.key.clone()).collect()
        };
        let table = {
            let state = self.shared.state.lock().await;
            state.table.clone()
        };
        let mut created = 0;
        let new = leases
            .iter()
            .filter(|l| !known.contains(&l.key) && !balance::superseded(&l.key, &table));
        for lease in new {
            if self.shared.table.create(lease).await? {
                created += 1;
            }
        }
        Ok(created)
    }

    /// Renews every held lease. A lease whose renewal is refused was taken by another worker;
    /// one that could not be renewed for a lease duration is given up locally (it may be).
    pub async fn renew(&self) -> Result<(), KinesisError> {
        let worker = self.worker_id().to_owned();
        let mut state = self.shared.state.lock().await;
        let mut first_error = None;
        let mut changed = false;
        let keys: Vec<String> = state.held.keys().cloned().collect();
        for key in keys {
            let held = state.held[&key].clone();
            match self.shared.table.renew(&held.lease, &worker).await {
                Ok(Some(lease)) => {
                    changed |= lease.pending_owner != held.lease.pending_owner;
                    state.held.insert(
                        key,
                        Held {
                            lease,
                            renewed: Instant::now(),
                        },
                    );
                }
                Ok(None) => changed |= self.lose(&mut state, &key, "taken by another worker"),
                Err(e) if held.renewed.elapsed() > self.shared.config.lease_duration => {
                    changed |= self.lose(&mut state, &key, "not renewed for a lease duration");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.publish(&state, changed);
        first_error.map_or(Ok(()), Err)
    }

    fn lose(&self, state: &mut State, key: &str, why: &str) -> bool {
        state.held.remove(key);
        tracing::warn!(
            table = self.shared.table.name(),
            shard = key,
            why,
            "lease lost"
        );
        self.count(|c| c.lost += 1, crate::metric_catalogue::LEASES_LOST);
        true
    }

    /// One balancing round: scans the table, adopts leases handed over to this worker, takes
    /// released and expired leases up to the fair share, and asks for stolen ones.
    pub async fn take_round(&self) -> Result<(), KinesisError> {
        let mut leases = self.shared.table.scan().await?;
        self.delete_finished(&mut leases).await;
        let worker = self.worker_id().to_owned();
        let mut state = self.shared.state.lock().await;
        let now = Instant::now();
        let changed = self.adopt(&mut state, &leases);
        observe(&mut state.observed, &leases, now);
        let duration = self.shared.config.lease_duration;
        let observed = &state.observed;
        let expired = |l: &Lease| {
            observed
                .get(&l.key)
                .is_some_and(|(_, since)| now.duration_since(*since) >= duration)
        };
        let plan = balance::plan(
            &leases,
            &worker,
            expired,
            self.shared.config.max_steals_per_round,
        );
        let expired_keys: Vec<String> = plan
            .take
            .iter()
            .filter(|k| leases.iter().any(|l| &l.key == *k && l.owner.is_some()))
            .cloned()
            .collect();
        state.table = leases;
        let taken = self.execute(&mut state, &plan, &expired_keys).await;
        self.publish(&state, changed || taken.as_ref().is_ok_and(|n| *n > 0));
        taken.map(|_| ())
    }

    /// Deletes the finished leases whose children all started, and leaves them out of
    /// `leases`. Every worker may try (a delete is idempotent); one that fails is tried again
    /// at the next round.
    async fn delete_finished(&self, leases: &mut Vec<Lease>) {
        for key in balance::finished_to_delete(leases) {
            match self.shared.table.delete(&key).await {
                Ok(()) => {
                    tracing::info!(table = self.shared.table.name(), shard = %key, "finished lease deleted: every child shard started");
                    self.count(|c| c.deleted += 1, crate::metric_catalogue::LEASES_DELETED);
                    leases.retain(|l| l.key != key);
                }
                Err(e) => {
                    tracing::warn!(table = self.shared.table.name(), shard = %key, error = %e, "deleting a finished lease failed; trying again next round")
                }
            }
        }
    }

    /// Leases the table says are this worker's but it does not hold: handed over to it.
    fn adopt(&self, state: &mut State, leases: &[Lease]) -> bool {
        let mut changed = false;
        for lease in leases.iter().filter(|l| l.is_owned_by(self.worker_id())) {
            if !state.held.contains_key(&lease.key) && !lease.is_finished() {
                tracing::info!(table = self.shared.table.name(), shard = %lease.key, "lease handed over to this worker");
                self.count(|c| c.stolen += 1, crate::metric_catalogue::LEASES_STOLEN);
                let held = Held {
                    lease: lease.clone(),
                    renewed: Instant::now(),
                };
                state.held.insert(lease.key.clone(), held);
                changed = true;
            }
        }
        changed
    }

    /// Carries a plan out; the number of leases taken.
    async fn execute(
        &self,
        state: &mut State,
        plan: &Plan,
        expired: &[String],
    ) -> Result<usize, KinesisError> {
        let worker = self.worker_id().to_owned();
        let mut taken = 0;
        for key in &plan.take {
            let Some(observed) = state.table.iter().find(|l| &l.key == key).cloned() else {
                continue;
            };
            // Another worker may have taken it since the scan: then this write fails, and
            // exactly one of the two holds it.
            if let Some(lease) = self.shared.table.take(&observed, &worker).await? {
                let was_expired = expired.contains(key);
                tracing::info!(table = self.shared.table.name(), shard = %key, was_expired, target = plan.target, "lease taken");
                self.count(|c| c.taken += 1, crate::metric_catalogue::LEASES_TAKEN);
                if was_expired {
                    self.count(|c| c.expired += 1, crate::metric_catalogue::LEASES_EXPIRED);
                }
                state.held.insert(
                    key.clone(),
                    Held {
                        lease,
                        renewed: Instant::now(),
                    },
                );
                taken += 1;
            }
        }
        for key in &plan.steal {
            let Some(observed) = state.table.iter().find(|l| &l.key == key) else {
                continue;
            };
            if self
                .shared
                .table
                .request_hand_over(observed, &worker)
                .await?
            {
                tracing::info!(table = self.shared.table.name(), shard = %key, from = ?observed.owner, target = plan.target, "asked for a lease (steal)");
            }
        }
        Ok(taken)
    }

    /// Writes `checkpoint` into the held lease of `shard` (fenced by its counter). False when
    /// this worker does not hold it (any more): the write is refused, never applied.
    pub async fn checkpoint(
        &self,
        shard: &str,
        checkpoint: &LeaseCheckpoint,
    ) -> Result<bool, KinesisError> {
        let worker = self.worker_id().to_owned();
        let mut state = self.shared.state.lock().await;
        let Some(held) = state.held.get(shard).cloned() else {
            return Ok(false);
        };
        if &held.lease.checkpoint == checkpoint {
            return Ok(true);
        }
        match self
            .shared
            .table
            .checkpoint(&held.lease, &worker, checkpoint)
            .await?
        {
            Some(lease) => {
                // The write returns the lease as it is now: a hand-over asked for since the
                // last renewal shows here first, and the source must hear of it (the next
                // renewal compares with this copy and would see no change).
                let asked = lease.pending_owner != held.lease.pending_owner;
                state.held.insert(
                    shard.to_owned(),
                    Held {
                        lease,
                        renewed: Instant::now(),
                    },
                );
                self.publish(&state, asked);
                Ok(true)
            }
            None => {
                self.lose(
                    &mut state,
                    shard,
                    "checkpoint refused: the lease is another worker's",
                );
                self.publish(&state, true);
                Ok(false)
            }
        }
    }

    /// Gives the lease of `shard` up (to the worker that asked for it, if one did).
    pub async fn release(&self, shard: &str) -> Result<bool, KinesisError> {
        let worker = self.worker_id().to_owned();
        let mut state = self.shared.state.lock().await;
        let Some(held) = state.held.remove(shard) else {
            return Ok(false);
        };
        let released = self.shared.table.release(&held.lease, &worker).await;
        self.publish(&state, true);
        let released = released?;
        tracing::info!(table = self.shared.table.name(), shard, to = ?held.lease.pending_owner, released, "lease released");
        Ok(released)
    }

    /// Gives every held lease up (a graceful stop).
    pub async fn release_all(&self) -> Result<(), KinesisError> {
        let keys: Vec<String> = self
            .shared
            .state
            .lock()
            .await
            .held
            .keys()
            .cloned()
            .collect();
        let mut first_error = None;
        for key in keys {
            if let Err(e) = self.release(&key).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Renews and balances in the background until the handle is aborted. Failed calls are
    /// logged and retried at the next tick: a short DynamoDB outage must not stop reading.
    pub fn spawn(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let config = &this.shared.config;
            let mut next_take = Instant::now();
            loop {
                if let Err(e) = this.renew().await {
                    tracing::warn!(error = %e, "lease renewal failed");
                }
                if Instant::now() >= next_take {
                    if let Err(e) = this.take_round().await {
                        tracing::warn!(error = %e, "lease take round failed");
                    }
                    next_take = Instant::now() + config.take_interval;
                }
                let wait = config
                    .renewal_interval
                    .min(next_take.saturating_duration_since(Instant::now()));
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
        })
    }

    fn count(&self, add: impl FnOnce(&mut LeaseCounts), metric: &'static str) {
        add(&mut self.shared.counts.lock().expect("counts lock"));
        metrics::counter!(metric, "table" => self.shared.table.name().to_owned()).increment(1);
    }

    fn publish(&self, state: &State, changed: bool) {
        metrics::gauge!(
            crate::metric_catalogue::LEASES_HELD,
            "table" => self.shared.table.name().to_owned(),
            "worker" => self.worker_id().to_owned(),
        )
        .set(state.held.len() as f64);
        if changed {
            self.shared.changed.send_modify(|v| *v += 1);
        }
    }
}

/// Records, per lease, since when its counter has had its current value.
fn observe(observed: &mut HashMap<String, (u64, Instant)>, leases: &[Lease], now: Instant) {
    observed.retain(|key, _| leases.iter().any(|l| &l.key == key));
    for lease in leases {
        let entry = observed
            .entry(lease.key.clone())
            .or_insert((lease.counter, now));
        if entry.0 != lease.counter {
            *entry = (lease.counter, now);
        }
    }
}
