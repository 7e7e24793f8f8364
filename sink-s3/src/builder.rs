//! The builder: settings, their checks, and the configuration the sink shares with its
//! background uploads.

use crate::error::S3SinkError;
use crate::format::{extension, Compression, Format};
use crate::key::{join, PartitionTemplate};
use crate::sink::{Metrics, S3Sink};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::ObjectStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use watershed_core::{BoxError, Record};

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
pub(crate) enum CommitVia {
    /// Each object is an S3 multipart upload to its final key, completed at commit. Needs a
    /// store implementing [`MultipartStore`] (S3, GCS, Azure, memory): only that API exposes the
    /// upload id, which is what lets a restarted process complete an upload it did not start.
    Multipart(Arc<dyn MultipartStore>),
    /// Each object is written to a staging key (completed at pre-commit) and copied to its final
    /// key at commit without overwriting. Works on every store, including a local directory.
    Staging,
}

/// Settings shared by the builder and the sink.
pub(crate) struct Config<T> {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) via: CommitVia,
    pub(crate) prefix: String,
    pub(crate) staging_prefix: String,
    pub(crate) template: PartitionTemplate,
    pub(crate) fields: Vec<PartitionField<T>>,
    pub(crate) encoder: RecordEncoder<T>,
    pub(crate) extension: String,
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    pub(crate) partition_time: PartitionTime,
    pub(crate) max_object_bytes: u64,
    pub(crate) max_object_records: Option<u64>,
    pub(crate) max_object_span_ms: Option<i64>,
    pub(crate) part_size: usize,
    pub(crate) max_concurrent_uploads: usize,
    pub(crate) max_open_objects: usize,
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
    pub(crate) fn with_encoder_fn(
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
        self.check_sizes()?;
        self.check_prefixes()?;
        self.check_format()?;
        let config = self.into_config()?;
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

    /// S3's part limits: 5 MiB at least per part, 10,000 parts at most per object.
    fn check_sizes(&self) -> Result<(), S3SinkError> {
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
        Ok(())
    }

    /// A prefix the store would rewrite would put objects somewhere else than asked.
    fn check_prefixes(&self) -> Result<(), S3SinkError> {
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
        Ok(())
    }

    fn check_format(&self) -> Result<(), S3SinkError> {
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
        Ok(())
    }

    /// Parses the partition template and settles the staging prefix.
    fn into_config(self) -> Result<Config<T>, S3SinkError> {
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
        Ok(Config {
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
        })
    }
}
