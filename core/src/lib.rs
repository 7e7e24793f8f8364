//! Watershed core.
#![deny(missing_docs)]
