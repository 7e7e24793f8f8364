//! Which leases a worker takes or steals in one round: a pure function of the table, so that
//! it is tested without DynamoDB.
//!
//! As the KCL: every worker aims at `ceil(leases / workers)`, where the workers are the owners
//! of live leases plus itself (a worker without leases is invisible to the others, so each
//! counts itself). Available leases (released, or expired as observed locally) are taken
//! first; only when none is left does a worker steal, at most `max_steals` per round, from the
//! most loaded worker, and only from one above the target (stealing from a worker at the
//! target would only move the imbalance, and the two would trade leases forever) — except
//! that a worker with no lease at all takes one from a worker at the target, as the KCL does:
//! 4 leases over 3 workers give a target of 2, which 2 + 2 + 0 meets for the two loaded ones.

use super::lease::{Lease, LeaseCheckpoint};
use std::collections::{BTreeMap, HashMap};

/// What to do in one round.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Leases to take (released or expired), by shard id.
    pub(crate) take: Vec<String>,
    /// Leases to ask their owner for (hand-over at its next checkpoint).
    pub(crate) steal: Vec<String>,
    /// The target this worker aimed at, for logs and tests.
    pub(crate) target: usize,
}

/// Whether every parent of `lease` was read to its end (or has no lease: expired from the
/// stream, so nothing is left to read before the child).
pub(crate) fn parents_done(lease: &Lease, by_key: &HashMap<&str, &Lease>) -> bool {
    lease
        .parents
        .iter()
        .all(|p| by_key.get(p.as_str()).is_none_or(|l| l.is_finished()))
}

/// Whether a lease's shard was read at all: its checkpoint moved past the initial position.
fn started(lease: &Lease) -> bool {
    matches!(
        lease.checkpoint,
        LeaseCheckpoint::Sequence { .. } | LeaseCheckpoint::ShardEnd
    )
}

/// Whether some lease of a child of `shard` has started: `shard` was read to its end and its
/// lease, if gone, was deleted on purpose. A lease for it must not be created again, though
/// the stream still lists the closed shard until its retention ends: it would be read twice.
pub(crate) fn superseded(shard: &str, leases: &[Lease]) -> bool {
    leases
        .iter()
        .any(|l| started(l) && l.parents.iter().any(|p| p == shard))
}

/// Finished leases whose work is over (the KCL's lease clean-up): at `SHARD_END`, with at
/// least one child lease and every child lease started. Deleting them keeps the table (and
/// every scan of it) from growing with each reshard; [`superseded`] keeps them from being
/// created again.
pub(crate) fn finished_to_delete(leases: &[Lease]) -> Vec<String> {
    leases
        .iter()
        .filter(|f| f.is_finished())
        .filter(|f| {
            let mut children = leases
                .iter()
                .filter(|l| l.parents.contains(&f.key))
                .peekable();
            children.peek().is_some() && children.all(started)
        })
        .map(|f| f.key.clone())
        .collect()
}

/// The plan for `me` over `leases`; `expired` says which leases of other workers have not
/// been renewed for a lease duration.
pub(crate) fn plan(
    leases: &[Lease],
    me: &str,
    expired: impl Fn(&Lease) -> bool,
    max_steals: usize,
) -> Plan {
    let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.key.as_str(), l)).collect();
    let readable: Vec<&Lease> = leases
        .iter()
        .filter(|l| !l.is_finished() && parents_done(l, &by_key))
        .collect();
    // A lease being handed over counts for the worker it goes to, so that others do not
    // steal it, or another lease, for the same imbalance.
    let mut load: BTreeMap<&str, usize> = BTreeMap::from([(me, 0)]);
    let mut available = Vec::new();
    for lease in &readable {
        match lease.owner.as_deref() {
            Some(owner) if owner == me || !expired(lease) => {
                let counted = lease.pending_owner.as_deref().unwrap_or(owner);
                *load.entry(counted).or_default() += 1;
            }
            _ => available.push(lease.key.clone()),
        }
    }
    let target = readable.len().div_ceil(load.len());
    let mine = load[me];
    let mut plan = Plan {
        target,
        ..Plan::default()
    };
    let need = target.saturating_sub(mine);
    plan.take = available.into_iter().take(need).collect();
    if !plan.take.is_empty() || need == 0 {
        return plan;
    }
    let idle = mine == 0;
    plan.steal = steal(&readable, &load, (me, idle), target, need.min(max_steals));
    plan
}

