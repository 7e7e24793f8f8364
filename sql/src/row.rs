//! [`Row`]: the record type of SQL streams — typed [`Value`]s under a shared [`Schema`] — and its
//! JSON form.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// A SQL column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    /// `BOOLEAN`.
    Bool,
    /// `BIGINT` (also `INT`, `INTEGER`, `SMALLINT`, `TINYINT`): a 64-bit integer.
    Int,
    /// `DOUBLE` (also `FLOAT`, `REAL`, `DECIMAL`): a 64-bit float.
    Float,
    /// `STRING` (also `VARCHAR`, `CHAR`, `TEXT`).
    Str,
    /// `TIMESTAMP(3)`: epoch milliseconds.
    Timestamp,
    /// The type of a bare `NULL` literal; fits any column.
    Null,
}

impl DataType {
    /// True for `BIGINT` and `DOUBLE`.
    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Int | DataType::Float | DataType::Null)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataType::Bool => "BOOLEAN",
            DataType::Int => "BIGINT",
            DataType::Float => "DOUBLE",
            DataType::Str => "STRING",
            DataType::Timestamp => "TIMESTAMP(3)",
            DataType::Null => "NULL",
        })
    }
}

/// One SQL value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A `BOOLEAN`.
    Bool(bool),
    /// A `BIGINT`.
    Int(i64),
    /// A `DOUBLE`.
    Float(f64),
    /// A `STRING`.
    Str(String),
    /// A `TIMESTAMP(3)`, epoch milliseconds.
    Timestamp(i64),
}

impl Value {
    /// True for `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as JSON: timestamps as epoch milliseconds, non-finite floats as `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) | Value::Timestamp(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.as_str().into(),
        }
    }

    /// Reads a JSON value as a column of type `ty`; `None` when it does not fit.
    pub fn from_json(json: &serde_json::Value, ty: DataType) -> Option<Value> {
        use serde_json::Value as J;
        Some(match (ty, json) {
            (_, J::Null) => Value::Null,
            (DataType::Bool, J::Bool(b)) => Value::Bool(*b),
            (DataType::Int, J::Number(n)) => Value::Int(n.as_i64()?),
            (DataType::Float, J::Number(n)) => Value::Float(n.as_f64()?),
            (DataType::Str, J::String(s)) => Value::Str(s.clone()),
            (DataType::Str, J::Number(n)) => Value::Str(n.to_string()),
            (DataType::Str, J::Bool(b)) => Value::Str(b.to_string()),
            (DataType::Timestamp, J::Number(n)) => Value::Timestamp(n.as_i64()?),
            (DataType::Timestamp, J::String(s)) => {
                Value::Timestamp(crate::time::parse_timestamp(s)?)
            }
            _ => return None,
        })
    }

    /// The type of this value (`Null` for `NULL`).
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Null => DataType::Null,
            Value::Bool(_) => DataType::Bool,
            Value::Int(_) => DataType::Int,
            Value::Float(_) => DataType::Float,
            Value::Str(_) => DataType::Str,
            Value::Timestamp(_) => DataType::Timestamp,
        }
    }

    /// The value as an `i64`, for `BIGINT` and `TIMESTAMP`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) | Value::Timestamp(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as an `f64`, for `BIGINT` and `DOUBLE`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as a string slice, for `STRING`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Appends a self-delimiting encoding of the value (equal values, equal bytes): group keys
    /// and `COUNT(DISTINCT ...)` sets use it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend([1, *b as u8]),
            Value::Int(i) => {
                out.push(2);
                out.extend(i.to_be_bytes());
            }
            Value::Float(f) => {
                out.push(3);
                // -0.0 and 0.0 are one group, as SQL compares them equal.
                let f = if *f == 0.0 { 0.0f64 } else { *f };
                out.extend(f.to_bits().to_be_bytes());
            }
            Value::Str(s) => {
                out.push(4);
                out.extend((s.len() as u64).to_be_bytes());
                out.extend(s.as_bytes());
            }
            Value::Timestamp(t) => {
                out.push(5);
                out.extend(t.to_be_bytes());
            }
        }
    }

    /// Reads back one value [`encode`](Self::encode) wrote at the start of `bytes`, and the rest.
    pub fn decode(bytes: &[u8]) -> Option<(Value, &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        let word = |r: &[u8]| -> Option<[u8; 8]> { r.get(..8)?.try_into().ok() };
        Some(match tag {
            0 => (Value::Null, rest),
            1 => (Value::Bool(*rest.first()? != 0), &rest[1..]),
            2 => (Value::Int(i64::from_be_bytes(word(rest)?)), &rest[8..]),
            3 => (
                Value::Float(f64::from_bits(u64::from_be_bytes(word(rest)?))),
                &rest[8..],
            ),
            4 => {
                let n = usize::try_from(u64::from_be_bytes(word(rest)?)).ok()?;
                let s = rest.get(8..8usize.checked_add(n)?)?;
                (
                    Value::Str(String::from_utf8(s.to_vec()).ok()?),
                    &rest[8 + n..],
                )
            }
            5 => (
                Value::Timestamp(i64::from_be_bytes(word(rest)?)),
                &rest[8..],
            ),
            _ => return None,
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{}", if *b { "TRUE" } else { "FALSE" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Value::Timestamp(t) => write!(f, "{}", crate::time::format_timestamp(*t)),
        }
    }
}

