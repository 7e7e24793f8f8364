//! Object formats and compression: how records become the bytes of an object.

use crate::error::S3SinkError;
use arrow_schema::SchemaRef;
use flate2::write::GzEncoder;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;

/// How records are laid out inside an object.
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Format {
    /// One JSON document per line (what Firehose delivers for JSON input).
    #[default]
    JsonLines,
    /// Apache Parquet (Firehose's record format conversion), with its own column compression;
    /// the object-level [`Compression`] must be `None`.
    Parquet(ParquetOptions),
    /// Comma-separated values (RFC 4180) with the given columns, one row per record, optionally
    /// compressed as a whole like JSON lines.
    Csv(CsvOptions),
}

impl Format {
    fn extension(&self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Parquet(_) => "parquet",
            Format::Csv(_) => "csv",
        }
    }
}

/// Settings of [`Format::Csv`]: which columns, in which order.
///
/// Each record's JSON form (the sink's record encoder) must be an object; column `c` is its
/// top-level field `c`: strings as they are, numbers and booleans as JSON writes them, nested
/// values as JSON text, absent or null fields empty. Fields that are not columns are left out.
/// Fields containing the delimiter, a quote or a line break are quoted (RFC 4180), and so is the
/// only field of a one-column row when it is empty (`""`): an empty line would read as no row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    columns: Vec<String>,
    header: bool,
    delimiter: u8,
}

impl CsvOptions {
    /// These columns, in this order, with a header row and `,` as the delimiter.
    pub fn new<I, S>(columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CsvOptions {
            columns: columns.into_iter().map(Into::into).collect(),
            header: true,
            delimiter: b',',
        }
    }

    /// Whether every object starts with a header row of the column names (default true).
    pub fn header(mut self, on: bool) -> Self {
        self.header = on;
        self
    }

    /// The field delimiter (default `,`; `\t` for TSV).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// The columns.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub(crate) fn validate(&self) -> Result<(), S3SinkError> {
        if self.columns.is_empty() {
            return Err(S3SinkError::Config("CSV needs at least one column".into()));
        }
        if matches!(self.delimiter, b'"' | b'\n' | b'\r') {
            return Err(S3SinkError::Config(format!(
                "{:?} cannot be the CSV delimiter",
                self.delimiter as char
            )));
        }
        Ok(())
    }
}

/// Column compression inside Parquet files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ParquetCompression {
    /// Snappy, what Firehose applies to converted records. The default.
    #[default]
    Snappy,
    /// Zstandard (level 3).
    Zstd,
    /// No compression.
    Uncompressed,
}

/// Settings of [`Format::Parquet`]: the Arrow schema of the rows and the row-group size.
///
/// Records are turned into rows through their JSON form (the sink's record encoder, by default
/// the value serialised with serde), read with the schema: fields missing from a record are
/// null, fields absent from the schema are ignored, a value of the wrong type is an error.
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetOptions {
    schema: SchemaRef,
    row_group_rows: usize,
    compression: ParquetCompression,
}

impl ParquetOptions {
    /// Rows of `schema`, in row groups of up to 1,048,576 rows, Snappy-compressed.
    pub fn new(schema: SchemaRef) -> Self {
        ParquetOptions {
            schema,
            row_group_rows: 1024 * 1024,
            compression: ParquetCompression::Snappy,
        }
    }

    /// Derives the schema from sample values through serde (integers become `Int64`, floats
    /// `Float64`, strings `Utf8`, nested structs and lists likewise; every field is nullable).
    /// Give samples in which every field is present, and fixed ones, so that the schema does not
    /// depend on the data: the files of a replay must have the same schema.
    pub fn derive_from<S: Serialize>(samples: &[S]) -> Result<Self, S3SinkError> {
        let values = samples.iter().map(|s| {
            serde_json::to_value(s).map_err(|e| arrow_schema::ArrowError::JsonError(e.to_string()))
        });
        let schema = arrow_json::reader::infer_json_schema_from_iterator(values)
            .map_err(|e| S3SinkError::Config(format!("deriving a Parquet schema: {e}")))?;
        if schema.fields().is_empty() {
            return Err(S3SinkError::Config(
                "deriving a Parquet schema: the samples have no fields".into(),
            ));
        }
        Ok(Self::new(Arc::new(schema)))
    }

    /// Rows per row group (default 1,048,576). A row group is buffered in memory until full.
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// Column compression (default Snappy).
    pub fn compression(mut self, compression: ParquetCompression) -> Self {
        self.compression = compression;
        self
    }

    /// The schema of the files.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// Compression applied to the whole object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// GZIP (level 6), as Firehose's `GZIP`; the object ends in `.gz`.
    Gzip,
    /// Zstandard (level 3); the object ends in `.zst`.
    Zstd,
}

