//! What one invocation costs through the core runtime, per batch size: the fixed cost of a
//! pipeline per batch and the cost per record (decoding included).
//!
//! `cargo bench -p watershed-lambda --bench invocation`

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::Flaky;
use std::time::Instant;
use watershed_core::Stream;
use watershed_lambda::KinesisHandler;
use watershed_operators::prelude::*;

fn numbers(raw: Stream<Bytes>) -> Stream<u64> {
    raw.decode_json::<u64>()
}

#[tokio::main]
async fn main() {
    for n in [1usize, 100, 1_000, 10_000] {
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| i.to_string().into_bytes()).collect();
        let event = common::event("shardId-0", &payloads);
        let (target, _) = Flaky::<u64>::failing_at(&[]);
        let handler = KinesisHandler::builder("bench", numbers, target).build();
        handler.handle(&event).await.unwrap();
        let runs = 20;
        let start = Instant::now();
        for _ in 0..runs {
            handler.handle(&event).await.unwrap();
        }
        let per = start.elapsed() / runs;
        println!(
            "BENCH lambda_invocation records={n} per_invocation_us={} per_record_us={:.2}",
            per.as_micros(),
            per.as_secs_f64() * 1e6 / n as f64
        );
    }
}
