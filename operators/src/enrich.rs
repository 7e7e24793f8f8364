//! Reference-data enrichment: a lookup table loaded from an object store (S3, a local
//! directory, memory — anything `object_store` reaches), refreshed in the background and
//! swapped atomically, joined to a stream by key.
//!
//! - [`ReferenceTable::builder`] loads one object (CSV with a header row, JSON lines, or
//!   Parquet) into an immutable map, each row decoded with serde into your row type and turned
//!   into a `(key, value)` pair by your function (a later row with the same key wins).
//! - A background task checks the object every [`refresh_every`](ReferenceTableBuilder::refresh_every)
//!   (default 60 s) and reloads it when its ETag, last-modified time or size changed. The new
//!   map replaces the old one in one atomic pointer swap ([`arc_swap`]).
//! - [`EnrichOps::enrich`] takes the current map **once per batch** (one atomic load, no lock):
//!   a batch is enriched from exactly one version of the table, never from half of two.
//! - A load that fails (object gone, unreadable, a row that does not decode) changes nothing:
//!   the old table stays in use, the error is logged and counted
//!   (`watershed_reference_refresh_errors_total`). Only the first load's error is returned,
//!   from [`load`](ReferenceTableBuilder::load).
//! - Keys missing from the table are handled by [`MissingKey`]: drop, pass through with
//!   `None`, or dead-letter.

use crate::node_counter::NodeCounter;
use arc_swap::ArcSwap;
use bytes::Bytes;
use metrics::Label;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use thiserror::Error;
use watershed_core::metric_catalogue as m;
use watershed_core::{BoxError, Collector, DeadLetter, Operator, OperatorContext, Record, Stream};

/// How a reference table's object is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableFormat {
    /// CSV with a header row; columns map to the row type's fields by name; fields are trimmed.
    Csv,
    /// One JSON object per line; blank lines are skipped.
    JsonLines,
    /// Apache Parquet; each row is converted to a JSON object (column name → value) and
    /// decoded into the row type.
    Parquet,
}

impl TableFormat {
    /// The format a path's extension names: `.csv`, `.jsonl` / `.ndjson` / `.json`, `.parquet`.
    pub fn from_path(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(TableFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(TableFormat::JsonLines),
            "parquet" => Some(TableFormat::Parquet),
            _ => None,
        }
    }
}

/// Why a reference table could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Reading the object failed (not found, permission, network).
    #[error("reference table `{path}`: reading the object failed: {source}")]
    Fetch {
        /// The object's path.
        path: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// A row did not decode into the row type.
    #[error("reference table `{path}`: row {row}: {message}")]
    Row {
        /// The object's path.
        path: String,
        /// The row's number, from 1, not counting a CSV header.
        row: u64,
        /// What was wrong.
        message: String,
    },
    /// The object is not valid Parquet.
    #[error("reference table `{path}`: invalid Parquet: {message}")]
    Parquet {
        /// The object's path.
        path: String,
        /// The Parquet or Arrow error.
        message: String,
    },
    /// The format was not given and the path's extension does not name one.
    #[error("reference table `{path}`: unknown format (extension not .csv, .jsonl, .ndjson, .json or .parquet); set it with .format(..)")]
    UnknownFormat {
        /// The object's path.
        path: String,
    },
}

/// What [`EnrichOps::enrich`] does with a record whose key the table does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingKey {
    /// Drop it and count it (`watershed_reference_missing_keys_total`).
    Drop,
    /// Pass it on with `None`.
    #[default]
    PassThrough,
    /// Reject it to the pipeline's error path ([`ErrorPolicy`](watershed_core::ErrorPolicy):
    /// dead-letter sink, skip or fail), its JSON as the payload.
    DeadLetter,
}

/// One loaded version of a reference table: immutable once built.
#[derive(Debug)]
pub struct TableVersion<K, V> {
    version: u64,
    rows: FxHashMap<K, V>,
}

impl<K: Hash + Eq, V> TableVersion<K, V> {
    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.rows.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// 1 for the first load, incremented by each reload that changed the table.
    pub fn version(&self) -> u64 {
        self.version
    }
}

