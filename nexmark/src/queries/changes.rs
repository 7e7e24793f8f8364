//! Per-key totals that emit only the keys that changed at each watermark: the second stage
//! of q4 and q6, whose rows are running values (the last row of a key is its final value).

use rustc_hash::{FxHashMap, FxHashSet};
use std::hash::Hash;

/// Per-key totals that emit the keys that changed at each watermark.
pub(super) struct Changes<K, V> {
    pub(super) values: FxHashMap<K, V>,
    pub(super) changed: FxHashSet<K>,
}

impl<K, V> Default for Changes<K, V> {
    fn default() -> Self {
        Changes {
            values: FxHashMap::default(),
            changed: FxHashSet::default(),
        }
    }
}

impl<K: Hash + Eq + Copy + Ord, V: Default> Changes<K, V> {
    pub(super) fn update(&mut self, key: K) -> &mut V {
        self.changed.insert(key);
        self.values.entry(key).or_default()
    }

    /// The changed keys in key order (deterministic output), with their values.
    pub(super) fn drain_changed(&mut self) -> Vec<(K, &V)> {
        let mut keys: Vec<K> = self.changed.drain().collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|k| self.values.get(&k).map(|v| (k, v)))
            .collect()
    }
}
