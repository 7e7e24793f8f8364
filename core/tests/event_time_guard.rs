//! One record from a producer with a wrong clock must not move event time for everyone.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;

/// Passes records on and counts those that arrive behind the watermark (late: a window
/// operator would drop them).
struct LateCounter {
    watermark: EventTime,
    late: Arc<Mutex<u64>>,
}

impl Operator for LateCounter {
    type In = Bytes;
    type Out = Bytes;

    fn process(
        &mut self,
        batch: Batch<Bytes>,
        out: &mut Collector<Bytes>,
    ) -> std::result::Result<(), BoxError> {
        let late = batch
            .iter()
            .filter(|r| r.timestamp <= self.watermark)
            .count();
        *self.late.lock().unwrap() += late as u64;
        out.emit_batch(batch);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTime,
        _: &mut Collector<Bytes>,
    ) -> std::result::Result<(), BoxError> {
        self.watermark = watermark;
        Ok(())
    }
}

/// 2,000 records one millisecond apart from now on; record 100 claims to be two hours ahead.
fn clicks(now: i64) -> GeneratorSource<Bytes> {
    GeneratorSource::new(1, 2_000, move |_, i| {
        let ts = if i == 100 {
            now + 2 * 3_600_000
        } else {
            now + i as i64
        };
        Record::new(Bytes::from(format!("{{\"n\":{i}}}")), EventTime(ts))
    })
    .batch_size(10)
}

async fn run(strategy: WatermarkStrategy<Bytes>) -> (u64, Vec<DeadLetter>, usize) {
    let late = Arc::new(Mutex::new(0));
    let p = Pipeline::new(
        PipelineConfig::new("future")
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    let out = CollectSink::new();
    let dead = CollectSink::<DeadLetter>::new();
    let now = EventTime::now().millis();
    p.source("clicks", clicks(now), strategy)
        .apply(
            "late",
            LateCounter {
                watermark: EventTime::MIN,
                late: late.clone(),
            },
        )
        .sink("out", out.clone());
    p.dead_letter("dead", dead.clone());
    p.run().await.expect("runs");
    let late = *late.lock().unwrap();
    (late, dead.values(), out.values().len())
}

/// Rule: with `reject_future(bound)`, a record stamped further ahead of the wall clock than
/// the bound goes to the dead letters with its bytes and reason instead of moving the
/// watermark, so none of the valid records after it is late.
#[tokio::test]
async fn a_record_too_far_ahead_is_refused_and_does_not_make_the_valid_ones_late() {
    let strategy = WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(5))
        .reject_future(Duration::from_secs(3_600));
    let (late, dead, out) = run(strategy).await;
    assert_eq!(late, 0, "no valid record is late");
    assert_eq!(out, 1_999);
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].payload[..], b"{\"n\":100}");
    assert!(
        dead[0].reason.contains("ahead of processing time"),
        "{}",
        dead[0].reason
    );
}

/// The same input without the guard: the one record moves event time two hours ahead and
/// every later record is late — what the guard is for.
#[tokio::test]
async fn without_the_guard_one_record_ahead_makes_every_later_one_late() {
    let strategy = WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(5));
    let (late, dead, out) = run(strategy).await;
    assert!(late >= 1_800, "{late} late");
    assert!(dead.is_empty());
    assert_eq!(out, 2_000);
}