/// A named, typed column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
}

/// The columns of a table or query result, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// The columns.
    pub columns: Vec<Column>,
}

impl Schema {
    /// A schema of `(name, type)` pairs.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = (S, DataType)>) -> Self {
        Schema {
            columns: columns
                .into_iter()
                .map(|(name, data_type)| Column {
                    name: name.into(),
                    data_type,
                })
                .collect(),
        }
    }

    /// The index of the column named `name`: an exact match, else the one case-insensitive match.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.columns.iter().position(|c| c.name == name) {
            return Some(i);
        }
        let mut found = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True when there are no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Decodes one JSON object into a row: each column from the field of its name (missing
    /// fields are `NULL`). Errors name the column whose value has the wrong type.
    pub fn row_from_json(self: &Arc<Self>, bytes: &[u8]) -> Result<Row, String> {
        let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(obj) = json else {
            return Err("expected a JSON object".into());
        };
        let values = self
            .columns
            .iter()
            .map(|c| match obj.get(&c.name) {
                None => Ok(Value::Null),
                Some(v) => Value::from_json(v, c.data_type)
                    .ok_or_else(|| format!("field `{}`: {v} is not a {}", c.name, c.data_type)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Row::new(self.clone(), values))
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", c.name, c.data_type)?;
        }
        Ok(())
    }
}

/// One row of a SQL stream: values in the order of its schema's columns. Serializes as a JSON
/// object of the columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The columns' names and types, shared by all rows of a stream.
    pub schema: Arc<Schema>,
    /// The values.
    pub values: Vec<Value>,
}

impl Row {
    /// A row of `values` under `schema`.
    pub fn new(schema: Arc<Schema>, values: Vec<Value>) -> Self {
        Row { schema, values }
    }

    /// The value of the column named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(self.schema.index_of(name)?)
    }

    /// The row as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .schema
            .columns
            .iter()
            .zip(&self.values)
            .map(|(c, v)| (c.name.clone(), v.to_json()))
            .collect();
        serde_json::Value::Object(map)
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.values.len()))?;
        for (c, v) in self.schema.columns.iter().zip(&self.values) {
            map.serialize_entry(&c.name, &v.to_json())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Row {
    /// A JSON object as a row whose schema follows the values: integers `BIGINT`, other
    /// numbers `DOUBLE`, strings `STRING`, booleans `BOOLEAN`, `null` a `NULL` column.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let obj = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut columns = Vec::with_capacity(obj.len());
        let mut values = Vec::with_capacity(obj.len());
        for (name, v) in obj {
            let value = match v {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Bool(b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(s) => Value::Str(s),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "unsupported value {other}"
                    )))
                }
            };
            columns.push(Column {
                name,
                data_type: value.data_type(),
            });
            values.push(value);
        }
        Ok(Row::new(Arc::new(Schema { columns }), values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_through_json() {
        let schema = Arc::new(Schema::new([
            ("a", DataType::Int),
            ("b", DataType::Str),
            ("c", DataType::Float),
            ("d", DataType::Bool),
            ("e", DataType::Int),
        ]));
        let row = schema
            .row_from_json(br#"{"a": 5, "b": "x", "c": 1.5, "d": true, "e": null}"#)
            .unwrap();
        assert_eq!(row.values[0], Value::Int(5));
        let text = serde_json::to_string(&row).unwrap();
        assert_eq!(text, r#"{"a":5,"b":"x","c":1.5,"d":true,"e":null}"#);
        let back: Row = serde_json::from_str(&text).unwrap();
        assert_eq!(back.values, row.values);
        let bad = schema.row_from_json(br#"{"a": "five"}"#).unwrap_err();
        assert!(bad.contains("field `a`"), "{bad}");
    }

    #[test]
    fn encoded_values_decode_back() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(2.5),
            Value::Str("héllo".into()),
            Value::Timestamp(1_000),
        ];
        let mut buf = Vec::new();
        values.iter().for_each(|v| v.encode(&mut buf));
        let mut rest = buf.as_slice();
        for v in &values {
            let (got, r) = Value::decode(rest).unwrap();
            assert_eq!(&got, v);
            rest = r;
        }
        assert!(rest.is_empty());
    }
}
