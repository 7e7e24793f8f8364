//! The Nexmark events and the JSON form they take on Kafka (nexmark-flink style: one object with
//! `event_type` and exactly one of `person`, `auction`, `bid` non-null).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A person joining the auction site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Person id (from 1000 up).
    pub id: i64,
    /// "First Last".
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// US city.
    pub city: String,
    /// US state (two letters).
    pub state: String,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// Padding to the configured average size.
    pub extra: String,
}

/// An auction opened by a seller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    /// Auction id (from 1000 up).
    pub id: i64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Starting price.
    pub initial_bid: i64,
    /// Reserve price.
    pub reserve: i64,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// When the auction closes, epoch milliseconds.
    pub expires: i64,
    /// The seller's person id.
    pub seller: i64,
    /// Category (10–14).
    pub category: i64,
    /// Padding to the configured average size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// The auction's id.
    pub auction: i64,
    /// The bidder's person id.
    pub bidder: i64,
    /// Price in cents.
    pub price: i64,
    /// Channel the bid came through (the generator borrows it from a fixed table).
    pub channel: Cow<'static, str>,
    /// URL of the bid page (the generator borrows it from the same table).
    pub url: Cow<'static, str>,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// Padding to the configured average size.
    pub extra: String,
}

/// One Nexmark event. Persons and auctions are boxed: they are 4 in 50 events, and a record of
/// the enum stays as small as a bid's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EventJson", into = "EventJson")]
pub enum Event {
    /// A new person.
    Person(Box<Person>),
    /// A new auction.
    Auction(Box<Auction>),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's time (its `dateTime`), epoch milliseconds.
    #[inline]
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// 0 person, 1 auction, 2 bid, as in the JSON `event_type`.
    pub fn event_type(&self) -> u8 {
        match self {
            Event::Person(_) => 0,
            Event::Auction(_) => 1,
            Event::Bid(_) => 2,
        }
    }
}

/// The wire form of an [`Event`]: exactly one of the three is non-null.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventJson {
    /// 0 person, 1 auction, 2 bid.
    pub event_type: u8,
    /// Set for a person event.
    pub person: Option<Box<Person>>,
    /// Set for an auction event.
    pub auction: Option<Box<Auction>>,
    /// Set for a bid event.
    pub bid: Option<Bid>,
}

/// Why a JSON event could not be turned into an [`Event`].
#[derive(Debug, thiserror::Error)]
#[error("nexmark event with event_type {event_type}: {reason}")]
pub struct InvalidEvent {
    event_type: u8,
    reason: &'static str,
}

impl TryFrom<EventJson> for Event {
    type Error = InvalidEvent;

    fn try_from(e: EventJson) -> Result<Self, InvalidEvent> {
        let invalid = |reason| InvalidEvent {
            event_type: e.event_type,
            reason,
        };
        match (e.event_type, e.person, e.auction, e.bid) {
            (0, Some(p), None, None) => Ok(Event::Person(p)),
            (1, None, Some(a), None) => Ok(Event::Auction(a)),
            (2, None, None, Some(b)) => Ok(Event::Bid(b)),
            (0..=2, ..) => Err(invalid(
                "exactly the member named by event_type must be non-null",
            )),
            _ => Err(invalid("event_type must be 0, 1 or 2")),
        }
    }
}

impl From<Event> for EventJson {
    fn from(e: Event) -> Self {
        let event_type = e.event_type();
        let (person, auction, bid) = match e {
            Event::Person(p) => (Some(p), None, None),
            Event::Auction(a) => (None, Some(a), None),
            Event::Bid(b) => (None, None, Some(b)),
        };
        EventJson {
            event_type,
            person,
            auction,
            bid,
        }
    }
}

/// Writes `event` as its JSON wire form into `out` without cloning it.
pub fn write_json(event: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    #[derive(Serialize)]
    struct Ref<'a> {
        event_type: u8,
        person: Option<&'a Person>,
        auction: Option<&'a Auction>,
        bid: Option<&'a Bid>,
    }
    let r = match event {
        Event::Person(p) => Ref {
            event_type: 0,
            person: Some(p),
            auction: None,
            bid: None,
        },
        Event::Auction(a) => Ref {
            event_type: 1,
            person: None,
            auction: Some(a),
            bid: None,
        },
        Event::Bid(b) => Ref {
            event_type: 2,
            person: None,
            auction: None,
            bid: Some(b),
        },
    };
    serde_json::to_writer(out, &r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_json_wire_form() {
        let e = Event::Bid(Bid {
            auction: 1001,
            bidder: 1002,
            price: 5,
            channel: "Google".into(),
            url: "https://x".into(),
            date_time: 7,
            extra: "e".into(),
        });
        let mut buf = Vec::new();
        write_json(&e, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains(r#""event_type":2"#), "{text}");
        assert!(text.contains(r#""person":null"#), "{text}");
        assert!(text.contains(r#""dateTime":7"#), "{text}");
        assert_eq!(serde_json::from_slice::<Event>(&buf).unwrap(), e);
        assert_eq!(serde_json::to_vec(&e).unwrap(), buf);
    }

    #[test]
    fn an_event_whose_members_contradict_its_type_is_rejected() {
        let text = r#"{"event_type":0,"person":null,"auction":null,"bid":null}"#;
        assert!(serde_json::from_str::<Event>(text).is_err());
        let text = r#"{"event_type":7,"person":null,"auction":null,"bid":null}"#;
        assert!(serde_json::from_str::<Event>(text).is_err());
    }
}
