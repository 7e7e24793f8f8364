//! The winning bid of each closed auction, the first stage of q4 and q6: a keyed state
//! machine holding open auctions until the watermark passes their `expires`.

use super::{from_state, pairs, to_state};
use crate::model::Event;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use watershed_core::{BoxError, Collector, EventTime, Operator, Record, Stream};
use watershed_operators::prelude::*;

/// A closed auction and its winning price (q4, q6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Winning {
    /// Auction id.
    pub auction: i64,
    /// Seller id.
    pub seller: i64,
    /// Category.
    pub category: i64,
    /// When the auction closed.
    pub expires: i64,
    /// The highest bid within `[dateTime, expires]`.
    pub price: i64,
}

/// Each closed auction's winning price: the highest bid with `auction.dateTime ≤ bid.dateTime ≤
/// auction.expires`; auctions without such a bid are left out. Emitted once the watermark has
/// passed `expires` (no bid it could count can arrive later).
pub fn winning_bids(events: Stream<Event>) -> Stream<Winning> {
    events
        .filter(|e| !matches!(e, Event::Person(_)))
        .key_by(|e| match e {
            Event::Auction(a) => a.id,
            Event::Bid(b) => b.auction,
            Event::Person(p) => p.id,
        })
        .process("winning-bids", |_| WinningBids::default())
}

#[derive(Clone, Serialize, Deserialize)]
struct OpenAuction {
    seller: i64,
    category: i64,
    date_time: i64,
    expires: i64,
    best: Option<i64>,
}

/// Keyed by auction id: open auctions until they close, and bids that came before their auction.
#[derive(Default)]
struct WinningBids {
    open: FxHashMap<i64, OpenAuction>,
    /// (expires, auction): closing order.
    closing: BTreeSet<(i64, i64)>,
    /// Bids, as (price, dateTime), of auctions not seen yet.
    early: FxHashMap<i64, Vec<(i64, i64)>>,
    watermark: i64,
}

#[derive(Serialize, Deserialize)]
struct WinningBidsState {
    open: Vec<(i64, OpenAuction)>,
    early: Vec<(i64, Vec<(i64, i64)>)>,
    watermark: i64,
}

impl Operator for WinningBids {
    type In = Event;
    type Out = Winning;

    fn process(
        &mut self,
        batch: Vec<Record<Event>>,
        _out: &mut Collector<Winning>,
    ) -> Result<(), BoxError> {
        for r in batch {
            match r.value {
                Event::Bid(b) => match self.open.get_mut(&b.auction) {
                    Some(a) => {
                        if a.date_time <= b.date_time
                            && b.date_time <= a.expires
                            && a.best.is_none_or(|p| b.price > p)
                        {
                            a.best = Some(b.price);
                        }
                    }
                    // Its auction may still come (out of order, or a bid on a future id).
                    None => self
                        .early
                        .entry(b.auction)
                        .or_default()
                        .push((b.price, b.date_time)),
                },
                Event::Auction(a) => {
                    let mut best = None;
                    if let Some(bids) = self.early.remove(&a.id) {
                        for (price, t) in bids {
                            if a.date_time <= t && t <= a.expires && best.is_none_or(|p| price > p)
                            {
                                best = Some(price);
                            }
                        }
                    }
                    self.closing.insert((a.expires, a.id));
                    self.open.insert(
                        a.id,
                        OpenAuction {
                            seller: a.seller,
                            category: a.category,
                            date_time: a.date_time,
                            expires: a.expires,
                            best,
                        },
                    );
                }
                Event::Person(_) => {}
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<Winning>,
    ) -> Result<(), BoxError> {
        let w = watermark.0;
        if w <= self.watermark {
            return Ok(());
        }
        self.watermark = w;
        while let Some(&(expires, id)) = self.closing.first() {
            if expires > w {
                break;
            }
            self.closing.pop_first();
            if let Some(a) = self.open.remove(&id) {
                if let Some(price) = a.best {
                    out.emit(Record::new(
                        Winning {
                            auction: id,
                            seller: a.seller,
                            category: a.category,
                            expires,
                            price,
                        },
                        EventTime(expires),
                    ));
                }
            }
        }
        // An auction that has not come by now can only have a dateTime after the watermark, so
        // bids at or before it can never count.
        self.early.retain(|_, bids| {
            bids.retain(|&(_, t)| t > w);
            !bids.is_empty()
        });
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        to_state(&WinningBidsState {
            open: pairs(&self.open),
            early: pairs(&self.early),
            watermark: self.watermark,
        })
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let s: WinningBidsState = from_state(state)?;
        self.closing = s.open.iter().map(|(id, a)| (a.expires, *id)).collect();
        self.open = s.open.into_iter().collect();
        self.early = s.early.into_iter().collect();
        self.watermark = s.watermark;
        Ok(())
    }
}
