//! Compiles sqlparser expressions into typed [`Expr`]s against a [`Scope`] (the columns an
//! expression may name, and what an aggregate call means there), checking types.

use crate::error::{Location, SqlError};
use crate::expr::{BinOp, Expr};
use crate::functions;
use crate::row::{DataType, Schema, Value};
use sqlparser::ast::{self, BinaryOperator, Spanned, UnaryOperator};

/// A compiled expression and its type.
pub(crate) type Typed = (Expr, DataType);

/// What names mean where an expression is compiled.
pub(crate) trait Scope {
    /// The column `name` resolves to.
    fn column(&self, name: &str, at: Location) -> Result<Typed, SqlError>;

    /// An aggregate call (`COUNT`, `SUM`, ...): `None` where aggregates are not allowed.
    fn aggregate(&mut self, call: &ast::Function, at: Location) -> Result<Option<Typed>, SqlError> {
        let _ = (call, at);
        Ok(None)
    }
}

/// The columns of one row.
pub(crate) struct RowScope<'a>(pub &'a Schema);

impl Scope for RowScope<'_> {
    fn column(&self, name: &str, at: Location) -> Result<Typed, SqlError> {
        match self.0.index_of(name) {
            Some(i) => Ok((Expr::Column(i), self.0.columns[i].data_type)),
            None => Err(SqlError::UnknownColumn {
                name: name.to_string(),
                at,
            }),
        }
    }
}

/// True for the names of aggregate functions.
pub(crate) fn is_aggregate(name: &str) -> bool {
    ["COUNT", "SUM", "MIN", "MAX", "AVG"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(name))
}

/// Where an expression starts.
pub(crate) fn at(e: &impl Spanned) -> Location {
    Location::of(e.span())
}

/// Compiles `e` in `scope`.
pub(crate) fn compile(e: &ast::Expr, scope: &mut dyn Scope) -> Result<Typed, SqlError> {
    use ast::Expr as E;
    let here = at(e);
    match e {
        E::Identifier(id) => scope.column(&id.value, here),
        E::CompoundIdentifier(parts) => {
            let last = parts.last().map(|p| p.value.as_str()).unwrap_or("");
            scope.column(last, here)
        }
        E::Value(v) => literal(&v.value, here),
        E::Nested(inner) => compile(inner, scope),
        E::UnaryOp { op, expr } => unary(*op, expr, scope, here),
        E::BinaryOp { left, op, right } => {
            let l = compile(left, scope)?;
            let r = compile(right, scope)?;
            binary(op, l, r, here)
        }
        E::IsNull(inner) | E::IsNotNull(inner) => {
            let is_null = matches!(e, E::IsNull(_));
            Ok((
                Expr::IsNull(Box::new(compile(inner, scope)?.0), is_null),
                DataType::Bool,
            ))
        }
        E::Function(f) => function(f, scope, here),
        E::Interval(_) => Ok((
            Expr::Literal(Value::Int(crate::time::interval_ms(e, here)?)),
            DataType::Int,
        )),
        other => special(other, scope, here),
    }
}

/// The forms with their own syntax: `BETWEEN`, `IN`, `CAST`, `CASE`, `SUBSTRING`, `LIKE`.
fn special(e: &ast::Expr, scope: &mut dyn Scope, here: Location) -> Result<Typed, SqlError> {
    use ast::Expr as E;
    match e {
        E::Between {
            expr,
            negated,
            low,
            high,
        } => between(expr, low, high, *negated, scope, here),
        E::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            global: false,
        } => in_list(expr, list, *negated, scope, here),
        E::Cast {
            kind: ast::CastKind::Cast,
            expr,
            data_type,
            format: None,
        } => {
            let (x, _) = compile(expr, scope)?;
            let ty = crate::catalog::data_type(data_type, here)?;
            Ok((Expr::Cast(Box::new(x), ty), ty))
        }
        E::Case {
            operand,
            conditions,
            else_result,
            ..
        } => case(
            operand.as_deref(),
            conditions,
            else_result.as_deref(),
            scope,
            here,
        ),
        E::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let from = substring_from.as_deref().cloned().unwrap_or_else(one);
            let args = [
                Some(expr.as_ref().clone()),
                Some(from),
                substring_for.as_deref().cloned(),
            ];
            call(
                "SUBSTRING",
                &args.into_iter().flatten().collect::<Vec<_>>(),
                scope,
                here,
            )
        }
        E::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => {
            let args = [expr.as_ref().clone(), pattern.as_ref().clone()];
            Ok(negate(call("LIKE", &args, scope, here)?, *negated))
        }
        other => Err(SqlError::unsupported(format!("expression `{other}`"), here)),
    }
}

fn between(
    e: &ast::Expr,
    low: &ast::Expr,
    high: &ast::Expr,
    negated: bool,
    scope: &mut dyn Scope,
    here: Location,
) -> Result<Typed, SqlError> {
    let x = compile(e, scope)?;
    let lo = binary(&BinaryOperator::GtEq, x.clone(), compile(low, scope)?, here)?;
    let hi = binary(&BinaryOperator::LtEq, x, compile(high, scope)?, here)?;
    Ok(negate(binary(&BinaryOperator::And, lo, hi, here)?, negated))
}

