//! Brokerless sources and sinks: for the embedded quickstart, tests and local runs.

mod collect;
mod generator;
mod json_lines;
mod local_dir;
mod stdout;

pub use collect::{CollectHandle, CollectSink};
pub use generator::{GeneratorPosition, GeneratorSource};
pub use json_lines::{JsonLinesPosition, JsonLinesSource};
pub use local_dir::{LocalDirHandle, LocalDirSink};
pub use stdout::StdoutSink;
