//! Window table functions: `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset]))` and
//! `TABLE(HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset]))` as Flink writes them, mapped to
//! Watershed's [`TumblingWindows`] and [`SlidingWindows`].

use crate::compile::at;
use crate::error::{Location, SqlError};
use crate::time::interval_ms;
use sqlparser::ast;
use std::fmt;
use std::time::Duration;
use watershed_core::{EventTime, SlidingWindows, TumblingWindows, Window, WindowAssigner};

/// A window function's kind and lengths (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(..., size)`
    Tumble {
        /// Window length.
        size: i64,
    },
    /// `HOP(..., slide, size)`
    Hop {
        /// Distance between window starts.
        slide: i64,
        /// Window length.
        size: i64,
    },
}

/// A window table function applied to a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowCall {
    /// The table windowed.
    pub table: String,
    /// Where the table is named.
    pub table_at: Location,
    /// The `DESCRIPTOR` column.
    pub time_column: String,
    /// Where the descriptor is.
    pub time_at: Location,
    /// The windows.
    pub kind: WindowKind,
    /// Window offset (ms).
    pub offset: i64,
}

/// The window assigner for a window function.
#[derive(Clone, Debug)]
pub enum Assigner {
    /// Tumbling windows.
    Tumble(TumblingWindows),
    /// Sliding windows.
    Hop(SlidingWindows),
}

impl WindowAssigner for Assigner {
    fn assign(&self, ts: EventTime, out: &mut Vec<Window>) {
        match self {
            Assigner::Tumble(t) => t.assign(ts, out),
            Assigner::Hop(h) => h.assign(ts, out),
        }
    }
}

impl WindowKind {
    /// The assigner, or why the lengths are invalid.
    pub fn assigner(&self, offset: i64, here: Location) -> Result<Assigner, SqlError> {
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        let bad = |e: watershed_core::WindowConfigError| SqlError::invalid(e.to_string(), here);
        Ok(match *self {
            WindowKind::Tumble { size } => Assigner::Tumble(
                TumblingWindows::try_of(ms(size))
                    .map_err(bad)?
                    .with_offset(offset),
            ),
            WindowKind::Hop { slide, size } => Assigner::Hop(
                SlidingWindows::try_of(ms(size), ms(slide))
                    .map_err(bad)?
                    .with_offset(offset),
            ),
        })
    }
}

impl fmt::Display for WindowCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WindowKind::Tumble { size } => write!(f, "TUMBLE(size={size}ms")?,
            WindowKind::Hop { slide, size } => write!(f, "HOP(slide={slide}ms, size={size}ms")?,
        }
        if self.offset != 0 {
            write!(f, ", offset={}ms", self.offset)?;
        }
        write!(f, ", time={})", self.time_column)
    }
}

/// Reads `TUMBLE(...)` / `HOP(...)` from the expression inside `FROM TABLE(...)`.
pub fn window_call(expr: &ast::Expr) -> Result<WindowCall, SqlError> {
    let here = at(expr);
    let ast::Expr::Function(f) = expr else {
        return Err(SqlError::unsupported(
            format!("table function `{expr}`"),
            here,
        ));
    };
    let name = crate::parser::object_name(&f.name).to_ascii_uppercase();
    let args = crate::compile::plain_args(f, here)?;
    let (table, table_at) = match args.first() {
        Some(ast::Expr::Identifier(i)) => (i.value.clone(), Location::of(i.span)),
        Some(ast::Expr::CompoundIdentifier(p)) if !p.is_empty() => {
            (p[p.len() - 1].value.clone(), at(expr))
        }
        _ => {
            return Err(SqlError::invalid(
                format!("{name} needs `TABLE t` as its first argument"),
                here,
            ))
        }
    };
    let (time_column, time_at) = match args.get(1) {
        Some(ast::Expr::Function(d))
            if crate::parser::object_name(&d.name).eq_ignore_ascii_case("DESCRIPTOR") =>
        {
            match crate::compile::plain_args(d, here)?.as_slice() {
                [ast::Expr::Identifier(c)] => (c.value.clone(), Location::of(c.span)),
                _ => return Err(SqlError::invalid("DESCRIPTOR takes one column", at(d))),
            }
        }
        _ => {
            return Err(SqlError::invalid(
                format!("{name} needs `DESCRIPTOR(time column)` as its second argument"),
                here,
            ))
        }
    };
    let lengths = args[2..]
        .iter()
        .map(|a| interval_ms(a, at(a)))
        .collect::<Result<Vec<_>, _>>()?;
    let (kind, offset) = match (name.as_str(), lengths.as_slice()) {
        ("TUMBLE", [size]) => (WindowKind::Tumble { size: *size }, 0),
        ("TUMBLE", [size, offset]) => (WindowKind::Tumble { size: *size }, *offset),
        ("HOP", [slide, size]) => (WindowKind::Hop { slide: *slide, size: *size }, 0),
        ("HOP", [slide, size, offset]) => (WindowKind::Hop { slide: *slide, size: *size }, *offset),
        ("TUMBLE" | "HOP", _) => {
            return Err(SqlError::invalid(
                format!("wrong number of intervals for {name}: TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset]), HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset])"),
                here,
            ))
        }
        _ => return Err(SqlError::unsupported(format!("window function {name}"), here)),
    };
    Ok(WindowCall {
        table,
        table_at,
        time_column,
        time_at,
        kind,
        offset,
    })
}
