//! Watershed core: records, event time and watermarks, the `Source`, `Operator` and `Sink`
//! traits, checkpoints, and the runtime that runs a typed pipeline of them.
//!
//! Core names no broker. Backends (`watershed-source-kafka`, `watershed-source-kinesis`,
//! `watershed-sink-s3`) implement the traits; operators live in `watershed-operators`.
//!
//! The model in one paragraph: sources read **batches** per split; the runtime assigns
//! watermarks per split and moves batches through bounded channels (back-pressure) interleaved
//! with control messages; operators process batches and fire on watermarks; a coordinator takes
//! **aligned-barrier checkpoints** (source positions, operator state, sink pre-commit handles,
//! manifest written last), then tells sinks to commit and sources to commit to their brokers. A
//! restarted pipeline restores the latest complete checkpoint, re-commits its sink handles and
//! resumes its sources, so sinks with two-phase commit see every record exactly once.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod checkpoint;
mod config;
pub mod connectors;
pub mod dead_letter;
pub mod error;
pub mod key_group;
mod message;
pub mod metric_catalogue;
pub mod operator;
pub mod pipeline;
pub mod record;
mod runtime;
pub mod sink;
pub mod source;
pub mod time;
pub mod watermark;
pub mod window;

pub use checkpoint::{CheckpointId, CheckpointStore, CorruptCheckpoint, Manifest};
pub use dead_letter::{DeadLetter, ErrorPolicy, RecentRejections, Rejection};
pub use error::{BoxError, Error, Result};
pub use key_group::{KeyBytes, KeyGroupRange, KeyGroupSnapshot, KeyGroups};
pub use operator::{Collector, Operator, OperatorContext};
pub use pipeline::{
    EdgeDescription, Either, FnOperator, KeyedStream, NodeDescription, NodeKind, Pipeline,
    PipelineConfig, PipelineDescription, RunSummary, ShutdownHandle, Stream, Transport,
};
pub use record::{
    Batch, Header, Headers, Offset, Origin, Record, SequenceNumber, SplitId, SplitRef,
};
pub use sink::{Sink, SinkContext};
pub use source::{Source, SourceEvent};
pub use time::EventTime;
pub use watermark::WatermarkStrategy;
pub use window::{
    SessionWindows, SlidingWindows, TumblingWindows, Window, WindowAssigner, WindowConfigError,
};

pub use async_trait::async_trait;
