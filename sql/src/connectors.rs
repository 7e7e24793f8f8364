//! The in-process connectors of `CREATE TABLE ... WITH ('connector' = ...)`: `json-lines`
//! (a file of JSON objects), `generator` (a deterministic sequence), and `print` / `stdout` as a
//! sink. Broker connectors (`kafka`, `kinesis`) are bound from Rust for now.

use crate::catalog::TableDef;
use crate::error::SqlError;
use crate::exec::dead;
use crate::row::{DataType, Row, Schema, Value};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::connectors::{GeneratorSource, JsonLinesSource};
use watershed_core::{
    Collector, EventTime, FnOperator, Pipeline, Record, Stream, WatermarkStrategy,
};

/// The watermark strategy a table's DDL asks for: bounded out-of-orderness by its
/// `WATERMARK` delay, or none (event time only ends with the input) without one.
pub fn strategy<T>(table: &TableDef) -> WatermarkStrategy<T> {
    match table.rowtime {
        Some(rt) => {
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(rt.delay_ms as u64))
        }
        None => WatermarkStrategy::none(),
    }
}

/// A watermark strategy for raw JSON payloads of `table`: event time from its rowtime column.
/// Use it on a Kafka or Kinesis source whose stream is bound with
/// [`SqlContext::bind_json`](crate::SqlContext::bind_json).
pub fn json_strategy(table: &TableDef) -> WatermarkStrategy<Bytes> {
    let base = strategy::<Bytes>(table);
    let Some(rt) = table.rowtime else {
        return base;
    };
    let column = table.schema.columns[rt.column].clone();
    base.with_timestamps(move |r: &Record<Bytes>| {
        let ts = serde_json::from_slice::<serde_json::Value>(&r.value)
            .ok()
            .and_then(|j| {
                j.get(&column.name)
                    .and_then(|v| Value::from_json(v, column.data_type))
            })
            .and_then(|v| v.as_i64());
        ts.map(EventTime).unwrap_or(r.timestamp)
    })
}

/// Decodes JSON payloads into rows of `schema`; undecodable ones go to the error path.
pub fn decode_json(stream: Stream<Bytes>, schema: Arc<Schema>) -> Stream<Row> {
    let name = stream.auto_name("sql-decode-json");
    stream.apply(
        &name,
        FnOperator::new(move |batch: Vec<Record<Bytes>>, out: &mut Collector<Row>| {
            for r in batch {
                match schema.row_from_json(&r.value) {
                    Ok(row) => out.emit(r.with_value(row)),
                    Err(e) => out.reject(
                        watershed_core::DeadLetter::new(format!("JSON row: {e}"), r.value.clone())
                            .at(r.origin.clone(), r.timestamp),
                    ),
                }
            }
        }),
    )
}

fn option<'a>(table: &'a TableDef, key: &str) -> Result<&'a str, SqlError> {
    table.options.get(key).map(String::as_str).ok_or_else(|| {
        SqlError::invalid(
            format!(
                "table `{}` ('connector' = '{}') needs the option '{key}'",
                table.name,
                table.connector()
            ),
            table.at,
        )
    })
}

fn number(table: &TableDef, key: &str, default: u64) -> Result<u64, SqlError> {
    match table.options.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            SqlError::invalid(
                format!("option '{key}' = '{v}' is not a whole number"),
                table.at,
            )
        }),
    }
}

/// Opens the source of `table` in `pipeline`.
pub fn open_source(pipeline: &Pipeline, table: &TableDef) -> Result<Stream<Row>, SqlError> {
    match table.connector() {
        "json-lines" | "filesystem" => {
            let path = option(table, "path")?;
            let bytes = pipeline.source(&table.name, JsonLinesSource::new([path]), json_strategy(table));
            Ok(decode_json(bytes, table.schema.clone()))
        }
        "generator" | "datagen" => generator(pipeline, table),
        "kafka" | "kinesis" => Err(SqlError::invalid(
            format!(
                "table `{}` uses connector '{}': bind its stream from Rust with SqlContext::bind_json or bind_rows (broker connectors in SQL come later)",
                table.name,
                table.connector()
            ),
            table.at,
        )),
        "" => Err(SqlError::invalid(
            format!("table `{}` has no 'connector' option and no stream bound from Rust", table.name),
            table.at,
        )),
        other => Err(SqlError::invalid(format!("unknown source connector '{other}'"), table.at)),
    }
}

