//! Shared code of the Watershed examples.
