//! Kinesis shard utilisation, hot partition keys and right-sizing for Watershed (the ADR's
//! phase 3): sample a stream ([`sample()`]), turn the sample into advice ([`advise`]: per-shard
//! write utilisation, hot keys, the shard count for a target utilisation, salting advice),
//! and, opt-in, scale the stream ([`Autoscaler`], [`scale`]).
//!
//! ```
//! use watershed_advisor::{advise, ShardSample, StreamSample};
//! let mut shard = ShardSample::new("shardId-000000000000");
//! for i in 0..1_800 {
//!     shard.add("user-1", 100, i); // 1,800 records within 1.8 s
//! }
//! let sample = StreamSample { stream: "orders".into(), shards: vec![shard], window_secs: 0.0 };
//! let advice = advise(&sample, 0.6);
//! assert_eq!(advice.recommended_shards, 2); // 1,000 records/s ÷ 1,000 ÷ 0.6, rounded up
//! assert_eq!(advice.shards[0].hot_keys[0].key, "user-1");
//! ```
//!
//! The binary `watershed-advisor` wraps this; see `docs/utilisation.md`.
#![deny(missing_docs)]

pub mod advice;
pub mod autoscale;
pub mod cli;
mod error;
pub mod report;
pub mod sample;

pub use advice::{advise, recommended_shards, Advice, HotKey, KeyAdvice, Level, ShardReport};
pub use autoscale::{scale, AutoscaleConfig, Autoscaler, Decision, Observation};
pub use error::AdvisorError;
pub use sample::{open_shards, sample, From, ShardSample, StreamSample};
