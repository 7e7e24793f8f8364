//! A deterministic Nexmark generator following the reference model (Beam's Nexmark
//! `Generator`/`GeneratorConfig` and nexmark-flink's `NexmarkGenerator`):
//!
//! - event `n` is a person, an auction or a bid by `id % 50` with proportions 1 : 3 : 46;
//! - person and auction ids are derived from the event id (`lastBase0PersonId`,
//!   `lastBase0AuctionId`, first ids 1000), so every event is a pure function of its number;
//! - hot items: a bid goes to the latest "hot" auction (first of the last batch of 100) with
//!   probability 1 − 1/2, its bidder is a hot bidder with probability 1 − 1/4, an auction's
//!   seller a hot seller with probability 1 − 1/4; otherwise a recent id among the last 1000
//!   people / 100 in-flight auctions, with a lead of 10 not-yet-created ids;
//! - event time is `base_time + event_number / rate`;
//! - out of order: within groups of `out_of_order_group_size` consecutive events the event
//!   ids (and with them content and event time) are permuted (`(n * 953) % group`), the
//!   reference's `nextAdjustedEventNumber`. The group is shrunk so that it spans at most 4 s of
//!   event time: events are never more than 4 s out of order;
//! - sizes: persons ≈ 200 bytes, auctions ≈ 500, bids ≈ 100 (the `extra` padding), prices
//!   `round(10^(6u) · 100)`, auction lengths from the in-flight horizon.
//!
//! The random draws come from a small per-event generator seeded with `(seed, event id)`, not
//! Java's `Random`, so values are not byte-identical with the Java generators; the model
//! (distributions, id spaces, timing) is the same.

use crate::model::{Auction, Bid, Event, Person};
use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;
use watershed_core::connectors::GeneratorSource;
use watershed_core::{EventTime, Record};

/// Proportions of persons, auctions and bids among every 50 events.
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const BID_PROPORTION: u64 = 46;
/// Events per "epoch" of the proportions.
pub const PROPORTION_DENOMINATOR: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

/// First ids, as in the reference: queries find matches even on small inputs.
pub const FIRST_PERSON_ID: i64 = 1000;
/// First auction id.
pub const FIRST_AUCTION_ID: i64 = 1000;
/// First category id; categories are 10..15.
pub const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: u64 = 5;

const NUM_ACTIVE_PEOPLE: u64 = 1000;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
/// Hot auctions/bidders/sellers are the first of each batch of this many.
const HOT_BATCH: u64 = 100;
/// `hotAuctionRatio`, `hotBiddersRatio`, `hotSellersRatio` of the reference configuration.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_SELLERS_RATIO: u64 = 4;

const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;

const CHANNELS: usize = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// The bound on out-of-orderness the generator guarantees (and every system's watermark uses).
pub const MAX_OUT_OF_ORDER: Duration = Duration::from_secs(4);

/// How the generator shapes the stream. Builder-style; every setting has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GeneratorConfig {
    /// Seed of every random draw (default 42).
    pub seed: u64,
    /// Events per second of event time (default 10 000 000, nexmark-flink's default).
    pub rate: u64,
    /// Event time of event 0, epoch ms (default 2026-01-01T00:00:00Z, a multiple of 10 s).
    pub base_time: i64,
    /// Size of the groups whose events are permuted (default 1000; 1 = in order). Shrunk so a
    /// group spans at most [`MAX_OUT_OF_ORDER`] of event time.
    pub out_of_order_group_size: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            rate: 10_000_000,
            base_time: 1_767_225_600_000,
            out_of_order_group_size: 1000,
        }
    }
}

impl GeneratorConfig {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the event rate (events per second of event time, at least 1).
    pub fn rate(mut self, per_second: u64) -> Self {
        self.rate = per_second.max(1);
        self
    }

    /// Sets the event time of event 0.
    pub fn base_time(mut self, epoch_ms: i64) -> Self {
        self.base_time = epoch_ms;
        self
    }

    /// Sets the out-of-order group size (1 = in order).
    pub fn out_of_order_group_size(mut self, n: u64) -> Self {
        self.out_of_order_group_size = n.max(1);
        self
    }
}

