//! The queries' output rows, one type per query (q0 and q1 share [`BidRow`]).

use serde::{Deserialize, Serialize};

/// A bid as q0 and q1 output it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BidRow {
    /// Auction id.
    pub auction: i64,
    /// Bidder id.
    pub bidder: i64,
    /// Price (q1: converted).
    pub price: i64,
    /// Event time.
    #[serde(rename = "dateTime")]
    pub date_time: i64,
}

/// A q2 result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q2Row {
    /// Auction id (a multiple of 123).
    pub auction: i64,
    /// Price.
    pub price: i64,
}

/// A q3 result: a seller in OR, ID or CA and an auction of theirs in category 10.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q3Row {
    /// Seller name.
    pub name: String,
    /// Seller city.
    pub city: String,
    /// Seller state.
    pub state: String,
    /// Auction id.
    pub id: i64,
}

/// A q4 result: count and sum of the winning prices of a category's auctions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q4Row {
    /// Category.
    pub category: i64,
    /// Auctions with a winning price.
    pub count: i64,
    /// Sum of their winning prices.
    pub sum: i64,
}

/// A q5 result: an auction with the most bids in a sliding window (every tied one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q5Row {
    /// Window start, epoch ms.
    pub window_start: i64,
    /// Window end (exclusive).
    pub window_end: i64,
    /// Auction id.
    pub auction: i64,
    /// Its bids in the window.
    pub count: i64,
}

/// A q6 result: count and sum of the winning prices of a seller's last (up to) 10 auctions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q6Row {
    /// Seller id.
    pub seller: i64,
    /// Auctions averaged (at most 10).
    pub count: i64,
    /// Sum of their winning prices.
    pub sum: i64,
}

/// A q7 result: a bid with the highest price of its tumbling window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q7Row {
    /// Window start.
    pub window_start: i64,
    /// Auction id.
    pub auction: i64,
    /// Bidder id.
    pub bidder: i64,
    /// The window's highest price.
    pub price: i64,
    /// The bid's event time.
    #[serde(rename = "dateTime")]
    pub date_time: i64,
}

/// A q8 result: a person who joined and opened an auction in the same tumbling window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q8Row {
    /// Person id.
    pub id: i64,
    /// Person name.
    pub name: String,
    /// Window start.
    pub window_start: i64,
}