fn one() -> ast::Expr {
    ast::Expr::value(ast::Value::Number("1".into(), false))
}

fn negate((x, ty): Typed, negated: bool) -> Typed {
    if negated {
        (Expr::Not(Box::new(x)), ty)
    } else {
        (x, ty)
    }
}

fn literal(v: &ast::Value, here: Location) -> Result<Typed, SqlError> {
    Ok(match v {
        ast::Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => (Expr::Literal(Value::Int(i)), DataType::Int),
            Err(_) => match n.parse::<f64>() {
                Ok(f) => (Expr::Literal(Value::Float(f)), DataType::Float),
                Err(_) => {
                    return Err(SqlError::invalid(
                        format!("number {n} is out of range"),
                        here,
                    ))
                }
            },
        },
        ast::Value::SingleQuotedString(s) => (Expr::Literal(Value::Str(s.clone())), DataType::Str),
        ast::Value::Boolean(b) => (Expr::Literal(Value::Bool(*b)), DataType::Bool),
        ast::Value::Null => (Expr::Literal(Value::Null), DataType::Null),
        other => return Err(SqlError::unsupported(format!("literal {other}"), here)),
    })
}

fn unary(
    op: UnaryOperator,
    e: &ast::Expr,
    scope: &mut dyn Scope,
    here: Location,
) -> Result<Typed, SqlError> {
    let (x, ty) = compile(e, scope)?;
    match op {
        UnaryOperator::Not if matches!(ty, DataType::Bool | DataType::Null) => {
            Ok((Expr::Not(Box::new(x)), DataType::Bool))
        }
        UnaryOperator::Not => Err(SqlError::type_error(
            format!("NOT needs a BOOLEAN, not {ty}"),
            here,
        )),
        UnaryOperator::Minus if ty.is_numeric() => Ok((Expr::Neg(Box::new(x)), ty)),
        UnaryOperator::Plus if ty.is_numeric() => Ok((x, ty)),
        UnaryOperator::Minus | UnaryOperator::Plus => Err(SqlError::type_error(
            format!("{op} needs a number, not {ty}"),
            here,
        )),
        other => Err(SqlError::unsupported(format!("operator {other}"), here)),
    }
}

fn comparable(a: DataType, b: DataType) -> bool {
    a == b || a == DataType::Null || b == DataType::Null || (a.is_numeric() && b.is_numeric())
}

/// Type-checks `l op r`.
pub(crate) fn binary(
    op: &BinaryOperator,
    (l, lt): Typed,
    (r, rt): Typed,
    here: Location,
) -> Result<Typed, SqlError> {
    use BinaryOperator as B;
    let (bop, ty) = match op {
        B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
            let bop = match op {
                B::Plus => BinOp::Add,
                B::Minus => BinOp::Sub,
                B::Multiply => BinOp::Mul,
                B::Divide => BinOp::Div,
                _ => BinOp::Mod,
            };
            let ty = match (lt, rt) {
                (DataType::Timestamp, DataType::Int) if matches!(bop, BinOp::Add | BinOp::Sub) => {
                    DataType::Timestamp
                }
                (a, b) if a.is_numeric() && b.is_numeric() => {
                    if a == DataType::Float || b == DataType::Float {
                        DataType::Float
                    } else {
                        DataType::Int
                    }
                }
                (a, b) => {
                    return Err(SqlError::type_error(
                        format!("cannot apply `{op}` to {a} and {b}"),
                        here,
                    ))
                }
            };
            (bop, ty)
        }
        B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
            if !comparable(lt, rt) {
                return Err(SqlError::type_error(
                    format!("cannot compare {lt} with {rt}"),
                    here,
                ));
            }
            let bop = match op {
                B::Eq => BinOp::Eq,
                B::NotEq => BinOp::NotEq,
                B::Lt => BinOp::Lt,
                B::LtEq => BinOp::LtEq,
                B::Gt => BinOp::Gt,
                _ => BinOp::GtEq,
            };
            (bop, DataType::Bool)
        }
        B::And | B::Or => {
            for t in [lt, rt] {
                if !matches!(t, DataType::Bool | DataType::Null) {
                    return Err(SqlError::type_error(
                        format!("`{op}` needs BOOLEAN operands, not {t}"),
                        here,
                    ));
                }
            }
            (
                if *op == B::And { BinOp::And } else { BinOp::Or },
                DataType::Bool,
            )
        }
        B::StringConcat => (BinOp::Concat, DataType::Str),
        other => return Err(SqlError::unsupported(format!("operator `{other}`"), here)),
    };
    Ok((Expr::Binary(bop, Box::new(l), Box::new(r)), ty))
}

