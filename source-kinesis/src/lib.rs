//! Kinesis source and PutRecords sink for Watershed.
//!
//! Not implemented yet: this crate is a placeholder in the workspace layout so that the
//! dependency graph is fixed early. It exports nothing that pretends to work.
#![deny(missing_docs)]
