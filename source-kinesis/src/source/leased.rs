//! The source's side of a lease table: it reads only the shards whose leases this worker
//! holds, starts a newly held shard where the last completed checkpoint of any worker left it,
//! mirrors its completed checkpoints into the leases, and hands a lease another worker asked
//! for over only after a checkpoint covering what it read of that shard completed.

use super::{KinesisSource, ShardState};
use crate::error::KinesisError;
use crate::lease::{Lease, LeaseCheckpoint, LeaseConfig, LeaseCoordinator};
use crate::position::{KinesisPosition, ShardPosition, StartPosition};
use crate::sequence::cmp_positions;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watershed_core::{SourceEvent, SplitId};

/// A shard stopped for a hand-over: its position when it stopped, and when to give up waiting
/// for a checkpoint that covers it.
#[derive(Debug)]
struct HandOver {
    last: Option<ShardPosition>,
    deadline: Instant,
}

/// What a leasing source keeps besides the shards it reads.
#[derive(Debug)]
pub(super) struct Leasing {
    config: LeaseConfig,
    coordinator: Option<LeaseCoordinator>,
    /// Renews and balances in the background, so that a pipeline busy elsewhere (a slow sink,
    /// a long checkpoint) does not lose its leases.
    task: Option<JoinHandle<()>>,
    changes: Option<watch::Receiver<u64>>,
    /// The leases the source acts on, as of the last `apply_leases`.
    held: BTreeMap<String, Lease>,
    /// Positions of the restored Watershed checkpoint, used when this worker takes the shard.
    restored: BTreeMap<String, ShardPosition>,
    hand_overs: BTreeMap<String, HandOver>,
}

impl Leasing {
    pub(super) fn new(config: LeaseConfig) -> Box<Self> {
        Box::new(Leasing {
            config,
            coordinator: None,
            task: None,
            changes: None,
            held: BTreeMap::new(),
            restored: BTreeMap::new(),
            hand_overs: BTreeMap::new(),
        })
    }

    fn coordinator(&self) -> Result<&LeaseCoordinator, KinesisError> {
        self.coordinator
            .as_ref()
            .ok_or_else(|| KinesisError::Config("the lease coordinator is not connected".into()))
    }

    /// Something to act on: the held leases changed, or a hand-over waited too long.
    pub(super) fn due(&self) -> bool {
        let now = Instant::now();
        self.changes
            .as_ref()
            .is_some_and(|c| c.has_changed().unwrap_or(false))
            || self.hand_overs.values().any(|h| h.deadline <= now)
    }
}

impl Drop for Leasing {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl KinesisSource {
    /// Connects the lease table and takes a first share, after the first discovery created
    /// the stream's leases. The restored positions wait in `restored` until their shards are
    /// taken: reading only held shards, the position holds only those.
    pub(super) async fn open_leases(&mut self) -> Result<(), KinesisError> {
        let Some(leasing) = self.leasing.as_mut() else {
            return Ok(());
        };
        // Opened again (a restart in the same process): the previous coordinator's renewals
        // stop, and its leases expire or are taken back by this one.
        if let Some(task) = leasing.task.take() {
            task.abort();
        }
        leasing.held.clear();
        leasing.hand_overs.clear();
        let coordinator = LeaseCoordinator::connect(leasing.config.clone()).await?;
        leasing.restored = std::mem::take(&mut self.position.shards);
        leasing.changes = Some(coordinator.subscribe());
        leasing.coordinator = Some(coordinator);
        self.check_positions = false;
        self.discover().await?;
        let leasing = self.leasing.as_mut().expect("leasing");
        let coordinator = leasing.coordinator()?.clone();
        coordinator.take_round().await?;
        leasing.task = Some(coordinator.spawn());
        self.apply_leases().await
    }

