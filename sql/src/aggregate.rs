//! SQL aggregates — `COUNT(*)`, `COUNT(x)`, `COUNT(DISTINCT x)`, `SUM`, `MIN`, `MAX`, `AVG` —
//! as one Watershed [`Aggregator`] over pre-projected rows, and the scope that resolves names
//! in a grouped `SELECT`.

use crate::compile::{at, compile, plain_args, RowScope, Scope, Typed};
use crate::error::{Location, SqlError};
use crate::expr::{compare, Expr};
use crate::row::{DataType, Schema, Value};
use serde::{Deserialize, Serialize};
use sqlparser::ast;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use watershed_operators::Aggregator;

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// `COUNT(*)`
    CountStar,
    /// `COUNT(x)`: non-null values.
    Count,
    /// `COUNT(DISTINCT x)`
    CountDistinct,
    /// `SUM(x)`
    Sum,
    /// `MIN(x)`
    Min,
    /// `MAX(x)`
    Max,
    /// `AVG(x)`: `BIGINT` for a `BIGINT` argument (truncated, as Flink), else `DOUBLE`.
    Avg,
}

/// One aggregate of a grouped query: its function, the index of its argument in the
/// pre-projected row, and its argument type.
#[derive(Clone, Debug, PartialEq)]
pub struct AggCall {
    /// The function.
    pub kind: AggKind,
    /// Index of the argument in the pre-projected row (`None` for `COUNT(*)`).
    pub arg: Option<usize>,
    /// The argument's type.
    pub arg_type: DataType,
    /// As written, for EXPLAIN.
    pub text: String,
}

impl AggCall {
    /// The result type.
    pub fn result_type(&self) -> DataType {
        match self.kind {
            AggKind::CountStar | AggKind::Count | AggKind::CountDistinct => DataType::Int,
            _ => self.arg_type,
        }
    }
}

/// The running state of one aggregate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AggState {
    /// A count.
    Count(i64),
    /// The encoded distinct values.
    Distinct(BTreeSet<Vec<u8>>),
    /// A `BIGINT` sum (wrapping), `None` before the first non-null value.
    SumInt(Option<i64>),
    /// A `DOUBLE` sum.
    SumFloat(Option<f64>),
    /// The least or greatest value so far.
    Extreme(Option<Value>),
    /// Sum and count for `AVG`.
    Avg(f64, i128, i64),
}

/// Every aggregate of a grouped query over rows of `[keys..., arguments...]`.
#[derive(Clone, Debug)]
pub struct SqlAggregates {
    /// The aggregates, in select order.
    pub calls: Vec<AggCall>,
}

impl SqlAggregates {
    fn state(call: &AggCall) -> AggState {
        match (call.kind, call.arg_type) {
            (AggKind::CountStar | AggKind::Count, _) => AggState::Count(0),
            (AggKind::CountDistinct, _) => AggState::Distinct(BTreeSet::new()),
            (AggKind::Sum, DataType::Float) => AggState::SumFloat(None),
            (AggKind::Sum, _) => AggState::SumInt(None),
            (AggKind::Min | AggKind::Max, _) => AggState::Extreme(None),
            (AggKind::Avg, _) => AggState::Avg(0.0, 0, 0),
        }
    }
}

fn better(kind: AggKind, new: &Value, old: &Value) -> bool {
    let want = if kind == AggKind::Min {
        Ordering::Less
    } else {
        Ordering::Greater
    };
    compare(new, old) == Some(want)
}

fn add_one(call: &AggCall, state: &mut AggState, v: &Value) {
    if v.is_null() && call.kind != AggKind::CountStar {
        return;
    }
    match state {
        AggState::Count(n) => *n += 1,
        AggState::Distinct(set) => {
            let mut buf = Vec::new();
            v.encode(&mut buf);
            set.insert(buf);
        }
        AggState::SumInt(s) => *s = Some(s.unwrap_or(0).wrapping_add(v.as_i64().unwrap_or(0))),
        AggState::SumFloat(s) => *s = Some(s.unwrap_or(0.0) + v.as_f64().unwrap_or(0.0)),
        AggState::Extreme(e) => {
            if e.as_ref().is_none_or(|old| better(call.kind, v, old)) {
                *e = Some(v.clone());
            }
        }
        AggState::Avg(f, i, n) => {
            match v {
                Value::Int(x) => *i += *x as i128,
                other => *f += other.as_f64().unwrap_or(0.0),
            }
            *n += 1;
        }
    }
}

