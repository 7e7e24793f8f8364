//! Sharing a stream between workers through a lease table in DynamoDB, as the KCL does: one
//! lease per shard, held by one worker at a time, renewed by conditional writes, taken over
//! when it expires, and balanced so that each worker reads about as many shards as the others.
//!
//! - [`lease`](self::lease): a row of the table in the KCL's attribute names.
//! - `table`: the conditional DynamoDB writes (take, renew, checkpoint, hand over, release).
//! - `balance`: which leases a worker takes or steals in one round (pure).
//! - `coordinator`: a worker's leases over time (renewals, rounds, checkpoints, release).
//!
//! See `docs/kinesis.md`, "Sharing a stream between workers".

mod balance;
mod config;
mod coordinator;
#[allow(clippy::module_inception)]
mod lease;
mod table;

pub use config::LeaseConfig;
pub use coordinator::{LeaseCoordinator, LeaseCounts};
pub use lease::{Lease, LeaseCheckpoint};
pub use table::LeaseTable;
