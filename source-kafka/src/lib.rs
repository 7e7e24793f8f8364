//! Kafka for Watershed: a [`KafkaSource`] on a consumer group and a [`KafkaSink`] on an
//! idempotent producer, both built on rdkafka (librdkafka).
//!
//! - Partitions are splits. The source subscribes with the cooperative-sticky assignor; on
//!   assignment it seeks each partition to the position in the restored Watershed checkpoint,
//!   else the group's committed offset, else the configured start position.
//! - A position is the **next offset to read** (last processed + 1), in checkpoints and in the
//!   offsets committed to Kafka. Auto-commit is off; offsets are committed to the group only
//!   when a Watershed checkpoint completes, and only for partitions still assigned.
//! - Partitions revoked from a live instance (cooperative protocol) are handed over at a
//!   checkpoint: the source stops emitting them, asks for a checkpoint, and releases them
//!   only once a checkpoint holding their final positions has completed and those offsets
//!   are committed, so the new owner starts exactly where this instance's output ends.
//! - Reads are batched: assigned partitions forward their messages to one librdkafka queue,
//!   which the source takes up to a batch at a time from in one call, into per-partition
//!   batches (no await, no FFI call per message). librdkafka's prefetch is bounded by
//!   `queued.max.messages.kbytes`, so a back-pressured pipeline stops fetching. A pipeline
//!   stalled for a quarter of `max.poll.interval.ms` has its partitions paused while a thread
//!   of the source keeps the consumer in its group.
//! - Topics are checked: a missing or deleted input topic, a resumed position outside the
//!   partition's log and an unreachable cluster are errors naming what is wrong
//!   ([`MissingTopics`], [`OutOfRange`]). The sink checks each record against the output
//!   topic's limits in `write` and hands what Kafka would refuse to the pipeline's error
//!   policy, so a transaction is never refused at `commit` for what a record holds
//!   ([`OutputTimestamp`] chooses the timestamp written). See docs/kafka.md.
//!
//! ```no_run
//! use watershed_source_kafka::{KafkaSource, StartPosition};
//! let source = KafkaSource::builder("127.0.0.1:9092", "analytics")
//!     .topic("page-views")
//!     .start(StartPosition::Earliest)
//!     .build()
//!     .unwrap();
//! ```
#![deny(missing_docs)]

mod connect;
mod epoch;
mod error;
mod fetch;
mod keepalive;
mod limits;
pub mod metric_catalogue;
mod out_of_range;
mod produce;
mod rebalance;
mod sink;
mod source;
mod starts;
mod topic_check;

pub use epoch::{KafkaEpoch, PendingRecord};
pub use error::KafkaError;
pub use limits::OutputTimestamp;
pub use out_of_range::OutOfRange;
pub use sink::{KafkaSink, KafkaSinkBuilder};
pub use source::{KafkaPosition, KafkaSource, KafkaSourceBuilder, StartPosition};
pub use topic_check::MissingTopics;
