//! Compiled scalar expressions and their evaluation over a row, with SQL's three-valued logic:
//! `NULL` propagates through arithmetic, comparison and functions; `AND`/`OR` follow Kleene.

use crate::row::{DataType, Value};
use std::cmp::Ordering;

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (integer division on `BIGINT`s, as Flink)
    Div,
    /// `%` and `MOD`
    Mod,
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `||`
    Concat,
}

/// A built-in scalar function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `LOWER(s)`
    Lower,
    /// `UPPER(s)`
    Upper,
    /// `CONCAT(s, ...)`
    Concat,
    /// `SUBSTRING(s FROM start [FOR len])`, 1-based
    Substring,
    /// `CHAR_LENGTH(s)`
    CharLength,
    /// `ABS(n)`
    Abs,
    /// `s LIKE pattern` (`%` any run, `_` one character)
    Like,
}

/// A compiled expression over the columns of one row.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// The value of column `i`.
    Column(usize),
    /// A constant.
    Literal(Value),
    /// `NOT e`
    Not(Box<Expr>),
    /// `-e`
    Neg(Box<Expr>),
    /// `l op r`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `e IS [NOT] NULL` (true: `IS NULL`).
    IsNull(Box<Expr>, bool),
    /// `CAST(e AS type)`
    Cast(Box<Expr>, DataType),
    /// `CASE WHEN c THEN r ... ELSE e END` (a simple `CASE x WHEN v` compiles to `x = v`).
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
    /// A function call.
    Call(Func, Vec<Expr>),
}

/// Why evaluating an expression failed for one row (the row goes to the error path).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(m.into()))
}

impl Expr {
    /// Evaluates the expression over `row`.
    pub fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        Ok(match self {
            Expr::Column(i) => row.get(*i).cloned().unwrap_or(Value::Null),
            Expr::Literal(v) => v.clone(),
            Expr::Not(e) => match e.eval(row)? {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Null,
            },
            Expr::Neg(e) => match e.eval(row)? {
                Value::Int(i) => Value::Int(
                    i.checked_neg()
                        .ok_or_else(|| EvalError("BIGINT overflow".into()))?,
                ),
                Value::Float(f) => Value::Float(-f),
                _ => Value::Null,
            },
            Expr::Binary(op, l, r) => binary(*op, l, r, row)?,
            Expr::IsNull(e, is_null) => Value::Bool(e.eval(row)?.is_null() == *is_null),
            Expr::Cast(e, ty) => cast(e.eval(row)?, *ty)?,
            Expr::Case(whens, otherwise) => {
                for (cond, result) in whens {
                    if cond.eval(row)? == Value::Bool(true) {
                        return result.eval(row);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(row)?,
                    None => Value::Null,
                }
            }
            Expr::Call(f, args) => {
                let args = args
                    .iter()
                    .map(|a| a.eval(row))
                    .collect::<Result<Vec<_>, _>>()?;
                crate::functions::call(*f, &args)?
            }
        })
    }

    /// True when the expression evaluates to `TRUE` (a `WHERE` predicate).
    pub fn is_true(&self, row: &[Value]) -> Result<bool, EvalError> {
        Ok(self.eval(row)? == Value::Bool(true))
    }
}

fn binary(op: BinOp, l: &Expr, r: &Expr, row: &[Value]) -> Result<Value, EvalError> {
    if let BinOp::And | BinOp::Or = op {
        let a = l.eval(row)?;
        // Short-circuit where the left side decides.
        match (op, &a) {
            (BinOp::And, Value::Bool(false)) => return Ok(Value::Bool(false)),
            (BinOp::Or, Value::Bool(true)) => return Ok(Value::Bool(true)),
            _ => {}
        }
        let b = r.eval(row)?;
        return Ok(match (op, &a, &b) {
            (BinOp::And, _, Value::Bool(false)) => Value::Bool(false),
            (BinOp::Or, _, Value::Bool(true)) => Value::Bool(true),
            (_, Value::Bool(x), Value::Bool(y)) => {
                Value::Bool(if op == BinOp::And { *x && *y } else { *x || *y })
            }
            _ => Value::Null,
        });
    }
    let (a, b) = (l.eval(row)?, r.eval(row)?);
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    match op {
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => arithmetic(op, &a, &b),
        BinOp::Concat => Ok(Value::Str(format!("{}{}", text(&a), text(&b)))),
        _ => {
            let ord =
                compare(&a, &b).ok_or_else(|| EvalError(format!("cannot compare {a} with {b}")))?;
            Ok(Value::Bool(match op {
                BinOp::Eq => ord == Ordering::Equal,
                BinOp::NotEq => ord != Ordering::Equal,
                BinOp::Lt => ord == Ordering::Less,
                BinOp::LtEq => ord != Ordering::Greater,
                BinOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
    }
}

fn arithmetic(op: BinOp, a: &Value, b: &Value) -> Result<Value, EvalError> {
    let overflow = || EvalError("BIGINT overflow".into());
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(Value::Int(match op {
            BinOp::Add => x.checked_add(*y).ok_or_else(overflow)?,
            BinOp::Sub => x.checked_sub(*y).ok_or_else(overflow)?,
            BinOp::Mul => x.checked_mul(*y).ok_or_else(overflow)?,
            BinOp::Div if *y == 0 => return err("division by zero"),
            BinOp::Div => x.checked_div(*y).ok_or_else(overflow)?,
            _ if *y == 0 => return err("MOD by zero"),
            _ => x.checked_rem(*y).ok_or_else(overflow)?,
        })),
        (Value::Timestamp(t), Value::Int(d)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let v = if op == BinOp::Add {
                t.checked_add(*d)
            } else {
                t.checked_sub(*d)
            };
            Ok(Value::Timestamp(v.ok_or_else(overflow)?))
        }
        _ => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return err(format!("cannot apply {op:?} to {a} and {b}"));
            };
            Ok(Value::Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            }))
        }
    }
}