/// Up to `n` leases of the most loaded worker, if it is above `target`.
fn steal(
    readable: &[&Lease],
    load: &BTreeMap<&str, usize>,
    (me, idle): (&str, bool),
    target: usize,
    n: usize,
) -> Vec<String> {
    let Some((&victim, &count)) = load
        .iter()
        .filter(|(w, _)| **w != me)
        .max_by_key(|(w, c)| (**c, std::cmp::Reverse(**w)))
    else {
        return Vec::new();
    };
    // `count > 1`: taking a worker's only lease would leave it idle, to steal it back.
    let n = match count.cmp(&target) {
        std::cmp::Ordering::Greater => n.min(count - target),
        std::cmp::Ordering::Equal if idle && count > 1 => n.min(1),
        _ => return Vec::new(),
    };
    readable
        .iter()
        .filter(|l| l.is_owned_by(victim) && l.pending_owner.is_none())
        .take(n)
        .map(|l| l.key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseCheckpoint;

    fn lease(key: &str, owner: Option<&str>) -> Lease {
        let mut l = Lease::new(key, vec![], LeaseCheckpoint::TrimHorizon);
        l.owner = owner.map(str::to_owned);
        l
    }

    fn leases(owners: &[Option<&str>]) -> Vec<Lease> {
        owners
            .iter()
            .enumerate()
            .map(|(i, o)| lease(&format!("shard-{i}"), *o))
            .collect()
    }

    #[test]
    fn a_lone_worker_takes_every_free_lease() {
        let p = plan(&leases(&[None; 8]), "a", |_| false, 1);
        assert_eq!((p.take.len(), p.target), (8, 8));
    }

    #[test]
    fn a_new_worker_steals_one_per_round_from_the_most_loaded() {
        let mut all = leases(&[Some("a"); 6]);
        all.extend(leases(&[Some("b"); 2]).into_iter().map(|mut l| {
            l.key.push_str("-b");
            l
        }));
        let p = plan(&all, "c", |_| false, 1);
        assert_eq!(p.target, 3);
        assert!(p.take.is_empty());
        assert_eq!(p.steal.len(), 1);
        assert!(all
            .iter()
            .any(|l| l.key == p.steal[0] && l.is_owned_by("a")));
    }

    #[test]
    fn a_balanced_table_stays_as_it_is() {
        let all = leases(&[
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        for me in ["a", "b", "c"] {
            let p = plan(&all, me, |_| false, 1);
            assert_eq!(
                p,
                Plan {
                    target: 3,
                    ..Plan::default()
                },
                "{me}"
            );
        }
    }

    #[test]
    fn an_idle_worker_takes_one_from_a_worker_at_the_target() {
        let all = leases(&[Some("a"), Some("a"), Some("c"), Some("c")]);
        let p = plan(&all, "b", |_| false, 1);
        assert_eq!((p.target, p.steal.len()), (2, 1));
        // Afterwards (a 1, b 1, c 2) nobody steals: a and b are not idle.
        let all = leases(&[Some("a"), Some("b"), Some("c"), Some("c")]);
        for me in ["a", "b", "c"] {
            assert!(plan(&all, me, |_| false, 1).steal.is_empty(), "{me}");
        }
    }

    #[test]
    fn expired_leases_are_taken_before_stealing() {
        let all = leases(&[Some("dead"), Some("dead"), Some("a"), Some("a")]);
        let p = plan(&all, "b", |l| l.is_owned_by("dead"), 1);
        assert_eq!(p.take, vec!["shard-0".to_owned(), "shard-1".to_owned()]);
        assert!(p.steal.is_empty());
    }

    #[test]
    fn a_finished_lease_is_deleted_once_every_child_started_and_is_not_created_again() {
        let mut parent = lease("p", None);
        parent.checkpoint = LeaseCheckpoint::ShardEnd;
        let mut left = lease("c-left", None);
        left.parents = vec!["p".into()];
        let mut right = lease("c-right", None);
        right.parents = vec!["p".into()];
        let finished_alone = vec![parent.clone()];
        assert!(
            finished_to_delete(&finished_alone).is_empty(),
            "no child yet"
        );
        let all = vec![parent.clone(), left.clone(), right.clone()];
        assert!(finished_to_delete(&all).is_empty(), "children not started");
        assert!(!superseded("p", &all));
        left.checkpoint = LeaseCheckpoint::Sequence {
            sequence: "7".into(),
            sub: 0,
        };
        let all = vec![parent.clone(), left.clone(), right.clone()];
        assert!(finished_to_delete(&all).is_empty(), "one child not started");
        assert!(superseded("p", &all), "a started child supersedes it");
        right.checkpoint = LeaseCheckpoint::ShardEnd;
        let all = vec![parent.clone(), left.clone(), right.clone()];
        assert_eq!(finished_to_delete(&all), ["p"]);
        let mut unfinished = parent;
        unfinished.checkpoint = LeaseCheckpoint::TrimHorizon;
        assert!(finished_to_delete(&[unfinished, left, right]).is_empty());
    }

    #[test]
    fn a_child_waits_until_every_parent_is_at_shard_end() {
        let mut parent_a = lease("p-a", None);
        let parent_b = lease("p-b", None);
        let mut child = lease("child", None);
        child.parents = vec!["p-a".into(), "p-b".into()];
        parent_a.checkpoint = LeaseCheckpoint::ShardEnd;
        let all = vec![parent_a.clone(), parent_b.clone(), child.clone()];
        assert_eq!(plan(&all, "w", |_| false, 1).take, vec!["p-b".to_owned()]);
        let mut parent_b = parent_b;
        parent_b.checkpoint = LeaseCheckpoint::ShardEnd;
        let all = vec![parent_a, parent_b, child];
        assert_eq!(plan(&all, "w", |_| false, 1).take, vec!["child".to_owned()]);
    }

    #[test]
    fn a_lease_being_handed_over_counts_for_its_next_owner() {
        let mut all = leases(&[Some("a"), Some("a"), Some("a"), Some("a")]);
        all[0].pending_owner = Some("b".into());
        // b: target 2, holds 1 (pending): steals one more, never the pending one.
        let p = plan(&all, "b", |_| false, 1);
        assert_eq!(p.steal.len(), 1);
        assert_ne!(p.steal[0], "shard-0");
    }
}
