//! Aggregators: per-window state that is O(1) in the number of elements and can merge.
//!
//! The exceptions are explicit: [`DistinctCount`] keeps the distinct values (exact),
//! [`TopK`] keeps `k` values and [`Process`] keeps every element, for the rare window function
//! that needs them all.

use rustc_hash::FxHashSet;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::ops::AddAssign;

/// Incremental aggregation: `create` an accumulator, `add` values to it, `merge` two (for
/// session windows and combining), `finish` into the result. Accumulators go into checkpoints.
///
/// `finish` borrows the accumulator because a window with allowed lateness keeps it after
/// firing, to emit updated results for late elements.
pub trait Aggregator<T>: Clone + Send + Sync + 'static {
    /// The running state of one window and key.
    type Acc: Serialize + DeserializeOwned + Send + 'static;
    /// The result of a window.
    type Output: Send + 'static;

    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one value.
    fn add(&self, acc: &mut Self::Acc, value: &T);
    /// Folds `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result for the accumulated values.
    fn finish(&self, acc: &Self::Acc) -> Self::Output;
}

/// Counts elements.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<T> Aggregator<T> for Count {
    type Acc = u64;
    type Output = u64;

    fn create(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _value: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Sums the values a function extracts from each element.
#[derive(Clone, Copy, Debug)]
pub struct Sum<F>(pub F);

impl<T, N, F> Aggregator<T> for Sum<F>
where
    F: Fn(&T) -> N + Clone + Send + Sync + 'static,
    N: AddAssign + Default + Copy + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = N;
    type Output = N;

    fn create(&self) -> N {
        N::default()
    }
    #[inline]
    fn add(&self, acc: &mut N, value: &T) {
        *acc += (self.0)(value);
    }
    fn merge(&self, acc: &mut N, other: N) {
        *acc += other;
    }
    fn finish(&self, acc: &N) -> N {
        *acc
    }
}

/// The smallest value a function extracts; `None` only for an empty window, which never fires.
/// Incomparable values (NaN) never replace a value already held.
#[derive(Clone, Copy, Debug)]
pub struct Min<F>(pub F);

/// The largest value a function extracts; `None` only for an empty window, which never fires.
/// Incomparable values (NaN) never replace a value already held.
#[derive(Clone, Copy, Debug)]
pub struct Max<F>(pub F);

#[inline]
fn keep_if<N: Copy>(acc: &mut Option<N>, v: N, better: impl Fn(&N, &N) -> bool) {
    match acc {
        Some(cur) if !better(&v, cur) => {}
        _ => *acc = Some(v),
    }
}

