//! Nexmark q0–q8 as ordinary functions over a `Stream<Event>`, written with Watershed's public
//! API: `watershed-operators` stateless operators and windows, and keyed
//! [`Operator`](watershed_core::Operator)s (through
//! [`KeyedStream::process`](watershed_core::KeyedStream::process)) where a query needs a join
//! or a per-key state machine. All times are event times (`dateTime`, epoch ms); windows are
//! aligned to the epoch. docs/nexmark.md states each query's exact meaning.
//!
//! One module per query (q4 and q6 share [`winning_bids`] and a changed-keys table); this
//! module holds the shared window constants, the row types' re-exports and small helpers.

use crate::model::{Bid, Event};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use watershed_core::{BoxError, Stream};
use watershed_operators::prelude::*;

mod changes;
mod q3;
mod q4;
mod q5;
mod q6;
mod q7;
mod q8;
mod rows;
mod selection;
mod winning;

pub use q3::q3;
pub use q4::q4;
pub use q5::q5;
pub use q6::q6;
pub use q7::{q7, HighestBids};
pub use q8::q8;
pub use rows::{BidRow, Q2Row, Q3Row, Q4Row, Q5Row, Q6Row, Q7Row, Q8Row};
pub use selection::{q0, q1, q2};
pub use winning::{winning_bids, Winning};

/// Length of the q5 sliding windows, the q7 and q8 tumbling windows.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Slide of the q5 windows.
pub const SLIDE: Duration = Duration::from_secs(2);
/// Window length in ms.
pub const WINDOW_MS: i64 = 10_000;
/// q6 averages over each seller's last this many auctions with a winning price.
pub const Q6_LAST_AUCTIONS: usize = 10;

/// The bids of a stream of events.
fn bids(events: Stream<Event>) -> Stream<Bid> {
    events.filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

#[inline]
fn bid_row(b: &Bid, price: i64) -> BidRow {
    BidRow {
        auction: b.auction,
        bidder: b.bidder,
        price,
        date_time: b.date_time,
    }
}

fn to_state<S: Serialize>(state: &S) -> Result<Option<Vec<u8>>, BoxError> {
    Ok(Some(serde_json::to_vec(state)?))
}

fn from_state<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, BoxError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// (De)serializes a hash map as a list of pairs (JSON map keys must be strings).
fn pairs<K: Clone, V: Clone>(m: &FxHashMap<K, V>) -> Vec<(K, V)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
