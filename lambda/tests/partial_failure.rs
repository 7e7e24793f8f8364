//! Partial batch responses: what a failing target makes the handler answer, and what a replay
//! from that answer delivers.

mod common;

use bytes::Bytes;
use common::{event, sequence, Flaky};
use proptest::prelude::*;
use std::time::Duration;
use watershed_core::{DeadLetter, Stream, TumblingWindows};
use watershed_lambda::{InputBatch, KinesisHandler, MemoryTarget};
use watershed_operators::{prelude::*, Count};

fn numbers(raw: Stream<Bytes>) -> Stream<u64> {
    raw.decode_json::<u64>()
}

fn payloads(n: usize, bad_every: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if bad_every > 0 && i % bad_every == bad_every - 1 {
                format!("{{\"broken\":{i}").into_bytes()
            } else {
                i.to_string().into_bytes()
            }
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Rule: when the target fails on the k-th output, the response names exactly the record that
/// produced it, and only the outputs before it were delivered.
#[tokio::test]
async fn a_target_failing_on_the_kth_record_is_answered_with_that_records_sequence_number() {
    let (target, delivered) = Flaky::failing_at(&[4]);
    let handler = KinesisHandler::builder("t", numbers, target).build();
    let response = handler
        .handle(&event("shardId-000000000001", &payloads(10, 0)))
        .await
        .unwrap();
    let named: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(named, [sequence(4)]);
    let values: Vec<u64> = delivered.lock().unwrap().iter().map(|r| r.value).collect();
    assert_eq!(values, [0, 1, 2, 3]);
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], sequence(4));
}

/// Rule: an undecodable record goes to the dead letters with its reason and origin, and the
/// records after it are delivered: it does not block the shard.
#[tokio::test]
async fn undecodable_records_go_to_the_dead_letters_and_do_not_block_the_shard() {
    let outputs = MemoryTarget::new();
    let letters = MemoryTarget::<DeadLetter>::new();
    let handler = KinesisHandler::builder("t", numbers, outputs.clone())
        .dead_letters(letters.clone())
        .build();
    let response = handler
        .handle(&event("shardId-000000000001", &payloads(9, 3)))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let values: Vec<u64> = outputs.records().iter().map(|r| r.value).collect();
    assert_eq!(values, [0, 1, 3, 4, 6, 7]);
    let letters = letters.records();
    assert_eq!(letters.len(), 3);
    let first = &letters[0].value;
    assert!(
        first.reason.contains("invalid JSON"),
        "reason: {}",
        first.reason
    );
    assert_eq!(first.payload, Bytes::from("{\"broken\":2"));
    let origin = first.origin.as_ref().expect("origin");
    assert_eq!(origin.split().as_str(), "shardId-000000000001");
    assert_eq!(
        origin.to_string(),
        format!("clicks/shardId-000000000001@{}/0", sequence(2))
    );
}

/// Rule: with records of two shards in one event, each shard is answered with its own first
/// record not delivered, and a shard whose records all came before the failure is not named.
#[tokio::test]
async fn each_shard_is_answered_with_its_own_first_undelivered_record() {
    let mut a = event("shardId-a", &payloads(3, 0))["Records"]
        .as_array()
        .unwrap()
        .clone();
    let b = event("shardId-b", &payloads(3, 0))["Records"]
        .as_array()
        .unwrap()
        .clone();
    // a0 b0 a1 b1 a2 b2; the target fails on the 4th output (b1).
    let mixed: Vec<_> = a.drain(..).zip(b).flat_map(|(x, y)| [x, y]).collect();
    let (target, _) = Flaky::failing_at(&[3]);
    let handler = KinesisHandler::builder("t", numbers, target).build();
    let response = handler
        .handle(&serde_json::json!({ "Records": mixed }))
        .await
        .unwrap();
    let named: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        named,
        [sequence(1), sequence(2)],
        "b1 for shard b, a2 for shard a"
    );
}

/// Rule: an output without an origin (an aggregate over the batch) fails the whole batch: the
/// response names the first record, since a retry from a later one would leave records out.
#[tokio::test]
async fn a_failing_aggregate_over_the_batch_is_retried_from_the_first_record() {
    let count = |raw: Stream<Bytes>| {
        numbers(raw)
            .key_by(|_: &u64| ())
            .window(TumblingWindows::of(Duration::from_secs(3600)))
            .aggregate(Count)
            .map(|r| r.value)
    };
    let (target, _) = Flaky::failing_at(&[0]);
    let handler = KinesisHandler::builder("t", count, target).build();
    let response = handler
        .handle(&event("shardId-0", &payloads(5, 0)))
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures[0].item_identifier, sequence(0));
}

