//! Restore: the newest intact checkpoint, and what happens when newer ones are corrupt.

use super::manifest::Manifest;
use super::{CheckpointId, CheckpointStore};
use crate::error::{Error, Result};
use crate::metric_catalogue as m;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a starting pipeline does when the newest complete checkpoint is corrupt: its manifest
/// unreadable or altered, or a state file missing or altered (checked against the manifest's
/// checksums). Set with
/// [`PipelineConfig::on_corrupt_checkpoint`](crate::PipelineConfig::on_corrupt_checkpoint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptCheckpoint {
    /// Refuse to start (the default), with an [`Error::CorruptCheckpoint`] that names the
    /// checkpoint, the object and what is wrong. Nothing is restored and nothing is written
    /// twice; the operator puts back an intact copy of the object, or opts into
    /// [`FallBack`](Self::FallBack).
    #[default]
    Refuse,
    /// Skip corrupt checkpoints, newest first (each logged at error level and counted in
    /// `watershed_checkpoints_corrupt_total`), and restore the newest intact one. Its pending
    /// sink commits run again (idempotent) and input is replayed from its positions, so output
    /// that the skipped checkpoints had committed may be written again: at-least-once for
    /// that stretch. Still refuses when no intact checkpoint is left.
    FallBack,
}

/// What the pipeline being started expects of the checkpoint it restores.
pub(crate) struct RestoreRules<'a> {
    pub on_corrupt: CorruptCheckpoint,
    /// Node names of the pipeline.
    pub nodes: &'a HashSet<String>,
    /// Parallelism of each keyed operator.
    pub layout: &'a BTreeMap<String, usize>,
    /// The pipeline's number of key groups.
    pub max_parallelism: usize,
    pub allow_non_restored_state: bool,
}

/// What restore found: the checkpoint to resume from, if any, and the id of the next one.
pub(crate) struct Restored {
    pub manifest: Option<Manifest>,
    /// Operator states, by node name, each checked against its checksum.
    pub states: HashMap<String, Bytes>,
    pub next_id: CheckpointId,
}

/// A checkpoint whose objects checked out.
struct Intact {
    manifest: Manifest,
    states: HashMap<String, Bytes>,
    verified: bool,
}

/// What is wrong with a corrupt checkpoint.
struct Corruption {
    id: CheckpointId,
    object: String,
    problem: String,
}

/// Finds the checkpoint to restore: complete checkpoints newest first, corrupt ones refused or
/// skipped as `rules.on_corrupt` says. New ids continue above every id in the store, corrupt
/// ones included, because sinks recognise epochs they already committed by checkpoint id.
pub(crate) async fn restore(
    store: &CheckpointStore,
    pipeline: &str,
    rules: RestoreRules<'_>,
) -> Result<Restored> {
    let next_id = store
        .highest_id(pipeline)
        .await?
        .map_or(CheckpointId(1), CheckpointId::next);
    let mut corrupt = Vec::new();
    let mut intact = None;
    for id in store.complete_ids(pipeline).await?.into_iter().rev() {
        match load(store, pipeline, id).await? {
            Ok(found) => {
                intact = Some(found);
                break;
            }
            Err(c) => corrupt.push(c),
        }
    }
    let fallback = intact.as_ref().map(|i| i.manifest.id);
    settle_corrupt(pipeline, &corrupt, fallback, rules.on_corrupt)?;
    let Some(Intact {
        manifest,
        states,
        verified,
    }) = intact
    else {
        return Ok(Restored {
            manifest: None,
            states: HashMap::new(),
            next_id,
        });
    };
    check_fits(&manifest, &rules)?;
    if !verified {
        tracing::warn!(
            %pipeline, checkpoint = manifest.id.0,
            "restoring a version 1 checkpoint: it has no checksums, so it cannot be verified"
        );
    }
    tracing::info!(%pipeline, checkpoint = manifest.id.0, next = next_id.0, "restoring");
    Ok(Restored {
        manifest: Some(manifest),
        states,
        next_id,
    })
}

