//! Keyed window state goes into checkpoints whatever the key type.

use std::time::Duration;
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_operators::{prelude::*, Count, WindowResult};

/// Rule: a key that is not a string or a number (a tuple, the unit type) survives a
/// checkpoint of open windows: JSON object keys would have to be strings, so state is stored as
/// key–value pairs.
#[tokio::test]
async fn windows_with_tuple_and_unit_keys_checkpoint_and_finish() {
    let p = Pipeline::new(
        PipelineConfig::new("tuple-keys")
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_millis(2))
            .handle_signals(false),
    );
    let source = || {
        GeneratorSource::new(1, 3_000, |_, i| Record::new(i, EventTime(i as i64)))
            .batch_size(16)
            .rate(100_000.0)
    };
    let tuples = CollectSink::<WindowResult<(u64, String), u64>>::new();
    let units = CollectSink::<WindowResult<(), u64>>::new();
    p.source("a", source(), WatermarkStrategy::monotonous())
        .key_by(|v: &u64| (v % 3, "x".to_string()))
        .window(TumblingWindows::of(Duration::from_millis(100)))
        .aggregate(Count)
        .sink("tuples", tuples.clone());
    p.source("b", source(), WatermarkStrategy::monotonous())
        .key_by(|_: &u64| ())
        .window(TumblingWindows::of(Duration::from_millis(100)))
        .aggregate(Count)
        .sink("units", units.clone());
    let summary = p.run().await.unwrap();
    assert!(summary.checkpoints > 2, "open windows were checkpointed");
    assert_eq!(tuples.values().iter().map(|r| r.value).sum::<u64>(), 3_000);
    assert_eq!(units.values().iter().map(|r| r.value).sum::<u64>(), 3_000);
}
