//! Window join: the elements of both inputs that share a key and a window, paired when the
//! window fires.
//!
//! It is a window aggregation over the union of both inputs whose accumulator keeps each side's
//! elements ([`JoinPanes`]), so it inherits the window operator's rules (window assignment, firing and
//! lateness, with allowed lateness 0): windows fire at `W ≥ end − 1`, an element whose windows
//! have all fired is late and dropped, and sessions merge over the elements of *both* inputs
//! (as Flink's window join, a co-group of the union).

use crate::aggregate::Aggregator;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use watershed_core::{Either, Window};

/// One pair of a window join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowJoined<L, R> {
    /// The window both elements fall in.
    pub window: Window,
    /// The left element.
    pub left: L,
    /// The right element.
    pub right: R,
}

/// One key's and window's elements of both sides, as [`co_group`](crate::WindowJoinBuilder::co_group)
/// emits them: `value.0` the left elements, `value.1` the right ones.
pub type CoGrouped<K, L, R> = crate::WindowResult<K, (Vec<L>, Vec<R>)>;

/// The accumulator of a window join: every element of each side, in arrival order (sessions:
/// in session order).
#[derive(Clone, Copy, Debug, Default)]
pub struct JoinPanes;

impl<L, R> Aggregator<Either<L, R>> for JoinPanes
where
    L: Clone + Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = (Vec<L>, Vec<R>);
    type Output = (Vec<L>, Vec<R>);

    fn create(&self) -> Self::Acc {
        (Vec::new(), Vec::new())
    }

    fn add(&self, acc: &mut Self::Acc, value: &Either<L, R>) {
        match value {
            Either::Left(l) => acc.0.push(l.clone()),
            Either::Right(r) => acc.1.push(r.clone()),
        }
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0.extend(other.0);
        acc.1.extend(other.1);
    }

    fn finish(&self, acc: &Self::Acc) -> Self::Output {
        acc.clone()
    }
}

/// Every `(left, right)` pair of a fired window, left-major.
pub(crate) fn pairs<L: Clone, R: Clone>(
    window: Window,
    (lefts, rights): (Vec<L>, Vec<R>),
) -> Vec<WindowJoined<L, R>> {
    let mut out = Vec::with_capacity(lefts.len() * rights.len());
    for l in &lefts {
        for r in &rights {
            out.push(WindowJoined {
                window,
                left: l.clone(),
                right: r.clone(),
            });
        }
    }
    out
}
