//! [`S3Sink`]: buffering, rotation, part uploads and the two-phase commit.

use crate::error::S3SinkError;
use crate::format::{extension, Compression, Format, ObjectEncoder};
use crate::key::{join, object_name, PartitionTemplate};
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use watershed_core::{Batch, BoxError, CheckpointId, Record, Sink, SinkContext};

const MIB: usize = 1024 * 1024;
/// S3 refuses parts below 5 MiB (except the last one of an upload).
const MIN_PART_SIZE: usize = 5 * MIB;
/// S3 allows at most 10,000 parts per upload.
const MAX_PARTS: u64 = 10_000;

/// Turns a record into the bytes of one line (without the newline) of a JSON-lines object.
pub type RecordEncoder<T> =
    Arc<dyn Fn(&Record<T>, &mut Vec<u8>) -> Result<(), BoxError> + Send + Sync>;

/// Extracts a partition value (for a `{name}` placeholder of the partition template) from a record.
pub type PartitionField<T> = Arc<dyn Fn(&Record<T>) -> String + Send + Sync>;

/// Which clock the `{date}`/`{hour}` partition placeholders read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PartitionTime {
    /// The record's event time: a replay puts every record under the same partition. The default.
    #[default]
    EventTime,
    /// The wall clock when the sink receives the record (Firehose's behaviour). Exactly-once still
    /// holds, because nothing is visible before its checkpoint commits, but a replay may put a
    /// record under another hour than the crashed run would have.
    ProcessingTime,
}

/// How pre-committed objects are kept invisible until their checkpoint completes.
#[derive(Clone)]
enum CommitVia {
    /// Each object is an S3 multipart upload to its final key, completed at commit. Needs a
    /// store implementing [`MultipartStore`] (S3, GCS, Azure, memory): only that API exposes the
    /// upload id, which is what lets a restarted process complete an upload it did not start.
    Multipart(Arc<dyn MultipartStore>),
    /// Each object is written to a staging key (completed at pre-commit) and copied to its final
    /// key at commit without overwriting. Works on every store, including a local directory.
    Staging,
}

/// Settings shared by the builder and the sink.
struct Config<T> {
    store: Arc<dyn ObjectStore>,
    via: CommitVia,
    prefix: String,
    staging_prefix: String,
    template: PartitionTemplate,
    fields: Vec<PartitionField<T>>,
    encoder: RecordEncoder<T>,
    extension: String,
    format: Format,
    compression: Compression,
    partition_time: PartitionTime,
    max_object_bytes: u64,
    max_object_records: Option<u64>,
    max_object_span_ms: Option<i64>,
    part_size: usize,
    max_concurrent_uploads: usize,
    max_open_objects: usize,
}

/// Builds an [`S3Sink`]. Defaults follow Firehose: objects of at most 128 MiB (before
/// compression) or 60 s of record time, JSON lines, uncompressed, `dt={date}/hour={hour}`.
pub struct S3SinkBuilder<T> {
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    prefix: String,
    staging_prefix: Option<String>,
    template: String,
    fields: Vec<(String, PartitionField<T>)>,
    encoder: RecordEncoder<T>,
    format: Format,
    compression: Compression,
    partition_time: PartitionTime,
    max_object_bytes: u64,
    max_object_records: Option<u64>,
    max_object_span: Option<Duration>,
    part_size: usize,
    max_concurrent_uploads: usize,
    max_open_objects: usize,
}

