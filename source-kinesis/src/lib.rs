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
//! `watershed_kinesis_get_records_seconds{stream}`, `watershed_kinesis_records_out_total{stream,shard}`,
//! `watershed_kinesis_missing_streams{stream}` (1 while waiting for a missing stream),
//! `watershed_kinesis_positions_out_of_range_total{stream}`; with leases
//! ([`KinesisSourceBuilder::leases`]) `watershed_kinesis_leases_held{table,worker}`,
//! `watershed_kinesis_leases_{taken,expired,stolen,lost}_total{table}` and
//! `watershed_kinesis_lease_table_seconds{table,operation}`.
//! See `docs/kinesis.md` for positions, resharding, limits and what maps to the KCL.
#![deny(missing_docs)]

mod backoff;
mod config;
mod deaggregate;
mod efo;
mod error;
mod lease;
pub mod metric_catalogue;
mod out_of_range;
mod position;
mod presence;
mod reader;
mod retry;
mod sequence;
mod sink;
mod source;
mod stats;
pub mod utilisation;

pub use backoff::Backoff;
pub use config::{AwsOptions, StreamRef};
pub use deaggregate::{aggregate, deaggregate, UserRecord, KPL_MAGIC};
pub use error::{KinesisError, ShardOutOfRange};
pub use lease::{Lease, LeaseCheckpoint, LeaseConfig, LeaseCoordinator, LeaseCounts, LeaseTable};
pub use position::LATEST_CLOCK_ALLOWANCE_MS;
pub use sequence::{cmp_positions, cmp_sequence_numbers, is_valid_sequence_number};
pub use sink::{
    default_partition_key, KinesisSink, KinesisSinkBuilder, MAX_BYTES_PER_REQUEST,
    MAX_RECORDS_PER_REQUEST, MAX_RECORD_BYTES,
};
pub use source::{
    KinesisPosition, KinesisSource, KinesisSourceBuilder, MissingStream, OutOfRange, ShardPosition,
    SourceOptions, StartPosition,
};
pub use stats::KinesisStats;
