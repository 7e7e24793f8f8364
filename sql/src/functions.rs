//! Built-in scalar functions: `LOWER`, `UPPER`, `CONCAT`, `SUBSTRING`, `CHAR_LENGTH`, `ABS`
//! (`MOD` and `||` are operators, see [`expr`](crate::expr)).

use crate::expr::{text, EvalError, Func};
use crate::row::{DataType, Value};

/// Looks a function up by name (case-insensitive): the function, its argument count range and
/// its result type for the given argument types; `None` for an unknown name.
pub fn lookup(name: &str) -> Option<(Func, usize, usize)> {
    Some(match name.to_ascii_uppercase().as_str() {
        "LOWER" => (Func::Lower, 1, 1),
        "UPPER" => (Func::Upper, 1, 1),
        "CONCAT" => (Func::Concat, 1, usize::MAX),
        "SUBSTRING" | "SUBSTR" => (Func::Substring, 2, 3),
        "CHAR_LENGTH" | "CHARACTER_LENGTH" => (Func::CharLength, 1, 1),
        "ABS" => (Func::Abs, 1, 1),
        "LIKE" => (Func::Like, 2, 2),
        _ => return None,
    })
}

/// The result type of `f` over arguments of types `args`, or what is wrong with them.
pub fn result_type(f: Func, args: &[DataType]) -> Result<DataType, String> {
    let want = |i: usize, ok: fn(DataType) -> bool, what: &str| -> Result<(), String> {
        match args.get(i) {
            Some(t) if ok(*t) => Ok(()),
            Some(t) => Err(format!("{f:?} argument {} must be {what}, not {t}", i + 1)),
            None => Ok(()),
        }
    };
    let is_str = |t: DataType| matches!(t, DataType::Str | DataType::Null);
    let is_int = |t: DataType| matches!(t, DataType::Int | DataType::Null);
    match f {
        Func::Lower | Func::Upper => want(0, is_str, "STRING").map(|_| DataType::Str),
        Func::Concat => Ok(DataType::Str),
        Func::Substring => {
            want(0, is_str, "STRING")?;
            want(1, is_int, "BIGINT")?;
            want(2, is_int, "BIGINT")?;
            Ok(DataType::Str)
        }
        Func::CharLength => want(0, is_str, "STRING").map(|_| DataType::Int),
        Func::Like => {
            want(0, is_str, "STRING")?;
            want(1, is_str, "STRING")?;
            Ok(DataType::Bool)
        }
        Func::Abs => {
            want(0, DataType::is_numeric, "numeric")?;
            Ok(if args[0] == DataType::Float {
                DataType::Float
            } else {
                DataType::Int
            })
        }
    }
}

/// Calls `f` on evaluated arguments; `NULL` in, `NULL` out.
pub fn call(f: Func, args: &[Value]) -> Result<Value, EvalError> {
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let s = || args.first().and_then(Value::as_str).unwrap_or("");
    Ok(match f {
        Func::Lower => Value::Str(s().to_lowercase()),
        Func::Upper => Value::Str(s().to_uppercase()),
        Func::Concat => Value::Str(args.iter().map(text).collect()),
        Func::CharLength => Value::Int(s().chars().count() as i64),
        Func::Substring => {
            let start = args.get(1).and_then(Value::as_i64).unwrap_or(1);
            let len = args.get(2).and_then(Value::as_i64);
            substring(s(), start, len)?
        }
        Func::Like => {
            let pattern = args.get(1).and_then(Value::as_str).unwrap_or("");
            Value::Bool(like(s(), pattern))
        }
        Func::Abs => match &args[0] {
            Value::Int(i) => Value::Int(
                i.checked_abs()
                    .ok_or_else(|| EvalError("BIGINT overflow".into()))?,
            ),
            Value::Float(x) => Value::Float(x.abs()),
            other => return Err(EvalError(format!("ABS of {other}"))),
        },
    })
}

/// SQL `LIKE` without an escape character: `%` matches any run of characters, `_` one.
/// Greedy with one backtrack point, so O(len(s) * len(pattern)) at worst.
fn like(s: &str, pattern: &str) -> bool {
    let (s, p): (Vec<char>, Vec<char>) = (s.chars().collect(), pattern.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == '_' || (p[j] != '%' && p[j] == s[i])) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|c| *c == '%')
}

/// SQL `SUBSTRING`: characters from 1-based `start` (positions before 1 count but yield
/// nothing), `len` of them.
fn substring(s: &str, start: i64, len: Option<i64>) -> Result<Value, EvalError> {
    if matches!(len, Some(l) if l < 0) {
        return Err(EvalError("negative SUBSTRING length".into()));
    }
    let end = len.map(|l| start.saturating_add(l));
    let out: String = s
        .chars()
        .enumerate()
        .filter(|(i, _)| {
            let pos = *i as i64 + 1;
            pos >= start && end.is_none_or(|e| pos < e)
        })
        .map(|(_, c)| c)
        .collect();
    Ok(Value::Str(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn string_functions() {
        assert_eq!(call(Func::Lower, &[s("AbC")]).unwrap(), s("abc"));
        assert_eq!(call(Func::Upper, &[s("straße")]).unwrap(), s("STRASSE"));
        assert_eq!(
            call(Func::Concat, &[s("a"), Value::Int(1)]).unwrap(),
            s("a1")
        );
        assert_eq!(
            call(Func::Concat, &[s("a"), Value::Null]).unwrap(),
            Value::Null
        );
        assert_eq!(
            call(Func::CharLength, &[s("héllo")]).unwrap(),
            Value::Int(5)
        );
        let sub = |a: i64, l: Option<i64>| {
            let mut args = vec![s("watershed"), Value::Int(a)];
            args.extend(l.map(Value::Int));
            call(Func::Substring, &args).unwrap()
        };
        assert_eq!(sub(1, Some(5)), s("water"));
        assert_eq!(sub(6, None), s("shed"));
        assert_eq!(sub(0, Some(2)), s("w"));
        assert_eq!(sub(100, Some(2)), s(""));
        assert!(call(Func::Substring, &[s("x"), Value::Int(1), Value::Int(-1)]).is_err());
        for (text, pattern, want) in [
            ("watershed", "water%", true),
            ("watershed", "%shed", true),
            ("watershed", "w_t%h_d", true),
            ("watershed", "%x%", false),
            ("", "%", true),
            ("a", "", false),
            ("abc", "a%c%", true),
        ] {
            assert_eq!(like(text, pattern), want, "{text} LIKE {pattern}");
        }
    }
}
