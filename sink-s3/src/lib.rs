//! Firehose-style object sink (S3, local directory, memory) for Watershed, exactly once.
//!
//! [`S3Sink`] buffers records per output partition into objects under a prefix of any
//! [`object_store`] store, with Hive-style partitions by event time
//! (`prefix/dt=2026-11-25/hour=17/…`), JSON lines compressed with gzip or zstd or Parquet
//! ([`Format::Parquet`], schema given or derived with serde), objects rolled by
//! size, record count or record time, and deterministic names (pipeline, node, checkpoint epoch,
//! sequence). Objects become visible only when the checkpoint that covers them completes: on S3
//! by completing multipart uploads, elsewhere by copying staged objects; both are idempotent, so
//! a restarted pipeline commits the restored checkpoint again without duplicating anything.
//! [`S3Sink::dead_letters`] is the error prefix. See `docs/s3-sink.md`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use watershed_sink_s3::{amazon_s3_from_env, Compression, S3Sink};
//! # fn demo() -> Result<(), watershed_sink_s3::S3SinkError> {
//! let s3 = Arc::new(amazon_s3_from_env()?);
//! let sink = S3Sink::<serde_json::Value>::s3(s3, "events")
//!     .compression(Compression::Gzip)
//!     .max_object_records(100_000)
//!     .build()?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod buffer;
mod builder;
mod commit;
mod dead_letter;
mod error;
mod format;
mod key;
pub mod metric_catalogue;
mod partition;
mod sink;
#[cfg(test)]
mod tests;
mod upload;

pub use builder::{PartitionField, PartitionTime, RecordEncoder, S3SinkBuilder};
pub use commit::{PendingCommit, PendingObject, S3SinkHandle};
pub use dead_letter::encode_dead_letter;
pub use error::S3SinkError;
pub use format::{Compression, CsvOptions, Format, ParquetCompression, ParquetOptions};
pub use sink::S3Sink;

use object_store::aws::{AmazonS3, AmazonS3Builder};

/// The builder behind [`amazon_s3_from_env`], for a client that changes a setting before it
/// is built (another bucket, say) and keeps the rest: credentials, region and endpoint.
pub fn amazon_s3_builder_from_env() -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::from_env();
    if let Ok(endpoint) = std::env::var("WATERSHED_S3_ENDPOINT") {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_endpoint(endpoint);
    }
    if let Ok(bucket) = std::env::var("WATERSHED_S3_BUCKET") {
        builder = builder.with_bucket_name(bucket);
    }
    builder
}

/// An S3 client configured from the environment: the standard `AWS_*` variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, …), plus
/// `WATERSHED_S3_ENDPOINT` and `WATERSHED_S3_BUCKET`, which take precedence (the local S3
/// server of `scripts/brokers` uses them). A plain `http://` endpoint is allowed and addressed
/// path-style, as local S3 servers need.
pub fn amazon_s3_from_env() -> Result<AmazonS3, S3SinkError> {
    amazon_s3_builder_from_env()
        .build()
        .map_err(|e| S3SinkError::Config(format!("S3 client from the environment: {e}")))
}