impl<T: Send + 'static> S3SinkBuilder<T> {
    fn with_encoder_fn(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        encoder: RecordEncoder<T>,
    ) -> Self {
        S3SinkBuilder {
            store,
            multipart: None,
            prefix: prefix.trim_matches('/').to_owned(),
            staging_prefix: None,
            template: "dt={date}/hour={hour}".to_owned(),
            fields: Vec::new(),
            encoder,
            format: Format::JsonLines,
            compression: Compression::None,
            partition_time: PartitionTime::EventTime,
            max_object_bytes: 128 * MIB as u64,
            max_object_records: None,
            max_object_span: Some(Duration::from_secs(60)),
            part_size: 8 * MIB,
            max_concurrent_uploads: 4,
            max_open_objects: 64,
        }
    }

    /// Commits through multipart uploads of `store` (which must address the same bucket as the
    /// object store) instead of staging keys. [`S3Sink::s3`] sets this for you.
    pub fn multipart(mut self, store: Arc<dyn MultipartStore>) -> Self {
        self.multipart = Some(store);
        self
    }

    /// Where staged objects wait for their commit when not using multipart uploads (default
    /// `<prefix>/_staging`; Hive, Spark and Athena skip directories starting with `_`).
    pub fn staging_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.staging_prefix = Some(prefix.into().trim_matches('/').to_owned());
        self
    }

    /// The partition directories under the prefix, e.g. `dt={date}/hour={hour}` (the default),
    /// `year={year}/month={month}/day={day}`, or `country={country}/dt={date}` with a
    /// [`partition_field`](Self::partition_field) named `country`. Empty for no partitions.
    pub fn partition_template(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// Registers a `{name}` placeholder whose value is computed from each record. Characters
    /// other than ASCII letters, digits, `-`, `_`, `.` and `=` become `_`, so a value can never
    /// add directories or produce keys some store rejects.
    pub fn partition_field(
        mut self,
        name: impl Into<String>,
        f: impl Fn(&Record<T>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.fields.push((name.into(), Arc::new(f)));
        self
    }

    /// Which time the date/hour placeholders use (default: event time).
    pub fn partition_time(mut self, time: PartitionTime) -> Self {
        self.partition_time = time;
        self
    }

    /// Replaces how a record becomes a line (default: the value as JSON with serde).
    pub fn encoder(
        mut self,
        f: impl Fn(&Record<T>, &mut Vec<u8>) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.encoder = Arc::new(f);
        self
    }

    /// The object format (default JSON lines; [`Format::Parquet`], [`Format::Csv`]).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Compression of whole objects (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Rolls an object once it holds this many bytes before compression (Firehose's buffer
    /// size; default 128 MiB).
    pub fn max_object_bytes(mut self, bytes: u64) -> Self {
        self.max_object_bytes = bytes.max(1);
        self
    }

    /// Rolls an object once it holds this many records (default: no limit).
    pub fn max_object_records(mut self, records: u64) -> Self {
        self.max_object_records = Some(records.max(1));
        self
    }

    /// Rolls an object when a record's event time is this far past the object's first record
    /// (Firehose's buffer interval, measured in record time so a replay cuts objects at the same
    /// records; default 60 s). `None` for no limit.
    pub fn max_object_span(mut self, span: Option<Duration>) -> Self {
        self.max_object_span = span;
        self
    }

    /// Compressed bytes buffered per object before they are uploaded as one part (default
    /// 8 MiB, at least 5 MiB). Memory is about `part_size × open objects`.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Part uploads in flight at once (default 4).
    pub fn max_concurrent_uploads(mut self, n: usize) -> Self {
        self.max_concurrent_uploads = n.max(1);
        self
    }

    /// Objects open at once (one per partition being written; default 64). Opening one more
    /// rolls the oldest open object, which depends only on the records, not on timing.
    pub fn max_open_objects(mut self, n: usize) -> Self {
        self.max_open_objects = n.max(1);
        self
    }

    /// Checks the settings and builds the sink.
    pub fn build(self) -> Result<S3Sink<T>, S3SinkError> {
        if self.part_size < MIN_PART_SIZE {
            return Err(S3SinkError::Config(format!(
                "part size {} is below the S3 minimum of 5 MiB",
                self.part_size
            )));
        }
        if self.max_object_bytes / self.part_size as u64 >= MAX_PARTS {
            return Err(S3SinkError::Config(format!(
                "max object size {} needs more than {MAX_PARTS} parts of {} bytes",
                self.max_object_bytes, self.part_size
            )));
        }
        for p in [Some(&self.prefix), self.staging_prefix.as_ref()]
            .into_iter()
            .flatten()
        {
            if Path::from(p.as_str()).as_ref() != p {
                return Err(S3SinkError::Config(format!(
                    "prefix `{p}` contains characters object stores do not accept in keys"
                )));
            }
        }
        if matches!(self.format, Format::Parquet(_)) && self.compression != Compression::None {
            return Err(S3SinkError::Config(
                "Parquet compresses its columns itself (ParquetOptions::compression); \
                 the object compression must be None"
                    .into(),
            ));
        }
        if let Format::Csv(options) = &self.format {
            options.validate()?;
        }
        let names: Vec<String> = self.fields.iter().map(|(n, _)| n.clone()).collect();
        let template = PartitionTemplate::parse(&self.template, &names)?;
        let staging_prefix = self
            .staging_prefix
            .unwrap_or_else(|| join(&[&self.prefix, "_staging"]));
        if self.multipart.is_none() && staging_prefix == self.prefix {
            return Err(S3SinkError::Config(
                "the staging prefix must differ from the prefix".into(),
            ));
        }
        let config = Config {
            store: self.store,
            via: match self.multipart {
                Some(m) => CommitVia::Multipart(m),
                None => CommitVia::Staging,
            },
            prefix: self.prefix,
            staging_prefix,
            template,
            fields: self.fields.into_iter().map(|(_, f)| f).collect(),
            encoder: self.encoder,
            extension: extension(&self.format, self.compression),
            format: self.format,
            compression: self.compression,
            partition_time: self.partition_time,
            max_object_bytes: self.max_object_bytes,
            max_object_records: self.max_object_records,
            max_object_span_ms: self
                .max_object_span
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            part_size: self.part_size,
            max_concurrent_uploads: self.max_concurrent_uploads,
            max_open_objects: self.max_open_objects,
        };
        Ok(S3Sink {
            cfg: Arc::new(config),
            pipeline: String::new(),
            node: String::new(),
            epoch: 1,
            next_seq: 0,
            next_id: 0,
            open: HashMap::new(),
            objects: BTreeMap::new(),
            uploads: JoinSet::new(),
            last_object: None,
            scratch: Vec::new(),
            metrics: Metrics::new(""),
        })
    }
}

/// What a pre-committed object needs to become visible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PendingCommit {
    /// Complete this multipart upload of the final key.
    Multipart {
        /// The upload id S3 returned.
        upload_id: String,
        /// The ETag of every part, in part order.
        parts: Vec<String>,
    },
    /// Copy this staged object to the final key, then delete it.
    Staged {
        /// Where the complete object waits.
        staging_key: String,
    },
}

