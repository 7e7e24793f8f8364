//! Aggregators: per-window state that is O(1) in the number of elements and can merge.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::ops::AddAssign;

/// Incremental aggregation: `create` an accumulator, `add` values to it, `merge` two (for
/// session windows and combining), `finish` into the result. Accumulators go into checkpoints.
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
