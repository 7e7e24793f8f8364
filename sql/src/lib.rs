//! Watershed SQL: Flink-style streaming SQL compiled onto Watershed's own operators.
//!
//! `CREATE TABLE` declares a table's columns, its event-time column and watermark, and its
//! connector; `SELECT` with `WHERE`, projections, and the window table functions `TUMBLE` and
//! `HOP` with `GROUP BY window_start, window_end, keys` and aggregates compiles into a chain of
//! `watershed-operators` operators on a [`Pipeline`](watershed_core::Pipeline), so a SQL query
//! runs under the same runtime, checkpoints and sinks as Rust code, and mixes with it:
//! [`SqlContext::bind_rows`] and [`SqlContext::bind_json`] take streams from any Rust source,
//! [`SqlContext::query`] and [`sql_query`] return a `Stream<Row>`, and
//! [`SqlContext::register_sink`] makes any `Sink<Item = Row>` an `INSERT INTO` target.
//!
//! Modules, one concept each: [`parser`] (front-end over sqlparser-rs), [`catalog`] (tables),
//! [`row`] (values and JSON), [`expr`] and [`functions`] (scalar expressions), `compile`
//! (SQL → typed expressions), [`aggregate`], [`window`], [`planner`], [`exec`] (plan →
//! operators), [`explain`], [`connectors`], [`error`].
//! docs/sql.md is the user guide.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod catalog;
mod compile;
pub mod connectors;
mod context;
pub mod error;
pub mod exec;
pub mod explain;
pub mod expr;
pub mod functions;
pub mod parser;
pub mod planner;
pub mod row;
pub mod time;
pub mod window;

pub use catalog::TableDef;
pub use context::{schema_of, sql_query, Outcome, SqlContext};
pub use error::{Location, SqlError};
pub use row::{Column, DataType, Row, Schema, Value};

// docs/sql.md is the user guide; its Rust snippet runs as a doctest here.
#[doc = include_str!("../../docs/sql.md")]
#[cfg(doctest)]
pub struct SqlGuide;