/// One object of a pre-committed epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingObject {
    /// The final key.
    pub key: String,
    /// Its length in bytes (what a re-commit verifies when the object already exists).
    pub bytes: u64,
    /// Records it holds.
    pub records: u64,
    /// How it becomes visible.
    #[serde(flatten)]
    pub via: PendingCommit,
}

/// What [`S3Sink::pre_commit`] hands to the checkpoint: every object of the epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct S3SinkHandle {
    /// The epoch the objects were named after.
    pub epoch: u64,
    /// The objects, in the order they were opened.
    pub objects: Vec<PendingObject>,
}

enum Upload {
    Multipart {
        id: String,
    },
    Staged {
        key: Path,
        upload: Box<dyn MultipartUpload>,
    },
}

/// An object of the current epoch: open (encoder present) or rolled (waiting for pre-commit).
struct Object {
    key: Path,
    encoder: Option<ObjectEncoder>,
    raw_bytes: u64,
    records: u64,
    first_ts: i64,
    opened: Instant,
    upload: Option<Upload>,
    parts: Vec<Option<PartId>>,
    uploaded: u64,
}

impl Object {
    fn upload_id(&self) -> Option<&str> {
        match &self.upload {
            Some(Upload::Multipart { id }) => Some(id),
            _ => None,
        }
    }
}

struct PartDone {
    object: u64,
    idx: usize,
    bytes: u64,
    took: Duration,
    result: object_store::Result<Option<PartId>>,
}

struct Metrics {
    objects: metrics::Counter,
    bytes: metrics::Counter,
    upload_seconds: metrics::Histogram,
    buffered: metrics::Gauge,
    oldest_age: metrics::Gauge,
}

