//! [`S3Sink`]: its state, its life cycle (open, write, pre-commit, commit, abort), and its
//! metrics. The work is one concept per module: [`builder`](crate::builder) checks settings,
//! [`partition`](crate::partition) routes records to objects, [`buffer`](crate::buffer) encodes
//! and rotates them, [`upload`](crate::upload) sends their parts and
//! [`commit`](crate::commit) runs the two-phase commit.

use crate::buffer::Object;
use crate::builder::{CommitVia, Config, S3SinkBuilder};
use crate::commit::S3SinkHandle;
use crate::error::S3SinkError;
use crate::upload::PartDone;
use async_trait::async_trait;
use object_store::multipart::MultipartStore;
use object_store::ObjectStore;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::task::JoinSet;
use watershed_core::{Batch, BoxError, CheckpointId, Record, Sink, SinkContext};

/// The sink's metrics, labelled with its node.
pub(crate) struct Metrics {
    pub(crate) objects: metrics::Counter,
    pub(crate) bytes: metrics::Counter,
    pub(crate) upload_seconds: metrics::Histogram,
    pub(crate) buffered: metrics::Gauge,
    pub(crate) oldest_age: metrics::Gauge,
}

impl Metrics {
    pub(crate) fn new(node: &str) -> Self {
        let node = node.to_owned();
        Metrics {
            objects: metrics::counter!(crate::metric_catalogue::OBJECTS_COMMITTED, "node" => node.clone()),
            bytes: metrics::counter!(crate::metric_catalogue::BYTES_UPLOADED, "node" => node.clone()),
            upload_seconds: metrics::histogram!(crate::metric_catalogue::PART_UPLOAD_SECONDS, "node" => node.clone()),
            buffered: metrics::gauge!(crate::metric_catalogue::BUFFERED_BYTES, "node" => node.clone()),
            oldest_age: metrics::gauge!(crate::metric_catalogue::OLDEST_BUFFERED_RECORD_AGE, "node" => node),
        }
    }
}

/// Writes records as objects under a prefix of an object store (S3, a local directory, memory),
/// exactly once, with Firehose's buffering, compression, partitioning and error prefix.
///
/// - **Objects.** Records go to one open object per partition
///   (`<prefix>/<partition template>/<pipeline>-<node>-<epoch>-<seq><ext>`). An object is rolled
///   when it reaches [`max_object_bytes`](S3SinkBuilder::max_object_bytes) (before compression),
///   [`max_object_records`](S3SinkBuilder::max_object_records) or
///   [`max_object_span`](S3SinkBuilder::max_object_span) of record time, and at every checkpoint.
///   None of these reads the wall clock, and `epoch` (the checkpoint after which the object was
///   started) and `seq` (its rank among the epoch's objects) depend only on the records, so a
///   replay writes the same names and a re-commit overwrites nothing.
/// - **Exactly-once.** Compressed bytes are uploaded as parts whenever
///   [`part_size`](S3SinkBuilder::part_size) bytes are ready. `pre_commit` rolls every open
///   object and waits for its parts: the objects are durable but invisible (an uncompleted
///   multipart upload, or a staged object). `commit` makes them visible: it completes the upload
///   (or copies the staged object without overwriting); if the final key already exists — the
///   commit ran before a crash — it checks the object's length instead of failing.
/// - **Recovery.** The runtime re-commits the restored checkpoint's handles; staged objects of
///   later, never-completed epochs are deleted on open. Multipart uploads of those epochs are
///   never completed and stay invisible; object_store cannot list them, so a bucket lifecycle rule
///   (`AbortIncompleteMultipartUpload`, longer than the checkpoint retention) reclaims them.
pub struct S3Sink<T> {
    pub(crate) cfg: Arc<Config<T>>,
    pub(crate) pipeline: String,
    pub(crate) node: String,
    /// The epoch objects written now are named after: the last pre-committed (or restored)
    /// checkpoint + 1.
    pub(crate) epoch: u64,
    pub(crate) next_seq: u64,
    pub(crate) next_id: u64,
    /// Partition → id of its open object.
    pub(crate) open: HashMap<String, u64>,
    /// Every object of the current epoch, by id (= opening order).
    pub(crate) objects: BTreeMap<u64, Object>,
    pub(crate) uploads: JoinSet<PartDone>,
    /// The hour of the previous record and its open object, when the partition depends only
    /// on time; cleared when that object rolls.
    pub(crate) last_object: Option<(i64, u64)>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) metrics: Metrics,
}