impl<T, N, F> Aggregator<T> for Min<F>
where
    F: Fn(&T) -> N + Clone + Send + Sync + 'static,
    N: PartialOrd + Copy + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = Option<N>;
    type Output = Option<N>;

    fn create(&self) -> Option<N> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<N>, value: &T) {
        keep_if(acc, (self.0)(value), |a, b| a < b);
    }
    fn merge(&self, acc: &mut Option<N>, other: Option<N>) {
        if let Some(v) = other {
            keep_if(acc, v, |a, b| a < b);
        }
    }
    fn finish(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

impl<T, N, F> Aggregator<T> for Max<F>
where
    F: Fn(&T) -> N + Clone + Send + Sync + 'static,
    N: PartialOrd + Copy + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = Option<N>;
    type Output = Option<N>;

    fn create(&self) -> Option<N> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<N>, value: &T) {
        keep_if(acc, (self.0)(value), |a, b| a > b);
    }
    fn merge(&self, acc: &mut Option<N>, other: Option<N>) {
        if let Some(v) = other {
            keep_if(acc, v, |a, b| a > b);
        }
    }
    fn finish(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

/// The arithmetic mean of the `f64` a function extracts (NaN for an empty window, which never
/// fires). The accumulator is `(sum, count)`, so merging sessions is exact in the count.
#[derive(Clone, Copy, Debug)]
pub struct Mean<F>(pub F);

impl<T, F> Aggregator<T> for Mean<F>
where
    F: Fn(&T) -> f64 + Clone + Send + Sync + 'static,
{
    type Acc = (f64, u64);
    type Output = f64;

    fn create(&self) -> (f64, u64) {
        (0.0, 0)
    }
    #[inline]
    fn add(&self, acc: &mut (f64, u64), value: &T) {
        acc.0 += (self.0)(value);
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn finish(&self, acc: &(f64, u64)) -> f64 {
        acc.0 / acc.1 as f64
    }
}

/// The exact number of distinct values a function extracts. The accumulator holds the
/// distinct values themselves, so its size is the window's cardinality, not O(1).
#[derive(Clone, Copy, Debug)]
pub struct DistinctCount<F>(pub F);

impl<T, V, F> Aggregator<T> for DistinctCount<F>
where
    F: Fn(&T) -> V + Clone + Send + Sync + 'static,
    V: Hash + Eq + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = FxHashSet<V>;
    type Output = u64;

    fn create(&self) -> FxHashSet<V> {
        FxHashSet::default()
    }
    #[inline]
    fn add(&self, acc: &mut FxHashSet<V>, value: &T) {
        acc.insert((self.0)(value));
    }
    fn merge(&self, acc: &mut FxHashSet<V>, other: FxHashSet<V>) {
        acc.extend(other);
    }
    fn finish(&self, acc: &FxHashSet<V>) -> u64 {
        acc.len() as u64
    }
}

/// Approximate distinct count with HyperLogLog: `2^precision` one-byte registers per window
/// and key whatever the cardinality, relative standard error ≈ `1.04 / sqrt(2^precision)`
/// (1.6% at the default precision 12, 4 KiB). Registers merge by maximum, so sessions merge
/// exactly as if one sketch had seen all elements.
#[derive(Clone, Copy, Debug)]
pub struct ApproxDistinctCount<F> {
    precision: u8,
    f: F,
}

impl<F> ApproxDistinctCount<F> {
    /// A sketch with `2^12` registers over the values `f` extracts.
    pub fn new(f: F) -> Self {
        ApproxDistinctCount { precision: 12, f }
    }

    /// `2^precision` registers; `precision` is clamped to 4..=16.
    pub fn with_precision(mut self, precision: u8) -> Self {
        self.precision = precision.clamp(4, 16);
        self
    }
}

/// A well-mixed 64-bit hash, stable across runs (FxHash, then the SplitMix64 finaliser: HLL
/// needs every bit of the hash to be uniform, which FxHash alone does not give).
fn hash64<V: Hash + ?Sized>(v: &V) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    v.hash(&mut h);
    let mut x = h.finish();
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl<T, V, F> Aggregator<T> for ApproxDistinctCount<F>
where
    F: Fn(&T) -> V + Clone + Send + Sync + 'static,
    V: Hash,
{
    type Acc = Vec<u8>;
    type Output = u64;

    fn create(&self) -> Vec<u8> {
        // Allocated on first use: an empty window costs nothing.
        Vec::new()
    }
    #[inline]
    fn add(&self, acc: &mut Vec<u8>, value: &T) {
        let m = 1usize << self.precision;
        if acc.len() != m {
            acc.resize(m, 0);
        }
        let h = hash64(&(self.f)(value));
        let idx = (h >> (64 - self.precision)) as usize;
        // Rank of the first 1-bit in the remaining bits (a sentinel bit bounds it).
        let rest = (h << self.precision) | (1 << (self.precision - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if acc[idx] < rank {
            acc[idx] = rank;
        }
    }
    fn merge(&self, acc: &mut Vec<u8>, other: Vec<u8>) {
        if acc.len() < other.len() {
            acc.resize(other.len(), 0);
        }
        for (a, b) in acc.iter_mut().zip(other) {
            *a = (*a).max(b);
        }
    }
    fn finish(&self, acc: &Vec<u8>) -> u64 {
        if acc.is_empty() {
            return 0;
        }
        let m = acc.len() as f64;
        let alpha = match acc.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let sum: f64 = acc.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
        let estimate = alpha * m * m / sum;
        let zeros = acc.iter().filter(|&&r| r == 0).count();
        // Small cardinalities: linear counting is the better estimator (Flajolet et al.).
        if estimate <= 2.5 * m && zeros > 0 {
            (m * (m / zeros as f64).ln()).round() as u64
        } else {
            estimate.round() as u64
        }
    }
}

/// The `k` largest values a function extracts, largest first (ties kept). State is O(k).
#[derive(Clone, Copy, Debug)]
pub struct TopK<F> {
    k: usize,
    f: F,
}

impl<F> TopK<F> {
    /// The `k` largest values of `f(element)`; `k = 0` yields empty results.
    pub fn new(k: usize, f: F) -> Self {
        TopK { k, f }
    }
}

impl<F> TopK<F> {
    /// Inserts into an ascending vector of at most `k` values.
    #[inline]
    fn offer<N: Ord>(&self, acc: &mut Vec<N>, v: N) {
        if self.k == 0 {
            return;
        }
        if acc.len() == self.k {
            // Full: only a value above the current minimum enters, evicting it.
            if v <= acc[0] {
                return;
            }
            acc.remove(0);
        }
        let at = acc.partition_point(|x| *x <= v);
        acc.insert(at, v);
    }
}

impl<T, N, F> Aggregator<T> for TopK<F>
where
    F: Fn(&T) -> N + Clone + Send + Sync + 'static,
    N: Ord + Clone + Serialize + DeserializeOwned + Send + 'static,
{
    // Ascending, so the smallest kept value is first and cheap to compare against.
    type Acc = Vec<N>;
    type Output = Vec<N>;

    fn create(&self) -> Vec<N> {
        Vec::new()
    }
    #[inline]
    fn add(&self, acc: &mut Vec<N>, value: &T) {
        self.offer(acc, (self.f)(value));
    }
    fn merge(&self, acc: &mut Vec<N>, other: Vec<N>) {
        for v in other {
            self.offer(acc, v);
        }
    }
    fn finish(&self, acc: &Vec<N>) -> Vec<N> {
        acc.iter().rev().cloned().collect()
    }
}

/// Folds elements with a closure `f(acc, element) -> acc`; the first element starts the fold.
/// `f` must be associative for session windows, whose partial folds merge. The result is
/// `None` only for an empty window, which never fires;
/// [`WindowedStream::reduce`](crate::WindowedStream::reduce) unwraps it.
#[derive(Clone, Copy, Debug)]
pub struct Reduce<F>(pub F);

impl<T, F> Aggregator<T> for Reduce<F>
where
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
    F: Fn(T, &T) -> T + Clone + Send + Sync + 'static,
{
    type Acc = Option<T>;
    type Output = Option<T>;

    fn create(&self) -> Option<T> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            None => value.clone(),
            Some(a) => (self.0)(a, value),
        });
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(b) = other {
            *acc = Some(match acc.take() {
                None => b,
                Some(a) => (self.0)(a, &b),
            });
        }
    }
    fn finish(&self, acc: &Option<T>) -> Option<T> {
        acc.clone()
    }
}

