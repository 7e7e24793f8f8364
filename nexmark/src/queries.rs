//! Nexmark q0–q8 as ordinary functions over a `Stream<Event>`, written with Watershed's public
//! API: `watershed-operators` stateless operators and windows, and keyed [`Operator`]s (through
//! [`KeyedStream::process`](watershed_core::KeyedStream::process)) where a query needs a join
//! or a per-key state machine. All times are event times (`dateTime`, epoch ms); windows are
//! aligned to the epoch. docs/nexmark.md states each query's exact meaning.

use crate::model::{Bid, Event};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::time::Duration;
use watershed_core::{
    BoxError, Collector, Either, EventTime, Operator, Record, SlidingWindows, Stream,
    TumblingWindows,
};
use watershed_operators::prelude::*;
use watershed_operators::{Aggregator, Count, WindowResult};

/// Length of the q5 sliding windows, the q7 and q8 tumbling windows.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Slide of the q5 windows.
pub const SLIDE: Duration = Duration::from_secs(2);
/// Window length in ms.
pub const WINDOW_MS: i64 = 10_000;
/// q6 averages over each seller's last this many auctions with a winning price.
pub const Q6_LAST_AUCTIONS: usize = 10;

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

/// q4, average closing price per category: each auction's winning price (its highest bid within
/// `[dateTime, expires]`) once the auction has closed, then the count and sum per category,
/// emitted for the categories that changed whenever event time advances (the last row of a
/// category is its final value).
pub fn q4(events: Stream<Event>) -> Stream<Q4Row> {
    winning_bids(events)
        .key_by(|w: &Winning| w.category)
        .process("q4-categories", |_| CategoryTotals::default())
}

/// q5, hot items: per sliding window (10 s, sliding 2 s), the auction(s) with the most bids.
pub fn q5(events: Stream<Event>) -> Stream<Q5Row> {
    bids(events)
        .key_by(|b: &Bid| b.auction)
        .window(SlidingWindows::of(WINDOW, SLIDE))
        .aggregate_named("q5-counts", Count)
        .key_by(|r: &WindowResult<i64, u64>| r.window.start.0)
        .process("q5-hottest", |_| HottestPerWindow::default())
}

/// q6, average selling price by seller: per seller, the count and sum of the winning prices of
/// their last (up to) 10 closed auctions ordered by `(expires, id)`, emitted for the sellers
/// that changed whenever event time advances (the last row of a seller is its final value).
pub fn q6(events: Stream<Event>) -> Stream<Q6Row> {
    winning_bids(events)
        .key_by(|w: &Winning| w.seller)
        .process("q6-sellers", |_| SellerLastAuctions::default())
}

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

/// q8, monitor new users: persons who joined and opened an auction in the same tumbling 10 s
/// window (person by its `dateTime`, auction by its own), once per person and window: a window
/// co-group of persons and auctions on `person.id == seller`.
pub fn q8(events: Stream<Event>) -> Stream<Q8Row> {
    let (persons, sellers) = events
        .filter_map(|e| match e {
            Event::Person(p) => Some(Either::Left((p.id, p.name))),
            Event::Auction(a) => Some(Either::Right(a.seller)),
            Event::Bid(_) => None,
        })
        .split();
    persons
        .key_by(|p: &(i64, String)| p.0)
        .window_join(sellers.key_by(|s: &i64| *s), TumblingWindows::of(WINDOW))
        .named("q8-join")
        .co_group()
        .flat_map(|g| {
            let start = g.window.start.0;
            let (mut persons, auctions) = g.value;
            if auctions.is_empty() {
                persons.clear();
            }
            persons.sort_unstable();
            persons.dedup();
            persons.into_iter().map(move |(id, name)| Q8Row {
                id,
                name,
                window_start: start,
            })
        })
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

/// Per-key totals that emit the keys that changed at each watermark.
struct Changes<K, V> {
    values: FxHashMap<K, V>,
    changed: FxHashSet<K>,
}

impl<K, V> Default for Changes<K, V> {
    fn default() -> Self {
        Changes {
            values: FxHashMap::default(),
            changed: FxHashSet::default(),
        }
    }
}

impl<K: Hash + Eq + Copy + Ord, V: Default> Changes<K, V> {
    fn update(&mut self, key: K) -> &mut V {
        self.changed.insert(key);
        self.values.entry(key).or_default()
    }

    /// The changed keys in key order (deterministic output), with their values.
    fn drain_changed(&mut self) -> Vec<(K, &V)> {
        let mut keys: Vec<K> = self.changed.drain().collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|k| self.values.get(&k).map(|v| (k, v)))
            .collect()
    }
}

