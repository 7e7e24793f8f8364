//! q8, monitor new users: a tumbling-window co-group of new persons and their auctions.

use super::Q8Row;
use super::WINDOW;
use crate::model::Event;
use watershed_core::{Either, Stream, TumblingWindows};
use watershed_operators::prelude::*;

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
