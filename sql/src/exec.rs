//! Runs a [`Plan`] on Watershed's operators: stateless steps as chained operators, windowed
//! aggregations as `key_by` + `window` + `aggregate` from `watershed-operators`. Rows whose
//! expressions fail (division by zero, a bad cast) go to the pipeline's error path.

use crate::expr::Expr;
use crate::planner::{Plan, Step, WindowAggregate};
use crate::row::{Row, Schema, Value};
use std::sync::Arc;
use watershed_core::{
    Collector, DeadLetter, EventTime, FnOperator, Record, Stream, Window, WindowAssigner,
};
use watershed_operators::prelude::*;
use watershed_operators::WindowResult;

/// Applies every step of `plan` to `input` (the rows of its source table).
pub fn build(plan: &Plan, input: Stream<Row>) -> Stream<Row> {
    let mut stream = input;
    for step in &plan.steps {
        stream = match step {
            Step::Filter { predicate, .. } => filter(stream, predicate.clone()),
            Step::Project { exprs, schema, .. } => project(stream, exprs.clone(), schema.clone()),
            Step::Windows {
                assigner, schema, ..
            } => windows(stream, assigner.clone(), schema.clone()),
            Step::Aggregate(agg) => aggregate(stream, agg),
        };
    }
    stream
}

/// A dead letter for `row`, rejected because of `reason`.
pub(crate) fn dead(record: &Record<Row>, reason: String) -> DeadLetter {
    let payload = serde_json::to_vec(&record.value).unwrap_or_default();
    DeadLetter::new(reason, payload).at(record.origin.clone(), record.timestamp)
}

fn filter(stream: Stream<Row>, predicate: Expr) -> Stream<Row> {
    let name = stream.auto_name("sql-filter");
    stream.apply(
        &name,
        FnOperator::new(move |batch: Vec<Record<Row>>, out: &mut Collector<Row>| {
            for r in batch {
                match predicate.is_true(&r.value.values) {
                    Ok(true) => out.emit(r),
                    Ok(false) => {}
                    Err(e) => out.reject(dead(&r, format!("WHERE: {e}"))),
                }
            }
        }),
    )
}

fn eval_all(exprs: &[Expr], row: &[Value]) -> Result<Vec<Value>, crate::expr::EvalError> {
    exprs.iter().map(|e| e.eval(row)).collect()
}

fn project(stream: Stream<Row>, exprs: Vec<Expr>, schema: Arc<Schema>) -> Stream<Row> {
    let name = stream.auto_name("sql-project");
    stream.apply(
        &name,
        FnOperator::new(move |batch: Vec<Record<Row>>, out: &mut Collector<Row>| {
            for r in batch {
                match eval_all(&exprs, &r.value.values) {
                    Ok(values) => {
                        let row = Row::new(schema.clone(), values);
                        out.emit(r.with_value(row));
                    }
                    Err(e) => out.reject(dead(&r, format!("SELECT: {e}"))),
                }
            }
        }),
    )
}

fn windows(
    stream: Stream<Row>,
    assigner: crate::window::Assigner,
    schema: Arc<Schema>,
) -> Stream<Row> {
    let name = stream.auto_name("sql-window-tvf");
    let mut found: Vec<Window> = Vec::new();
    stream.apply(
        &name,
        FnOperator::new(move |batch: Vec<Record<Row>>, out: &mut Collector<Row>| {
            for r in batch {
                found.clear();
                assigner.assign(r.timestamp, &mut found);
                for w in &found {
                    let mut values = r.value.values.clone();
                    values.extend([
                        Value::Timestamp(w.start.0),
                        Value::Timestamp(w.end.0),
                        Value::Timestamp(w.end.0 - 1),
                    ]);
                    out.emit(r.with_value(Row::new(schema.clone(), values)));
                }
            }
        }),
    )
}

/// The group key of a pre-projected row: its first `keys` values, encoded.
fn group_key(values: &[Value], keys: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(keys * 9);
    values.iter().take(keys).for_each(|v| v.encode(&mut buf));
    buf
}

fn aggregate(stream: Stream<Row>, agg: &WindowAggregate) -> Stream<Row> {
    let pre = agg.pre.clone();
    let name = stream.auto_name("sql-pre-aggregate");
    let projected: Stream<Vec<Value>> = stream.apply(
        &name,
        FnOperator::new(
            move |batch: Vec<Record<Row>>, out: &mut Collector<Vec<Value>>| {
                for r in batch {
                    match eval_all(&pre, &r.value.values) {
                        Ok(values) => out.emit(r.with_value(values)),
                        Err(e) => out.reject(dead(&r, format!("aggregate argument: {e}"))),
                    }
                }
            },
        ),
    );
    let keys = agg.keys;
    let name = projected.auto_name("sql-window-aggregate");
    let schema = agg.schema.clone();
    projected
        .key_by(move |v: &Vec<Value>| group_key(v, keys))
        .window(agg.assigner.clone())
        .aggregate_named(&name, agg.aggregates.clone())
        .map(move |r: WindowResult<Vec<u8>, Vec<Value>>| group_row(&schema, keys, r))
}

/// `[window_start, window_end, keys..., aggregates...]`.
fn group_row(schema: &Arc<Schema>, keys: usize, r: WindowResult<Vec<u8>, Vec<Value>>) -> Row {
    let mut values = Vec::with_capacity(schema.len());
    values.push(Value::Timestamp(r.window.start.0));
    values.push(Value::Timestamp(r.window.end.0));
    let mut rest = r.key.as_slice();
    for _ in 0..keys {
        match Value::decode(rest) {
            Some((v, tail)) => {
                values.push(v);
                rest = tail;
            }
            None => values.push(Value::Null),
        }
    }
    values.extend(r.value);
    Row::new(schema.clone(), values)
}

/// Sets each record's event time from column `rowtime` (a `TIMESTAMP` or epoch-ms `BIGINT`);
/// rows whose time is `NULL` go to the error path.
pub fn stamp(stream: Stream<Row>, rowtime: usize) -> Stream<Row> {
    let name = stream.auto_name("sql-rowtime");
    stream.apply(
        &name,
        FnOperator::new(move |batch: Vec<Record<Row>>, out: &mut Collector<Row>| {
            for mut r in batch {
                match r.value.values.get(rowtime).and_then(Value::as_i64) {
                    Some(t) => {
                        r.timestamp = EventTime(t);
                        out.emit(r);
                    }
                    None => out.reject(dead(&r, "NULL event time".into())),
                }
            }
        }),
    )
}
