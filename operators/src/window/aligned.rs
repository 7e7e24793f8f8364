//! Non-merging (tumbling, sliding) windows: every key's accumulator grouped under its window,
//! adding elements to the windows that are not late, and firing and dropping whole windows as
//! the watermark passes their end and their cleanup time.

use super::core::{cleanup_time, WindowCore};
use super::WindowResult;
use crate::aggregate::Aggregator;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use watershed_core::{Record, Window, WindowAssigner};

/// A window of a non-merging assigner and every key's accumulator in it. All keys of a window
/// share its fire and cleanup times, so the window is the timer; grouping keys under it keeps the
/// per-record path to one small ordered-map lookup and one hash lookup with the state inline.
///
/// No per-key flags are needed: before the window fires every key's pane is pending; the firing
/// emits them all; after it, an element fires its key's update at once, and that is an update
/// exactly when the key was already in the window.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, Acc: Serialize",
    deserialize = "K: Deserialize<'de> + Hash + Eq, Acc: Deserialize<'de>"
))]
pub(super) struct AlignedWindow<K, Acc> {
    pub(super) window: Window,
    /// The watermark has passed `max_ts`: the window fired; it stays for allowed lateness.
    pub(super) fired: bool,
    // As a list of pairs: JSON map keys must be strings, and keys may be any serde type.
    #[serde(with = "pairs")]
    pub(super) keys: FxHashMap<K, Acc>,
}

/// (De)serializes a map as a sequence of `(key, value)` pairs.
mod pairs {
    use rustc_hash::FxHashMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::hash::Hash;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &FxHashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<FxHashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Hash + Eq,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl<T, K, W, A> WindowCore<T, K, W, A>
where
    K: Hash + Eq + Clone,
    W: WindowAssigner,
    A: Aggregator<T>,
{
    /// Non-merging windows: add to each window that is not late. True if any took it.
    pub(super) fn add_aligned(
        &mut self,
        r: &Record<T>,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) -> bool {
        let mut key: Option<K> = None;
        let wm = self.watermark;
        for w in &self.scratch {
            if cleanup_time(w, self.lateness) <= wm {
                continue;
            }
            let k = key.get_or_insert_with(|| (self.key)(&r.value));
            let win = self
                .aligned
                .entry((w.end, w.start))
                .or_insert_with(|| AlignedWindow {
                    window: *w,
                    // A window first seen after the watermark passed its end (a late element
                    // within allowed lateness) counts as fired: its results fire at once.
                    fired: w.max_timestamp() <= wm,
                    keys: FxHashMap::default(),
                });
            // Look up before inserting so that only a key's first element in a window clones it.
            let (acc, existed) = match win.keys.get_mut(k) {
                Some(acc) => (acc, true),
                None => (
                    win.keys
                        .entry(k.clone())
                        .or_insert_with(|| self.agg.create()),
                    false,
                ),
            };
            self.agg.add(acc, &r.value);
            if win.fired {
                // Within allowed lateness after the firing: fire the update now.
                emit(Self::pane_result(&self.agg, k, *w, acc, existed));
            }
        }
        key.is_some()
    }

    /// One key's result in an aligned window, stamped with the window's max timestamp.
    fn pane_result(
        agg: &A,
        key: &K,
        window: Window,
        acc: &A::Acc,
        is_update: bool,
    ) -> Record<WindowResult<K, A::Output>> {
        let r = WindowResult {
            key: key.clone(),
            window,
            value: agg.finish(acc),
            is_update,
        };
        Record::new(r, window.max_timestamp())
    }

    /// Fires the non-merging windows the watermark reached and drops those past lateness.
    pub(super) fn advance_aligned(
        &mut self,
        emit: &mut impl FnMut(Record<WindowResult<K, A::Output>>),
    ) {
        let wm = self.watermark;
        let mut expired = 0;
        for win in self.aligned.values_mut() {
            if win.window.max_timestamp() > wm {
                break;
            }
            if !win.fired {
                win.fired = true;
                for (key, acc) in win.keys.iter() {
                    emit(Self::pane_result(&self.agg, key, win.window, acc, false));
                }
            }
            if cleanup_time(&win.window, self.lateness) <= wm {
                expired += 1;
            }
        }
        // Cleanup times are in window order, so the expired windows are a prefix.
        for _ in 0..expired {
            self.aligned.pop_first();
        }
    }
}
