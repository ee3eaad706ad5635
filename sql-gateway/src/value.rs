//! Runtime values, their SQL types, and the column shape of results.
//!
//! Invariant: comparisons follow SQL three-valued logic: anything compared
//! with NULL is unknown (`None`), never true or false.

use std::cmp::Ordering;

use arbor_catalog::Datum;

/// The SQL types the gateway produces. Storage only has TEXT today; the
/// others appear in system tables, count(*) and constant selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    Text,
    Int4,
    Int8,
    Bool,
}

impl SqlType {
    pub(crate) fn sql_name(self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
            SqlType::Bool => "boolean",
        }
    }

    pub(crate) fn is_integer(self) -> bool {
        matches!(self, SqlType::Int4 | SqlType::Int8)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

impl Value {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// SQL comparison: `None` when either side is NULL or the types differ
    /// (the binder rejects mixed types before execution).
    pub(crate) fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Text(left), Value::Text(right)) => Some(left.cmp(right)),
            (Value::Int(left), Value::Int(right)) => Some(left.cmp(right)),
            (Value::Bool(left), Value::Bool(right)) => Some(left.cmp(right)),
            _ => None,
        }
    }

    /// Ordering for ORDER BY: NULLs are placed by the caller; values of
    /// different types (impossible after binding) compare equal.
    pub(crate) fn sort_cmp(&self, other: &Value) -> Ordering {
        self.sql_cmp(other).unwrap_or(Ordering::Equal)
    }

    /// How Postgres would print the value in text format (for messages).
    pub(crate) fn display_text(&self) -> String {
        match self {
            Value::Null => "null".to_owned(),
            Value::Text(text) => text.clone(),
            Value::Int(number) => number.to_string(),
            Value::Bool(true) => "t".to_owned(),
            Value::Bool(false) => "f".to_owned(),
        }
    }
}

impl From<Datum> for Value {
    fn from(datum: Datum) -> Self {
        match datum {
            Datum::Null => Value::Null,
            Datum::Text(text) => Value::Text(text),
        }
    }
}

/// One column of a relation or a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) sql_type: SqlType,
}

impl Column {
    pub(crate) fn new(name: &str, sql_type: SqlType) -> Self {
        Column {
            name: name.to_owned(),
            sql_type,
        }
    }
}

pub(crate) type Row = Vec<Value>;
