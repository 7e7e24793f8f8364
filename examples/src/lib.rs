//! Shared code of the Watershed examples: a deterministic clickstream and the analytics that
//! every example runs unchanged, whatever the source.

pub mod clickstream;
