//! Dedupe by key within an event-time time-to-live.

use crate::key_groups::snapshot_groups;
use crate::node_counter::NodeCounter;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::metric_catalogue as m;
use watershed_core::time::duration_millis;
use watershed_core::{
    BoxError, Collector, EventTime, KeyBytes, KeyGroupSnapshot, KeyGroups, Operator,
    OperatorContext, Record,
};

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Drops records whose key passed less than `ttl` before (or after) them in event time.
///
/// A record with key `k` and time `ts` passes unless a record of `k` passed at `t` with
/// `|ts − t| < ttl`; the one that passes becomes `k`'s reference. `k`'s state expires when the
/// watermark reaches `t + ttl` — after that no on-time record can be within `ttl` of `t`, so
/// state stays proportional to the keys seen within one `ttl`, not to the input. A duplicate
/// that arrives later than that (already behind the watermark) passes: dedupe is best effort
/// for late data, which is why it belongs in front of idempotent sinks.
pub struct Dedupe<T, K> {
    key: KeyFn<T, K>,
    ttl: i64,
    watermark: EventTime,
    seen: FxHashMap<K, EventTime>,
    // Expiry times; an entry whose key passed again since is stale and skipped when popped.
    expiry: BTreeMap<EventTime, Vec<K>>,
    dropped: u64,
    dropped_counter: NodeCounter,
}

impl<T, K: Hash + Eq + Clone> Dedupe<T, K> {
    /// Dedupe by `key` within `ttl` (under 1 ms counts as 1 ms: equal timestamps are duplicates).
    pub fn new(key: KeyFn<T, K>, ttl: Duration) -> Self {
        Dedupe {
            key,
            ttl: duration_millis(ttl).max(1),
            watermark: EventTime::MIN,
            seen: FxHashMap::default(),
            expiry: BTreeMap::new(),
            dropped: 0,
            dropped_counter: NodeCounter::new(m::DEDUPE_DROPPED, Vec::new()),
        }
    }

    /// Records dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.dropped
    }

    /// Keys currently remembered.
    pub fn retained_keys(&self) -> usize {
        self.seen.len()
    }

    fn expires(&self, t: EventTime) -> EventTime {
        EventTime(t.0.saturating_add(self.ttl))
    }
}

impl<T, K> Operator for Dedupe<T, K>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
{
    type In = T;
    type Out = T;

    fn open(&mut self, ctx: &OperatorContext) {
        self.dropped_counter.open(&ctx.node);
    }