/// SQL ordering of two non-null values of comparable types.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) | (Value::Timestamp(x), Value::Timestamp(y)) => {
            Some(x.cmp(y))
        }
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// The text of a value for `||`, `CONCAT` and casts to `STRING`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Value::Timestamp(t) => crate::time::format_timestamp(*t),
        other => other.to_string(),
    }
}

/// `CAST(v AS ty)`.
pub fn cast(v: Value, ty: DataType) -> Result<Value, EvalError> {
    let fail = |v: &Value| EvalError(format!("cannot cast {v} to {ty}"));
    Ok(match (v, ty) {
        (Value::Null, _) => Value::Null,
        (v, DataType::Null) => v,
        (Value::Int(i), DataType::Int) => Value::Int(i),
        (Value::Float(f), DataType::Int) if f.is_finite() && f.abs() < 9.2e18 => {
            Value::Int(f.trunc() as i64)
        }
        (Value::Bool(b), DataType::Int) => Value::Int(b as i64),
        (Value::Timestamp(t), DataType::Int) => Value::Int(t),
        (Value::Str(s), DataType::Int) => {
            Value::Int(s.trim().parse().map_err(|_| fail(&Value::Str(s.clone())))?)
        }
        (Value::Int(i), DataType::Float) => Value::Float(i as f64),
        (Value::Float(f), DataType::Float) => Value::Float(f),
        (Value::Str(s), DataType::Float) => {
            Value::Float(s.trim().parse().map_err(|_| fail(&Value::Str(s.clone())))?)
        }
        (v, DataType::Str) => Value::Str(text(&v)),
        (Value::Bool(b), DataType::Bool) => Value::Bool(b),
        (Value::Int(i), DataType::Bool) => Value::Bool(i != 0),
        (Value::Str(s), DataType::Bool) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(fail(&Value::Str(s))),
        },
        (Value::Timestamp(t), DataType::Timestamp) | (Value::Int(t), DataType::Timestamp) => {
            Value::Timestamp(t)
        }
        (Value::Str(s), DataType::Timestamp) => match crate::time::parse_timestamp(&s) {
            Some(t) => Value::Timestamp(t),
            None => return Err(fail(&Value::Str(s))),
        },
        (v, _) => return Err(fail(&v)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: Value) -> Box<Expr> {
        Box::new(Expr::Literal(v))
    }

    #[test]
    fn null_propagates_and_logic_is_three_valued() {
        let row = [];
        let e = Expr::Binary(BinOp::Add, lit(Value::Int(1)), lit(Value::Null));
        assert_eq!(e.eval(&row).unwrap(), Value::Null);
        let e = Expr::Binary(BinOp::And, lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(e.eval(&row).unwrap(), Value::Bool(false));
        let e = Expr::Binary(BinOp::Or, lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(e.eval(&row).unwrap(), Value::Null);
        assert!(!Expr::Not(lit(Value::Null)).is_true(&row).unwrap());
    }

    #[test]
    fn arithmetic_follows_flink_types() {
        let row = [Value::Int(7), Value::Float(0.5)];
        let div = Expr::Binary(BinOp::Div, Box::new(Expr::Column(0)), lit(Value::Int(2)));
        assert_eq!(div.eval(&row).unwrap(), Value::Int(3));
        let mul = Expr::Binary(
            BinOp::Mul,
            Box::new(Expr::Column(0)),
            Box::new(Expr::Column(1)),
        );
        assert_eq!(mul.eval(&row).unwrap(), Value::Float(3.5));
        let zero = Expr::Binary(BinOp::Div, Box::new(Expr::Column(0)), lit(Value::Int(0)));
        assert!(zero.eval(&row).is_err());
        let m = Expr::Binary(BinOp::Add, lit(Value::Int(i64::MAX)), lit(Value::Int(1)));
        assert!(m.eval(&row).is_err());
    }

    #[test]
    fn casts_convert_or_fail_without_panicking() {
        assert_eq!(
            cast(Value::Str(" 42 ".into()), DataType::Int).unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            cast(Value::Float(2.9), DataType::Int).unwrap(),
            Value::Int(2)
        );
        assert!(cast(Value::Float(f64::NAN), DataType::Int).is_err());
        assert!(cast(Value::Str("x".into()), DataType::Float).is_err());
        assert_eq!(
            cast(Value::Int(1), DataType::Str).unwrap(),
            Value::Str("1".into())
        );
        assert_eq!(
            cast(
                Value::Str("1970-01-01 00:00:01".into()),
                DataType::Timestamp
            )
            .unwrap(),
            Value::Timestamp(1000)
        );
    }
}
