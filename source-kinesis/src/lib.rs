//! Kinesis Data Streams for Watershed: a source (shards as splits, GetRecords polling or
//! enhanced fan-out, resharding in parent → child order, throttling backoff, positions in
//! Watershed checkpoints) and an at-least-once PutRecords sink.
//!
//! ```no_run
//! # use watershed_source_kinesis::{AwsOptions, KinesisSource, StartPosition};
//! let source = KinesisSource::builder("orders")
//!     .aws(AwsOptions::new().region("eu-west-1"))
//!     .start_position(StartPosition::TrimHorizon)
//!     .build();
//! ```
//!
//! Metrics (through the `metrics` facade): `watershed_throttled_total{stream,operation}`,
//! `watershed_kinesis_retries_total{stream,operation}`,
//! `watershed_kinesis_millis_behind_latest{stream,shard}` (iterator age),
//! `watershed_kinesis_records_in_total{stream,shard}`,
//! `watershed_kinesis_get_records_seconds{stream}`, `watershed_kinesis_records_out_total{stream,shard}`.
//! See `docs/kinesis.md` for positions, resharding, limits and what maps to the KCL.
#![deny(missing_docs)]

mod backoff;
mod config;
mod deaggregate;
mod efo;
mod error;
mod sequence;
mod sink;
mod source;
mod stats;

pub use backoff::Backoff;
pub use config::{AwsOptions, StreamRef};
pub use deaggregate::{aggregate, deaggregate, UserRecord, KPL_MAGIC};
pub use error::KinesisError;
pub use sequence::{cmp_positions, cmp_sequence_numbers, is_valid_sequence_number};
pub use sink::{
    default_partition_key, KinesisSink, KinesisSinkBuilder, MAX_BYTES_PER_REQUEST,
    MAX_RECORDS_PER_REQUEST, MAX_RECORD_BYTES,
};
pub use source::{
    KinesisPosition, KinesisSource, KinesisSourceBuilder, ShardPosition, SourceOptions,
    StartPosition, LATEST_CLOCK_ALLOWANCE_MS,
};
pub use stats::KinesisStats;