/// Replays `payloads` as Lambda does: after a partial failure, the records from the named one
/// on. Returns the outputs and dead letters delivered in total, and the invocations it took.
async fn replay(
    payloads: &[Vec<u8>],
    out_fail: &[usize],
    dl_fail: &[usize],
) -> (Vec<u64>, Vec<String>, usize) {
    let (outputs, delivered) = Flaky::failing_at(out_fail);
    let (letters, dead) = Flaky::<DeadLetter>::failing_at(dl_fail);
    let handler = KinesisHandler::builder("t", numbers, outputs)
        .dead_letters(letters)
        .build();
    let mut batch = InputBatch::from_json(&event("shardId-000000000007", payloads)).unwrap();
    let mut invocations = 0;
    loop {
        invocations += 1;
        assert!(invocations <= 10, "no progress");
        let response = handler.handle_batch(&batch).await.unwrap();
        let Some(failure) = response.batch_item_failures.first() else {
            break;
        };
        let shard = batch.records()[0].shard.clone();
        let at = batch
            .position_of(&shard, &failure.item_identifier)
            .expect("a record of the batch");
        batch = batch.suffix(at);
    }
    let values = delivered.lock().unwrap().iter().map(|r| r.value).collect();
    let dead = dead
        .lock()
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value.payload).into_owned())
        .collect();
    (values, dead, invocations)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    /// Rule: replaying from the reported failure delivers every record exactly once in total,
    /// whichever output (or dead letter) fails and however large the batch.
    #[test]
    fn replaying_from_the_reported_failure_delivers_every_record_exactly_once(
        n in 1usize..60,
        k in 0usize..60,
        second in proptest::option::of(0usize..60),
        bad_every in prop_oneof![Just(0usize), 2usize..7],
        fail_dead_letters in any::<bool>(),
    ) {
        let input = payloads(n, bad_every);
        let fails: Vec<usize> = std::iter::once(k).chain(second).collect();
        let (out_fail, dl_fail) = if fail_dead_letters { (vec![], fails) } else { (fails, vec![]) };
        let (values, dead, _) = runtime().block_on(replay(&input, &out_fail, &dl_fail));
        let good: Vec<u64> = (0..n).filter(|i| bad_every == 0 || i % bad_every != bad_every - 1).map(|i| i as u64).collect();
        let bad: Vec<String> = input.iter().filter(|p| p.starts_with(b"{")).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        prop_assert_eq!(values, good);
        prop_assert_eq!(dead, bad);
    }
}

/// Rule: a failure at the k-th output takes exactly one more invocation, which starts at the
/// failed record (the replay does not start over).
#[tokio::test]
async fn a_single_failure_costs_one_more_invocation_starting_at_the_failed_record() {
    let (values, _, invocations) = replay(&payloads(20, 0), &[7], &[]).await;
    assert_eq!(invocations, 2);
    assert_eq!(values, (0..20).collect::<Vec<u64>>());
}

/// A target that refuses every record whose value is `refused`, having delivered those before.
struct Refusing {
    refused: u64,
    delivered: MemoryTarget<u64>,
}

#[async_trait::async_trait]
impl watershed_lambda::Target<u64> for Refusing {
    async fn deliver(
        &mut self,
        batch_id: &str,
        records: Vec<watershed_core::Record<u64>>,
    ) -> Result<(), watershed_lambda::DeliveryFailure> {
        let ok = records
            .iter()
            .position(|r| r.value == self.refused)
            .unwrap_or(records.len());
        let failed = ok < records.len();
        let mut delivered = self.delivered.clone();
        let records: Vec<_> = records.into_iter().take(ok).collect();
        watershed_lambda::Target::deliver(&mut delivered, batch_id, records)
            .await
            .unwrap();
        if failed {
            return Err(watershed_lambda::DeliveryFailure {
                delivered: ok,
                error: format!("destination refused {}", self.refused).into(),
            });
        }
        Ok(())
    }
}

