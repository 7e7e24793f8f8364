//! Checkpoint state of the whole operator: every aligned window and every key's sessions, the
//! lateness counters and the watermark acted on, as JSON. Timers are not stored; restore
//! rebuilds them from the sessions' slots.

use super::aligned::AlignedWindow;
use super::core::WindowCore;
use super::sessions::Slot;
use crate::aggregate::Aggregator;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use watershed_core::{BoxError, EventTime, WindowAssigner};

/// The snapshot as written, borrowing the operator's state.
#[derive(Serialize)]
struct SnapshotRef<'a, K, Acc> {
    watermark: EventTime,
    late: u64,
    skipped: u64,
    aligned: Vec<&'a AlignedWindow<K, Acc>>,
    keys: Vec<(&'a K, &'a Vec<Slot<Acc>>)>,
}

/// The snapshot as read back; [`groups`](super::groups) writes each key group in this form too.
#[derive(Deserialize)]
#[serde(bound(deserialize = "K: Deserialize<'de> + Hash + Eq, Acc: Deserialize<'de>"))]
pub(super) struct Snapshot<K, Acc> {
    pub(super) watermark: EventTime,
    pub(super) late: u64,
    pub(super) skipped: u64,
    pub(super) aligned: Vec<AlignedWindow<K, Acc>>,
    pub(super) keys: Vec<(K, Vec<Slot<Acc>>)>,
}

impl<T, K, W, A> WindowCore<T, K, W, A>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    pub(super) fn snapshot(&self) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(&SnapshotRef {
            watermark: self.watermark,
            late: self.late,
            skipped: self.skipped,
            aligned: self.aligned.values().collect(),
            keys: self.keys.iter().collect(),
        })?)
    }

    /// Restores windows and timers. The watermark the operator had seen is restored too, as a
    /// floor: the runtime's watermark restarts at MIN and regenerates, and a replayed element
    /// must meet the same lateness decision it met before the failure. Windows that had not
    /// fired fire when the regenerated watermark passes their end.
    pub(super) fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let snap: Snapshot<K, A::Acc> = serde_json::from_slice(state)?;
        self.watermark = snap.watermark;
        self.late = snap.late;
        self.skipped = snap.skipped;
        self.aligned = snap
            .aligned
            .into_iter()
            .map(|w| ((w.window.end, w.window.start), w))
            .collect();
        self.keys.clear();
        self.timers.clear();
        for (key, slots) in snap.keys {
            for s in &slots {
                Self::register(&mut self.timers, s.timer, &key);
            }
            self.keys.insert(key, slots);
        }
        Ok(())
    }
}