impl Compression {
    fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

/// The file extension (with the leading dot) of objects in `format` compressed with `compression`.
pub(crate) fn extension(format: &Format, compression: Compression) -> String {
    format!(".{}{}", format.extension(), compression.extension())
}

/// A streaming compressor whose output accumulates in a `Vec` that the sink drains into
/// multipart parts as it grows, so memory per open object stays around one part.
pub(crate) enum Encoder {
    Plain(Vec<u8>),
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub(crate) fn new(compression: Compression) -> std::io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::Plain(Vec::new()),
            Compression::Gzip => {
                Encoder::Gzip(GzEncoder::new(Vec::new(), flate2::Compression::new(6)))
            }
            // Single-threaded zstd is deterministic: a replay produces the same bytes.
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        })
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Plain(v) => {
                v.extend_from_slice(data);
                Ok(())
            }
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Plain(v) => v,
            // Draining the output vector only removes bytes the compressor already emitted;
            // it keeps appending after them, so the concatenation stays one valid stream.
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Compressed bytes ready to upload.
    pub(crate) fn output_len(&mut self) -> usize {
        self.output().len()
    }

    /// Takes the compressed bytes emitted so far.
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(self.output())
    }

    /// Ends the stream and returns the remaining bytes.
    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Plain(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// Rows are handed to the Parquet writer in batches of this many, whatever the input batching,
/// so pages and row groups (and so the bytes) are the same on a replay.
const PARQUET_BATCH_ROWS: usize = 1024;

/// Parquet output: JSON lines decoded into Arrow batches with the schema, written by
/// `ArrowWriter` into a `Vec` that the sink drains into parts as it grows.
pub(crate) struct ParquetEncoder {
    decoder: arrow_json::reader::Decoder,
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetEncoder {
    fn new(options: &ParquetOptions) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let decoder = arrow_json::ReaderBuilder::new(options.schema.clone())
            .with_batch_size(PARQUET_BATCH_ROWS)
            .build_decoder()?;
        let compression = match options.compression {
            ParquetCompression::Snappy => parquet::basic::Compression::SNAPPY,
            ParquetCompression::Zstd => {
                parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(3)?)
            }
            ParquetCompression::Uncompressed => parquet::basic::Compression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(options.row_group_rows))
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), options.schema.clone(), Some(props))?;
        Ok(ParquetEncoder { decoder, writer })
    }

    fn write_line(
        &mut self,
        mut line: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        while !line.is_empty() {
            let n = self.decoder.decode(line)?;
            line = &line[n..];
            if self.decoder.len() >= PARQUET_BATCH_ROWS || n == 0 {
                self.flush_batch()?;
            }
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(batch) = self.decoder.flush()? {
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self.flush_batch()?;
        // `finish` writes the footer and flushes the writer's buffer into the Vec.
        self.writer.finish()?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }
}

/// What the CSV writer writes into: the object's compressor. `csv::Writer` lends its writer only
/// by shared reference (`get_ref`), so the compressor sits in a `RefCell` for the sink to measure
/// and drain its output between rows; nothing else borrows it, so a borrow never conflicts.
struct CsvOut(RefCell<Encoder>);

impl Write for CsvOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.get_mut().write_all(buf)?;
        Ok(buf.len())
    }

    /// Nothing to do: the CSV writer hands its buffer over before it flushes, and a compressor's
    /// flush would end a block early and change the object's bytes ([`Encoder::finish`] ends it).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// CSV output: one `csv::Writer` per object (RFC 4180 quoting, `\n` line ends) gathering rows in
/// its buffer (8 KiB) and handing them to the compressor a buffer at a time, so the output the
/// sink sees can lag the rows by up to that much until [`CsvEncoder::finish`].
pub(crate) struct CsvEncoder {
    writer: csv::Writer<CsvOut>,
    columns: Vec<String>,
    /// The JSON text of a non-string field, reused from row to row.
    scratch: Vec<u8>,
}

impl CsvEncoder {
    fn new(options: &CsvOptions, out: Encoder, key: &Path) -> Result<Self, S3SinkError> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(options.delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(CsvOut(RefCell::new(out)));
        if options.header {
            writer
                .write_record(&options.columns)
                .map_err(csv_error(key))?;
        }
        Ok(CsvEncoder {
            writer,
            columns: options.columns.clone(),
            scratch: Vec::new(),
        })
    }