/// `'connector' = 'generator'`: `number-of-rows` rows (default 100), row `i` holding `i` in
/// numeric columns, `'<column>-<i>'` in strings, `i % 2 = 0` in booleans and
/// `start + i * interval-ms` in timestamps (defaults 0 and 1000).
fn generator(pipeline: &Pipeline, table: &TableDef) -> Result<Stream<Row>, SqlError> {
    let rows = number(table, "number-of-rows", 100)?;
    let step = number(table, "interval-ms", 1000)? as i64;
    let start = number(table, "start-ms", 0)? as i64;
    let schema = table.schema.clone();
    let rowtime = table.rowtime.map(|r| r.column);
    let make = move |_split: usize, i: u64| {
        let i = i as i64;
        let ts = start.saturating_add(i.saturating_mul(step));
        let values = schema
            .columns
            .iter()
            .map(|c| match c.data_type {
                DataType::Int => Value::Int(i),
                DataType::Float => Value::Float(i as f64),
                DataType::Str => Value::Str(format!("{}-{i}", c.name)),
                DataType::Bool => Value::Bool(i % 2 == 0),
                DataType::Timestamp => Value::Timestamp(ts),
                DataType::Null => Value::Null,
            })
            .collect::<Vec<_>>();
        let time = rowtime.and_then(|r| values[r].as_i64()).unwrap_or(ts);
        Record::new(Row::new(schema.clone(), values), EventTime(time))
    };
    let mut source = GeneratorSource::new(1, rows, make);
    if let Some(rate) = table
        .options
        .get("rows-per-second")
        .and_then(|r| r.parse::<f64>().ok())
    {
        source = source.rate(rate);
    }
    Ok(pipeline.source(&table.name, source, strategy(table)))
}

/// Re-tags rows with `schema` (an `INSERT INTO` a declared table takes its columns by position).
pub fn retag(stream: Stream<Row>, schema: Arc<Schema>) -> Stream<Row> {
    let name = stream.auto_name("sql-retag");
    stream.apply(
        &name,
        FnOperator::new(move |batch: Vec<Record<Row>>, out: &mut Collector<Row>| {
            for r in batch {
                let row = Row::new(schema.clone(), r.value.values.clone());
                out.emit(r.with_value(row));
            }
        }),
    )
}

/// Brings rows bound from Rust into the table's column order (by name) when their schema differs.
pub fn conform(stream: Stream<Row>, schema: Arc<Schema>) -> Stream<Row> {
    let name = stream.auto_name("sql-conform");
    // The last foreign schema found equal to the table's: rows of one source share one Arc.
    let mut same: Option<Arc<Schema>> = None;
    stream.apply(
        &name,
        FnOperator::new(move |batch: Vec<Record<Row>>, out: &mut Collector<Row>| {
            for r in batch {
                let known = same
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(s, &r.value.schema));
                if known || Arc::ptr_eq(&r.value.schema, &schema) {
                    out.emit(r);
                    continue;
                }
                if *r.value.schema == *schema {
                    same = Some(r.value.schema.clone());
                    out.emit(r);
                    continue;
                }
                let mut bad = None;
                let values = schema
                    .columns
                    .iter()
                    .map(|c| match r.value.get(&c.name) {
                        None | Some(Value::Null) => Value::Null,
                        Some(v) => match crate::expr::cast(v.clone(), c.data_type) {
                            Ok(v) => v,
                            Err(e) => {
                                bad = Some(format!("column `{}`: {e}", c.name));
                                Value::Null
                            }
                        },
                    })
                    .collect();
                match bad {
                    Some(reason) => out.reject(dead(&r, reason)),
                    None => out.emit(r.with_value(Row::new(schema.clone(), values))),
                }
            }
        }),
    )
}
