//! q0–q2: per-bid projections and selections, stateless.

use super::{bid_row, BidRow, Q2Row};
use crate::model::Event;
use watershed_core::Stream;
use watershed_operators::prelude::*;

/// q0, pass-through: every bid.
pub fn q0(events: Stream<Event>) -> Stream<BidRow> {
    events.filter_map(|e| match e {
        Event::Bid(b) => Some(bid_row(&b, b.price)),
        _ => None,
    })
}

/// q1, currency conversion: every bid with its price × 908 / 1000 (integer division).
pub fn q1(events: Stream<Event>) -> Stream<BidRow> {
    events.filter_map(|e| match e {
        Event::Bid(b) => Some(bid_row(&b, b.price * 908 / 1000)),
        _ => None,
    })
}

/// q2, selection: bids on auctions whose id is a multiple of 123.
pub fn q2(events: Stream<Event>) -> Stream<Q2Row> {
    events.filter_map(|e| match e {
        Event::Bid(b) if b.auction % 123 == 0 => Some(Q2Row {
            auction: b.auction,
            price: b.price,
        }),
        _ => None,
    })
}
