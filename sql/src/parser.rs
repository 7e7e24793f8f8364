//! The front-end: sqlparser-rs tokenizes and parses; this module adds Flink's streaming forms
//! sqlparser lacks (`WATERMARK FOR` in `CREATE TABLE`, `TABLE t` as a window-function argument)
//! and splits a script into [`Statement`]s.

use crate::catalog::{parse_create_table, TableDef};
use crate::error::{Location, SqlError};
use sqlparser::ast::{self, Spanned};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Deepest expression nesting accepted (sqlparser's recursion limit).
const RECURSION_LIMIT: usize = 40;

/// One statement of a SQL script.
#[derive(Clone, Debug)]
pub enum Statement {
    /// `CREATE TABLE ... WITH (...)`.
    CreateTable(Box<TableDef>),
    /// A bare query: `SELECT ...`.
    Query(Box<ast::Query>),
    /// `INSERT INTO table SELECT ...`.
    Insert {
        /// The target table or sink.
        table: String,
        /// Where the target is named.
        at: Location,
        /// The query whose rows go there.
        query: Box<ast::Query>,
    },
    /// `EXPLAIN <statement>`.
    Explain(Box<Statement>),
}

/// The dialect: generic ANSI with Flink's backtick-quoted identifiers.
pub(crate) fn dialect() -> GenericDialect {
    GenericDialect {}
}

/// Tokenizes `sql` and drops the `TABLE` keyword Flink writes before a window function's table
/// argument (`TUMBLE(TABLE t, ...)`), which sqlparser does not parse; spans stay the original's.
fn tokens(sql: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    let dialect = dialect();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax {
            message: e.message,
            at: Location::new(e.location.line, e.location.column),
        })?;
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if is_keyword(&t.token, Keyword::TABLE) && follows_window_call(&out) {
            continue;
        }
        out.push(t);
    }
    Ok(out)
}

fn is_keyword(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none())
}

/// True when the last significant tokens are `TUMBLE (`, `HOP (`, `CUMULATE (` or `SESSION (`.
fn follows_window_call(prev: &[TokenWithSpan]) -> bool {
    let mut sig = prev
        .iter()
        .rev()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)));
    let (Some(paren), Some(name)) = (sig.next(), sig.next()) else {
        return false;
    };
    paren.token == Token::LParen
        && matches!(&name.token, Token::Word(w)
            if ["TUMBLE", "HOP", "CUMULATE", "SESSION"].iter().any(|n| w.value.eq_ignore_ascii_case(n)))
}

/// Parses a script of `;`-separated statements.
pub fn parse_script(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let dialect = dialect();
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens(sql)?);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            return Ok(out);
        }
        out.push(parse_statement(&mut parser, true)?);
        match parser.peek_token() {
            t if t.token == Token::EOF || t.token == Token::SemiColon => {}
            t => {
                return Err(SqlError::Syntax {
                    message: format!("expected `;` or the end, found `{}`", t.token),
                    at: Location::of(t.span),
                })
            }
        }
    }
}

fn parse_statement(parser: &mut Parser<'_>, explain_ok: bool) -> Result<Statement, SqlError> {
    let first = parser.peek_token();
    let at = Location::of(first.span);
    if let Token::Word(w) = &first.token {
        if w.value.eq_ignore_ascii_case("EXPLAIN") && explain_ok {
            parser.next_token();
            // Flink's `EXPLAIN PLAN FOR`.
            let _ = parser.parse_keywords(&[Keyword::PLAN, Keyword::FOR]);
            return Ok(Statement::Explain(Box::new(parse_statement(
                parser, false,
            )?)));
        }
        if w.keyword == Keyword::CREATE
            && is_keyword(&parser.peek_nth_token(1).token, Keyword::TABLE)
        {
            return Ok(Statement::CreateTable(Box::new(parse_create_table(
                parser,
            )?)));
        }
    }
    match parser.parse_statement()? {
        ast::Statement::Query(q) => Ok(Statement::Query(q)),
        ast::Statement::Insert(insert) => insert_statement(insert, at),
        other => Err(SqlError::unsupported(
            format!("statement `{}`", first_words(&other.to_string())),
            at,
        )),
    }
}

fn insert_statement(insert: ast::Insert, at: Location) -> Result<Statement, SqlError> {
    let ast::TableObject::TableName(name) = &insert.table else {
        return Err(SqlError::unsupported("INSERT INTO a table function", at));
    };
    let table_at = Location::of(name.span());
    if !insert.columns.is_empty() {
        return Err(SqlError::unsupported(
            "an INSERT column list (columns go by position)",
            table_at,
        ));
    }
    let Some(query) = insert.source else {
        return Err(SqlError::unsupported("INSERT without a query", at));
    };
    Ok(Statement::Insert {
        table: object_name(name),
        at: table_at,
        query,
    })
}

/// The last part of a possibly qualified name, as written (unquoted).
pub(crate) fn object_name(name: &ast::ObjectName) -> String {
    name.0
        .last()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// The first two words of a statement, to name it in an error.
fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_splits_into_statements() {
        let s = parse_script(
            "CREATE TABLE t (a BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH ('connector' = 'json-lines', 'path' = 'x.jsonl');\n\
             INSERT INTO out SELECT a FROM t; EXPLAIN SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND));",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert!(matches!(s[0], Statement::CreateTable(_)));
        assert!(matches!(&s[1], Statement::Insert { table, .. } if table == "out"));
        assert!(matches!(s[2], Statement::Explain(_)));
    }

    #[test]
    fn unsupported_statements_name_their_place() {
        let e = parse_script("SELECT 1;\n  DROP TABLE t").unwrap_err();
        assert_eq!(e.location(), Some(Location::new(2, 3)), "{e}");
        assert!(e.to_string().contains("DROP TABLE"), "{e}");
        let e = parse_script("SELECT FROM WHERE").unwrap_err();
        assert!(matches!(e, SqlError::Syntax { .. }), "{e}");
        assert_ne!(e.location(), Some(Location::default()), "{e}");
    }
}
