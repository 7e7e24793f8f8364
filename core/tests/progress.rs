//! A source may move event time forward without a record (`SourceEvent::Progress`).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use watershed_core::connectors::CollectSink;
use watershed_core::*;

/// One record at 5, then progress to 100, then the end.
struct Marks {
    step: u32,
}

#[async_trait]
impl Source for Marks {
    type Item = u64;
    type Position = u32;

    async fn open(&mut self, _: Option<u32>) -> std::result::Result<(), BoxError> {
        Ok(())
    }

    async fn poll(&mut self, _: Duration) -> std::result::Result<SourceEvent<u64>, BoxError> {
        self.step += 1;
        let split = SplitId::new("only");
        Ok(match self.step {
            1 => SourceEvent::Batch {
                split,
                records: vec![Record::new(5, EventTime(5))],
            },
            2 => SourceEvent::Progress {
                split,
                time: EventTime(100),
            },
            _ => SourceEvent::Finished,
        })
    }

    fn position(&self) -> u32 {
        self.step
    }
}

/// Records every watermark it sees.
struct Watch(Arc<Mutex<Vec<EventTime>>>);

impl Operator for Watch {
    type In = u64;
    type Out = u64;

    fn process(
        &mut self,
        batch: Batch<u64>,
        out: &mut Collector<u64>,
    ) -> std::result::Result<(), BoxError> {
        out.emit_batch(batch);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        w: EventTime,
        _: &mut Collector<u64>,
    ) -> std::result::Result<(), BoxError> {
        self.0.lock().unwrap().push(w);
        Ok(())
    }
}

/// Rule: `Progress { split, time }` moves the split's watermark as a record at `time` would
/// (here, in order: to 99), before the end of input moves it to the maximum.
#[tokio::test]
async fn progress_moves_the_watermark_as_a_record_at_that_time_would() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let p = Pipeline::new(
        PipelineConfig::new("progress")
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    p.source("marks", Marks { step: 0 }, WatermarkStrategy::monotonous())
        .apply("watch", Watch(seen.clone()))
        .sink("out", CollectSink::new());
    p.run().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![EventTime(4), EventTime(99), EventTime::MAX]);
}
