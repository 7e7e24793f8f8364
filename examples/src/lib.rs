//! Shared code of the Watershed examples: a deterministic clickstream, and the analytics that
//! every example runs unchanged, whatever the source.

pub mod analytics;
pub mod cli;
pub mod clickstream;
pub mod lifecycle;
#[cfg(feature = "brokers")]
pub mod observe;

/// The README's code sample, compiled and run as a doctest so it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