/// Keeps every element of the window and hands them all to `f` when it fires, in arrival order
/// (merged sessions: the earlier session's elements first). State grows with the window's
/// element count; prefer an incremental aggregator when one fits.
#[derive(Clone, Copy, Debug)]
pub struct Process<F>(pub F);

impl<T, O, F> Aggregator<T> for Process<F>
where
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
    O: Send + 'static,
    F: Fn(&[T]) -> O + Clone + Send + Sync + 'static,
{
    type Acc = Vec<T>;
    type Output = O;

    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: &T) {
        acc.push(value.clone());
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn finish(&self, acc: &Vec<T>) -> O {
        (self.0)(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<A: Aggregator<i64>>(agg: &A, xs: &[i64]) -> A::Output {
        let mut acc = agg.create();
        for x in xs {
            agg.add(&mut acc, x);
        }
        agg.finish(&acc)
    }

    fn split_merge<A: Aggregator<i64>>(agg: &A, xs: &[i64], at: usize) -> A::Output {
        let (a, b) = xs.split_at(at);
        let mut acc = agg.create();
        let mut other = agg.create();
        for x in a {
            agg.add(&mut acc, x);
        }
        for x in b {
            agg.add(&mut other, x);
        }
        agg.merge(&mut acc, other);
        agg.finish(&acc)
    }

    #[test]
    fn built_in_aggregators_compute_their_definitions_and_merge_like_one_pass() {
        let xs = [5, -3, 9, 9, 0, 7, -3];
        for at in 0..=xs.len() {
            assert_eq!(split_merge(&Count, &xs, at), 7);
            assert_eq!(split_merge(&Sum(|x: &i64| *x), &xs, at), 24);
            assert_eq!(split_merge(&Min(|x: &i64| *x), &xs, at), Some(-3));
            assert_eq!(split_merge(&Max(|x: &i64| *x), &xs, at), Some(9));
            assert_eq!(split_merge(&DistinctCount(|x: &i64| *x), &xs, at), 5);
            assert_eq!(
                split_merge(&TopK::new(3, |x: &i64| *x), &xs, at),
                vec![9, 9, 7]
            );
            assert_eq!(
                split_merge(&Reduce(|a: i64, b: &i64| a.max(*b)), &xs, at),
                Some(9)
            );
            assert_eq!(
                split_merge(&Process(|v: &[i64]| v.len()), &xs, at),
                xs.len()
            );
            let mean = split_merge(&Mean(|x: &i64| *x as f64), &xs, at);
            assert!((mean - 24.0 / 7.0).abs() < 1e-12);
        }
        assert_eq!(run(&TopK::new(0, |x: &i64| *x), &xs), Vec::<i64>::new());
        assert_eq!(
            split_merge(&ApproxDistinctCount::new(|x: &i64| *x), &xs, 3),
            5
        );
        assert_eq!(run(&Min(|x: &i64| *x), &[]), None);
    }

    #[test]
    fn hyperloglog_estimate_is_within_its_error_bound_and_merges_like_one_sketch() {
        let hll = ApproxDistinctCount::new(|x: &i64| *x);
        let xs: Vec<i64> = (0..100_000).map(|i| i % 60_000).collect();
        let one = run(&hll, &xs) as f64;
        // 1.04 / sqrt(4096) = 1.6%; allow four standard errors.
        assert!((one - 60_000.0).abs() / 60_000.0 < 0.065, "estimate {one}");
        assert_eq!(split_merge(&hll, &xs, 37_000) as f64, one);
        let small: Vec<i64> = (0..100).collect();
        let est = run(&hll, &small) as f64;
        assert!((est - 100.0).abs() <= 3.0, "linear counting gives {est}");
    }
}
