//! Stateless operators: map, filter, flat_map, filter_map, inspect, decode.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use watershed_core::{Collector, DeadLetter, FnOperator, Record, Stream};

/// Stateless transforms on any [`Stream`]. Each runs as one task that handles whole batches.
pub trait StreamOps<T: Send + 'static>: Sized {
    /// Transforms each value, keeping key, time, headers and origin.
    fn map<U, F>(self, f: F) -> Stream<U>
    where
        U: Send + 'static,
        F: FnMut(T) -> U + Send + 'static;

    /// Keeps the values for which `f` is true.
    fn filter<F>(self, f: F) -> Stream<T>
    where
        F: FnMut(&T) -> bool + Send + 'static;

    /// Transforms and filters in one step.
    fn filter_map<U, F>(self, f: F) -> Stream<U>
    where
        U: Send + 'static,
        F: FnMut(T) -> Option<U> + Send + 'static;

    /// Turns each value into zero or more values with the same metadata.
    fn flat_map<U, I, F>(self, f: F) -> Stream<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U>,
        F: FnMut(T) -> I + Send + 'static;

    /// Looks at each record without changing it (logging, metrics).
    fn inspect<F>(self, f: F) -> Stream<T>
    where
        F: FnMut(&Record<T>) + Send + 'static;
}

impl<T: Send + 'static> StreamOps<T> for Stream<T> {
    fn map<U, F>(self, mut f: F) -> Stream<U>
    where
        U: Send + 'static,
        F: FnMut(T) -> U + Send + 'static,
    {
        let name = self.auto_name("map");
        self.apply(
            &name,
            FnOperator::new(move |batch: Vec<Record<T>>, out: &mut Collector<U>| {
                // Collecting a Vec from its own into_iter reuses the allocation in place.
                out.emit_batch(batch.into_iter().map(|r| r.map(&mut f)).collect());
            }),
        )
    }

    fn filter<F>(self, mut f: F) -> Stream<T>
    where
        F: FnMut(&T) -> bool + Send + 'static,
    {
        let name = self.auto_name("filter");
        self.apply(
            &name,
            FnOperator::new(move |batch: Vec<Record<T>>, out: &mut Collector<T>| {
                let mut batch = batch;
                batch.retain(|r| f(&r.value));
                out.emit_batch(batch);
            }),
        )
    }

    fn filter_map<U, F>(self, mut f: F) -> Stream<U>
    where
        U: Send + 'static,
        F: FnMut(T) -> Option<U> + Send + 'static,
    {
        let name = self.auto_name("filter-map");
        self.apply(
            &name,
            FnOperator::new(move |batch: Vec<Record<T>>, out: &mut Collector<U>| {
                for r in batch {
                    let Record {
                        value,
                        key,
                        timestamp,
                        headers,
                        origin,
                    } = r;
                    if let Some(value) = f(value) {
                        out.emit(Record {
                            value,
                            key,
                            timestamp,
                            headers,
                            origin,
                        });
                    }
                }
            }),
        )
    }

    fn flat_map<U, I, F>(self, mut f: F) -> Stream<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U>,
        F: FnMut(T) -> I + Send + 'static,
    {
        let name = self.auto_name("flat-map");
        self.apply(
            &name,
            FnOperator::new(move |batch: Vec<Record<T>>, out: &mut Collector<U>| {
                for r in batch {
                    let meta = r.with_value(());
                    for v in f(r.value) {
                        out.emit(meta.with_value(v));
                    }
                }
            }),
        )
    }

    fn inspect<F>(self, mut f: F) -> Stream<T>
    where
        F: FnMut(&Record<T>) + Send + 'static,
    {
        let name = self.auto_name("inspect");
        self.apply(
            &name,
            FnOperator::new(move |batch: Vec<Record<T>>, out: &mut Collector<T>| {
                batch.iter().for_each(&mut f);
                out.emit_batch(batch);
            }),
        )
    }
}

/// Decoding of raw payloads read from brokers and files.
pub trait DecodeOps: Sized {
    /// Decodes JSON payloads into `T`. A payload that does not decode is rejected with the serde
    /// error as its reason and its original bytes, so it reaches the pipeline's error path
    /// (dead-letter sink, skip or fail) instead of stopping or panicking the pipeline.
    fn decode_json<T>(self) -> Stream<T>
    where
        T: DeserializeOwned + Send + 'static;
}

impl DecodeOps for Stream<Bytes> {
    fn decode_json<T>(self) -> Stream<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let name = self.auto_name("decode-json");
        self.apply(
            &name,
            FnOperator::new(move |batch: Vec<Record<Bytes>>, out: &mut Collector<T>| {
                for r in batch {
                    match serde_json::from_slice::<T>(&r.value) {
                        Ok(v) => out.emit(r.map(|_| v)),
                        Err(e) => out.reject(
                            DeadLetter::new(format!("invalid JSON: {e}"), r.value.clone())
                                .at(r.origin.clone(), r.timestamp),
                        ),
                    }
                }
            }),
        )
    }
}
