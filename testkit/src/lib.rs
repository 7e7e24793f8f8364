//! Watershed testkit: test a pipeline function without brokers and without timing.
//!
//! - [`TestDriver`] runs a pipeline function on the real runtime with driver-fed named inputs
//!   (Kafka Streams' `TopologyTestDriver` is the model): send records with event times, move
//!   watermarks by hand, read each named output, restart from the last checkpoint, finish.
//!   docs/testing.md walks through it.
//! - [`SinkSuite`] checks that a [`Sink`](watershed_core::Sink) implementation delivers
//!   exactly once through pre-commit, commit, crashes, recovery and abort.
//! - [`SourceSuite`] checks that a bounded [`Source`](watershed_core::Source) resumes from a
//!   restored position at the next record, skipping and repeating nothing.
//! - [`FailingSource`] and [`FailingSink`] wrap any source or sink and fail once, at a chosen
//!   point (a [`Fault`]), to test that a pipeline recovers exactly once.
//! - [`env`](mod@env): where the local brokers are (from the environment) and
//!   [`env::unique`] names; [`clients`]: clients of those brokers, behind the cargo features
//!   `kafka`, `kinesis` and `s3`, so that a crate that only wants the driver builds no SDK.
//! - [`bench`](mod@bench): the benchmark harness (interleaved baseline/candidate pairs, CPU
//!   seconds, peak RSS, medians, `BENCH` lines, a discarding sink).
//!
//! Processing time does not exist in Watershed (no processing-time timers or windows), so
//! the driver has no clock to advance: event time and watermarks are all there is to drive.
#![deny(missing_docs)]
// The one exception is `bench::cpu_seconds` (getrusage), allowed where it is.
#![deny(unsafe_code)]

pub mod bench;
pub mod clients;
mod driver;
pub mod env;
mod error;
mod faults;
mod input;
#[cfg(feature = "s3")]
pub mod objects;
mod sink_suite;
mod source_suite;
mod wiring;

pub use driver::{TestDriver, TestDriverBuilder, TestInput};
pub use error::{Result, TestkitError};
pub use faults::{FailAt, FailWith, FailingSink, FailingSource, Fault};
pub use sink_suite::{SinkSuite, SINK_RULES};
pub use source_suite::{SourceSuite, SOURCE_RULES};
pub use wiring::TestPipeline;

// docs/testing.md is the user guide for the driver; its example runs as a doctest here.
#[doc = include_str!("../../docs/testing.md")]
#[cfg(doctest)]
pub struct TestingGuide;