type Parse<K, V> = Box<dyn Fn(&Bytes) -> Result<FxHashMap<K, V>, ReferenceError> + Send + Sync>;

struct Shared<K, V> {
    current: ArcSwap<TableVersion<K, V>>,
    store: Arc<dyn ObjectStore>,
    path: Path,
    parse: Parse<K, V>,
    /// The object the current version was read from; also serializes refreshes.
    loaded: tokio::sync::Mutex<ObjectMeta>,
    errors: AtomicU64,
}

impl<K, V> Shared<K, V> {
    async fn refresh(&self) -> Result<bool, ReferenceError> {
        let mut loaded = self.loaded.lock().await;
        let fetch = |source| ReferenceError::Fetch {
            path: self.path.to_string(),
            source,
        };
        let head = self.store.head(&self.path).await.map_err(fetch)?;
        if same_object(&head, &loaded) {
            return Ok(false);
        }
        let got = self.store.get(&self.path).await.map_err(fetch)?;
        // The object read may be newer than the one listed: remember the one actually read.
        let meta = got.meta.clone();
        let bytes = got.bytes().await.map_err(fetch)?;
        let rows = (self.parse)(&bytes)?;
        let version = self.current.load().version + 1;
        let len = rows.len();
        self.current.store(Arc::new(TableVersion { version, rows }));
        *loaded = meta;
        let table = self.path.to_string();
        metrics::counter!(m::REFERENCE_RELOADS, m::LABEL_TABLE => table.clone()).increment(1);
        metrics::gauge!(m::REFERENCE_ROWS, m::LABEL_TABLE => table).set(len as f64);
        tracing::info!(table = %self.path, version, rows = len, "reference table reloaded");
        Ok(true)
    }
}

fn same_object(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.e_tag == b.e_tag
        && a.version == b.version
        && a.last_modified == b.last_modified
        && a.size == b.size
}

/// A lookup table loaded from an object store, kept current in the background. Clones share
/// the same table; the background refresh stops when the last clone (including the ones held
/// by running [`enrich`](EnrichOps::enrich) operators) is dropped.
pub struct ReferenceTable<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for ReferenceTable<K, V> {
    fn clone(&self) -> Self {
        ReferenceTable {
            shared: self.shared.clone(),
        }
    }
}

impl ReferenceTable<(), ()> {
    /// A table read from `path` in `store`.
    pub fn builder(store: Arc<dyn ObjectStore>, path: impl Into<Path>) -> ReferenceTableBuilder {
        ReferenceTableBuilder {
            store,
            path: path.into(),
            format: None,
            refresh: Some(Duration::from_secs(60)),
        }
    }
}

impl<K, V> ReferenceTable<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// The current version. Hold it for as long as a consistent view is needed; a refresh
    /// meanwhile does not change it.
    pub fn current(&self) -> Arc<TableVersion<K, V>> {
        self.shared.current.load_full()
    }

    /// Checks the object now and reloads it if it changed; `Ok(true)` when the table was
    /// replaced. On error the current table stays.
    pub async fn refresh_now(&self) -> Result<bool, ReferenceError> {
        self.shared.refresh().await
    }

    /// Refreshes that failed since the table was loaded.
    pub fn refresh_errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// The object's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// Configures and loads a [`ReferenceTable`].
pub struct ReferenceTableBuilder {
    store: Arc<dyn ObjectStore>,
    path: Path,
    format: Option<TableFormat>,
    refresh: Option<Duration>,
}

impl ReferenceTableBuilder {
    /// The object's format (default: from the path's extension).
    pub fn format(mut self, format: TableFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// How often to check whether the object changed (default 60 s; under 1 ms counts as 1 ms).
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh = Some(every.max(Duration::from_millis(1)));
        self
    }

    /// Load once, never refresh in the background ([`refresh_now`](ReferenceTable::refresh_now)
    /// still works).
    pub fn without_refresh(mut self) -> Self {
        self.refresh = None;
        self
    }