fn merge_one(call: &AggCall, state: &mut AggState, other: AggState) {
    match (state, other) {
        (AggState::Count(a), AggState::Count(b)) => *a += b,
        (AggState::Distinct(a), AggState::Distinct(b)) => a.extend(b),
        (AggState::SumInt(a), AggState::SumInt(Some(b))) => {
            *a = Some(a.unwrap_or(0).wrapping_add(b));
        }
        (AggState::SumFloat(a), AggState::SumFloat(Some(b))) => {
            *a = Some(a.unwrap_or(0.0) + b);
        }
        (AggState::Extreme(a), AggState::Extreme(Some(b)))
            if a.as_ref().is_none_or(|old| better(call.kind, &b, old)) =>
        {
            *a = Some(b);
        }
        (AggState::Avg(f, i, n), AggState::Avg(g, j, m)) => {
            *f += g;
            *i += j;
            *n += m;
        }
        _ => {}
    }
}

fn finish_one(call: &AggCall, state: &AggState) -> Value {
    match state {
        AggState::Count(n) => Value::Int(*n),
        AggState::Distinct(set) => Value::Int(set.len() as i64),
        AggState::SumInt(s) => s.map_or(Value::Null, Value::Int),
        AggState::SumFloat(s) => s.map_or(Value::Null, Value::Float),
        AggState::Extreme(e) => e.clone().unwrap_or(Value::Null),
        AggState::Avg(_, _, 0) => Value::Null,
        AggState::Avg(f, i, n) => match call.arg_type {
            DataType::Float => Value::Float((*f + *i as f64) / *n as f64),
            _ => Value::Int((*i / *n as i128) as i64),
        },
    }
}

impl Aggregator<Vec<Value>> for SqlAggregates {
    type Acc = Vec<AggState>;
    type Output = Vec<Value>;

    fn create(&self) -> Vec<AggState> {
        self.calls.iter().map(Self::state).collect()
    }

    fn add(&self, acc: &mut Vec<AggState>, row: &Vec<Value>) {
        for (call, state) in self.calls.iter().zip(acc.iter_mut()) {
            let v = call.arg.and_then(|i| row.get(i)).unwrap_or(&Value::Null);
            add_one(call, state, v);
        }
    }

    fn merge(&self, acc: &mut Vec<AggState>, other: Vec<AggState>) {
        for ((call, state), o) in self.calls.iter().zip(acc.iter_mut()).zip(other) {
            merge_one(call, state, o);
        }
    }

    fn finish(&self, acc: &Vec<AggState>) -> Vec<Value> {
        self.calls
            .iter()
            .zip(acc)
            .map(|(c, s)| finish_one(c, s))
            .collect()
    }
}

impl fmt::Display for AggCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The names a grouped `SELECT` may use: the group row is `[window_start, window_end,
/// keys..., aggregates...]`; aggregate arguments are compiled over the input row and appended
/// to the pre-projection (which starts with the keys).
pub(crate) struct GroupScope<'a> {
    /// The input columns.
    pub input: &'a Schema,
    /// Names of the group keys (after the two window columns).
    pub keys: Vec<(String, DataType)>,
    /// The pre-projection: key expressions, then aggregate arguments.
    pub pre: Vec<Expr>,
    /// The aggregates found so far.
    pub calls: Vec<AggCall>,
}

impl GroupScope<'_> {
    fn slot(&self, i: usize) -> usize {
        2 + self.keys.len() + i
    }
}

impl Scope for GroupScope<'_> {
    fn column(&self, name: &str, here: Location) -> Result<Typed, SqlError> {
        let window = |i| Ok((Expr::Column(i), DataType::Timestamp));
        match name.to_ascii_lowercase().as_str() {
            "window_start" => return window(0),
            "window_end" => return window(1),
            "window_time" => {
                let end = Expr::Column(1);
                let minus = Expr::Binary(
                    crate::expr::BinOp::Sub,
                    Box::new(end),
                    Box::new(Expr::Literal(Value::Int(1))),
                );
                return Ok((minus, DataType::Timestamp));
            }
            _ => {}
        }
        let exact = self.keys.iter().position(|(k, _)| k == name);
        let found = exact.or_else(|| {
            self.keys
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case(name))
        });
        match found {
            Some(i) => Ok((Expr::Column(2 + i), self.keys[i].1)),
            None if self.input.index_of(name).is_some() => Err(SqlError::invalid(
                format!("column `{name}` must be in GROUP BY or inside an aggregate"),
                here,
            )),
            None => Err(SqlError::UnknownColumn {
                name: name.to_string(),
                at: here,
            }),
        }
    }

    fn aggregate(
        &mut self,
        call: &ast::Function,
        here: Location,
    ) -> Result<Option<Typed>, SqlError> {
        let (kind, arg) = agg_kind(call, here)?;
        let (arg, arg_type) = match arg {
            None => (None, DataType::Int),
            Some(e) => {
                let (x, ty) = compile(&e, &mut RowScope(self.input))?;
                check_arg(kind, ty, at(&e))?;
                let i = match self.pre.iter().position(|p| *p == x) {
                    Some(i) if i >= self.keys.len() => i,
                    _ => {
                        self.pre.push(x);
                        self.pre.len() - 1
                    }
                };
                (Some(i), ty)
            }
        };
        let new = AggCall {
            kind,
            arg,
            arg_type,
            text: call.to_string(),
        };
        let i = match self
            .calls
            .iter()
            .position(|c| c.kind == kind && c.arg == new.arg)
        {
            Some(i) => i,
            None => {
                self.calls.push(new);
                self.calls.len() - 1
            }
        };
        Ok(Some((
            Expr::Column(self.slot(i)),
            self.calls[i].result_type(),
        )))
    }
}