    /// Discovery with leases: creates the leases of new shards (children start at
    /// TRIM_HORIZON), notes closed shards; which shards are read is up to the leases.
    pub(super) async fn discover_leased(
        &mut self,
        listed: &[aws_sdk_kinesis::types::Shard],
    ) -> Result<(), KinesisError> {
        let ids: HashSet<&str> = listed.iter().map(|s| s.shard_id()).collect();
        let mut templates = Vec::with_capacity(listed.len());
        for shard in listed {
            let parents: Vec<String> = shard
                .parent_shard_id()
                .into_iter()
                .chain(shard.adjacent_parent_shard_id())
                .map(str::to_owned)
                .collect();
            let start = if parents.iter().any(|p| ids.contains(p.as_str())) {
                LeaseCheckpoint::TrimHorizon
            } else {
                start_column(self.options.start)
            };
            templates.push(Lease::new(shard.shard_id(), parents, start));
            let closed = shard
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some();
            if let (true, Some(info)) = (closed, self.shards.get_mut(shard.shard_id())) {
                info.closed = true;
                info.closed_flag
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let coordinator = self.leasing.as_ref().expect("leasing").coordinator()?;
        // The leases of this discovery are created by the next one if the table is down now.
        if let Err(e) = coordinator.create_missing(&templates).await {
            tracing::warn!(error = %e, "creating leases for new shards failed");
        }
        Ok(())
    }

    /// Brings the shards read in line with the leases held: starts newly held shards, drops
    /// lost ones, stops shards asked for by another worker (handed over at the next
    /// checkpoint), and hands over those whose checkpoint did not come in time.
    pub(super) async fn apply_leases(&mut self) -> Result<(), KinesisError> {
        let leasing = self.leasing.as_mut().expect("leasing");
        if let Some(changes) = leasing.changes.as_mut() {
            changes.borrow_and_update();
        }
        let coordinator = leasing.coordinator()?.clone();
        let now: BTreeMap<String, Lease> = coordinator
            .held()
            .await
            .into_iter()
            .map(|l| (l.key.clone(), l))
            .collect();
        let before = std::mem::replace(&mut leasing.held, now.clone());
        for shard in before.keys().filter(|k| !now.contains_key(*k)) {
            tracing::warn!(shard = %shard, "lease lost: no longer reading the shard");
            self.stop_shard(shard);
            self.position.shards.remove(shard);
            self.leasing
                .as_mut()
                .expect("leasing")
                .hand_overs
                .remove(shard);
        }
        for (shard, lease) in &now {
            let handing_over = self
                .leasing
                .as_ref()
                .expect("leasing")
                .hand_overs
                .contains_key(shard);
            if lease.pending_owner.is_some() && !handing_over {
                self.begin_hand_over(shard);
            } else if !before.contains_key(shard)
                && !lease.is_finished()
                && lease.pending_owner.is_none()
            {
                self.take_shard(lease);
            }
        }
        self.hand_over_late(&coordinator).await;
        self.start_ready();
        Ok(())
    }

    /// Adds a newly held shard, starting at the later of the restored Watershed position and
    /// the lease's checkpoint (see `docs/kinesis.md`: both only ever hold what a completed
    /// checkpoint covered, so the later one repeats and skips nothing).
    fn take_shard(&mut self, lease: &Lease) {
        let leasing = self.leasing.as_mut().expect("leasing");
        let restored = leasing.restored.remove(&lease.key);
        let from_lease = lease_position(&lease.checkpoint, self.options.start);
        let start = later(
            restored.or_else(|| self.position.shards.remove(&lease.key)),
            from_lease,
        );
        tracing::info!(shard = %lease.key, ?start, "lease held: reading the shard");
        self.position.shards.insert(lease.key.clone(), start);
        self.shards.remove(&lease.key);
        self.add_shard(&lease.key, lease.parents.clone(), false, false);
    }

    /// Stops reading `shard` and keeps its position until a checkpoint covering it completes.
    fn begin_hand_over(&mut self, shard: &str) {
        tracing::info!(
            shard,
            "another worker asked for the lease: handing over after the next checkpoint"
        );
        self.stop_shard(shard);
        let leasing = self.leasing.as_mut().expect("leasing");
        let deadline = Instant::now() + leasing.config.hand_over_timeout;
        let last = self.position.shards.get(shard).cloned();
        leasing
            .hand_overs
            .insert(shard.to_owned(), HandOver { last, deadline });
        self.queued.push_back(SourceEvent::CheckpointRequested);
    }

    /// Hand-overs whose checkpoint did not come in time: released without their final position
    /// (the new owner reads from the last mirrored checkpoint; records read since then may be
    /// read twice).
    async fn hand_over_late(&mut self, coordinator: &LeaseCoordinator) {
        let leasing = self.leasing.as_mut().expect("leasing");
        let now = Instant::now();
        let late: Vec<String> = leasing
            .hand_overs
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for shard in late {
            tracing::warn!(shard = %shard, "no checkpoint within the hand-over timeout: releasing the lease anyway");
            self.release_shard(coordinator, &shard).await;
        }
    }

    async fn release_shard(&mut self, coordinator: &LeaseCoordinator, shard: &str) {
        if let Err(e) = coordinator.release(shard).await {
            tracing::warn!(error = %e, shard, "releasing a lease failed (it expires instead)");
        }
        let leasing = self.leasing.as_mut().expect("leasing");
        leasing.hand_overs.remove(shard);
        leasing.held.remove(shard);
        // From now on the new owner's: a later checkpoint of this worker must not carry it.
        self.position.shards.remove(shard);
        self.shards.remove(shard);
    }

    /// Aborts the shard's reader and forgets it (its batches still queued are dropped by `poll`).
    fn stop_shard(&mut self, shard: &str) {
        if let Some(info) = self.shards.remove(shard) {
            if let ShardState::Reading(handle) = info.state {
                handle.abort();
                self.queued
                    .push_back(SourceEvent::SplitRemoved(SplitId::new(shard)));
            }
        }
    }

    /// Whether the batches of `shard` belong in the output (with leases, a shard may have been
    /// stopped while its reader's batches were queued).
    pub(super) fn reading(&self, shard: &str) -> bool {
        self.leasing.is_none()
            || self
                .shards
                .get(shard)
                .is_some_and(|i| matches!(i.state, ShardState::Reading(_)))
    }

    /// After a completed checkpoint: its positions go into the held leases (fenced), finished
    /// shards and covered hand-overs are released. Lease table failures are logged, not
    /// returned: the next checkpoint writes the position again, and failing the pipeline for
    /// a mirror would stop reading every shard.
    pub(super) async fn leases_checkpointed(&mut self, position: &KinesisPosition) {
        let Some(coordinator) = self.leasing.as_ref().and_then(|l| l.coordinator.clone()) else {
            return;
        };
        let held = self.leasing.as_ref().expect("leasing").held.clone();
        for (shard, lease) in &held {
            let Some(checkpoint) = position.shards.get(shard).and_then(mirror) else {
                continue;
            };
            if !ahead(&checkpoint, &lease.checkpoint) {
                continue;
            }
            match coordinator.checkpoint(shard, &checkpoint).await {
                Ok(true) if checkpoint == LeaseCheckpoint::ShardEnd => {
                    // Read to its end: nobody needs to hold it any more.
                    self.release_shard(&coordinator, shard).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, shard = %shard, "writing the checkpoint into the lease failed")
                }
            }
        }
        let covered: Vec<String> = self
            .leasing
            .as_ref()
            .expect("leasing")
            .hand_overs
            .iter()
            .filter(|(shard, h)| position.shards.get(*shard) == h.last.as_ref())
            .map(|(k, _)| k.clone())
            .collect();
        for shard in covered {
            self.release_shard(&coordinator, &shard).await;
        }
    }

    /// A graceful stop: after the final checkpoint, every lease goes back to the table.
    pub(super) async fn close_leases(&mut self) {
        let Some(leasing) = self.leasing.as_mut() else {
            return;
        };
        if let Some(task) = leasing.task.take() {
            task.abort();
        }
        if let Some(coordinator) = &leasing.coordinator {
            if let Err(e) = coordinator.release_all().await {
                tracing::warn!(error = %e, "releasing leases at close failed (they expire instead)");
            }
        }
        leasing.held.clear();
    }
}

/// The lease column for a shard no worker has read yet.
fn start_column(start: StartPosition) -> LeaseCheckpoint {
    match start {
        StartPosition::TrimHorizon => LeaseCheckpoint::TrimHorizon,
        StartPosition::Latest => LeaseCheckpoint::Latest,
        StartPosition::AtTimestamp(_) => LeaseCheckpoint::AtTimestamp,
    }
}

/// Where a lease's checkpoint column says to read from.
fn lease_position(checkpoint: &LeaseCheckpoint, start: StartPosition) -> ShardPosition {
    match checkpoint {
        LeaseCheckpoint::Sequence { sequence, sub } => ShardPosition::After {
            sequence: sequence.clone(),
            sub: *sub,
        },
        LeaseCheckpoint::ShardEnd => ShardPosition::Finished,
        LeaseCheckpoint::Latest => ShardPosition::Start(StartPosition::Latest),
        LeaseCheckpoint::AtTimestamp => match start {
            at @ StartPosition::AtTimestamp(_) => ShardPosition::Start(at),
            _ => ShardPosition::Start(StartPosition::TrimHorizon),
        },
        _ => ShardPosition::Start(StartPosition::TrimHorizon),
    }
}

/// What a completed checkpoint's shard position writes into the lease (`None`: nothing read).
fn mirror(position: &ShardPosition) -> Option<LeaseCheckpoint> {
    match position {
        ShardPosition::After { sequence, sub } => Some(LeaseCheckpoint::Sequence {
            sequence: sequence.clone(),
            sub: *sub,
        }),
        ShardPosition::Finished => Some(LeaseCheckpoint::ShardEnd),
        _ => None,
    }
}

/// Whether `new` is further along the shard than `current` (a mirror never moves back).
fn ahead(new: &LeaseCheckpoint, current: &LeaseCheckpoint) -> bool {
    use LeaseCheckpoint::{Sequence, ShardEnd};
    match (new, current) {
        (_, ShardEnd) => false,
        (ShardEnd, _) => true,
        (
            Sequence {
                sequence: a,
                sub: x,
            },
            Sequence {
                sequence: b,
                sub: y,
            },
        ) => cmp_positions((a, *x), (b, *y)) == Ordering::Greater,
        (Sequence { .. }, _) => true,
        _ => false,
    }
}

/// The later of the restored Watershed position and the lease's: each holds only what a
/// completed checkpoint covered (this worker's, or the owner's mirrored into the lease), so
/// the later one is where output ends. Without a record read, the Watershed position wins
/// (it holds LATEST resolved to the moment it was first read).
fn later(restored: Option<ShardPosition>, lease: ShardPosition) -> ShardPosition {
    use ShardPosition::{After, Finished};
    match (restored, lease) {
        (None, lease) => lease,
        (Some(Finished), _) | (_, Finished) => Finished,
        (
            Some(After {
                sequence: a,
                sub: x,
            }),
            After {
                sequence: b,
                sub: y,
            },
        ) => {
            if cmp_positions((&a, x), (&b, y)) == Ordering::Less {
                After {
                    sequence: b,
                    sub: y,
                }
            } else {
                After {
                    sequence: a,
                    sub: x,
                }
            }
        }
        (Some(restored @ After { .. }), _) => restored,
        (Some(_), lease @ After { .. }) => lease,
        (Some(restored), _) => restored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(sequence: &str) -> ShardPosition {
        ShardPosition::After {
            sequence: sequence.into(),
            sub: 0,
        }
    }

    #[test]
    fn the_later_position_wins() {
        assert_eq!(later(Some(after("100")), after("90")), after("100"));
        assert_eq!(later(Some(after("90")), after("100")), after("100"));
        let trim = ShardPosition::Start(StartPosition::TrimHorizon);
        assert_eq!(later(Some(trim.clone()), after("5")), after("5"));
        assert_eq!(later(None, trim.clone()), trim);
        assert_eq!(
            later(Some(ShardPosition::Finished), after("5")),
            ShardPosition::Finished
        );
    }

    #[test]
    fn a_mirror_never_moves_the_lease_back() {
        let seq = |s: &str| LeaseCheckpoint::Sequence {
            sequence: s.into(),
            sub: 0,
        };
        assert!(ahead(&seq("2"), &LeaseCheckpoint::TrimHorizon));
        assert!(ahead(&seq("20"), &seq("3")));
        assert!(!ahead(&seq("3"), &seq("3")));
        assert!(ahead(&LeaseCheckpoint::ShardEnd, &seq("3")));
        assert!(!ahead(&seq("30"), &LeaseCheckpoint::ShardEnd));
    }
}
