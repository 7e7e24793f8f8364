//! Watermark alignment through real pipelines: where a fast and a slow source meet, records of
//! the fast one never arrive further ahead of the combined watermark than the configured drift
//! plus one channel of batches, so a join or window after the union holds state for that span
//! only, however long the input.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;

/// 20 s of event time from each side: the fast side one record per ms in batches of 100 ms,
/// unthrottled; the slow side one record per 10 ms in batches of 100 ms, at 2,000 records/s
/// (one second of wall time for all of it).
const SPAN_MS: u64 = 20_000;
const BATCH_MS: i64 = 100;
const CHANNEL_BATCHES: usize = 8;

fn fast() -> GeneratorSource<u64> {
    GeneratorSource::new(1, SPAN_MS, |_, i| Record::new(i, EventTime(i as i64))).batch_size(100)
}

fn slow() -> GeneratorSource<u64> {
    GeneratorSource::new(1, SPAN_MS / 10, |_, i| {
        Record::new(1_000_000 + i, EventTime(10 * i as i64))
    })
    .batch_size(10)
    .rate(2_000.0)
}

/// Records how far ahead of the watermark it has seen so far each record arrives.
struct Lead {
    watermark: EventTime,
    max_lead: Arc<Mutex<i64>>,
}

impl Operator for Lead {
    type In = u64;
    type Out = u64;

    fn process(&mut self, batch: Batch<u64>, out: &mut Collector<u64>) -> Result<(), BoxError> {
        if self.watermark > EventTime::MIN {
            let ahead = batch.iter().map(|r| r.timestamp.0 - self.watermark.0).max();
            let mut max = self.max_lead.lock().expect("lead lock");
            *max = (*max).max(ahead.unwrap_or(0));
        }
        out.emit_batch(batch);
        Ok(())
    }

    fn on_watermark(&mut self, w: EventTime, _: &mut Collector<u64>) -> Result<(), BoxError> {
        self.watermark = w;
        Ok(())
    }
}

/// Runs fast ∪ slow → Lead → collect; returns the largest lead seen and the record count.
async fn largest_lead(alignment: Option<Duration>) -> (i64, usize) {
    let mut config = PipelineConfig::new("alignment")
        .checkpoint_store(CheckpointStore::memory())
        .checkpoint_interval(Duration::from_millis(50))
        .channel_capacity(CHANNEL_BATCHES)
        .handle_signals(false);
    if let Some(drift) = alignment {
        config = config.watermark_alignment(drift);
    }
    let p = Pipeline::new(config);
    let a = p.source("fast", fast(), WatermarkStrategy::monotonous());
    let b = p.source("slow", slow(), WatermarkStrategy::monotonous());
    let max_lead = Arc::new(Mutex::new(i64::MIN));
    let out = CollectSink::new();
    a.union(b)
        .apply(
            "lead",
            Lead {
                watermark: EventTime::MIN,
                max_lead: max_lead.clone(),
            },
        )
        .sink("out", out.clone());
    p.run().await.expect("pipeline runs");
    let lead = *max_lead.lock().expect("lead lock");
    eprintln!("largest lead {lead} ms (alignment {alignment:?})");
    (lead, out.values().len())
}

/// Rule: with `watermark_alignment(d)`, a record reaches the operator after the union at most
/// `d` plus one channel of batches ahead of the combined watermark, and nothing is lost. (Between
/// checkpoints the lead stays within `d` plus one batch; while a barrier is aligned, a held input
/// is read up to its barrier, at most a full channel further.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aligned_union_keeps_the_fast_input_within_the_drift_of_the_slow_one() {
    let drift = Duration::from_millis(500);
    let (lead, records) = largest_lead(Some(drift)).await;
    assert_eq!(
        records as u64,
        SPAN_MS + SPAN_MS / 10,
        "every record arrives"
    );
    let bound = 500 + (CHANNEL_BATCHES as i64 + 1) * BATCH_MS;
    assert!(
        lead <= bound,
        "a record arrived {lead} ms ahead of the watermark (bound {bound})"
    );
}

/// Rule: alignment is opt-in; without it the fast input runs as far ahead as it can (this is
/// what makes the aligned case above a real check: the same pipeline unaligned exceeds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaligned_union_lets_the_fast_input_run_ahead() {
    let (lead, records) = largest_lead(None).await;
    assert_eq!(records as u64, SPAN_MS + SPAN_MS / 10);
    assert!(
        lead > 5_000,
        "the unthrottled input should run seconds ahead (lead {lead} ms)"
    );
}