/// q4's second stage: (count, sum) of winning prices per category.
#[derive(Default)]
struct CategoryTotals {
    totals: Changes<i64, (i64, i64)>,
}

impl Operator for CategoryTotals {
    type In = Winning;
    type Out = Q4Row;

    fn process(
        &mut self,
        batch: Vec<Record<Winning>>,
        _out: &mut Collector<Q4Row>,
    ) -> Result<(), BoxError> {
        for r in batch {
            let t = self.totals.update(r.value.category);
            t.0 += 1;
            t.1 += r.value.price;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<Q4Row>,
    ) -> Result<(), BoxError> {
        for (category, &(count, sum)) in self.totals.drain_changed() {
            out.emit(Record::new(
                Q4Row {
                    category,
                    count,
                    sum,
                },
                watermark,
            ));
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        to_state(&(
            pairs(&self.totals.values),
            self.totals.changed.iter().collect::<Vec<_>>(),
        ))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        type State = (Vec<(i64, (i64, i64))>, Vec<i64>);
        let (values, changed): State = from_state(state)?;
        self.totals.values = values.into_iter().collect();
        self.totals.changed = changed.into_iter().collect();
        Ok(())
    }
}

/// q6's second stage: each seller's last 10 winning prices by (expires, auction id).
#[derive(Default)]
struct SellerLastAuctions {
    /// Sorted ascending by (expires, auction); at most [`Q6_LAST_AUCTIONS`].
    last: Changes<i64, Vec<(i64, i64, i64)>>,
}

impl Operator for SellerLastAuctions {
    type In = Winning;
    type Out = Q6Row;

    fn process(
        &mut self,
        batch: Vec<Record<Winning>>,
        _out: &mut Collector<Q6Row>,
    ) -> Result<(), BoxError> {
        for r in batch {
            let w = r.value;
            let last = self.last.update(w.seller);
            let entry = (w.expires, w.auction, w.price);
            let at = last.partition_point(|e| *e < entry);
            last.insert(at, entry);
            if last.len() > Q6_LAST_AUCTIONS {
                last.remove(0);
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<Q6Row>,
    ) -> Result<(), BoxError> {
        for (seller, last) in self.last.drain_changed() {
            let row = Q6Row {
                seller,
                count: last.len() as i64,
                sum: last.iter().map(|e| e.2).sum(),
            };
            out.emit(Record::new(row, watermark));
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        to_state(&(
            pairs(&self.last.values),
            self.last.changed.iter().collect::<Vec<_>>(),
        ))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        type State = (Vec<(i64, Vec<(i64, i64, i64)>)>, Vec<i64>);
        let (values, changed): State = from_state(state)?;
        self.last.values = values.into_iter().collect();
        self.last.changed = changed.into_iter().collect();
        Ok(())
    }
}

/// q5's second stage: per window, the highest count and the auctions that have it.
#[derive(Default)]
struct HottestPerWindow {
    /// (window end, window start) → (max count, auctions with it).
    windows: BTreeMap<(i64, i64), (u64, Vec<i64>)>,
}

impl Operator for HottestPerWindow {
    type In = WindowResult<i64, u64>;
    type Out = Q5Row;

    fn process(
        &mut self,
        batch: Vec<Record<WindowResult<i64, u64>>>,
        _out: &mut Collector<Q5Row>,
    ) -> Result<(), BoxError> {
        for r in batch {
            let w = r.value.window;
            let (max, auctions) = self.windows.entry((w.end.0, w.start.0)).or_default();
            let count = r.value.value;
            if count > *max {
                *max = count;
                auctions.clear();
            }
            if count == *max {
                auctions.push(r.value.key);
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Collector<Q5Row>,
    ) -> Result<(), BoxError> {
        // Window results arrive before the watermark that fired them: a window whose last
        // millisecond the watermark has reached is complete.
        while let Some(entry) = self.windows.first_entry() {
            let (end, start) = *entry.key();
            if end - 1 > watermark.0 {
                break;
            }
            let (count, mut auctions) = entry.remove();
            auctions.sort_unstable();
            for auction in auctions {
                out.emit(Record::new(
                    Q5Row {
                        window_start: start,
                        window_end: end,
                        auction,
                        count: count as i64,
                    },
                    EventTime(end - 1),
                ));
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        to_state(&self.windows.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        type State = Vec<((i64, i64), (u64, Vec<i64>))>;
        let v: State = from_state(state)?;
        self.windows = v.into_iter().collect();
        Ok(())
    }
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
