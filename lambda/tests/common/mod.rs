//! Kinesis events as Lambda sends them, built from records, and targets that fail on cue.
#![allow(dead_code)] // each test file uses part of it

use base64::Engine;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use watershed_core::Record;
use watershed_lambda::{DeliveryFailure, Target};

/// The sequence number of record `i` of a shard: 56 digits, as Kinesis hands them out.
pub fn sequence(i: usize) -> String {
    format!(
        "4959033827149025660855969253836157109592157598913{:07}",
        i * 10 + 2
    )
}

/// One record of an event, as the event source mapping writes it.
pub fn record(shard: &str, i: usize, key: &str, data: &[u8], arrival_secs: f64) -> Value {
    let seq = sequence(i);
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": key,
            "sequenceNumber": seq,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": arrival_secs
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard}:{seq}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
    })
}

/// An event of `payloads` on one shard, record `i` at sequence `sequence(i)`, one second apart.
pub fn event(shard: &str, payloads: &[Vec<u8>]) -> Value {
    let records: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            record(
                shard,
                i,
                &format!("key-{}", i % 3),
                p,
                1_700_000_000.0 + i as f64,
            )
        })
        .collect();
    json!({ "Records": records })
}

/// A target that keeps what it delivers and fails once at each of the given positions
/// (counted over everything it was ever asked to deliver), having delivered what came before.
pub struct Flaky<T> {
    pub delivered: Arc<Mutex<Vec<Record<T>>>>,
    fail_at: Vec<usize>,
    attempted: usize,
}

impl<T> Flaky<T> {
    pub fn failing_at(fail_at: &[usize]) -> (Self, Arc<Mutex<Vec<Record<T>>>>) {
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let target = Flaky {
            delivered: delivered.clone(),
            fail_at: fail_at.to_vec(),
            attempted: 0,
        };
        (target, delivered)
    }
}

#[async_trait::async_trait]
impl<T: Send> Target<T> for Flaky<T> {
    async fn deliver(
        &mut self,
        _batch: &str,
        records: Vec<Record<T>>,
    ) -> Result<(), DeliveryFailure> {
        for (i, r) in records.into_iter().enumerate() {
            if let Some(pos) = self.fail_at.iter().position(|&k| k == self.attempted) {
                self.fail_at.remove(pos);
                self.attempted += 1;
                return Err(DeliveryFailure {
                    delivered: i,
                    error: "injected failure".into(),
                });
            }
            self.attempted += 1;
            self.delivered.lock().unwrap().push(r);
        }
        Ok(())
    }
}
