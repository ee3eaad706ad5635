//! One module per statement kind: each plans its statement (pure) and runs
//! the plan against a [`KvStore`]. Shared here: size limits, key ranges,
//! reading rows by point or bounded scan, and mutation builders.
//!
//! Invariant: one statement's changes go to the store in ONE write, so a
//! failed statement (duplicate key, failed condition) leaves nothing behind.

pub(crate) mod delete;
pub(crate) mod insert;
pub(crate) mod select;
pub(crate) mod session;
pub(crate) mod update;

use std::ops::Bound;

use arbor_catalog::{
    decode_row, encode_primary_key, encode_row, key_successor, table_key_range, Datum,
    TableDescriptor,
};
use arbor_proto::{Mutation, MutationCondition, MutationOp};

use crate::bind::value_as_text;
use crate::error::GatewayError;
use crate::expr::{key_range, CompareOp, Expr, KeyRange};
use crate::store::{scan_rows, KvStore, ScanRequest};
use crate::value::{Row, Value};

use arbor_raftstore::config::{
    KEY_BYTES_MAX as STORE_KEY_BYTES_MAX, VALUE_BYTES_MAX as STORE_VALUE_BYTES_MAX,
    WRITE_BATCH_BYTES_MAX as STORE_WRITE_BATCH_BYTES_MAX,
    WRITE_MUTATIONS_MAX as STORE_WRITE_MUTATIONS_MAX,
};

/// Bytes the row encoding adds around one text column (version, column
/// count, tag, length): room left so a maximal value still fits a store value.
const ROW_ENCODING_OVERHEAD_BYTES_MAX: usize = 64;
/// Largest text value a column may hold (Postgres allows 1 GB; a store value
/// is capped at 1 MiB so raft entries stay small).
pub(crate) const VALUE_BYTES_MAX: usize = STORE_VALUE_BYTES_MAX - ROW_ENCODING_OVERHEAD_BYTES_MAX;
/// Largest primary-key text: its encoding (table prefix, escaped NULs,
/// terminator) must fit a store key even if every byte is NUL.
pub(crate) const KEY_BYTES_MAX: usize = (STORE_KEY_BYTES_MAX - 16) / 2;
/// Rows one INSERT, UPDATE or DELETE may change (one write batch).
pub(crate) const WRITE_ROWS_MAX: usize = STORE_WRITE_MUTATIONS_MAX;
const _: () = assert!(VALUE_BYTES_MAX >= 1_000_000);
const _: () = assert!(KEY_BYTES_MAX >= 4_000);
const _: () = assert!(WRITE_ROWS_MAX <= crate::store::SCAN_ROWS_MAX);

/// What a statement returns to the client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum QueryResult {
    /// A command tag such as `INSERT 0 2` (`rows` None: just the word).
    Command {
        tag: &'static str,
        rows: Option<usize>,
    },
    Rows {
        columns: Vec<crate::value::Column>,
        rows: Vec<Row>,
    },
    TransactionStart,
    TransactionEnd {
        tag: &'static str,
    },
}

impl QueryResult {
    pub(crate) fn command(tag: &'static str, rows: usize) -> Self {
        QueryResult::Command {
            tag,
            rows: Some(rows),
        }
    }
}

pub(crate) fn check_write_rows(count: usize) -> Result<(), GatewayError> {
    if count > WRITE_ROWS_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a statement changing {count} rows"),
            limit: WRITE_ROWS_MAX,
        });
    }
    Ok(())
}