/// A small, fast generator (wyrand) for the draws of one event.
struct Draws(u64);

impl Draws {
    fn new(seed: u64, event_id: u64) -> Self {
        // SplitMix64 of (seed, id): nearby ids give unrelated streams.
        let mut z = seed ^ event_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Draws(z ^ (z >> 31))
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xE703_7ED1_A0B4_28DB) as u128);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `0..n` (`n ≥ 1`).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The reference's `nextString`: 3..max letters with occasional spaces, trimmed.
    fn string(&mut self, max_len: u64) -> String {
        let len = 3 + self.below(max_len - 3) as usize;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            let r = self.below(13 * 26);
            if r < 26 {
                s.push(' ');
            } else {
                s.push((b'a' + (r % 26) as u8) as char);
            }
        }
        s.trim().to_string()
    }

    /// The reference's `nextExactString`: `len` random lowercase letters. Eight letters per
    /// 64-bit draw (one byte each, scaled to 0..26 by multiply-shift): padding dominates the
    /// generator's cost, so it is built without per-character division or UTF-8 checks.
    fn exact_string(&mut self, len: usize) -> String {
        let mut bytes = vec![0u8; len];
        for chunk in bytes.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            for (c, b) in chunk.iter_mut().zip(r) {
                *c = b'a' + ((u16::from(b) * 26) >> 8) as u8;
            }
        }
        // SAFETY: every byte is in b'a'..=b'z', so the bytes are ASCII and valid UTF-8.
        unsafe { String::from_utf8_unchecked(bytes) }
    }

    /// The reference's `nextExtra`: padding so the event averages `desired` bytes.
    fn extra(&mut self, current: usize, desired: usize) -> String {
        if current > desired {
            return String::new();
        }
        let desired = desired - current;
        let delta = (desired as f64 * 0.2).round() as usize;
        let min = desired - delta;
        let size = min
            + if delta == 0 {
                0
            } else {
                self.below(2 * delta as u64) as usize
            };
        // Padding is read by no query: a slice of a fixed pool of random letters at a random
        // offset is as good as fresh letters, at the cost of one copy.
        let pool = padding_pool();
        let at = self.below((pool.len() - size.min(pool.len()) + 1) as u64) as usize;
        pool[at..at + size.min(pool.len())].to_string()
    }

    /// The reference's `nextPrice`: `round(10^(6u) · 100)` cents.
    #[inline]
    fn price(&mut self) -> i64 {
        ((self.unit() * 6.0 * std::f64::consts::LN_10).exp() * 100.0).round() as i64
    }
}

fn last_base0_person_id(event_id: u64) -> u64 {
    // The reference adds min(offset, PERSON_PROPORTION − 1), which is 0 with one person per
    // epoch: the last person is the epoch's only one.
    event_id / PROPORTION_DENOMINATOR * PERSON_PROPORTION
}

fn next_base0_person_id(event_id: u64, d: &mut Draws) -> u64 {
    let people = last_base0_person_id(event_id) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + d.below(active + PERSON_ID_LEAD)
}

fn last_base0_auction_id(event_id: u64) -> u64 {
    let mut epoch = event_id / PROPORTION_DENOMINATOR;
    let mut offset = event_id % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        // About to generate a person: the last auction is in the previous epoch.
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

fn next_base0_auction_id(event_id: u64, d: &mut Draws) -> u64 {
    let max = last_base0_auction_id(event_id);
    let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + d.below(max - min + 1 + AUCTION_ID_LEAD)
}

/// The generator: event `n` (0-based) is [`event`](NexmarkGenerator::event)`(n)`, a pure
/// function of `n` and the configuration.
#[derive(Clone, Debug)]
pub struct NexmarkGenerator {
    config: GeneratorConfig,
    group: u64,
}

/// Random lowercase letters that padding is cut from.
fn padding_pool() -> &'static str {
    static POOL: OnceLock<String> = OnceLock::new();
    POOL.get_or_init(|| Draws::new(0x9AD0_1E55, 0).exact_string(1 << 16))
}

