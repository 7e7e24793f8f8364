//! q6, average selling price by seller: each seller's last winning prices.

use super::changes::Changes;
use super::{from_state, pairs, to_state, winning_bids, Q6Row, Winning, Q6_LAST_AUCTIONS};
use crate::model::Event;
use watershed_core::{BoxError, Collector, EventTime, Operator, Record, Stream};

/// q6, average selling price by seller: per seller, the count and sum of the winning prices of
/// their last (up to) 10 closed auctions ordered by `(expires, id)`, emitted for the sellers
/// that changed whenever event time advances (the last row of a seller is its final value).
pub fn q6(events: Stream<Event>) -> Stream<Q6Row> {
    winning_bids(events)
        .key_by(|w: &Winning| w.seller)
        .process("q6-sellers", |_| SellerLastAuctions::default())
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
