//! [`SqlError`]: every way a SQL text can be refused, each with the line and column it names.

use std::fmt;

/// A position in the SQL text, 1-based (0 when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl Location {
    /// A location at `line`, `column`.
    pub fn new(line: u64, column: u64) -> Self {
        Location { line, column }
    }

    /// The start of a sqlparser span.
    pub(crate) fn of(span: sqlparser::tokenizer::Span) -> Self {
        Location::new(span.start.line, span.start.column)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a SQL text could not be parsed, planned or run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SqlError {
    /// The text is not SQL the parser understands.
    #[error("syntax error at {at}: {message}")]
    Syntax {
        /// The parser's message.
        message: String,
        /// Where.
        at: Location,
    },
    /// Valid SQL that Watershed does not support (yet).
    #[error("unsupported at {at}: {construct}")]
    Unsupported {
        /// The construct, as written or named.
        construct: String,
        /// Where.
        at: Location,
    },
    /// Operands or arguments of the wrong type.
    #[error("type error at {at}: {message}")]
    Type {
        /// What does not fit.
        message: String,
        /// Where.
        at: Location,
    },
    /// A table no `CREATE TABLE` or Rust binding defined.
    #[error("unknown table `{name}` at {at}")]
    UnknownTable {
        /// The name.
        name: String,
        /// Where.
        at: Location,
    },
    /// A column the table or query does not have.
    #[error("unknown column `{name}` at {at}")]
    UnknownColumn {
        /// The name.
        name: String,
        /// Where.
        at: Location,
    },
    /// A definition or statement that contradicts itself or the catalog: a duplicate table, a
    /// missing connector option, a window on a column without a watermark.
    #[error("invalid at {at}: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// Where.
        at: Location,
    },
    /// A file could not be read.
    #[error("i/o error: {0}")]
    Io(String),
    /// The pipeline failed while running.
    #[error("pipeline error: {0}")]
    Runtime(String),
}

impl SqlError {
    /// Where in the text the error is, if it names a place.
    pub fn location(&self) -> Option<Location> {
        match self {
            SqlError::Syntax { at, .. }
            | SqlError::Unsupported { at, .. }
            | SqlError::Type { at, .. }
            | SqlError::UnknownTable { at, .. }
            | SqlError::UnknownColumn { at, .. }
            | SqlError::Invalid { at, .. } => Some(*at),
            SqlError::Io(_) | SqlError::Runtime(_) => None,
        }
    }

    pub(crate) fn unsupported(construct: impl Into<String>, at: Location) -> Self {
        SqlError::Unsupported {
            construct: construct.into(),
            at,
        }
    }

    pub(crate) fn type_error(message: impl Into<String>, at: Location) -> Self {
        SqlError::Type {
            message: message.into(),
            at,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>, at: Location) -> Self {
        SqlError::Invalid {
            message: message.into(),
            at,
        }
    }
}

impl From<sqlparser::parser::ParserError> for SqlError {
    fn from(e: sqlparser::parser::ParserError) -> Self {
        use sqlparser::parser::ParserError;
        let text = match e {
            ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
            ParserError::RecursionLimitExceeded => "nesting too deep".to_string(),
        };
        let (message, at) = split_location(&text);
        SqlError::Syntax { message, at }
    }
}

/// Splits sqlparser's "... at Line: L, Column: C" suffix off a message.
fn split_location(text: &str) -> (String, Location) {
    let Some(i) = text.rfind("Line: ") else {
        return (text.to_string(), Location::default());
    };
    let rest = &text[i + 6..];
    let mut parts = rest.splitn(2, ", Column: ");
    let line = parts.next().and_then(|l| l.trim().parse().ok());
    let column = parts
        .next()
        .map(|c| {
            c.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|c| c.parse().ok());
    let message = text[..i]
        .trim_end()
        .trim_end_matches(" at")
        .trim_end()
        .to_string();
    match (line, column) {
        (Some(l), Some(c)) => (message, Location::new(l, c)),
        _ => (text.to_string(), Location::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_location_suffix_becomes_a_location() {
        let (m, at) = split_location("Expected: an expression, found: EOF at Line: 3, Column: 14");
        assert_eq!(m, "Expected: an expression, found: EOF");
        assert_eq!(at, Location::new(3, 14));
        let (m, at) = split_location("no place");
        assert_eq!((m.as_str(), at), ("no place", Location::default()));
    }
}
