//! Liveness of pipelines with a Kafka source, against a real Apache Kafka broker: a failing
//! pipeline stops promptly, an idle source wakes when records arrive, and a back-pressured one
//! keeps its partitions. Start one with `scripts/brokers up` (or run everything with
//! `scripts/test.sh`).

mod common;

use common::*;

use bytes::Bytes;
use std::time::{Duration, Instant};
use watershed_core::connectors::CollectSink;
use watershed_core::*;
use watershed_source_kafka::KafkaSource;

/// Rule: a pipeline that fails stops promptly, even with a Kafka source whose consumer is in a
/// group (dropping a subscribed consumer must not block the shutdown).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_failing_pipeline_with_a_kafka_source_stops_promptly() {
    let topic = topic_with(
        "ws-fail",
        3,
        (0..100u64).map(|i| (format!("k{i}"), format!("v{i}").into_bytes())),
    )
    .await;
    let p = Pipeline::new(config(&unique("fail"), &CheckpointStore::memory()));
    let source = source_on(&topic);
    p.source("kafka", source, WatermarkStrategy::none())
        .apply(
            "boom",
            FnOperator::new(|b: Batch<Bytes>, out: &mut Collector<Bytes>| {
                out.reject(DeadLetter::new("injected failure", Bytes::new()));
                out.emit_batch(b);
            }),
        )
        .sink("out", CollectSink::new());
    let result = tokio::time::timeout(Duration::from_secs(20), p.run()).await;
    let result = result.expect("the failed pipeline did not stop within 20 s");
    assert!(matches!(result, Err(Error::Record { .. })), "{result:?}");
}

/// Rule: a source with nothing to read is woken by librdkafka when records arrive, not by its
/// poll deadline; also on a current-thread runtime, where it must not block the thread.
#[tokio::test]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn an_idle_source_wakes_when_records_arrive_not_at_its_poll_deadline() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let topic = unique("ws-wake");
    create_topic(&topic, 1).await;
    let poll_deadline = Duration::from_secs(30);
    let p = Pipeline::new(
        PipelineConfig::new(unique("wake"))
            .checkpoint_store(CheckpointStore::memory())
            .without_periodic_checkpoints()
            .max_poll_wait(poll_deadline)
            .handle_signals(false),
    );
    let seen = Arc::new(AtomicU64::new(0));
    let count = seen.clone();
    let source = source_on(&topic);
    p.source("kafka", source, WatermarkStrategy::none())
        .apply(
            "count",
            FnOperator::new(move |b: Batch<Bytes>, out: &mut Collector<Bytes>| {
                count.fetch_add(b.len() as u64, Ordering::Relaxed);
                out.emit_batch(b);
            }),
        )
        .sink("out", CollectSink::new());
    let run = tokio::spawn(p.run());
    let wait_for = |n: u64, limit: Duration| {
        let seen = seen.clone();
        async move {
            let started = Instant::now();
            while seen.load(Ordering::Relaxed) < n && started.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            started.elapsed()
        }
    };
    let send = |value: &'static str| {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || produce(&topic, [("k".into(), value.into())]))
    };
    send("first").await.unwrap();
    wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(
        seen.load(Ordering::Relaxed),
        1,
        "the first record never arrived"
    );
    // The source has read everything and waits in `poll`, up to its 30 s deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    send("second").await.unwrap();
    let took = wait_for(2, poll_deadline + Duration::from_secs(5)).await;
    assert_eq!(
        seen.load(Ordering::Relaxed),
        2,
        "the second record never arrived"
    );
    assert!(
        took < Duration::from_secs(10),
        "the second record took {took:?}: the source waited for its poll deadline ({poll_deadline:?})"
    );
    run.abort();
}

/// A sink that stalls on its first write: back-pressure for the whole pipeline.
struct Stalling<S> {
    inner: S,
    stall: Option<Duration>,
}

#[async_trait]
impl<S: Sink> Sink for Stalling<S> {
    type Item = S::Item;
    type Handle = S::Handle;
    async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
        self.inner.open(ctx).await
    }
    async fn write(&mut self, batch: Batch<S::Item>) -> Result<(), BoxError> {
        if let Some(stall) = self.stall.take() {
            tokio::time::sleep(stall).await;
        }
        self.inner.write(batch).await
    }
    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<S::Handle, BoxError> {
        self.inner.pre_commit(checkpoint).await
    }
    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: S::Handle,
    ) -> Result<(), BoxError> {
        self.inner.commit(checkpoint, handle).await
    }
    async fn abort(&mut self) -> Result<(), BoxError> {
        self.inner.abort().await
    }
    async fn close(&mut self) -> Result<(), BoxError> {
        self.inner.close().await
    }
}

/// Rule (K5, liveness): a pipeline back-pressured for longer than `max.poll.interval.ms` keeps
/// its consumer in the group (the source pauses its partitions and a thread of its own keeps
/// polling), so when it catches up nothing is read twice. Put out of the group, the source
/// would lose its partitions and read them again from the last commit.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_pipeline_stalled_longer_than_the_poll_interval_keeps_its_partitions() {
    const N: usize = 20_000;
    let topic = topic_with(
        "ws-stall",
        2,
        (0..N).map(|i| (format!("k{i}"), format!("v:{i}").into_bytes())),
    )
    .await;
    let p = Pipeline::new(config(&unique("stall"), &CheckpointStore::memory()));
    let source = KafkaSource::builder(brokers(), unique("group"))
        .topic(&topic)
        // The smallest interval the broker's session-timeout bounds allow.
        .property("max.poll.interval.ms", "8000")
        .property("session.timeout.ms", "6000")
        .batch_size(100)
        .build()
        .unwrap();
    let out = CollectSink::new();
    p.source("kafka", source, WatermarkStrategy::none()).sink(
        "out",
        Stalling {
            inner: out.clone(),
            stall: Some(Duration::from_secs(20)),
        },
    );
    let seen = out.clone();
    run_until(p, Duration::from_secs(120), move || {
        seen.values().len() >= N
    })
    .await;
    let values = out.values();
    let distinct: std::collections::HashSet<_> = values.iter().cloned().collect();
    assert_eq!(distinct.len(), N, "records lost");
    assert_eq!(
        values.len(),
        N,
        "records read twice: the consumer was put out of its group while the pipeline stalled"
    );
}