impl<T: Serialize + Send + 'static> S3Sink<T> {
    /// A sink writing JSON lines of the record values under `prefix` of `store`, committing
    /// through staging keys (works with every store; for S3 prefer [`S3Sink::s3`]).
    pub fn builder(store: Arc<dyn ObjectStore>, prefix: &str) -> S3SinkBuilder<T> {
        S3SinkBuilder::with_encoder_fn(
            store,
            prefix,
            Arc::new(|r: &Record<T>, out: &mut Vec<u8>| {
                serde_json::to_writer(out, &r.value).map_err(Into::into)
            }),
        )
    }

    /// A sink writing to S3 (or any store with multipart uploads, such as
    /// [`InMemory`](object_store::memory::InMemory)) and committing by completing multipart
    /// uploads, as the S3 exactly-once protocol prescribes.
    pub fn s3<S: ObjectStore + MultipartStore>(store: Arc<S>, prefix: &str) -> S3SinkBuilder<T> {
        let multipart: Arc<dyn MultipartStore> = store.clone();
        Self::builder(store, prefix).multipart(multipart)
    }
}

impl<T> S3Sink<T> {
    /// What `open` does, callable without a `SinkContext` (which only core can build).
    pub(crate) async fn start(
        &mut self,
        pipeline: &str,
        node: &str,
        restored: Option<CheckpointId>,
    ) -> Result<(), S3SinkError> {
        self.pipeline = pipeline.to_owned();
        self.node = node.to_owned();
        self.metrics = Metrics::new(node);
        let restored = restored.map_or(0, |c| c.0);
        self.epoch = restored + 1;
        self.next_seq = 0;
        self.last_object = None;
        tracing::debug!(pipeline, node, epoch = self.epoch, "s3 sink: opened");
        if matches!(self.cfg.via, CommitVia::Staging) {
            self.clean_staging(restored).await?;
        }
        Ok(())
    }

    async fn write_batch(&mut self, batch: Batch<T>) -> Result<(), S3SinkError> {
        let now_ms = self.processing_time();
        let mut values = Vec::with_capacity(self.cfg.fields.len());
        for r in batch {
            let ts = now_ms.unwrap_or(r.timestamp.0);
            let record_ts = r.timestamp.0;
            let id = match self.cached_object(ts) {
                Some(id) => id,
                None => {
                    let partition = self.partition_of(&r, ts, &mut values);
                    self.object_of(partition, ts, record_ts).await?
                }
            };
            // Roll on record time before adding the record that crosses the span.
            let id = self.roll_on_span(id, record_ts).await?;
            self.append(id, &r)?;
            self.flush_if_due(id).await?;
        }
        self.update_gauges();
        Ok(())
    }
}

#[async_trait]
impl<T: Send + 'static> Sink for S3Sink<T> {
    type Item = T;
    type Handle = S3SinkHandle;

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
        Ok(self
            .start(&ctx.pipeline, &ctx.node, ctx.restored_checkpoint)
            .await?)
    }

    async fn write(&mut self, batch: Batch<T>) -> Result<(), BoxError> {
        Ok(self.write_batch(batch).await?)
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<S3SinkHandle, BoxError> {
        let handle = self.pre_commit_epoch().await?;
        self.epoch = checkpoint.0 + 1;
        self.next_seq = 0;
        Ok(handle)
    }

    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: S3SinkHandle,
    ) -> Result<(), BoxError> {
        Ok(self.commit_epoch(checkpoint, &handle).await?)
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        self.discard_epoch().await;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.abort().await
    }
}