    /// Loads the table, decoding each row as `Row` and keying it with `row_to_entry`, and (when
    /// refreshing) starts the background refresh on the current tokio runtime.
    pub async fn load<Row, K, V, F>(
        self,
        row_to_entry: F,
    ) -> Result<ReferenceTable<K, V>, ReferenceError>
    where
        Row: DeserializeOwned,
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        F: Fn(Row) -> (K, V) + Send + Sync + 'static,
    {
        let path = self.path.to_string();
        let format = match self.format.or_else(|| TableFormat::from_path(&path)) {
            Some(f) => f,
            None => return Err(ReferenceError::UnknownFormat { path }),
        };
        let parse: Parse<K, V> = Box::new(move |bytes: &Bytes| {
            let mut rows = FxHashMap::default();
            decode::<Row>(format, &path, bytes, &mut |row| {
                let (k, v) = row_to_entry(row);
                rows.insert(k, v);
            })?;
            Ok(rows)
        });
        let fetch = |source| ReferenceError::Fetch {
            path: self.path.to_string(),
            source,
        };
        let got = self.store.get(&self.path).await.map_err(fetch)?;
        let meta = got.meta.clone();
        let bytes = got.bytes().await.map_err(fetch)?;
        let rows = parse(&bytes)?;
        metrics::gauge!(m::REFERENCE_ROWS, m::LABEL_TABLE => self.path.to_string())
            .set(rows.len() as f64);
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(TableVersion { version: 1, rows }),
            store: self.store,
            path: self.path,
            parse,
            loaded: tokio::sync::Mutex::new(meta),
            errors: AtomicU64::new(0),
        });
        if let Some(every) = self.refresh {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(refresh_loop(Arc::downgrade(&shared), every));
            }
        }
        Ok(ReferenceTable { shared })
    }
}

async fn refresh_loop<K, V>(table: Weak<Shared<K, V>>, every: Duration)
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Only a weak reference between checks: dropping every handle ends the task.
        let Some(shared) = table.upgrade() else {
            return;
        };
        if let Err(e) = shared.refresh().await {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::REFERENCE_REFRESH_ERRORS, m::LABEL_TABLE => shared.path.to_string())
                .increment(1);
            tracing::warn!(error = %e, "reference table refresh failed; keeping the loaded version");
        }
    }
}

fn row_error(path: &str, row: u64, message: impl ToString) -> ReferenceError {
    ReferenceError::Row {
        path: path.to_string(),
        row,
        message: message.to_string(),
    }
}

fn decode<Row: DeserializeOwned>(
    format: TableFormat,
    path: &str,
    bytes: &Bytes,
    each: &mut dyn FnMut(Row),
) -> Result<(), ReferenceError> {
    match format {
        TableFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .trim(csv::Trim::All)
                .from_reader(bytes.as_ref());
            for (i, row) in reader.deserialize::<Row>().enumerate() {
                each(row.map_err(|e| row_error(path, i as u64 + 1, e))?);
            }
        }
        TableFormat::JsonLines => {
            let lines = bytes.split(|b| *b == b'\n');
            for (i, line) in lines.enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                each(serde_json::from_slice(line).map_err(|e| row_error(path, i as u64 + 1, e))?);
            }
        }
        #[cfg(not(feature = "parquet"))]
        TableFormat::Parquet => {
            return Err(ReferenceError::Parquet {
                path: path.to_string(),
                message: "this build of watershed-operators has no Parquet support; enable its \
                          `parquet` feature (on by default)"
                    .into(),
            });
        }
        #[cfg(feature = "parquet")]
        TableFormat::Parquet => {
            let parquet = |e: &dyn ToString| ReferenceError::Parquet {
                path: path.to_string(),
                message: e.to_string(),
            };
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes.clone(),
            )
            .and_then(|b| b.build())
            .map_err(|e| parquet(&e))?;
            let mut row = 0u64;
            for batch in reader {
                let batch: arrow_array::RecordBatch = batch.map_err(|e| parquet(&e))?;
                // Arrow → JSON objects → the row type: one decoding path for all formats.
                let mut writer = arrow_json::ArrayWriter::new(Vec::new());
                writer.write(&batch).map_err(|e| parquet(&e))?;
                writer.finish().map_err(|e| parquet(&e))?;
                let json = writer.into_inner();
                let objects: Vec<serde_json::Value> =
                    serde_json::from_slice(&json).map_err(|e| parquet(&e))?;
                for object in objects {
                    row += 1;
                    each(serde_json::from_value(object).map_err(|e| row_error(path, row, e))?);
                }
            }
        }
    }
    Ok(())
}