/// Rule: with `.on_failure(target, 3)`, a record whose outputs fail to be delivered is named
/// as the batch item failure twice; on the third failed attempt the handler sends the
/// description of the records from it on (shard, first and last sequence number, the error,
/// the attempts; Lambda's on-failure record shape) to the on-failure target and answers with
/// no failures, so the shard moves on. Nothing before the record is delivered twice.
#[tokio::test]
async fn a_record_that_keeps_failing_to_deliver_is_given_up_after_n_attempts() {
    let delivered = MemoryTarget::<u64>::new();
    let given_up = MemoryTarget::<watershed_lambda::FailedBatch>::new();
    let handler = KinesisHandler::builder(
        "t",
        numbers,
        Refusing {
            refused: 3,
            delivered: delivered.clone(),
        },
    )
    .on_failure(given_up.clone(), 3)
    .build();
    let batch = InputBatch::from_json(&event("shardId-000000000007", &payloads(6, 0))).unwrap();
    let first = handler.handle_batch(&batch).await.unwrap();
    let named: Vec<&str> = first
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(named, [sequence(3)]);
    let retry = batch.suffix(3);
    let second = handler.handle_batch(&retry).await.unwrap();
    assert_eq!(second, first, "the second attempt fails the same way");
    assert!(
        given_up.records().is_empty(),
        "not given up before 3 attempts"
    );
    let third = handler.handle_batch(&retry).await.unwrap();
    assert!(third.batch_item_failures.is_empty(), "{third:?}");

    let values: Vec<u64> = delivered.records().iter().map(|r| r.value).collect();
    assert_eq!(values, [0, 1, 2]);
    let failed = given_up.records();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let f = &failed[0].value;
    assert_eq!(f.shard, "shardId-000000000007");
    assert_eq!(
        (f.start_sequence.as_str(), f.end_sequence.as_str()),
        (sequence(3).as_str(), sequence(5).as_str())
    );
    assert_eq!((f.batch_size, f.attempts), (3, 3));
    assert_eq!(f.cause, watershed_lambda::FailureCause::Delivery);
    assert!(f.error.contains("destination refused 3"), "{}", f.error);
    let json = f.to_json();
    assert_eq!(json["KinesisBatchInfo"]["shardId"], "shardId-000000000007");
    assert_eq!(json["KinesisBatchInfo"]["startSequenceNumber"], sequence(3));
    assert_eq!(json["KinesisBatchInfo"]["endSequenceNumber"], sequence(5));
    assert_eq!(json["KinesisBatchInfo"]["batchSize"], 3);
    assert_eq!(json["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(json["responseContext"]["functionError"], "DeliveryFailed");

    // The count starts over for a record that fails later.
    let again = handler.handle_batch(&retry).await.unwrap();
    assert_eq!(again, first);
}

/// Rule: a function that keeps failing on a batch fails the invocation until the limit; then
/// the whole batch is described to the on-failure target and the invocation succeeds. When
/// the on-failure target fails as well, the invocation still fails (Lambda retries).
#[tokio::test]
async fn a_batch_the_function_keeps_failing_on_is_given_up_after_n_attempts() {
    let given_up = MemoryTarget::<watershed_lambda::FailedBatch>::new();
    let handler = KinesisHandler::builder(
        "t",
        |raw: Stream<Bytes>| {
            raw.map(|b: Bytes| {
                assert!(b.len() < 3, "a record the function cannot handle");
                b.len() as u64
            })
        },
        MemoryTarget::new(),
    )
    .on_failure(given_up.clone(), 2)
    .build();
    let payload = event("shardId-000000000008", &[b"1".to_vec(), b"1234".to_vec()]);
    assert!(handler.handle(&payload).await.is_err());
    assert!(given_up.records().is_empty());
    let second = handler.handle(&payload).await.unwrap();
    assert!(second.batch_item_failures.is_empty());
    let failed = given_up.records();
    assert_eq!(failed.len(), 1);
    let f = &failed[0].value;
    assert_eq!(
        (
            f.start_sequence.as_str(),
            f.end_sequence.as_str(),
            f.batch_size
        ),
        (sequence(0).as_str(), sequence(1).as_str(), 2)
    );
    assert_eq!(f.cause, watershed_lambda::FailureCause::Processing);
    assert!(f.error.contains("shardId-000000000008"), "{}", f.error);

    let (broken, _) = Flaky::<watershed_lambda::FailedBatch>::failing_at(&[0]);
    let handler = KinesisHandler::builder(
        "t",
        |raw: Stream<Bytes>| raw.map(|b: Bytes| -> u64 { panic!("never: {}", b.len()) }),
        MemoryTarget::new(),
    )
    .on_failure(broken, 1)
    .build();
    assert!(
        handler.handle(&payload).await.is_err(),
        "the on-failure target failed: the invocation fails"
    );
}
