//! q4, average closing price per category: winning bids totalled per category.

use super::changes::Changes;
use super::{from_state, pairs, to_state, winning_bids, Q4Row, Winning};
use crate::model::Event;
use watershed_core::{BoxError, Collector, EventTime, Operator, Record, Stream};

/// q4, average closing price per category: each auction's winning price (its highest bid within
/// `[dateTime, expires]`) once the auction has closed, then the count and sum per category,
/// emitted for the categories that changed whenever event time advances (the last row of a
/// category is its final value).
pub fn q4(events: Stream<Event>) -> Stream<Q4Row> {
    winning_bids(events)
        .key_by(|w: &Winning| w.category)
        .process("q4-categories", |_| CategoryTotals::default())
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
