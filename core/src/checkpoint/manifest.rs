//! The manifest: the record of one complete checkpoint, and how it protects itself.

use super::integrity;
use super::CheckpointId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the manifest object in a checkpoint's directory.
pub(crate) const MANIFEST: &str = "_MANIFEST";

/// Version 2 added checksums (`state_checksums`, `checksum`). Version 1 manifests are still
/// restored, unverified. Version 3 added key groups (`max_parallelism`, `key_groups`): keyed
/// operators are routed by key group since, so the keyed state of an older checkpoint is only
/// restored where routing cannot have moved keys (parallelism 1).
pub(crate) const MANIFEST_VERSION: u32 = 3;

/// Where each key group's state is: by keyed operator, then by the instance node whose state
/// object holds it.
pub type KeyGroupIndex = BTreeMap<String, BTreeMap<String, Vec<KeyGroupSlice>>>;

/// Where one key group's state is in an instance's state object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupSlice {
    /// The key group.
    pub group: u16,
    /// Its first byte in the object.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// The record of one complete checkpoint. It is written last: a checkpoint without its manifest
/// never happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// The pipeline's id.
    pub pipeline: String,
    /// The checkpoint's id.
    pub id: CheckpointId,
    /// Wall-clock time the manifest was written (ms since epoch).
    pub created_ms: i64,
    /// Position of each source, by node name.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Maximum event time seen per split of each source, by node name then split, so event
    /// time resumes where it was (the runtime's per-split watermark tracker writes and reads it).
    /// Absent in checkpoints written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_event_times: BTreeMap<String, BTreeMap<String, i64>>,
    /// Pending (pre-committed, possibly not yet committed) handles of each sink, by node name.
    pub sinks: BTreeMap<String, serde_json::Value>,
    /// Where each stateful operator instance's state is, by node name, relative to the store prefix.
    pub operators: BTreeMap<String, String>,
    /// Parallelism of each keyed operator: state it holds as one blob per instance (not by key
    /// group) restores only at this parallelism.
    #[serde(default)]
    pub layout: BTreeMap<String, usize>,
    /// The number of key groups keyed state is split into; a restore with another
    /// `max_parallelism` is refused. Absent before version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<usize>,
    /// Keyed state stored by key group, so it restores at any parallelism: for each keyed
    /// operator, where each group is in its instances' state objects (listed in `operators`).
    /// Absent before version 3, and for operators that snapshot one blob per instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_groups: KeyGroupIndex,
    /// Checksum of each state file in `operators`, by node name (`sha256:<hex>`). Absent in
    /// version 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state_checksums: BTreeMap<String, String>,
    /// Checksum of this manifest: of its compact JSON without this field. Absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// A manifest read back, and whether its checksums can vouch for it.
pub(crate) struct Checked {
    pub manifest: Manifest,
    /// False for version 1 manifests, which carry no checksums.
    pub verified: bool,
}

impl Manifest {
    /// The manifest's own checksum. It is computed over the parsed form, re-serialized, so it
    /// holds for what restore uses: every field of the manifest, whatever the file's layout.
    fn compute_checksum(&mut self) -> serde_json::Result<String> {
        let own = self.checksum.take();
        let body = serde_json::to_vec(self);
        self.checksum = own;
        Ok(integrity::checksum(&body?))
    }

    /// The bytes to store: the manifest with its checksum set.
    pub(crate) fn seal(&mut self) -> serde_json::Result<Vec<u8>> {
        self.checksum = Some(self.compute_checksum()?);
        serde_json::to_vec_pretty(self)
    }

    /// Parses and checks a stored manifest of checkpoint `id` of `pipeline`. The error says what
    /// is wrong with it, for the corrupt-checkpoint report.
    pub(crate) fn open(bytes: &[u8], pipeline: &str, id: CheckpointId) -> Result<Checked, String> {
        let mut manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("is not a readable manifest ({e})"))?;
        if manifest.version == 0 || manifest.version > MANIFEST_VERSION {
            return Err(format!(
                "has version {}, which this build does not know (it reads 1 to {MANIFEST_VERSION}; a newer Watershed may have written it, or it is damaged)",
                manifest.version
            ));
        }
        let verified = match manifest.checksum.clone() {
            Some(expected) => {
                let actual = manifest
                    .compute_checksum()
                    .map_err(|e| format!("cannot be re-serialized to check it ({e})"))?;
                if actual != expected {
                    return Err(format!(
                        "does not match its own checksum (expected {expected}, found {actual}): it was altered after it was written"
                    ));
                }
                true
            }
            None if manifest.version == 1 => false,
            None => {
                return Err(format!(
                    "has no checksum, which a version {} manifest must have",
                    manifest.version
                ))
            }
        };
        if manifest.id != id || manifest.pipeline != pipeline {
            return Err(format!(
                "belongs to checkpoint {} of pipeline `{}`, not to checkpoint {id} of `{pipeline}`",
                manifest.id, manifest.pipeline
            ));
        }
        if verified {
            if let Some(node) = manifest
                .operators
                .keys()
                .find(|n| !manifest.state_checksums.contains_key(*n))
            {
                return Err(format!("lists the state of `{node}` without its checksum"));
            }
        }
        check_key_group_index(&manifest)?;
        Ok(Checked { manifest, verified })
    }
}

/// Every key-group object is listed in `operators` (so it is checksummed), no group is listed
/// twice for one operator, and every group is below `max_parallelism`.
fn check_key_group_index(m: &Manifest) -> Result<(), String> {
    if m.key_groups.is_empty() {
        return Ok(());
    }
    let Some(max) = m.max_parallelism else {
        return Err("lists key-group state without a max_parallelism".into());
    };
    for (operator, nodes) in &m.key_groups {
        let mut seen = std::collections::BTreeSet::new();
        for (node, slices) in nodes {
            if !m.operators.contains_key(node) {
                return Err(format!(
                    "lists key groups of `{node}` (operator `{operator}`) without its state object"
                ));
            }
            for s in slices {
                if usize::from(s.group) >= max || !seen.insert(s.group) {
                    return Err(format!(
                        "lists key group {} of operator `{operator}` twice or beyond max_parallelism {max}",
                        s.group
                    ));
                }
            }
        }
    }
    Ok(())
}
