//! Outputs through ordinary Watershed sinks: the S3 object sink over an in-memory store.

mod common;

use bytes::Bytes;
use common::record;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;
use std::sync::Arc;
use watershed_core::Stream;
use watershed_lambda::{KinesisHandler, SinkTarget};
use watershed_operators::prelude::*;
use watershed_sink_s3::S3Sink;

fn numbers(raw: Stream<Bytes>) -> Stream<u64> {
    raw.decode_json::<u64>()
}

fn s3_handler(store: Arc<InMemory>) -> KinesisHandler<u64> {
    let target = SinkTarget::new("numbers", "s3", move || {
        Ok(S3Sink::<u64>::s3(store.clone(), "out").build()?)
    });
    KinesisHandler::builder("numbers", numbers, target).build()
}

/// Every line of every object under `out/`, and the number of objects.
async fn lines(store: &InMemory) -> (Vec<u64>, usize) {
    let objects: Vec<_> = store.list(Some(&"out".into())).try_collect().await.unwrap();
    let mut values = Vec::new();
    for o in &objects {
        let body = store.get(&o.location).await.unwrap().bytes().await.unwrap();
        for line in String::from_utf8(body.to_vec()).unwrap().lines() {
            values.push(line.parse().unwrap());
        }
    }
    values.sort_unstable();
    (values, objects.len())
}

fn batch(shard: &str, seqs: &[usize]) -> serde_json::Value {
    let records: Vec<_> = seqs
        .iter()
        .map(|&i| {
            record(
                shard,
                i,
                &format!("user-{}", i % 2),
                i.to_string().as_bytes(),
                1.0 + i as f64,
            )
        })
        .collect();
    json!({ "Records": records })
}

/// Rule: a batch delivered again (Lambda retrying after a timeout, after the sink committed)
/// rewrites the same S3 objects: the output holds each record once.
#[tokio::test]
async fn a_retried_batch_rewrites_the_same_objects_instead_of_adding_copies() {
    let store = Arc::new(InMemory::new());
    let handler = s3_handler(store.clone());
    let event = batch("shardId-1", &[0, 1, 2, 3]);
    for _ in 0..2 {
        let response = handler.handle(&event).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    assert_eq!(lines(&store).await, (vec![0, 1, 2, 3], 1));
}

/// Rule: batches of one shard processed at the same time (ParallelizationFactor > 1, each with
/// its own partition keys) write separate objects, and each record lands once.
#[tokio::test]
async fn concurrent_batches_of_one_shard_write_separate_objects() {
    let store = Arc::new(InMemory::new());
    let (one, two) = (s3_handler(store.clone()), s3_handler(store.clone()));
    let (even, odd) = (
        batch("shardId-1", &[0, 2, 4]),
        batch("shardId-1", &[1, 3, 5]),
    );
    let (a, b) = tokio::join!(one.handle(&even), two.handle(&odd));
    assert!(a.unwrap().batch_item_failures.is_empty() && b.unwrap().batch_item_failures.is_empty());
    assert_eq!(lines(&store).await, (vec![0, 1, 2, 3, 4, 5], 2));
}
