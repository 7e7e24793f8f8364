//! One row of the lease table, in the KCL's attribute names, and its checkpoint column.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// KCL attribute names: a KCL application's table and this crate's read the same rows.
pub(crate) mod attr {
    pub(crate) const KEY: &str = "leaseKey";
    pub(crate) const OWNER: &str = "leaseOwner";
    pub(crate) const COUNTER: &str = "leaseCounter";
    pub(crate) const CHECKPOINT: &str = "checkpoint";
    pub(crate) const SUB: &str = "checkpointSubSequenceNumber";
    pub(crate) const PARENTS: &str = "parentShardIds";
    pub(crate) const SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    /// Not a KCL 2 attribute: the worker that asked the owner to hand the lease over (see
    /// `docs/kinesis.md`, "Sharing a stream between workers"). KCL 3 names the same idea
    /// `checkpointOwner`, with the roles the other way round.
    pub(crate) const PENDING: &str = "pendingOwner";
}

/// What a lease's `checkpoint` column says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseCheckpoint {
    /// `TRIM_HORIZON`: nothing read yet, start at the oldest record.
    TrimHorizon,
    /// `LATEST`: nothing read yet, start at the newest.
    Latest,
    /// `AT_TIMESTAMP`: nothing read yet, start at the configured time.
    AtTimestamp,
    /// The last record covered by a completed checkpoint (read on after it).
    Sequence {
        /// Sequence number.
        sequence: String,
        /// KPL sub-sequence number (0 for plain records).
        sub: u32,
    },
    /// `SHARD_END`: the shard was read to its end; its children may start.
    ShardEnd,
}

impl LeaseCheckpoint {
    /// The column's text (the KCL's sentinels, or the sequence number).
    pub fn as_column(&self) -> &str {
        match self {
            LeaseCheckpoint::TrimHorizon => "TRIM_HORIZON",
            LeaseCheckpoint::Latest => "LATEST",
            LeaseCheckpoint::AtTimestamp => "AT_TIMESTAMP",
            LeaseCheckpoint::Sequence { sequence, .. } => sequence,
            LeaseCheckpoint::ShardEnd => "SHARD_END",
        }
    }

    fn sub(&self) -> u32 {
        match self {
            LeaseCheckpoint::Sequence { sub, .. } => *sub,
            _ => 0,
        }
    }

    fn parse(column: &str, sub: u32) -> Self {
        match column {
            "TRIM_HORIZON" => LeaseCheckpoint::TrimHorizon,
            "LATEST" => LeaseCheckpoint::Latest,
            "AT_TIMESTAMP" => LeaseCheckpoint::AtTimestamp,
            "SHARD_END" => LeaseCheckpoint::ShardEnd,
            sequence => LeaseCheckpoint::Sequence {
                sequence: sequence.to_owned(),
                sub,
            },
        }
    }

    /// The attribute values of the two checkpoint columns.
    pub(crate) fn values(&self) -> (AttributeValue, AttributeValue) {
        (
            AttributeValue::S(self.as_column().to_owned()),
            AttributeValue::N(self.sub().to_string()),
        )
    }
}

/// One lease: the right to read one shard, as stored in the lease table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The shard id (`leaseKey`).
    pub key: String,
    /// The worker holding it (`leaseOwner`); `None` when released.
    pub owner: Option<String>,
    /// Incremented by every write of the owner (`leaseCounter`): the fencing token, and the
    /// heartbeat other workers watch to see that the owner is alive.
    pub counter: u64,
    /// Where the owner's completed checkpoints stand (`checkpoint`,
    /// `checkpointSubSequenceNumber`).
    pub checkpoint: LeaseCheckpoint,
    /// The shard's parents (`parentShardIds`): the lease is taken only once theirs are at
    /// `SHARD_END`.
    pub parents: Vec<String>,
    /// Owner changes since the last checkpoint (`ownerSwitchesSinceCheckpoint`).
    pub owner_switches: u64,
    /// A worker waiting for the owner to hand the lease over (`pendingOwner`).
    pub pending_owner: Option<String>,
}

impl Lease {
    /// A new, unowned lease for `shard`.
    pub fn new(shard: impl Into<String>, parents: Vec<String>, start: LeaseCheckpoint) -> Self {
        Lease {
            key: shard.into(),
            owner: None,
            counter: 0,
            checkpoint: start,
            parents,
            owner_switches: 0,
            pending_owner: None,
        }
    }

    /// Whether the shard was read to its end (its children may start).
    pub fn is_finished(&self) -> bool {
        self.checkpoint == LeaseCheckpoint::ShardEnd
    }

    /// Whether `worker` owns it.
    pub fn is_owned_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }

    /// The item to put for a new lease.
    pub(crate) fn to_item(&self) -> HashMap<String, AttributeValue> {
        let (checkpoint, sub) = self.checkpoint.values();
        let mut item = HashMap::from([
            (attr::KEY.to_owned(), AttributeValue::S(self.key.clone())),
            (
                attr::COUNTER.to_owned(),
                AttributeValue::N(self.counter.to_string()),
            ),
            (attr::CHECKPOINT.to_owned(), checkpoint),
            (attr::SUB.to_owned(), sub),
            (
                attr::SWITCHES.to_owned(),
                AttributeValue::N(self.owner_switches.to_string()),
            ),
        ]);
        if let Some(owner) = &self.owner {
            item.insert(attr::OWNER.to_owned(), AttributeValue::S(owner.clone()));
        }
        // DynamoDB refuses empty sets: a shard without parents has no such attribute.
        if !self.parents.is_empty() {
            item.insert(
                attr::PARENTS.to_owned(),
                AttributeValue::Ss(self.parents.clone()),
            );
        }
        item
    }

    /// Reads an item; `None` when it is not a lease (no `leaseKey`).
    pub(crate) fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let key = text(attr::KEY)?;
        let sub = u32::try_from(number(attr::SUB)).unwrap_or(0);
        let checkpoint = text(attr::CHECKPOINT)
            .map(|c| LeaseCheckpoint::parse(&c, sub))
            .unwrap_or(LeaseCheckpoint::TrimHorizon);
        let mut parents = item
            .get(attr::PARENTS)
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        parents.sort();
        Some(Lease {
            key,
            owner: text(attr::OWNER),
            counter: number(attr::COUNTER),
            checkpoint,
            parents,
            owner_switches: number(attr::SWITCHES),
            pending_owner: text(attr::PENDING),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_reads_back_as_the_same_lease() {
        let mut lease = Lease::new(
            "shardId-000000000002",
            vec!["shardId-000000000000".into(), "shardId-000000000001".into()],
            LeaseCheckpoint::Sequence {
                sequence: "4959".into(),
                sub: 3,
            },
        );
        lease.owner = Some("worker-a".into());
        lease.counter = 7;
        assert_eq!(Lease::from_item(&lease.to_item()), Some(lease));
    }

    #[test]
    fn sentinels_are_the_kcl_ones() {
        for c in [
            LeaseCheckpoint::TrimHorizon,
            LeaseCheckpoint::Latest,
            LeaseCheckpoint::AtTimestamp,
            LeaseCheckpoint::ShardEnd,
        ] {
            assert_eq!(LeaseCheckpoint::parse(c.as_column(), 0), c);
        }
        assert_eq!(LeaseCheckpoint::ShardEnd.as_column(), "SHARD_END");
    }
}
