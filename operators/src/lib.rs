//! Watershed operators.
#![deny(missing_docs)]