fn in_list(
    e: &ast::Expr,
    list: &[ast::Expr],
    negated: bool,
    scope: &mut dyn Scope,
    here: Location,
) -> Result<Typed, SqlError> {
    let x = compile(e, scope)?;
    let mut any: Option<Typed> = None;
    for item in list {
        let eq = binary(
            &BinaryOperator::Eq,
            x.clone(),
            compile(item, scope)?,
            at(item),
        )?;
        any = Some(match any {
            None => eq,
            Some(prev) => binary(&BinaryOperator::Or, prev, eq, here)?,
        });
    }
    let any = any.unwrap_or((Expr::Literal(Value::Bool(false)), DataType::Bool));
    Ok(negate(any, negated))
}

fn case(
    operand: Option<&ast::Expr>,
    conditions: &[ast::CaseWhen],
    otherwise: Option<&ast::Expr>,
    scope: &mut dyn Scope,
    here: Location,
) -> Result<Typed, SqlError> {
    let subject = operand.map(|o| compile(o, scope)).transpose()?;
    let mut ty = DataType::Null;
    let mut whens = Vec::with_capacity(conditions.len());
    let mut unify = |t: DataType, at: Location| -> Result<(), SqlError> {
        ty = match (ty, t) {
            (a, b) if a == b || b == DataType::Null => a,
            (DataType::Null, b) => b,
            (a, b) if a.is_numeric() && b.is_numeric() => DataType::Float,
            (a, b) => {
                return Err(SqlError::type_error(
                    format!("CASE branches of types {a} and {b}"),
                    at,
                ))
            }
        };
        Ok(())
    };
    for w in conditions {
        let cat = at(&w.condition);
        let cond = compile(&w.condition, scope)?;
        let cond = match &subject {
            Some(s) => binary(&BinaryOperator::Eq, s.clone(), cond, cat)?,
            None => cond,
        };
        if !matches!(cond.1, DataType::Bool | DataType::Null) {
            return Err(SqlError::type_error(
                format!("WHEN needs a BOOLEAN, not {}", cond.1),
                cat,
            ));
        }
        let (r, rt) = compile(&w.result, scope)?;
        unify(rt, at(&w.result))?;
        whens.push((cond.0, r));
    }
    let otherwise = match otherwise {
        Some(e) => {
            let (x, t) = compile(e, scope)?;
            unify(t, at(e))?;
            Some(Box::new(x))
        }
        None => None,
    };
    let mut otherwise = otherwise;
    if ty == DataType::Float {
        // Mixed BIGINT and DOUBLE branches: every branch yields a DOUBLE.
        let to_float = |e: &mut Expr| *e = Expr::Cast(Box::new(e.clone()), DataType::Float);
        whens.iter_mut().for_each(|(_, r)| to_float(r));
        if let Some(e) = otherwise.as_deref_mut() {
            to_float(e);
        }
    }
    let _ = here;
    Ok((Expr::Case(whens, otherwise), ty))
}

fn function(f: &ast::Function, scope: &mut dyn Scope, here: Location) -> Result<Typed, SqlError> {
    let name = crate::parser::object_name(&f.name);
    if is_aggregate(&name) {
        return match scope.aggregate(f, here)? {
            Some(t) => Ok(t),
            None => Err(SqlError::unsupported(
                format!("aggregate `{f}` here (aggregates need GROUP BY window_start, window_end over a TUMBLE or HOP window)"),
                here,
            )),
        };
    }
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return Err(SqlError::unsupported(format!("`{f}`"), here));
    }
    let args = plain_args(f, here)?;
    call(&name, &args, scope, here)
}

/// The arguments of a call without `DISTINCT`, `*` or named arguments.
pub(crate) fn plain_args(f: &ast::Function, here: Location) -> Result<Vec<ast::Expr>, SqlError> {
    match &f.args {
        ast::FunctionArguments::None => Ok(Vec::new()),
        ast::FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list.args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                    other => Err(SqlError::unsupported(format!("argument `{other}`"), here)),
                })
                .collect()
        }
        _ => Err(SqlError::unsupported(format!("arguments of `{f}`"), here)),
    }
}

fn call(
    name: &str,
    args: &[ast::Expr],
    scope: &mut dyn Scope,
    here: Location,
) -> Result<Typed, SqlError> {
    let compiled = args
        .iter()
        .map(|a| compile(a, scope))
        .collect::<Result<Vec<_>, _>>()?;
    if name.eq_ignore_ascii_case("MOD") {
        let [a, b]: [Typed; 2] = compiled
            .try_into()
            .map_err(|_| SqlError::type_error("MOD takes two arguments", here))?;
        return binary(&BinaryOperator::Modulo, a, b, here);
    }
    let Some((func, min, max)) = functions::lookup(name) else {
        return Err(SqlError::unsupported(format!("function {name}"), here));
    };
    if compiled.len() < min || compiled.len() > max {
        return Err(SqlError::type_error(
            format!(
                "{name} takes {min}..{max} arguments, not {}",
                compiled.len()
            )
            .replace(&format!("..{}", usize::MAX), " or more"),
            here,
        ));
    }
    let types: Vec<DataType> = compiled.iter().map(|t| t.1).collect();
    let ty = functions::result_type(func, &types).map_err(|m| SqlError::type_error(m, here))?;
    Ok((
        Expr::Call(func, compiled.into_iter().map(|t| t.0).collect()),
        ty,
    ))
}