    fn process(
        &mut self,
        mut batch: Vec<Record<T>>,
        out: &mut Collector<T>,
    ) -> Result<(), BoxError> {
        let before = batch.len();
        batch.retain(|r| {
            let key = (self.key)(&r.value);
            let ts = r.timestamp;
            match self.seen.get_mut(&key) {
                Some(t) if (ts.0 as i128 - t.0 as i128).abs() < self.ttl as i128 => false,
                Some(t) => {
                    // Outside the ttl of the reference: a new occurrence; the later of the two
                    // stays the reference, as it expires last.
                    if ts > *t {
                        *t = ts;
                        let at = EventTime(ts.0.saturating_add(self.ttl));
                        self.expiry.entry(at).or_default().push(key);
                    }
                    true
                }
                None => {
                    let at = EventTime(ts.0.saturating_add(self.ttl));
                    self.expiry.entry(at).or_default().push(key.clone());
                    self.seen.insert(key, ts);
                    true
                }
            }
        });
        let dropped = (before - batch.len()) as u64;
        if dropped > 0 {
            self.dropped += dropped;
            self.dropped_counter.increment(dropped);
        }
        out.emit_batch(batch);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        _out: &mut Collector<T>,
    ) -> Result<(), BoxError> {
        self.watermark = self.watermark.max(watermark);
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > self.watermark {
                break;
            }
            for key in entry.remove() {
                let expired = self
                    .seen
                    .get(&key)
                    .is_some_and(|t| self.expires(*t) <= self.watermark);
                if expired {
                    self.seen.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let seen: Vec<(&K, &EventTime)> = self.seen.iter().collect();
        Ok(Some(serde_json::to_vec(&(self.watermark, seen))?))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let (watermark, seen): (EventTime, Vec<(K, EventTime)>) = serde_json::from_slice(state)?;
        self.watermark = watermark;
        self.seen.clear();
        self.expiry.clear();
        self.remember(seen);
        Ok(())
    }

    /// Each key group as the blob [`snapshot`](Operator::snapshot) writes, restricted to the
    /// group's keys.
    fn snapshot_key_groups(
        &mut self,
        groups: &KeyGroups,
    ) -> Result<Option<KeyGroupSnapshot>, BoxError> {
        let watermark = self.watermark;
        let split = snapshot_groups(groups, self.seen.iter(), |_, seen| {
            Ok(serde_json::to_vec(&(watermark, seen))?)
        })?;
        Ok(Some(split))
    }

    /// The groups' keys together; the watermark floor is the lowest of theirs (instances of
    /// one operator acted on the same watermarks, so they agree).
    fn restore_key_groups(
        &mut self,
        _groups: &KeyGroups,
        states: &[(u16, Bytes)],
    ) -> Result<(), BoxError> {
        self.seen.clear();
        self.expiry.clear();
        let mut floor: Option<EventTime> = None;
        for (_, state) in states {
            let (watermark, seen): (EventTime, Vec<(K, EventTime)>) =
                serde_json::from_slice(state)?;
            floor = Some(floor.map_or(watermark, |f| f.min(watermark)));
            self.remember(seen);
        }
        self.watermark = floor.unwrap_or(EventTime::MIN);
        Ok(())
    }
}

impl<T, K: Hash + Eq + Clone> Dedupe<T, K> {
    /// Adds restored keys and their expiry timers.
    fn remember(&mut self, seen: Vec<(K, EventTime)>) {
        for (key, t) in seen {
            let at = self.expires(t);
            self.expiry.entry(at).or_default().push(key.clone());
            self.seen.insert(key, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &mut Dedupe<(u8, u32), u8>, batch: &[(u8, u32, i64)]) -> Vec<u32> {
        let mut out = Collector::default();
        let batch = batch
            .iter()
            .map(|&(k, id, ts)| Record::new((k, id), EventTime(ts)))
            .collect();
        op.process(batch, &mut out).unwrap();
        out.take().0.into_iter().map(|r| r.value.1).collect()
    }

    #[test]
    fn dedupe_drops_a_key_within_ttl_and_passes_it_again_after() {
        let mut op = Dedupe::new(Arc::new(|v: &(u8, u32)| v.0), Duration::from_millis(100));
        // ids: 1 passes; 2 (same key, +50) is a duplicate; 3 (other key) passes; 4 (+100) passes.
        assert_eq!(
            run(&mut op, &[(1, 1, 0), (1, 2, 50), (2, 3, 60), (1, 4, 100)]),
            vec![1, 3, 4]
        );
        assert_eq!(op.duplicates(), 1);
        // An out-of-order redelivery within ttl of the reference (100) is a duplicate too.
        assert_eq!(run(&mut op, &[(1, 5, 30)]), Vec::<u32>::new());
        // State expires once the watermark reaches t + ttl: key 2 at 160, key 1 at 200.
        let mut out = Collector::default();
        op.on_watermark(EventTime(160), &mut out).unwrap();
        assert_eq!(op.retained_keys(), 1);
        let snap = op.snapshot().unwrap().unwrap();
        let mut restored = Dedupe::new(Arc::new(|v: &(u8, u32)| v.0), Duration::from_millis(100));
        restored.restore(&snap).unwrap();
        assert_eq!(run(&mut restored, &[(1, 6, 150), (2, 7, 150)]), vec![7]);
        restored.on_watermark(EventTime(200), &mut out).unwrap();
        assert_eq!(restored.retained_keys(), 1, "key 2 passed again at 150");
    }
}
