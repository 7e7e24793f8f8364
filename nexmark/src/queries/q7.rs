//! q7, highest bid: a tumbling-window aggregate keeping every bid at the window's top price.

use super::{bid_row, bids, BidRow, Q7Row, WINDOW};
use crate::model::{Bid, Event};
use watershed_core::{Stream, TumblingWindows};
use watershed_operators::prelude::*;
use watershed_operators::Aggregator;

/// q7, highest bid: per tumbling 10 s window, every bid whose price is the window's maximum.
pub fn q7(events: Stream<Event>) -> Stream<Q7Row> {
    bids(events)
        .key_by(|_: &Bid| ())
        .window(TumblingWindows::of(WINDOW))
        .aggregate_named("q7-max", HighestBids)
        .flat_map(|r| {
            let start = r.window.start.0;
            r.value.into_iter().map(move |b| Q7Row {
                window_start: start,
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                date_time: b.date_time,
            })
        })
}

/// q7's window aggregate: the highest price and every bid that has it.
#[derive(Clone, Copy, Debug, Default)]
pub struct HighestBids;

impl Aggregator<Bid> for HighestBids {
    type Acc = Vec<BidRow>;
    type Output = Vec<BidRow>;

    fn create(&self) -> Vec<BidRow> {
        Vec::new()
    }

    #[inline]
    fn add(&self, acc: &mut Vec<BidRow>, b: &Bid) {
        match acc.first() {
            Some(top) if b.price < top.price => {}
            Some(top) if b.price == top.price => acc.push(bid_row(b, b.price)),
            _ => {
                acc.clear();
                acc.push(bid_row(b, b.price));
            }
        }
    }

    fn merge(&self, acc: &mut Vec<BidRow>, other: Vec<BidRow>) {
        match (acc.first().map(|t| t.price), other.first().map(|t| t.price)) {
            (_, None) => {}
            (Some(a), Some(o)) if a > o => {}
            (Some(a), Some(o)) if a == o => acc.extend(other),
            _ => *acc = other,
        }
    }

    fn finish(&self, acc: &Vec<BidRow>) -> Vec<BidRow> {
        acc.clone()
    }
}
