//! Updating-table join (Kafka Streams' KStream–KTable join): one input is a changelog, the
//! table keeps the latest value per key, and each element of the other input joins the value
//! its key has when the element arrives.

use crate::key_groups::{decode_groups, snapshot_groups};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::sync::Arc;
use watershed_core::{
    BoxError, Collector, Either, KeyBytes, KeyGroupSnapshot, KeyGroups, Operator, Record,
};

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;
type ValueFn<C, V> = Arc<dyn Fn(C) -> Option<V> + Send + Sync>;

/// The keyed table-join operator over the union of a stream (`Either::Left`) and a changelog
/// (`Either::Right`).
///
/// - A changelog element `c` sets its key's value to `value(c)`; `None` deletes the key.
/// - A stream element emits `(element, value)` with the value its key has at that moment in
///   the operator's input order (processing order, as Kafka Streams), keeping the element's
///   event time; a key without a value gives `(element, None)` in left mode and nothing in
///   inner mode.
/// - The table (latest value per key) is checkpointed. It holds one value per live key: its
///   size is bounded by the key space, not by time, which is why a changelog should be
///   compacted or carry deletes.
///
/// Which table version a stream element sees depends on how the two inputs interleave. Feed
/// the table before the stream (or accept that early elements may miss) when that matters;
/// for a versioned, event-time lookup use an interval join over the changelog instead.
pub struct TableJoin<S, C, K, V> {
    key: KeyFn<Either<S, C>, K>,
    value: ValueFn<C, V>,
    outer: bool,
    table: FxHashMap<K, V>,
}

impl<S, C, K: Hash + Eq, V> TableJoin<S, C, K, V> {
    /// An inner table join by `key`, the changelog's values given by `value`.
    pub fn new(key: KeyFn<Either<S, C>, K>, value: ValueFn<C, V>) -> Self {
        TableJoin {
            key,
            value,
            outer: false,
            table: FxHashMap::default(),
        }
    }

    /// Left mode: stream elements whose key has no value pass with `None`.
    pub fn left(mut self) -> Self {
        self.outer = true;
        self
    }

    /// Keys the table holds.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }
}

impl<S, C, K, V> Operator for TableJoin<S, C, K, V>
where
    S: Send + 'static,
    C: Send + 'static,
    K: Hash + Eq + KeyBytes + Serialize + DeserializeOwned + Send + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    type In = Either<S, C>;
    type Out = (S, Option<V>);

    fn process(
        &mut self,
        batch: Vec<Record<Either<S, C>>>,
        out: &mut Collector<(S, Option<V>)>,
    ) -> Result<(), BoxError> {
        for r in batch {
            let key = (self.key)(&r.value);
            let Record {
                value,
                key: rkey,
                timestamp,
                headers,
                origin,
            } = r;
            match value {
                Either::Left(s) => {
                    let v = self.table.get(&key).cloned();
                    if v.is_some() || self.outer {
                        out.emit(Record {
                            value: (s, v),
                            key: rkey,
                            timestamp,
                            headers,
                            origin,
                        });
                    }
                }
                Either::Right(c) => match (self.value)(c) {
                    Some(v) => {
                        self.table.insert(key, v);
                    }
                    None => {
                        self.table.remove(&key);
                    }
                },
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        // Pairs, not a JSON object: tuple and unit keys work.
        let pairs: Vec<(&K, &V)> = self.table.iter().collect();
        Ok(Some(serde_json::to_vec(&pairs)?))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let pairs: Vec<(K, V)> = serde_json::from_slice(state)?;
        self.table = pairs.into_iter().collect();
        Ok(())
    }

    /// Each key group as the blob [`snapshot`](Operator::snapshot) writes, restricted to the
    /// group's keys.
    fn snapshot_key_groups(
        &mut self,
        groups: &KeyGroups,
    ) -> Result<Option<KeyGroupSnapshot>, BoxError> {
        let split = snapshot_groups(groups, self.table.iter(), |_, pairs| {
            Ok(serde_json::to_vec(&pairs)?)
        })?;
        Ok(Some(split))
    }

    fn restore_key_groups(
        &mut self,
        _groups: &KeyGroups,
        states: &[(u16, Bytes)],
    ) -> Result<(), BoxError> {
        let pairs: Vec<(K, V)> = decode_groups(states)?;
        self.table = pairs.into_iter().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watershed_core::EventTime;

    type Change = (u8, Option<&'static str>);
    type Op = TableJoin<(u8, u32), Change, u8, String>;

    fn op() -> Op {
        TableJoin::new(
            Arc::new(
                |e: &Either<(u8, u32), (u8, Option<&'static str>)>| match e {
                    Either::Left(s) => s.0,
                    Either::Right(c) => c.0,
                },
            ),
            Arc::new(|c: Change| c.1.map(str::to_string)),
        )
    }

    fn feed(op: &mut Op, items: Vec<Either<(u8, u32), Change>>) -> Vec<(u32, Option<String>)> {
        let mut out = Collector::default();
        let batch = items
            .into_iter()
            .map(|v| Record::new(v, EventTime(0)))
            .collect();
        op.process(batch, &mut out).unwrap();
        out.take()
            .0
            .into_iter()
            .map(|r| (r.value.0 .1, r.value.1))
            .collect()
    }

    #[test]
    fn a_stream_element_sees_the_latest_value_and_deletes_remove_it() {
        let mut op = op().left();
        let got = feed(
            &mut op,
            vec![
                Either::Left((1, 10)),
                Either::Right((1, Some("a"))),
                Either::Left((1, 11)),
                Either::Right((1, Some("b"))),
                Either::Left((1, 12)),
                Either::Right((1, None)),
                Either::Left((1, 13)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (10, None),
                (11, Some("a".into())),
                (12, Some("b".into())),
                (13, None)
            ]
        );
    }

    #[test]
    fn inner_mode_drops_unmatched_and_the_table_survives_a_checkpoint() {
        let mut op = op();
        feed(&mut op, vec![Either::Right((2, Some("x")))]);
        let snap = op.snapshot().unwrap().unwrap();
        let mut restored = self::op();
        restored.restore(&snap).unwrap();
        let got = feed(
            &mut restored,
            vec![Either::Left((1, 1)), Either::Left((2, 2))],
        );
        assert_eq!(got, vec![(2, Some("x".into()))]);
    }
}
