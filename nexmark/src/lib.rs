//! Nexmark for Watershed: a deterministic generator of the Nexmark auction stream (persons,
//! auctions, bids), a loader that writes it as JSON into Kafka, the queries q0–q8 as ordinary
//! functions over `Stream<Event>`, and the harness behind the `nexmark` bench binary.
//!
//! ```
//! use watershed_core::{connectors::CollectSink, *};
//! use watershed_nexmark::{generator::*, queries};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
//! let pipeline = Pipeline::new(
//!     PipelineConfig::new("nexmark-doc").checkpoint_store(CheckpointStore::memory()),
//! );
//! let generator = NexmarkGenerator::new(GeneratorConfig::new().rate(1_000));
//! let events = pipeline.source(
//!     "events",
//!     generator.source(10_000, 1),
//!     WatermarkStrategy::bounded_out_of_orderness(MAX_OUT_OF_ORDER),
//! );
//! let hot = CollectSink::new();
//! queries::q5(events).sink("hot-items", hot.clone());
//! pipeline.run().await?;
//! assert!(!hot.values().is_empty());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod generator;
pub mod harness;
pub mod kafka;
pub mod model;
pub mod queries;

pub use model::{Auction, Bid, Event, Person};