impl Metrics {
    fn new(node: &str) -> Self {
        let node = node.to_owned();
        Metrics {
            objects: metrics::counter!("watershed_s3_objects_committed_total", "node" => node.clone()),
            bytes: metrics::counter!("watershed_s3_bytes_uploaded_total", "node" => node.clone()),
            upload_seconds: metrics::histogram!("watershed_s3_part_upload_seconds", "node" => node.clone()),
            buffered: metrics::gauge!("watershed_s3_buffered_bytes", "node" => node.clone()),
            oldest_age: metrics::gauge!("watershed_s3_oldest_buffered_record_age_seconds", "node" => node),
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
    cfg: Arc<Config<T>>,
    pipeline: String,
    node: String,
    /// The epoch objects written now are named after: the last pre-committed (or restored)
    /// checkpoint + 1.
    epoch: u64,
    next_seq: u64,
    next_id: u64,
    /// Partition → id of its open object.
    open: HashMap<String, u64>,
    /// Every object of the current epoch, by id (= opening order).
    objects: BTreeMap<u64, Object>,
    uploads: JoinSet<PartDone>,
    /// The hour of the previous record and its open object, when the partition depends only
    /// on time; cleared when that object rolls.
    last_object: Option<(i64, u64)>,
    scratch: Vec<u8>,
    metrics: Metrics,
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
    fn key_for(&self, partition: &str, seq: u64) -> Path {
        let name = object_name(
            &self.pipeline,
            &self.node,
            self.epoch,
            seq,
            &self.cfg.extension,
        );
        Path::from(join(&[&self.cfg.prefix, partition, &name]))
    }

    fn staging_dir(&self) -> String {
        join(&[&self.cfg.staging_prefix, &self.pipeline, &self.node])
    }

    fn staging_key_for(&self, key: &Path) -> Path {
        let relative = key
            .as_ref()
            .strip_prefix(self.cfg.prefix.as_str())
            .unwrap_or(key.as_ref());
        Path::from(join(&[
            &self.staging_dir(),
            &format!("{:010}", self.epoch),
            relative,
        ]))
    }

    /// Opens a new object for `partition`, rolling the oldest open one if too many are open.
    async fn open_object(&mut self, partition: &str, first_ts: i64) -> Result<u64, S3SinkError> {
        if self.open.len() >= self.cfg.max_open_objects {
            let oldest = *self.open.values().min().expect("at least one open object");
            self.roll(oldest).await?;
        }
        let id = self.next_id;
        self.next_id += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.key_for(partition, seq);
        let encoder = ObjectEncoder::new(&self.cfg.format, self.cfg.compression, &key)?;
        self.objects.insert(
            id,
            Object {
                key,
                encoder: Some(encoder),
                raw_bytes: 0,
                records: 0,
                first_ts,
                opened: Instant::now(),
                upload: None,
                parts: Vec::new(),
                uploaded: 0,
            },
        );
        self.open.insert(partition.to_owned(), id);
        Ok(id)
    }

    /// Starts the object's upload if it has none yet (lazily, so small objects cost one request
    /// less until they have something to upload).
    async fn ensure_upload(&mut self, id: u64) -> Result<(), S3SinkError> {
        let obj = self.objects.get(&id).expect("object exists");
        if obj.upload.is_some() {
            return Ok(());
        }
        let key = obj.key.clone();
        let upload = match &self.cfg.via {
            CommitVia::Multipart(mp) => {
                let id = mp
                    .create_multipart(&key)
                    .await
                    .map_err(|e| S3SinkError::store("create upload", &key, None, e))?;
                Upload::Multipart { id }
            }
            CommitVia::Staging => {
                let staging = self.staging_key_for(&key);
                let upload =
                    self.cfg.store.put_multipart(&staging).await.map_err(|e| {
                        S3SinkError::store("create staging upload", &staging, None, e)
                    })?;
                Upload::Staged {
                    key: staging,
                    upload,
                }
            }
        };
        self.objects.get_mut(&id).expect("object exists").upload = Some(upload);
        Ok(())
    }

    /// Uploads `data` as the object's next part, in the background, keeping at most
    /// `max_concurrent_uploads` in flight.
    async fn upload_part(&mut self, id: u64, data: Vec<u8>) -> Result<(), S3SinkError> {
        while self.uploads.len() >= self.cfg.max_concurrent_uploads {
            self.reap_one().await?;
        }
        self.ensure_upload(id).await?;
        let via = self.cfg.via.clone();
        let obj = self.objects.get_mut(&id).expect("object exists");
        let idx = obj.parts.len();
        obj.parts.push(None);
        let bytes = data.len() as u64;
        let payload = PutPayload::from(data);
        let fut: futures::future::BoxFuture<'static, object_store::Result<Option<PartId>>> =
            match (obj.upload.as_mut().expect("upload started"), via) {
                (Upload::Multipart { id: upload_id }, CommitVia::Multipart(mp)) => {
                    let key = obj.key.clone();
                    let upload_id = upload_id.clone();
                    Box::pin(
                        async move { mp.put_part(&key, &upload_id, idx, payload).await.map(Some) },
                    )
                }
                (Upload::Staged { upload, .. }, _) => {
                    let part = upload.put_part(payload);
                    Box::pin(async move { part.await.map(|()| None) })
                }
                (Upload::Multipart { .. }, CommitVia::Staging) => {
                    unreachable!("an object's upload kind follows the sink's commit mode")
                }
            };
        self.uploads.spawn(async move {
            let start = Instant::now();
            let result = fut.await;
            PartDone {
                object: id,
                idx,
                bytes,
                took: start.elapsed(),
                result,
            }
        });
        Ok(())
    }

    /// Waits for one part upload and records its result.
    async fn reap_one(&mut self) -> Result<(), S3SinkError> {
        let Some(joined) = self.uploads.join_next().await else {
            return Ok(());
        };
        let done = joined.map_err(|source| S3SinkError::Task {
            key: "(unknown object)".into(),
            source,
        })?;
        let obj = self
            .objects
            .get_mut(&done.object)
            .expect("uploads are drained before objects are dropped");
        match done.result {
            Ok(part) => {
                obj.parts[done.idx] = part.or(Some(PartId {
                    content_id: String::new(),
                }));
                obj.uploaded += done.bytes;
                self.metrics.bytes.increment(done.bytes);
                self.metrics.upload_seconds.record(done.took.as_secs_f64());
                Ok(())
            }
            Err(e) => Err(S3SinkError::store(
                "upload part",
                &obj.key,
                obj.upload_id(),
                e,
            )),
        }
    }

    /// Ends the object: compresses the rest and uploads it as the last part.
    async fn roll(&mut self, id: u64) -> Result<(), S3SinkError> {
        let obj = self.objects.get_mut(&id).expect("object exists");
        let Some(encoder) = obj.encoder.take() else {
            return Ok(());
        };
        let key = obj.key.clone();
        self.open.retain(|_, v| *v != id);
        if self.last_object.is_some_and(|(_, o)| o == id) {
            self.last_object = None;
        }
        let rest = encoder.finish(&key)?;
        self.upload_part(id, rest).await
    }

    async fn write_batch(&mut self, batch: Batch<T>) -> Result<(), S3SinkError> {
        let cfg = self.cfg.clone();
        let now_ms = match cfg.partition_time {
            PartitionTime::EventTime => None,
            PartitionTime::ProcessingTime => Some(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            ),
        };
        let mut values = Vec::with_capacity(cfg.fields.len());
        for r in batch {
            let ts = now_ms.unwrap_or(r.timestamp.0);
            let record_ts = r.timestamp.0;
            let hour = PartitionTemplate::hour_of(ts);
            // Time-only partitions change at most once an hour: while the hour and its object
            // stay the same, skip rendering and looking up the partition.
            let cached = match self.last_object {
                Some((h, id)) if h == hour && !cfg.template.uses_fields() => Some(id),
                _ => None,
            };
            let mut id = match cached {
                Some(id) => id,
                None => {
                    let partition = if cfg.template.uses_fields() {
                        values.clear();
                        values.extend(cfg.fields.iter().map(|f| sanitize(&f(&r))));
                        cfg.template.render(ts, &values)
                    } else {
                        cfg.template.render(ts, &[])
                    };
                    let id = match self.open.get(&partition) {
                        Some(&id) => id,
                        None => self.open_object(&partition, record_ts).await?,
                    };
                    if !cfg.template.uses_fields() {
                        self.last_object = Some((hour, id));
                    }
                    id
                }
            };
            // Roll on record time before adding the record that crosses the span.
            if let Some(span) = cfg.max_object_span_ms {
                let first = self.objects[&id].first_ts;
                if record_ts.saturating_sub(first) >= span {
                    let partition = self
                        .open
                        .iter()
                        .find_map(|(p, v)| (*v == id).then(|| p.clone()))
                        .expect("the object is open");
                    self.roll(id).await?;
                    id = self.open_object(&partition, record_ts).await?;
                }
            }
            self.scratch.clear();
            (cfg.encoder)(&r, &mut self.scratch).map_err(|source| S3SinkError::Encode {
                key: self.objects[&id].key.to_string(),
                source,
            })?;
            self.scratch.push(b'\n');
            let obj = self.objects.get_mut(&id).expect("object exists");
            let encoder = obj.encoder.as_mut().expect("open object has an encoder");
            encoder.write_line(&self.scratch, &obj.key)?;
            obj.raw_bytes += self.scratch.len() as u64;
            obj.records += 1;
            let full = obj.raw_bytes >= cfg.max_object_bytes
                || cfg.max_object_records.is_some_and(|m| obj.records >= m);
            if full {
                self.roll(id).await?;
            } else if encoder.output_len() >= cfg.part_size {
                let data = encoder.take_output();
                self.upload_part(id, data).await?;
            }
        }
        self.update_gauges();
        Ok(())
    }

    fn update_gauges(&mut self) {
        let mut buffered = 0usize;
        let mut oldest: Option<Instant> = None;
        for id in self.open.values() {
            if let Some(obj) = self.objects.get_mut(id) {
                if let Some(e) = obj.encoder.as_mut() {
                    buffered += e.output_len();
                }
                oldest = Some(oldest.map_or(obj.opened, |o| o.min(obj.opened)));
            }
        }
        self.metrics.buffered.set(buffered as f64);
        self.metrics
            .oldest_age
            .set(oldest.map_or(0.0, |o| o.elapsed().as_secs_f64()));
    }

    async fn pre_commit_epoch(&mut self) -> Result<S3SinkHandle, S3SinkError> {
        let open: Vec<u64> = self.open.values().copied().collect();
        for id in open {
            self.roll(id).await?;
        }
        while !self.uploads.is_empty() {
            self.reap_one().await?;
        }
        let mut handle = S3SinkHandle {
            epoch: self.epoch,
            objects: Vec::with_capacity(self.objects.len()),
        };
        for obj in std::mem::take(&mut self.objects).into_values() {
            let key = obj.key.to_string();
            let via = match obj.upload {
                Some(Upload::Multipart { id }) => PendingCommit::Multipart {
                    upload_id: id,
                    parts: obj
                        .parts
                        .into_iter()
                        .map(|p| p.expect("all parts reaped").content_id)
                        .collect(),
                },
                Some(Upload::Staged {
                    key: staging,
                    mut upload,
                }) => {
                    upload.complete().await.map_err(|e| {
                        S3SinkError::store("complete staging upload", &staging, None, e)
                    })?;
                    PendingCommit::Staged {
                        staging_key: staging.to_string(),
                    }
                }
                None => unreachable!("a rolled object has uploaded its last part"),
            };
            handle.objects.push(PendingObject {
                key,
                bytes: obj.uploaded,
                records: obj.records,
                via,
            });
        }
        self.update_gauges();
        Ok(handle)
    }

    /// Makes one pre-committed object visible; idempotent.
    async fn commit_object(&mut self, obj: &PendingObject) -> Result<(), S3SinkError> {
        let cfg = self.cfg.clone();
        let store = &cfg.store;
        let key = Path::from(obj.key.as_str());
        match &obj.via {
            PendingCommit::Multipart { upload_id, parts } => {
                let CommitVia::Multipart(mp) = &cfg.via else {
                    return Err(S3SinkError::Commit {
                        key: obj.key.clone(),
                        upload: Some(upload_id.clone()),
                        reason: "the checkpoint holds a multipart upload but the sink is \
                                 configured without a multipart store"
                            .into(),
                    });
                };
                // Completing overwrites, so look first: committed data is never replaced.
                if verify_existing(store, &key, obj, Some(upload_id)).await? {
                    return Ok(());
                }
                let parts = parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.clone(),
                    })
                    .collect();
                match mp.complete_multipart(&key, upload_id, parts).await {
                    Ok(_) => Ok(()),
                    // The upload may have completed with the response lost: verify the object.
                    Err(e) => match verify_existing(store, &key, obj, Some(upload_id)).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(S3SinkError::store(
                            "complete upload",
                            &key,
                            Some(upload_id),
                            e,
                        )),
                        Err(verify) => Err(verify),
                    },
                }
            }
            PendingCommit::Staged { staging_key } => {
                let staging = Path::from(staging_key.as_str());
                match store.copy_if_not_exists(&staging, &key).await {
                    Ok(()) => {}
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::NotFound { .. }) => {
                        // Committed before a crash (the staged copy may be gone already).
                        if !verify_existing(store, &key, obj, None).await? {
                            return Err(S3SinkError::Commit {
                                key: obj.key.clone(),
                                upload: None,
                                reason: format!(
                                    "neither the staged object {staging_key} nor the final object exists"
                                ),
                            });
                        }
                    }
                    Err(object_store::Error::NotSupported { .. }) => {
                        // S3 without a copy-if-not-exists configuration: check, then copy.
                        // Only this sink writes these names, so nothing races the check.
                        if !verify_existing(store, &key, obj, None).await? {
                            store.copy(&staging, &key).await.map_err(|e| {
                                S3SinkError::store("copy staged object to", &key, None, e)
                            })?;
                        }
                    }
                    Err(e) => {
                        return Err(S3SinkError::store("copy staged object to", &key, None, e))
                    }
                }
                match store.delete(&staging).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(S3SinkError::store(
                        "delete staged object",
                        &staging,
                        None,
                        e,
                    )),
                }
            }
        }
    }

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
        if matches!(self.cfg.via, CommitVia::Staging) {
            self.clean_staging(restored).await?;
        }
        Ok(())
    }

    /// Deletes staged objects of epochs after the restored checkpoint: a previous run wrote
    /// them, but no completed checkpoint refers to them.
    async fn clean_staging(&mut self, restored: u64) -> Result<(), S3SinkError> {
        let dir = Path::from(self.staging_dir());
        let listed: Vec<_> = self
            .cfg
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| S3SinkError::store("list staging", &dir, None, e))?;
        let prefix_parts = dir.parts().count();
        for meta in listed {
            let epoch = meta
                .location
                .parts()
                .nth(prefix_parts)
                .and_then(|p| p.as_ref().parse::<u64>().ok());
            if epoch.is_some_and(|e| e > restored) {
                match self.cfg.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(S3SinkError::store(
                            "delete stale staged object",
                            &meta.location,
                            None,
                            e,
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// True when the final key holds an object of the expected length, false when it is absent;
/// an error when it holds something else.
async fn verify_existing(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    obj: &PendingObject,
    upload: Option<&str>,
) -> Result<bool, S3SinkError> {
    match store.head(key).await {
        Ok(meta) if meta.size == obj.bytes => Ok(true),
        Ok(meta) => Err(S3SinkError::Commit {
            key: obj.key.clone(),
            upload: upload.map(str::to_owned),
            reason: format!(
                "the object exists with {} bytes, the checkpoint expects {}",
                meta.size, obj.bytes
            ),
        }),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(S3SinkError::store("head", key, upload, e)),
    }
}

/// Keeps partition values to characters that are safe in every store's keys.
fn sanitize(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // "." and ".." would be path navigation, and an empty value an empty directory.
    if clean.chars().all(|c| c == '.') {
        format!("_{clean}")
    } else {
        clean
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
        _checkpoint: CheckpointId,
        handle: S3SinkHandle,
    ) -> Result<(), BoxError> {
        for obj in &handle.objects {
            self.commit_object(obj).await?;
            self.metrics.objects.increment(1);
        }
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        self.uploads.abort_all();
        while self.uploads.join_next().await.is_some() {}
        self.open.clear();
        self.last_object = None;
        // Best effort: uploads left behind are invisible and reclaimed by the lifecycle rule.
        for obj in std::mem::take(&mut self.objects).into_values() {
            match (obj.upload, &self.cfg.via) {
                (Some(Upload::Multipart { id }), CommitVia::Multipart(mp)) => {
                    let _ = mp.abort_multipart(&obj.key, &id).await;
                }
                (Some(Upload::Staged { mut upload, .. }), _) => {
                    let _ = upload.abort().await;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn partition_values_cannot_add_directories_or_navigate() {
        assert_eq!(sanitize("a/b c"), "a_b_c");
        assert_eq!(sanitize(".."), "_..");
        assert_eq!(sanitize("fr-FR_x.y=z"), "fr-FR_x.y=z");
    }
}
