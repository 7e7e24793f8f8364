//! q5, hot items: bid counts per auction in sliding windows, then the top auctions per window.

use super::{bids, from_state, to_state, Q5Row, SLIDE, WINDOW};
use crate::model::{Bid, Event};
use std::collections::BTreeMap;
use watershed_core::{BoxError, Collector, EventTime, Operator, Record, SlidingWindows, Stream};
use watershed_operators::prelude::*;
use watershed_operators::{Count, WindowResult};

/// q5, hot items: per sliding window (10 s, sliding 2 s), the auction(s) with the most bids.
pub fn q5(events: Stream<Event>) -> Stream<Q5Row> {
    bids(events)
        .key_by(|b: &Bid| b.auction)
        .window(SlidingWindows::of(WINDOW, SLIDE))
        .aggregate_named("q5-counts", Count)
        .key_by(|r: &WindowResult<i64, u64>| r.window.start.0)
        .process("q5-hottest", |_| HottestPerWindow::default())
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
