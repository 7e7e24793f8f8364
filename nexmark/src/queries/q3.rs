//! q3, local item suggestion: an unbounded interval join of sellers and their auctions.

use super::Q3Row;
use crate::model::Event;
use serde::{Deserialize, Serialize};
use watershed_core::{Either, Stream};
use watershed_operators::prelude::*;

/// A q3 seller: the person fields the query keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Seller {
    id: i64,
    name: String,
    city: String,
    state: String,
}

/// q3, local item suggestion: auctions in category 10 joined with their sellers when the seller
/// lives in OR, ID or CA. An unbounded inner join on `seller == person.id` (the operators'
/// interval join without bounds): each matching pair is emitted once, whichever side arrives
/// first.
pub fn q3(events: Stream<Event>) -> Stream<Q3Row> {
    let (sellers, auctions) = events
        .filter_map(|e| match e {
            Event::Person(p) if matches!(p.state.as_str(), "OR" | "ID" | "CA") => {
                let p = *p;
                Some(Either::Left(Seller {
                    id: p.id,
                    name: p.name,
                    city: p.city,
                    state: p.state,
                }))
            }
            // (auction id, seller)
            Event::Auction(a) if a.category == 10 => Some(Either::Right((a.id, a.seller))),
            _ => None,
        })
        .split();
    sellers
        .key_by(|p: &Seller| p.id)
        .interval_join(auctions.key_by(|a: &(i64, i64)| a.1))
        .unbounded()
        .named("q3-join")
        .inner()
        .map(|(p, (id, _))| Q3Row {
            name: p.name,
            city: p.city,
            state: p.state,
            id,
        })
}