/// Reports corrupt checkpoints (newest first) and refuses to start unless `policy` allows
/// falling back and `fallback` is an intact checkpoint to fall back to.
fn settle_corrupt(
    pipeline: &str,
    corrupt: &[Corruption],
    fallback: Option<CheckpointId>,
    policy: CorruptCheckpoint,
) -> Result<()> {
    let Some(newest) = corrupt.first() else {
        return Ok(());
    };
    metrics::counter!(m::CHECKPOINTS_CORRUPT, m::LABEL_PIPELINE => pipeline.to_string())
        .increment(corrupt.len() as u64);
    let refuse = policy == CorruptCheckpoint::Refuse || fallback.is_none();
    for c in corrupt {
        if refuse {
            tracing::error!(
                %pipeline, checkpoint = c.id.0, object = %c.object, problem = %c.problem,
                "corrupt checkpoint"
            );
        } else {
            tracing::error!(
                %pipeline, checkpoint = c.id.0, object = %c.object, problem = %c.problem,
                fallback = fallback.map(|f| f.0),
                "skipping a corrupt checkpoint (on_corrupt_checkpoint is FallBack): output it committed may be written again"
            );
        }
    }
    if refuse {
        return Err(Error::CorruptCheckpoint {
            id: newest.id,
            object: newest.object.clone(),
            problem: newest.problem.clone(),
            fallback,
        });
    }
    Ok(())
}

/// Reads checkpoint `id` and checks every object against the manifest's checksums. A failing
/// store is an error; a missing or altered object is a [`Corruption`].
async fn load(
    store: &CheckpointStore,
    pipeline: &str,
    id: CheckpointId,
) -> Result<Result<Intact, Corruption>> {
    let path = store.manifest_path(pipeline, id);
    let corrupt = |object: String, problem: String| {
        Ok(Err(Corruption {
            id,
            object,
            problem,
        }))
    };
    let Some(bytes) = store.get(&path).await? else {
        return corrupt(store.describe(&path), "is missing".into());
    };
    let checked = match Manifest::open(&bytes, pipeline, id) {
        Ok(checked) => checked,
        Err(problem) => return corrupt(store.describe(&path), problem),
    };
    let mut states = HashMap::new();
    for (node, relative) in &checked.manifest.operators {
        let path = match store.state_path(relative) {
            Ok(path) => path,
            Err(problem) => return corrupt(relative.clone(), problem),
        };
        let Some(state) = store.get(&path).await? else {
            return corrupt(store.describe(&path), "is missing".into());
        };
        if let Some(expected) = checked.manifest.state_checksums.get(node) {
            if let Err(problem) = super::integrity::verify(expected, &state) {
                return corrupt(store.describe(&path), problem);
            }
        }
        states.insert(node.clone(), state);
    }
    if let Err((object, problem)) = super::rescale::check_slices(&checked.manifest, &states) {
        let object = match checked.manifest.operators.get(&object) {
            Some(relative) => store
                .state_path(relative)
                .map_or(object, |p| store.describe(&p)),
            None => object,
        };
        return corrupt(object, problem);
    }
    Ok(Ok(Intact {
        manifest: checked.manifest,
        states,
        verified: checked.verified,
    }))
}

/// Refuses a checkpoint that does not fit the pipeline: keyed state it cannot redistribute, or state of nodes
/// it no longer has (unless allowed).
fn check_fits(m: &Manifest, rules: &RestoreRules<'_>) -> Result<()> {
    super::rescale::check_keyed(m, rules.layout, rules.max_parallelism)?;
    // Instances of a rescaled keyed operator that no longer exist (`count.3` restored at
    // parallelism 3) are not unknown: their key groups go to the instances that do.
    let redistributed = |n: &String| {
        m.key_groups
            .iter()
            .any(|(op, nodes)| rules.layout.contains_key(op) && nodes.contains_key(n))
    };
    let unknown: Vec<&String> = m
        .sources
        .keys()
        .chain(m.sinks.keys())
        .chain(m.operators.keys())
        .filter(|n| !rules.nodes.contains(*n) && !redistributed(n))
        .collect();
    if !unknown.is_empty() && !rules.allow_non_restored_state {
        return Err(Error::Config(format!(
            "checkpoint {} holds state of nodes not in this pipeline: {unknown:?}; rename them back, or set allow_non_restored_state(true) to drop it",
            m.id
        )));
    }
    Ok(())
}
