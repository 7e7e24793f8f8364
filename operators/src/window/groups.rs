//! The window operators' state by key group: each group is a [`Snapshot`] of the group's keys,
//! so a group restores alone or together with groups of other instances.

use super::core::WindowCore;
use super::sessions::Slot;
use super::snapshot::Snapshot;
use crate::aggregate::Aggregator;
use crate::key_groups::snapshot_groups;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::hash::Hash;
use watershed_core::{
    BoxError, EventTime, KeyBytes, KeyGroupSnapshot, KeyGroups, Window, WindowAssigner,
};

/// An aligned window's share of one key group; serialized the way `AlignedWindow` is, with
/// only the group's keys.
#[derive(Serialize)]
struct AlignedRef<'a, K, Acc> {
    window: Window,
    fired: bool,
    keys: Vec<(&'a K, &'a Acc)>,
}

/// A group's snapshot as written; read back as [`Snapshot`].
#[derive(Serialize)]
struct GroupRef<'a, K, Acc> {
    watermark: EventTime,
    late: u64,
    skipped: u64,
    aligned: Vec<AlignedRef<'a, K, Acc>>,
    keys: Vec<(&'a K, &'a Vec<Slot<Acc>>)>,
}

/// What one key holds: its accumulators in aligned windows, or its sessions.
enum KeyState<'a, Acc> {
    Aligned(Window, bool, &'a Acc),
    Sessions(&'a Vec<Slot<Acc>>),
}

impl<T, K, W, A> WindowCore<T, K, W, A>
where
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    pub(super) fn snapshot_key_groups(
        &self,
        groups: &KeyGroups,
    ) -> Result<KeyGroupSnapshot, BoxError> {
        let aligned = self.aligned.values().flat_map(|w| {
            w.keys
                .iter()
                .map(move |(k, acc)| (k, KeyState::Aligned(w.window, w.fired, acc)))
        });
        let sessions = self.keys.iter().map(|(k, s)| (k, KeyState::Sessions(s)));
        let watermark = self.watermark;
        let (late, skipped) = (self.late, self.skipped);
        snapshot_groups(groups, aligned.chain(sessions), |totals, entries| {
            let mut snap = GroupRef {
                watermark,
                late: if totals { late } else { 0 },
                skipped: if totals { skipped } else { 0 },
                aligned: Vec::new(),
                keys: Vec::new(),
            };
            // Windows in (end, start) order, as the operator keeps them.
            let mut windows: BTreeMap<(EventTime, EventTime), AlignedRef<'_, K, A::Acc>> =
                BTreeMap::new();
            for (key, state) in entries {
                match state {
                    KeyState::Aligned(window, fired, acc) => windows
                        .entry((window.end, window.start))
                        .or_insert_with(|| AlignedRef {
                            window,
                            fired,
                            keys: Vec::new(),
                        })
                        .keys
                        .push((key, acc)),
                    KeyState::Sessions(slots) => snap.keys.push((key, slots)),
                }
            }
            snap.aligned = windows.into_values().collect();
            Ok(serde_json::to_vec(&snap)?)
        })
    }

    /// Merges the groups' windows and sessions. Totals add up (one group of each old instance
    /// carries them); the watermark floor is the lowest of the groups' (instances of one
    /// operator acted on the same watermarks, so they agree).
    pub(super) fn restore_key_groups(&mut self, states: &[(u16, Bytes)]) -> Result<(), BoxError> {
        self.aligned.clear();
        self.keys.clear();
        self.timers.clear();
        let (mut late, mut skipped, mut floor) = (0, 0, None::<EventTime>);
        for (_, state) in states {
            let snap: Snapshot<K, A::Acc> = serde_json::from_slice(state)?;
            late += snap.late;
            skipped += snap.skipped;
            floor = Some(floor.map_or(snap.watermark, |f| f.min(snap.watermark)));
            for w in snap.aligned {
                let at = (w.window.end, w.window.start);
                match self.aligned.get_mut(&at) {
                    Some(open) => {
                        open.fired |= w.fired;
                        open.keys.extend(w.keys);
                    }
                    None => {
                        self.aligned.insert(at, w);
                    }
                }
            }
            for (key, slots) in snap.keys {
                for s in &slots {
                    Self::register(&mut self.timers, s.timer, &key);
                }
                self.keys.insert(key, slots);
            }
        }
        (self.late, self.skipped) = (late, skipped);
        self.watermark = floor.unwrap_or(EventTime::MIN);
        Ok(())
    }
}
