//! Runtime values, their SQL types, and the column shape of results.
//!
//! A runtime value IS a stored value: the gateway computes on
//! [`arbor_catalog::Datum`]s typed by [`arbor_catalog::ColumnType`], so rows
//! go from the store to the wire without conversion. The local names
//! `Value` and `SqlType` say how this crate uses them.
//!
//! Invariant: comparisons follow SQL three-valued logic: anything compared
//! with NULL is unknown (`None`), never true or false.

use std::cmp::Ordering;

pub(crate) use arbor_catalog::{ColumnType as SqlType, Datum as Value};

/// Ordering for ORDER BY: NULLs are placed by the caller; values of
/// different kinds (impossible after binding) compare equal.
pub(crate) fn sort_cmp(left: &Value, right: &Value) -> Ordering {
    left.compare(right).unwrap_or(Ordering::Equal)
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