/// The channels and their URLs, as nexmark-flink's channel cache: four hot channels, then
/// `channel-i`. One table per process, so bids borrow their strings instead of counting
/// references on them.
fn channels() -> &'static [(String, String)] {
    static TABLE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..CHANNELS)
            .map(|i| match HOT_CHANNELS.get(i) {
                Some(hot) => (
                    hot.to_string(),
                    format!(
                        "https://www.nexmark.com/{}/item.htm?query=1",
                        hot.to_lowercase()
                    ),
                ),
                None => {
                    let mut d = Draws::new(0xC4A7_7E15, i as u64);
                    (
                        format!("channel-{i}"),
                        format!(
                            "https://www.nexmark.com/{}/{}/{}/item.htm?query=1&channel_id={i}",
                            d.exact_string(5),
                            d.exact_string(5),
                            d.exact_string(5)
                        ),
                    )
                }
            })
            .collect()
    })
}

impl NexmarkGenerator {
    /// A generator for `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        // A group of g events spans (g − 1) / rate seconds; keep that within the bound.
        let max_group = (config.rate as u128 * MAX_OUT_OF_ORDER.as_millis() / 1000).max(1) as u64;
        let mut group = config.out_of_order_group_size.clamp(1, max_group);
        if group.is_multiple_of(953) {
            // (n · 953) mod g permutes a group only when 953 and g are coprime (953 is prime).
            group -= 1;
        }
        NexmarkGenerator { config, group }
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The effective out-of-order group size.
    pub fn group_size(&self) -> u64 {
        self.group
    }

    /// The event id (and content) of event number `n`: `n` permuted within its group.
    #[inline]
    pub fn event_id(&self, n: u64) -> u64 {
        let g = self.group;
        (n / g) * g + (n.wrapping_mul(953)) % g
    }

    /// Event time of the event with id `id`, epoch ms.
    #[inline]
    pub fn timestamp_of(&self, id: u64) -> i64 {
        self.config.base_time + (id as u128 * 1000 / self.config.rate as u128) as i64
    }

    /// Event number `n`.
    pub fn event(&self, n: u64) -> Event {
        let id = self.event_id(n);
        let ts = self.timestamp_of(id);
        let mut d = Draws::new(self.config.seed, id);
        let rem = id % PROPORTION_DENOMINATOR;
        if rem < PERSON_PROPORTION {
            Event::Person(Box::new(self.person(id, ts, &mut d)))
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            Event::Auction(Box::new(self.auction(id, ts, &mut d)))
        } else {
            Event::Bid(self.bid(id, ts, &mut d))
        }
    }

    fn person(&self, id: u64, ts: i64, d: &mut Draws) -> Person {
        let name = format!(
            "{} {}",
            FIRST_NAMES[d.below(FIRST_NAMES.len() as u64) as usize],
            LAST_NAMES[d.below(LAST_NAMES.len() as u64) as usize]
        );
        let email = format!("{}@{}.com", d.string(7), d.string(5));
        let credit_card = format!(
            "{:04} {:04} {:04} {:04}",
            d.below(10_000),
            d.below(10_000),
            d.below(10_000),
            d.below(10_000)
        );
        let city = US_CITIES[d.below(US_CITIES.len() as u64) as usize].to_string();
        let state = US_STATES[d.below(US_STATES.len() as u64) as usize].to_string();
        let size = 8 + name.len() + email.len() + credit_card.len() + city.len() + state.len();
        let extra = d.extra(size, AVG_PERSON_BYTES);
        Person {
            id: last_base0_person_id(id) as i64 + FIRST_PERSON_ID,
            name,
            email_address: email,
            credit_card,
            city,
            state,
            date_time: ts,
            extra,
        }
    }

    /// The reference's `nextAuctionLengthMs`: up to twice the time until the auction that
    /// will be `NUM_IN_FLIGHT_AUCTIONS` auctions later.
    fn auction_length(&self, id: u64, ts: i64, d: &mut Draws) -> i64 {
        let events_for_auctions =
            NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
        let horizon = self.timestamp_of(id + events_for_auctions) - ts;
        1 + d.below((horizon * 2).max(1) as u64) as i64
    }