fn check_arg(kind: AggKind, ty: DataType, here: Location) -> Result<(), SqlError> {
    if matches!(kind, AggKind::Sum | AggKind::Avg) && !matches!(ty, DataType::Int | DataType::Float)
    {
        return Err(SqlError::type_error(
            format!("{kind:?} needs a number, not {ty}").to_uppercase(),
            here,
        ));
    }
    Ok(())
}

/// The kind and argument of an aggregate call.
fn agg_kind(
    call: &ast::Function,
    here: Location,
) -> Result<(AggKind, Option<ast::Expr>), SqlError> {
    let name = crate::parser::object_name(&call.name).to_ascii_uppercase();
    if call.filter.is_some() || call.over.is_some() {
        return Err(SqlError::unsupported(
            format!("`{call}` (FILTER / OVER)"),
            here,
        ));
    }
    let ast::FunctionArguments::List(list) = &call.args else {
        return Err(SqlError::type_error(
            format!("{name} takes one argument"),
            here,
        ));
    };
    let distinct = matches!(
        list.duplicate_treatment,
        Some(ast::DuplicateTreatment::Distinct)
    );
    if name == "COUNT"
        && matches!(
            list.args.as_slice(),
            [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]
        )
    {
        return Ok((AggKind::CountStar, None));
    }
    let mut plain = call.clone();
    if let ast::FunctionArguments::List(l) = &mut plain.args {
        l.duplicate_treatment = None;
    }
    let [arg]: [ast::Expr; 1] = plain_args(&plain, here)?
        .try_into()
        .map_err(|_| SqlError::type_error(format!("{name} takes one argument"), here))?;
    let kind = match (name.as_str(), distinct) {
        ("COUNT", true) => AggKind::CountDistinct,
        ("COUNT", false) => AggKind::Count,
        (_, true) => return Err(SqlError::unsupported(format!("{name}(DISTINCT ...)"), here)),
        ("SUM", _) => AggKind::Sum,
        ("MIN", _) => AggKind::Min,
        ("MAX", _) => AggKind::Max,
        _ => AggKind::Avg,
    };
    Ok((kind, Some(arg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: AggKind, arg_type: DataType) -> AggCall {
        AggCall {
            kind,
            arg: Some(0),
            arg_type,
            text: String::new(),
        }
    }

    #[test]
    fn aggregates_skip_nulls_and_merge() {
        let aggs = SqlAggregates {
            calls: vec![
                AggCall {
                    arg: None,
                    ..call(AggKind::CountStar, DataType::Int)
                },
                call(AggKind::Count, DataType::Int),
                call(AggKind::CountDistinct, DataType::Int),
                call(AggKind::Sum, DataType::Int),
                call(AggKind::Min, DataType::Int),
                call(AggKind::Max, DataType::Int),
                call(AggKind::Avg, DataType::Int),
            ],
        };
        let mut a = aggs.create();
        for v in [Value::Int(4), Value::Null, Value::Int(4)] {
            aggs.add(&mut a, &vec![v]);
        }
        let mut b = aggs.create();
        aggs.add(&mut b, &vec![Value::Int(1)]);
        aggs.merge(&mut a, b);
        let ints = |v: &[i64]| v.iter().map(|i| Value::Int(*i)).collect::<Vec<_>>();
        assert_eq!(aggs.finish(&a), ints(&[4, 3, 2, 9, 1, 4, 3]));
        let empty = aggs.finish(&aggs.create());
        assert_eq!(empty[3], Value::Null);
        assert_eq!(empty[6], Value::Null);
    }
}