type KeyFn<T, K> = Box<dyn Fn(&T) -> K + Send>;

/// The enrichment operator: looks each record's key up in the table version current when the
/// batch arrives (see [`EnrichOps::enrich`]).
pub struct Enrich<T, K, V> {
    table: Arc<Shared<K, V>>,
    key: KeyFn<T, K>,
    on_missing: MissingKey,
    missing: u64,
    missing_counter: NodeCounter,
}

impl<T, K, V> Enrich<T, K, V> {
    /// An operator enriching from `table` by `key` (what [`EnrichOps::enrich`] adds; build it
    /// directly to drive it in tests or wrap it in an operator of your own).
    pub fn new(
        table: &ReferenceTable<K, V>,
        key: impl Fn(&T) -> K + Send + 'static,
        on_missing: MissingKey,
    ) -> Self {
        Enrich {
            table: table.shared.clone(),
            key: Box::new(key),
            on_missing,
            missing: 0,
            missing_counter: NodeCounter::new(
                m::REFERENCE_MISSING_KEYS,
                vec![Label::new(m::LABEL_TABLE, table.shared.path.to_string())],
            ),
        }
    }

    /// Records whose key the table did not hold.
    pub fn missing_keys(&self) -> u64 {
        self.missing
    }
}

impl<T, K, V> Operator for Enrich<T, K, V>
where
    T: Serialize + Send + 'static,
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type In = T;
    type Out = (T, Option<V>);

    fn open(&mut self, ctx: &OperatorContext) {
        self.missing_counter.open(&ctx.node);
    }

    fn process(
        &mut self,
        batch: Vec<Record<T>>,
        out: &mut Collector<(T, Option<V>)>,
    ) -> Result<(), BoxError> {
        // One atomic load per batch: the whole batch sees one version.
        let table = self.table.current.load_full();
        let mut missing = 0u64;
        for r in batch {
            match table.rows.get(&(self.key)(&r.value)) {
                Some(v) => {
                    let v = v.clone();
                    out.emit(r.map(|t| (t, Some(v))));
                }
                None => {
                    missing += 1;
                    match self.on_missing {
                        MissingKey::Drop => {}
                        MissingKey::PassThrough => out.emit(r.map(|t| (t, None))),
                        MissingKey::DeadLetter => {
                            let payload = serde_json::to_vec(&r.value).unwrap_or_default();
                            out.reject(
                                DeadLetter::new(
                                    format!(
                                        "no entry in reference table `{}` (version {})",
                                        self.table.path, table.version
                                    ),
                                    payload,
                                )
                                .at(r.origin.clone(), r.timestamp),
                            );
                        }
                    }
                }
            }
        }
        if missing > 0 {
            self.missing += missing;
            self.missing_counter.increment(missing);
        }
        Ok(())
    }
}

/// Enrichment of any [`Stream`] from a [`ReferenceTable`].
pub trait EnrichOps<T: Send + 'static>: Sized {
    /// Pairs each record with its key's value in `table`: `(record, Some(value))`, and for a
    /// key the table does not hold, what `on_missing` says (`(record, None)` only with
    /// [`MissingKey::PassThrough`]). Each batch is enriched from one table version.
    fn enrich<K, V, F>(
        self,
        table: &ReferenceTable<K, V>,
        key: F,
        on_missing: MissingKey,
    ) -> Stream<(T, Option<V>)>
    where
        T: Serialize,
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        F: Fn(&T) -> K + Send + 'static;
}

impl<T: Send + 'static> EnrichOps<T> for Stream<T> {
    fn enrich<K, V, F>(
        self,
        table: &ReferenceTable<K, V>,
        key: F,
        on_missing: MissingKey,
    ) -> Stream<(T, Option<V>)>
    where
        T: Serialize,
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        F: Fn(&T) -> K + Send + 'static,
    {
        let name = self.auto_name("enrich");
        self.apply(&name, Enrich::new(table, key, on_missing))
    }
}