/// Checks sizes and NOT NULL, then converts a row to stored values.
pub(crate) fn storable_row(table: &TableDescriptor, row: Row) -> Result<Vec<Datum>, GatewayError> {
    let datums: Vec<Datum> = row
        .into_iter()
        .map(|value| value_as_text(value).map_or(Datum::Null, Datum::Text))
        .collect();
    for (index, (datum, column)) in datums.iter().zip(&table.columns).enumerate() {
        let is_key = table.is_primary_key_column(index);
        match datum {
            Datum::Null if is_key || !column.nullable => {
                return Err(GatewayError::NotNullViolation {
                    table: table.name.clone(),
                    column: column.name.clone(),
                    row: datums
                        .iter()
                        .map(|datum| match datum {
                            Datum::Null => "null".to_owned(),
                            Datum::Text(text) => text.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
            Datum::Text(text) => {
                let (limit, what) = if is_key {
                    (KEY_BYTES_MAX, "key")
                } else {
                    (VALUE_BYTES_MAX, "value")
                };
                if text.len() > limit {
                    return Err(GatewayError::ProgramLimitExceeded {
                        what: format!(
                            "a {what} of {} bytes in column \"{}\"",
                            text.len(),
                            column.name
                        ),
                        limit,
                    });
                }
            }
            Datum::Null => {}
        }
    }
    Ok(datums)
}

/// The single primary-key column of a table, when it has exactly one (the
/// case range pushdown handles).
pub(crate) fn single_key_column(table: &TableDescriptor) -> Option<usize> {
    match table.primary_key.as_slice() {
        [column] => Some(*column),
        _ => None,
    }
}

/// The key range a WHERE clause implies for `table`.
pub(crate) fn table_range(table: &TableDescriptor, filter: Option<&Expr>) -> KeyRange {
    match single_key_column(table) {
        Some(column) => key_range(filter, column),
        None => KeyRange::full(),
    }
}

/// Byte bounds `[start, end)` of a key range inside the table's key space.
pub(crate) fn byte_range(
    table: &TableDescriptor,
    range: &KeyRange,
) -> Result<(Vec<u8>, Vec<u8>), GatewayError> {
    let (table_start, table_end) = table_key_range(table.id);
    let key = |text: &str| encode_primary_key(table, &[Datum::Text(text.to_owned())]);
    let start = match &range.lower {
        Bound::Unbounded => table_start,
        Bound::Included(text) => key(text)?,
        Bound::Excluded(text) => key_successor(&key(text)?),
    };
    let end = match &range.upper {
        Bound::Unbounded => table_end,
        Bound::Included(text) => key_successor(&key(text)?),
        Bound::Excluded(text) => key(text)?,
    };
    check_key_bytes(&start)?;
    check_key_bytes(&end)?;
    Ok((start, end))
}

/// True when `filter` is exactly `key = literal` (or `literal = key`), so
/// the point range says everything the filter does.
pub(crate) fn is_plain_point_filter(table: &TableDescriptor, filter: Option<&Expr>) -> bool {
    let Some(key_column) = single_key_column(table) else {
        return false;
    };
    match filter {
        Some(Expr::Compare(CompareOp::Eq, left, right)) => matches!(
            (left.as_ref(), right.as_ref()),
            (Expr::Column(c), Expr::Literal(Value::Text(_)))
            | (Expr::Literal(Value::Text(_)), Expr::Column(c)) if *c == key_column
        ),
        _ => false,
    }
}

/// The rows of `table` matching `filter`: a point get when the range is a
/// single key, otherwise a bounded paged scan.
pub(crate) async fn read_rows(
    store: &dyn KvStore,
    table: &TableDescriptor,
    filter: Option<&Expr>,
    range: &KeyRange,
    matches_max: Option<usize>,
) -> Result<Vec<(Vec<u8>, Row)>, GatewayError> {
    if range.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(point) = range.point() {
        let key = encode_primary_key(table, &[Datum::Text(point.to_owned())])?;
        check_key_bytes(&key)?;
        let Some(value) = store.get(&key).await? else {
            return Ok(Vec::new());
        };
        let row: Row = decode_row(table, &key, &value)?
            .into_iter()
            .map(Value::from)
            .collect();
        let keep = filter.is_none_or(|filter| filter.matches(&row)) && matches_max != Some(0);
        return Ok(if keep { vec![(key, row)] } else { Vec::new() });
    }
    let (start, end) = byte_range(table, range)?;
    scan_rows(
        store,
        ScanRequest {
            table,
            start,
            end,
            filter,
            matches_max,
        },
    )
    .await
}

/// Refuses a key the store would reject, with 54000 instead of an internal
/// error (a WHERE bound can be any length).
fn check_key_bytes(key: &[u8]) -> Result<(), GatewayError> {
    if key.len() > STORE_KEY_BYTES_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a primary key of {} encoded bytes", key.len()),
            limit: STORE_KEY_BYTES_MAX,
        });
    }
    Ok(())
}

/// Refuses a write batch larger than the store accepts in one write.
pub(crate) fn check_batch(mutations: &[Mutation]) -> Result<(), GatewayError> {
    check_write_rows(mutations.len())?;
    for mutation in mutations {
        check_key_bytes(&mutation.key)?;
    }
    let batch_bytes: usize = mutations
        .iter()
        .map(|mutation| mutation.key.len() + mutation.value.len())
        .sum();
    if batch_bytes > STORE_WRITE_BATCH_BYTES_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a statement writing {batch_bytes} bytes"),
            limit: STORE_WRITE_BATCH_BYTES_MAX,
        });
    }
    Ok(())
}

pub(crate) fn put_row(
    table: &TableDescriptor,
    row: &[Datum],
    condition: MutationCondition,
) -> Result<Mutation, GatewayError> {
    let (key, value) = encode_row(table, row)?;
    check_key_bytes(&key)?;
    if value.len() > STORE_VALUE_BYTES_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a row of {} encoded bytes", value.len()),
            limit: STORE_VALUE_BYTES_MAX,
        });
    }
    Ok(Mutation {
        op: MutationOp::Put as i32,
        key,
        value,
        condition: condition as i32,
    })
}

pub(crate) fn delete_key(key: Vec<u8>) -> Mutation {
    Mutation {
        op: MutationOp::Delete as i32,
        key,
        value: Vec::new(),
        condition: MutationCondition::None as i32,
    }
}

/// The text of a row's (single-column) primary key, for error details.
pub(crate) fn key_text(table: &TableDescriptor, row: &[Datum]) -> String {
    table
        .primary_key
        .iter()
        .map(|&column| match row.get(column) {
            Some(Datum::Text(text)) => text.clone(),
            _ => "null".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
