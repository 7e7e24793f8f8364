//! Rescaling: whether a checkpoint's keyed state fits the pipeline's keyed operators, and which
//! key groups each instance restores.

use super::Manifest;
use crate::error::{Error, Result};
use crate::key_group::KeyGroupRange;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

/// Every key group's slice lies inside its object. The error names the node and the problem.
pub(crate) fn check_slices(
    m: &Manifest,
    states: &HashMap<String, Bytes>,
) -> std::result::Result<(), (String, String)> {
    for nodes in m.key_groups.values() {
        for (node, slices) in nodes {
            let size = states.get(node).map_or(0, |s| s.len() as u64);
            for s in slices {
                if s.offset.checked_add(s.len).is_none_or(|end| end > size) {
                    return Err((
                        node.clone(),
                        format!(
                            "is {size} bytes long, but the manifest puts key group {} at bytes {}..+{}",
                            s.group, s.offset, s.len
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The keyed operator a node is an instance of: `count.3` is instance 3 of `count`.
fn operator_of(node: &str) -> Option<&str> {
    let (operator, index) = node.rsplit_once('.')?;
    index.parse::<usize>().ok().map(|_| operator)
}

/// Refuses keyed state the pipeline cannot restore: state from before key groups (unless one
/// instance held every key both then and now), state split into another number of key groups,
/// and one-blob-per-instance state at another parallelism.
pub(crate) fn check_keyed(
    m: &Manifest,
    layout: &BTreeMap<String, usize>,
    max_parallelism: usize,
) -> Result<()> {
    for (operator, &now) in layout {
        let grouped = m.key_groups.contains_key(operator);
        let blobs = !grouped && m.operators.keys().any(|n| operator_of(n) == Some(operator));
        if !grouped && !blobs {
            // Stateless (or no state yet): nothing to redistribute.
            continue;
        }
        let before = m.layout.get(operator).copied().unwrap_or(now);
        let refuse = |problem: String| {
            Err(Error::Rescale {
                id: m.id,
                operator: operator.clone(),
                problem,
            })
        };
        match m.max_parallelism {
            // One instance held every key under the old hash and holds every key now: its
            // state is the same blob either way, so such a checkpoint is migrated.
            None if before == 1 && now == 1 => continue,
            None => {
                return refuse(format!(
                    "the checkpoint was written before key groups existed (manifest version {}, \
                     no max_parallelism) at parallelism {before}; its state is split by the old \
                     hash, which keys are no longer routed by, so it can only be restored at \
                     parallelism 1 and only if it was written at parallelism 1. Ways out: finish \
                     the run with the Watershed version that wrote it, or start this pipeline \
                     afresh (a new pipeline id or an empty checkpoint store) and replay its input",
                    m.version
                ))
            }
            Some(was) if was != max_parallelism => {
                return refuse(format!(
                    "its keyed state is split into {was} key groups (max_parallelism {was}) and \
                     this pipeline has max_parallelism {max_parallelism}, so every key would \
                     fall in another group. max_parallelism cannot change for existing state: \
                     set PipelineConfig::max_parallelism({was}) again, or start afresh under a \
                     new pipeline id"
                ))
            }
            Some(_) => {}
        }
        if blobs && before != now {
            return refuse(format!(
                "its state was written as one blob per instance at parallelism {before} (the \
                 operator does not implement Operator::snapshot_key_groups), so it restores only \
                 at parallelism {before}, not {now}: set parallelism {before} again, or give the \
                 operator snapshot_key_groups and restore_key_groups"
            ));
        }
    }
    Ok(())
}

/// The key-group states of `operator` that the instance owning `range` restores, ascending by
/// group; `None` when the checkpoint holds no key-group state of `operator`.
pub(crate) fn key_group_states(
    m: &Manifest,
    states: &HashMap<String, Bytes>,
    operator: &str,
    range: KeyGroupRange,
) -> Option<Vec<(u16, Bytes)>> {
    let nodes = m.key_groups.get(operator)?;
    let mut out = Vec::new();
    for (node, slices) in nodes {
        let Some(object) = states.get(node) else {
            continue;
        };
        for s in slices.iter().filter(|s| range.contains(s.group)) {
            // Bounds were checked when the checkpoint was loaded (check_slices).
            let (start, end) = (s.offset as usize, (s.offset + s.len) as usize);
            out.push((s.group, object.slice(start..end)));
        }
    }
    out.sort_by_key(|(g, _)| *g);
    Some(out)
}
