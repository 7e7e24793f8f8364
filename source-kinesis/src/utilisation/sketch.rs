//! Space-Saving (Metwally, Agrawal, El Abbadi, 2005): the heaviest partition keys of a shard
//! in a fixed number of counters.
//!
//! With `k` counters over a stream of total weight `N`:
//! - every key whose true weight exceeds `N / k` is tracked (no heavy hitter is missed);
//! - a tracked key's `count` overestimates its true weight by at most its `error`, and
//!   `error ≤ min counter ≤ N / k`; so `count - error ≤ true ≤ count`.
//!
//! An update costs a hash lookup; a key that is not tracked when all `k` counters are taken
//! also scans the counters for the smallest (O(k); `k` is small, 32 to 64 here).

use std::collections::HashMap;

/// One tracked key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeavyHitter {
    /// The partition key.
    pub key: String,
    /// Estimated weight (records): at least the true weight, at most `error` more.
    pub count: u64,
    /// The most `count` can overestimate by (the counter's value when the key took it over).
    pub error: u64,
}

impl HeavyHitter {
    /// The weight the key certainly has (`count - error`).
    pub fn guaranteed(&self) -> u64 {
        self.count - self.error
    }
}

/// A Space-Saving sketch of `capacity` counters.
#[derive(Clone, Debug)]
pub struct SpaceSaving {
    capacity: usize,
    counters: Vec<HeavyHitter>,
    index: HashMap<String, usize>,
    total: u64,
}

impl SpaceSaving {
    /// A sketch of `capacity` counters (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SpaceSaving {
            capacity,
            counters: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            total: 0,
        }
    }

    /// Counts `weight` more for `key`.
    pub fn offer(&mut self, key: &str, weight: u64) {
        self.total += weight;
        if let Some(&i) = self.index.get(key) {
            self.counters[i].count += weight;
            return;
        }
        if self.counters.len() < self.capacity {
            self.index.insert(key.to_owned(), self.counters.len());
            self.counters.push(HeavyHitter {
                key: key.to_owned(),
                count: weight,
                error: 0,
            });
            return;
        }
        let (i, min) = self
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.count))
            .min_by_key(|&(_, count)| count)
            .expect("capacity is at least 1");
        let old = std::mem::replace(
            &mut self.counters[i],
            HeavyHitter {
                key: key.to_owned(),
                count: min + weight,
                error: min,
            },
        );
        self.index.remove(&old.key);
        self.index.insert(key.to_owned(), i);
    }

    /// Total weight offered.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of counters.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest overestimate of any count: `N / k` (rounded down), which also bounds the
    /// true weight of every key that is not tracked.
    pub fn error_bound(&self) -> u64 {
        self.total / self.capacity as u64
    }

    /// The `n` keys with the largest counts, largest first (ties by key).
    pub fn top(&self, n: usize) -> Vec<HeavyHitter> {
        let mut all = self.counters.clone();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        all.truncate(n);
        all
    }

    /// Clears every counter.
    pub fn clear(&mut self) {
        self.counters.clear();
        self.index.clear();
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_are_exact_while_the_keys_fit() {
        let mut s = SpaceSaving::new(4);
        for k in ["a", "b", "a", "c", "a", "b"] {
            s.offer(k, 1);
        }
        let top = s.top(2);
        assert_eq!(top[0].key, "a");
        assert_eq!((top[0].count, top[0].error), (3, 0));
        assert_eq!((top[1].key.as_str(), top[1].count), ("b", 2));
        assert_eq!(s.total(), 6);
    }

    #[test]
    fn a_heavy_key_survives_a_long_tail() {
        let mut s = SpaceSaving::new(8);
        for i in 0..10_000u32 {
            if i % 3 == 0 {
                s.offer("hot", 1);
            } else {
                s.offer(&format!("cold-{i}"), 1);
            }
        }
        let top = s.top(1);
        assert_eq!(top[0].key, "hot");
        assert!(top[0].guaranteed() <= 3334 && top[0].count >= 3334);
        assert!(top[0].count - 3334 <= s.error_bound());
    }

    #[test]
    fn weighted_offers_add_up() {
        let mut s = SpaceSaving::new(1);
        s.offer("a", 5);
        s.offer("b", 2);
        assert_eq!(
            s.top(1),
            vec![HeavyHitter {
                key: "b".into(),
                count: 7,
                error: 5
            }]
        );
        assert_eq!(s.total(), 7);
    }

    proptest! {
        #[test]
        fn bounds_hold(keys in proptest::collection::vec(0u8..40, 0..600), k in 1usize..16) {
            let mut s = SpaceSaving::new(k);
            let mut truth: HashMap<String, u64> = HashMap::new();
            for key in &keys {
                let key = format!("k{key}");
                s.offer(&key, 1);
                *truth.entry(key).or_default() += 1;
            }
            let bound = s.error_bound();
            let tracked = s.top(k);
            for hh in &tracked {
                let t = truth[&hh.key];
                prop_assert!(hh.count >= t && hh.guaranteed() <= t);
                prop_assert!(hh.error <= bound);
            }
            for (key, t) in &truth {
                if *t > bound {
                    prop_assert!(tracked.iter().any(|h| &h.key == key), "{key} ({t}) > N/k missing");
                }
            }
        }
    }
}