    fn auction(&self, id: u64, ts: i64, d: &mut Draws) -> Auction {
        let seller = if d.below(HOT_SELLERS_RATIO) > 0 {
            (last_base0_person_id(id) / HOT_BATCH) * HOT_BATCH
        } else {
            next_base0_person_id(id, d)
        };
        let category = FIRST_CATEGORY_ID + d.below(NUM_CATEGORIES) as i64;
        let initial_bid = d.price();
        let expires = ts + self.auction_length(id, ts, d);
        let item_name = d.string(20);
        let description = d.string(100);
        let reserve = initial_bid + d.price();
        let size = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
        let extra = d.extra(size, AVG_AUCTION_BYTES);
        Auction {
            id: last_base0_auction_id(id) as i64 + FIRST_AUCTION_ID,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: ts,
            expires,
            seller: seller as i64 + FIRST_PERSON_ID,
            category,
            extra,
        }
    }

    fn bid(&self, id: u64, ts: i64, d: &mut Draws) -> Bid {
        let auction = if d.below(HOT_AUCTION_RATIO) > 0 {
            (last_base0_auction_id(id) / HOT_BATCH) * HOT_BATCH
        } else {
            next_base0_auction_id(id, d)
        };
        let bidder = if d.below(HOT_BIDDERS_RATIO) > 0 {
            (last_base0_person_id(id) / HOT_BATCH) * HOT_BATCH + 1
        } else {
            next_base0_person_id(id, d)
        };
        let price = d.price();
        // Half the bids come through the four hot channels, the rest through 10 000 others.
        let channel = if d.below(2) > 0 {
            d.below(HOT_CHANNELS.len() as u64)
        } else {
            d.below(CHANNELS as u64)
        } as usize;
        let (channel, url) = &channels()[channel];
        let extra = d.extra(32, AVG_BID_BYTES);
        Bid {
            auction: auction as i64 + FIRST_AUCTION_ID,
            bidder: bidder as i64 + FIRST_PERSON_ID,
            price,
            channel: Cow::Borrowed(channel),
            url: Cow::Borrowed(url),
            date_time: ts,
            extra,
        }
    }

    /// Events `0..n` in stream order (for reference computations and loaders).
    pub fn events(&self, n: u64) -> impl Iterator<Item = Event> + '_ {
        (0..n).map(move |i| self.event(i))
    }

    /// An in-process, bounded source of the first `events` events over `splits` splits (split
    /// `s` holds events `s, s + splits, …` in order), each record's event time its `dateTime`.
    /// Use it with a bounded-out-of-orderness watermark of [`MAX_OUT_OF_ORDER`].
    pub fn source(&self, events: u64, splits: usize) -> GeneratorSource<Event> {
        let k = splits.max(1) as u64;
        let sizes = (0..k)
            .map(|s| events / k + u64::from(s < events % k))
            .collect();
        let generator = self.clone();
        GeneratorSource::sized(sizes, move |split, i| {
            let e = generator.event(i * k + split as u64);
            let ts = EventTime(e.date_time());
            Record::new(e, ts)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_spaces_follow_the_reference_formulas() {
        // Epoch 0: event 0 is person 0, events 1..4 auctions 0..3, then bids.
        assert_eq!(last_base0_person_id(0), 0);
        assert_eq!(last_base0_person_id(49), 0);
        assert_eq!(last_base0_person_id(50), 1);
        assert_eq!(last_base0_auction_id(1), 0);
        assert_eq!(last_base0_auction_id(3), 2);
        assert_eq!(last_base0_auction_id(10), 2);
        assert_eq!(last_base0_auction_id(50), 2);
        assert_eq!(last_base0_auction_id(51), 3);
    }

    #[test]
    fn the_group_permutation_is_a_bijection_within_each_group() {
        let g = NexmarkGenerator::new(GeneratorConfig::new().out_of_order_group_size(1000));
        let mut ids: Vec<u64> = (0..5000).map(|n| g.event_id(n)).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..5000).collect::<Vec<_>>());
    }
}
