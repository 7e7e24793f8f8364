//! Table definitions: `CREATE TABLE` with columns, an event-time column and its watermark, and
//! the connector options of its `WITH` clause.

use crate::error::{Location, SqlError};
use crate::row::{DataType, Schema};
use sqlparser::ast::{self, BinaryOperator, Expr, Spanned};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The event-time column of a table and how far its records may arrive out of order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rowtime {
    /// Index of the column.
    pub column: usize,
    /// `WATERMARK FOR ts AS ts - INTERVAL ...`: the interval, in ms.
    pub delay_ms: i64,
}

/// A table from `CREATE TABLE`, or one bound from Rust.
#[derive(Clone, Debug)]
pub struct TableDef {
    /// The name.
    pub name: String,
    /// The columns.
    pub schema: Arc<Schema>,
    /// The event-time column, if the table has a watermark.
    pub rowtime: Option<Rowtime>,
    /// The `WITH` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// Where the definition starts.
    pub at: Location,
}

impl TableDef {
    /// The `connector` option (empty when none).
    pub fn connector(&self) -> &str {
        self.options
            .get("connector")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Maps a declared SQL type to a [`DataType`].
pub(crate) fn data_type(ty: &ast::DataType, at: Location) -> Result<DataType, SqlError> {
    let text = ty.to_string().to_ascii_uppercase();
    let word = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("");
    Ok(match word {
        "BOOLEAN" | "BOOL" => DataType::Bool,
        "BIGINT" | "INT" | "INTEGER" | "SMALLINT" | "TINYINT" | "INT64" | "INT8" => DataType::Int,
        "DOUBLE" | "FLOAT" | "REAL" | "DECIMAL" | "NUMERIC" | "FLOAT64" | "DEC" => DataType::Float,
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" | "CHARACTER" => DataType::Str,
        "TIMESTAMP" | "TIMESTAMP_LTZ" | "DATETIME" => DataType::Timestamp,
        _ => return Err(SqlError::unsupported(format!("column type {ty}"), at)),
    })
}

fn loc(p: &Parser<'_>) -> Location {
    Location::of(p.peek_token().span)
}

/// Parses `CREATE TABLE name (columns, WATERMARK FOR c AS c - INTERVAL ...) WITH (...)`; the
/// parser stands on `CREATE`.
pub(crate) fn parse_create_table(p: &mut Parser<'_>) -> Result<TableDef, SqlError> {
    let at = loc(p);
    p.expect_keywords(&[Keyword::CREATE, Keyword::TABLE])?;
    let _ = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = crate::parser::object_name(&p.parse_object_name(false)?);
    p.expect_token(&Token::LParen)?;
    let mut columns: Vec<(String, DataType)> = Vec::new();
    let mut watermark: Option<(String, Location, Expr)> = None;
    loop {
        let here = loc(p);
        let is_watermark = matches!(&p.peek_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case("WATERMARK") && w.quote_style.is_none());
        if is_watermark {
            p.next_token();
            p.expect_keyword(Keyword::FOR)?;
            let col = p.parse_identifier()?;
            p.expect_keyword(Keyword::AS)?;
            let expr = p.parse_expr()?;
            watermark = Some((col.value, here, expr));
        } else if p.peek_keyword(Keyword::PRIMARY) || p.peek_keyword(Keyword::CONSTRAINT) {
            return Err(SqlError::unsupported(
                "table constraints (PRIMARY KEY)",
                here,
            ));
        } else {
            let col = p.parse_identifier()?;
            let ty_at = loc(p);
            let ty = p.parse_data_type()?;
            let _ =
                p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) || p.parse_keyword(Keyword::NULL);
            if columns.iter().any(|(c, _)| c == &col.value) {
                return Err(SqlError::invalid(
                    format!("duplicate column `{}`", col.value),
                    here,
                ));
            }
            columns.push((col.value, data_type(&ty, ty_at)?));
        }
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    let options = parse_with(p)?;
    let schema = Arc::new(Schema::new(columns));
    let rowtime = match watermark {
        Some((col, wat, expr)) => Some(rowtime(&schema, &col, wat, &expr)?),
        None => None,
    };
    Ok(TableDef {
        name,
        schema,
        rowtime,
        options,
        at,
    })
}

/// `WITH ('key' = 'value', ...)`, keys lower-cased.
fn parse_with(p: &mut Parser<'_>) -> Result<BTreeMap<String, String>, SqlError> {
    let mut options = BTreeMap::new();
    if !p.parse_keyword(Keyword::WITH) {
        return Ok(options);
    }
    p.expect_token(&Token::LParen)?;
    loop {
        let key = p.parse_literal_string()?;
        p.expect_token(&Token::Eq)?;
        let value = p.parse_literal_string()?;
        options.insert(key.to_ascii_lowercase(), value);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    Ok(options)
}

/// Checks `WATERMARK FOR col AS col [- INTERVAL ...]` and returns the delay.
fn rowtime(schema: &Schema, col: &str, at: Location, expr: &Expr) -> Result<Rowtime, SqlError> {
    let column = schema
        .index_of(col)
        .ok_or_else(|| SqlError::UnknownColumn {
            name: col.to_string(),
            at,
        })?;
    let ty = schema.columns[column].data_type;
    if !matches!(ty, DataType::Timestamp | DataType::Int) {
        return Err(SqlError::type_error(
            format!("the watermark column `{col}` is {ty}, not TIMESTAMP(3) (or BIGINT epoch ms)"),
            at,
        ));
    }
    let eat = Location::of(expr.span());
    let same = |e: &Expr| matches!(e, Expr::Identifier(i) if i.value == schema.columns[column].name || i.value.eq_ignore_ascii_case(col));
    let delay_ms = match expr {
        e if same(e) => 0,
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if same(left) => crate::time::interval_ms(right, eat)?,
        other => {
            return Err(SqlError::unsupported(
                format!("watermark expression `{other}` (use `{col} - INTERVAL 'n' SECOND`)"),
                eat,
            ))
        }
    };
    Ok(Rowtime { column, delay_ms })
}

#[cfg(test)]
mod tests {
    use crate::parser::{parse_script, Statement};

    fn table(sql: &str) -> Result<super::TableDef, crate::SqlError> {
        match parse_script(sql)?.pop() {
            Some(Statement::CreateTable(t)) => Ok(*t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_table_reads_columns_watermark_and_options() {
        let t = table(
            "CREATE TABLE bid (auction BIGINT, price BIGINT, `dateTime` TIMESTAMP(3),\n\
             WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND)\n\
             WITH ('connector' = 'json-lines', 'path' = '/tmp/bids.jsonl')",
        )
        .unwrap();
        assert_eq!(t.name, "bid");
        assert_eq!(t.schema.len(), 3);
        assert_eq!(t.rowtime.unwrap().column, 2);
        assert_eq!(t.rowtime.unwrap().delay_ms, 4000);
        assert_eq!(t.connector(), "json-lines");
    }

    #[test]
    fn bad_definitions_are_errors_with_places() {
        let e = table("CREATE TABLE t (a BIGINT,\n  WATERMARK FOR b AS b)").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown column `b` at line 2, column 3"),
            "{e}"
        );
        let e = table("CREATE TABLE t (a GEOMETRY)").unwrap_err();
        assert!(e.to_string().contains("column type"), "{e}");
        let e = table("CREATE TABLE t (a STRING, WATERMARK FOR a AS a)").unwrap_err();
        assert!(matches!(e, crate::SqlError::Type { .. }), "{e}");
    }
}