    /// Adds the row of one record's JSON line: column `c` is the object's top-level field `c`
    /// (strings as they are, other values as JSON text, absent or null fields empty). A line that
    /// is not a JSON object is refused before any field is written.
    fn write_line(&mut self, line: &[u8], key: &Path) -> Result<(), S3SinkError> {
        let value: serde_json::Value = serde_json::from_slice(line).map_err(encode_error(key))?;
        let object = value
            .as_object()
            .ok_or("a CSV row needs a record whose JSON form is an object")
            .map_err(encode_error(key))?;
        for c in &self.columns {
            let written = match object.get(c) {
                None | Some(serde_json::Value::Null) => self.writer.write_field(b""),
                Some(serde_json::Value::String(s)) => self.writer.write_field(s),
                Some(other) => {
                    self.scratch.clear();
                    serde_json::to_writer(&mut self.scratch, other).map_err(encode_error(key))?;
                    self.writer.write_field(&self.scratch)
                }
            };
            written.map_err(csv_error(key))?;
        }
        // Ends the row; a row of one empty field is written `""`, as an empty line is no row.
        self.writer
            .write_record(None::<&[u8]>)
            .map_err(csv_error(key))
    }

    /// The compressor, to measure and drain its output (rows in the writer's buffer excepted).
    fn out(&self) -> std::cell::RefMut<'_, Encoder> {
        self.writer.get_ref().0.borrow_mut()
    }

    /// Hands the buffered rows to the compressor, ends its stream and returns the remaining bytes.
    fn finish(self, key: &Path) -> Result<Vec<u8>, S3SinkError> {
        let out = self
            .writer
            .into_inner()
            .map_err(|e| compress_error(key)(e.into_error()))?;
        out.0.into_inner().finish().map_err(compress_error(key))
    }
}

/// Maps a compressor's error to [`S3SinkError::Compress`] naming object `key`.
fn compress_error(key: &Path) -> impl Fn(std::io::Error) -> S3SinkError + '_ {
    |source| S3SinkError::Compress {
        key: key.to_string(),
        source,
    }
}

/// Maps an encoder's error to [`S3SinkError::Encode`] naming object `key`.
fn encode_error<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    key: &Path,
) -> impl Fn(E) -> S3SinkError + '_ {
    |source| S3SinkError::Encode {
        key: key.to_string(),
        source: source.into(),
    }
}

/// A CSV writer's error: the compressor's (I/O) as `Compress`; the others (unequal row lengths,
/// which the fixed columns rule out) as `Encode`.
fn csv_error(key: &Path) -> impl Fn(csv::Error) -> S3SinkError + '_ {
    |error| match error.into_kind() {
        csv::ErrorKind::Io(source) => compress_error(key)(source),
        other => encode_error(key)(format!("CSV writer: {other:?}")),
    }
}

/// What an open object encodes into: JSON lines or CSV through a compressor, or Parquet.
pub(crate) enum ObjectEncoder {
    Lines(Encoder),
    Parquet(Box<ParquetEncoder>),
    Csv(Box<CsvEncoder>),
}

impl ObjectEncoder {
    pub(crate) fn new(
        format: &Format,
        compression: Compression,
        key: &Path,
    ) -> Result<Self, S3SinkError> {
        Ok(match format {
            Format::JsonLines => {
                ObjectEncoder::Lines(Encoder::new(compression).map_err(compress_error(key))?)
            }
            Format::Csv(options) => {
                let out = Encoder::new(compression).map_err(compress_error(key))?;
                ObjectEncoder::Csv(Box::new(CsvEncoder::new(options, out, key)?))
            }
            Format::Parquet(options) => ObjectEncoder::Parquet(Box::new(
                ParquetEncoder::new(options).map_err(encode_error(key))?,
            )),
        })
    }

    /// Adds one record's line (JSON, ending in a newline).
    pub(crate) fn write_line(&mut self, line: &[u8], key: &Path) -> Result<(), S3SinkError> {
        match self {
            ObjectEncoder::Lines(e) => e.write_all(line).map_err(compress_error(key)),
            ObjectEncoder::Parquet(p) => p.write_line(line).map_err(encode_error(key)),
            ObjectEncoder::Csv(c) => c.write_line(line, key),
        }
    }

    /// Encoded bytes ready to upload (CSV rows still in the CSV writer's buffer are not counted).
    pub(crate) fn output_len(&mut self) -> usize {
        match self {
            ObjectEncoder::Lines(e) => e.output_len(),
            ObjectEncoder::Parquet(p) => p.writer.inner_mut().len(),
            ObjectEncoder::Csv(c) => c.out().output_len(),
        }
    }

    /// Takes the encoded bytes produced so far; later output continues after them.
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        match self {
            ObjectEncoder::Lines(e) => e.take_output(),
            ObjectEncoder::Parquet(p) => std::mem::take(p.writer.inner_mut()),
            ObjectEncoder::Csv(c) => c.out().take_output(),
        }
    }

    /// Ends the object and returns its remaining bytes.
    pub(crate) fn finish(self, key: &Path) -> Result<Vec<u8>, S3SinkError> {
        match self {
            ObjectEncoder::Lines(e) => e.finish().map_err(compress_error(key)),
            ObjectEncoder::Parquet(p) => p.finish().map_err(encode_error(key)),
            ObjectEncoder::Csv(c) => c.finish(key),
        }
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
