//! One module per statement kind: each plans its statement (pure) and runs
//! the plan against a [`KvStore`] at the statement's time (`now()`).
//! Shared here: size limits, key ranges, reading rows by point, by a list
//! of points (`k IN (...)`) or by bounded scan, and mutation builders.
//!
//! Invariant: one statement's changes go to the store in ONE write, so a
//! failed statement (duplicate key, failed condition) leaves nothing behind.

pub(crate) mod admin;
pub(crate) mod ddl;
pub(crate) mod delete;
pub(crate) mod insert;
pub(crate) mod select;
pub(crate) mod session;
pub(crate) mod update;

use std::ops::Bound;

use arbor_catalog::{
    datum_fits, decode_row, encode_key_prefix, encode_primary_key, encode_row, prefix_end,
    table_key_range, Datum, TableDescriptor,
};
use arbor_proto::{Mutation, MutationCondition, MutationOp};

use futures::{StreamExt, TryStreamExt};

use crate::error::GatewayError;
use crate::expr::{
    is_exact_point, key_point, key_points, key_range, Expr, KeyRange, StatementTime,
    TIMESTAMP_PRECISION_MAX,
};
use crate::store::{scan_rows, KvStore, ScanRequest};
use crate::value::{Row, SqlType, Value};

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
/// Point reads in flight at once for one statement (`k IN (...)`, the
/// stored rows an upsert reads).
pub(crate) const POINT_READS_IN_FLIGHT_MAX: usize = 16;
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
    /// INSERT/UPDATE/DELETE ... RETURNING: rows, then the command's own tag.
    Returning {
        tag: &'static str,
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

/// Converts each value to its column's type (Postgres' assignment cast),
/// then checks NOT NULL, VARCHAR(n) lengths and size limits.
pub(crate) fn storable_row(table: &TableDescriptor, row: Row) -> Result<Vec<Datum>, GatewayError> {
    let mut datums = Vec::with_capacity(row.len());
    for (value, column) in row.into_iter().zip(&table.columns) {
        datums.push(assign(value, column.column_type)?);
    }
    for (index, (datum, column)) in datums.iter().zip(&table.columns).enumerate() {
        let is_key = table.is_primary_key_column(index);
        if datum.is_null() && (is_key || !column.nullable) {
            return Err(GatewayError::NotNullViolation {
                table: table.name.clone(),
                column: column.name.clone(),
                row: datums
                    .iter()
                    .map(Datum::to_text)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let (Some(length_max), Datum::Text(text)) = (column.length_max, datum) {
            if text.chars().count() > length_max as usize {
                return Err(GatewayError::StringTooLong { length_max });
            }
        }
        let length = match datum {
            Datum::Text(text) | Datum::Json(text) | Datum::Numeric(text) => text.len(),
            Datum::Bytes(bytes) => bytes.len(),
            _ => 0,
        };
        let (limit, what) = if is_key {
            (KEY_BYTES_MAX, "key")
        } else {
            (VALUE_BYTES_MAX, "value")
        };
        if length > limit {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("a {what} of {length} bytes in column \"{}\"", column.name),
                limit,
            });
        }
    }
    Ok(datums)
}

/// One value converted for storing into a column of `column_type`.
pub(crate) fn assign(value: Value, column_type: SqlType) -> Result<Datum, GatewayError> {
    if datum_fits(column_type, &value) {
        return match value {
            Value::Int(number) => column_type
                .check_integer(number)
                .map(Datum::Int)
                .ok_or_else(|| GatewayError::NumericOutOfRange {
                    type_name: column_type.sql_name().to_owned(),
                }),
            Value::Float(number) => Ok(Datum::Float(column_type.round_float(number))),
            other => Ok(other),
        };
    }
    match crate::value::convert(&value, column_type) {
        Some(converted) => converted,
        None => Err(GatewayError::DatatypeMismatch {
            message: format!(
                "column is of type {} but expression is of type {}",
                column_type.sql_name(),
                value
                    .natural_type()
                    .map_or("unknown", |value_type| value_type.sql_name())
            ),
        }),
    }
}

/// What a column holds when a statement does not give it a value (INSERT
/// leaving it out, `DEFAULT` in VALUES or SET).
pub(crate) fn default_expr(column: &arbor_catalog::ColumnDescriptor) -> Result<Expr, GatewayError> {
    use arbor_catalog::ColumnDefault;
    match &column.default {
        None => Ok(Expr::Literal(Value::Null)),
        Some(ColumnDefault::Constant(value)) => Ok(Expr::Literal(value.clone())),
        // now() is a timestamptz; storing converts it to the column's type.
        Some(ColumnDefault::CurrentTimestamp) => Ok(Expr::StatementTime {
            sql_type: SqlType::Timestamptz,
            precision: TIMESTAMP_PRECISION_MAX,
        }),
        Some(ColumnDefault::RandomUuid) => Err(GatewayError::unsupported(format!(
            "DEFAULT gen_random_uuid() (column \"{}\")",
            column.name
        ))),
    }
}

/// How a statement reaches the rows its WHERE clause can match: a point
/// read when every key column is pinned, a few point reads when they are
/// pinned to lists (`k IN (...)`), else a range of the first key column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableAccess {
    pub(crate) range: KeyRange,
    /// Values of every key column, in key order.
    pub(crate) point: Option<Vec<Value>>,
    /// Several such points, when `point` is None (see [`key_points`]).
    pub(crate) points: Option<Vec<Vec<Value>>>,
    /// The filter is exactly the point equality (nothing else to check).
    pub(crate) exact_point: bool,
}

/// The first primary-key column (the one range scans are bounded by).
pub(crate) fn first_key_column(table: &TableDescriptor) -> usize {
    table.primary_key[0]
}

/// How to reach the rows `filter` can match in `table`.
pub(crate) fn table_access(table: &TableDescriptor, filter: Option<&Expr>) -> TableAccess {
    let point = key_point(filter, &table.primary_key);
    TableAccess {
        range: key_range(filter, first_key_column(table)),
        points: match point {
            Some(_) => None,
            None => key_points(filter, &table.primary_key),
        },
        point,
        exact_point: is_exact_point(filter, &table.primary_key),
    }
}

/// Resolves `now()` in a plan's filter and returns the access path for the
/// resolved filter (a time bound on the key narrows the scan only once the
/// time is known).
pub(crate) fn resolve_filter(
    table: &TableDescriptor,
    filter: &mut Option<Expr>,
    access: &mut TableAccess,
    now: StatementTime,
) {
    if let Some(expr) = filter.as_mut().filter(|expr| expr.reads_statement_time()) {
        expr.resolve_statement_time(now);
        *access = table_access(table, filter.as_ref());
    }
}

/// Byte bounds `[start, end)` of a first-key-column range inside the
/// table's key space.
pub(crate) fn byte_range(
    table: &TableDescriptor,
    range: &KeyRange,
) -> Result<(Vec<u8>, Vec<u8>), GatewayError> {
    let (table_start, table_end) = table_key_range(table.id);
    let prefix = |value: &Value| encode_key_prefix(table, std::slice::from_ref(value));
    let start = match &range.lower {
        Bound::Unbounded => table_start,
        Bound::Included(value) => prefix(value)?,
        Bound::Excluded(value) => prefix_end(&prefix(value)?),
    };
    let end = match &range.upper {
        Bound::Unbounded => table_end,
        Bound::Included(value) => prefix_end(&prefix(value)?),
        Bound::Excluded(value) => prefix(value)?,
    };
    check_key_bytes(&start)?;
    check_key_bytes(&end)?;
    Ok((start, end))
}

/// The rows of `table` matching `filter`: a point get when every key column
/// is pinned, otherwise a bounded paged scan.
pub(crate) async fn read_rows(
    store: &dyn KvStore,
    table: &TableDescriptor,
    filter: Option<&Expr>,
    access: &TableAccess,
    matches_max: Option<usize>,
) -> Result<Vec<(Vec<u8>, Row)>, GatewayError> {
    if access.range.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(point) = &access.point {
        let key = encode_primary_key(table, point)?;
        check_key_bytes(&key)?;
        let Some(value) = store.get(&key).await? else {
            return Ok(Vec::new());
        };
        let row: Row = decode_row(table, &key, &value).map_err(GatewayError::Corrupt)?;
        let keep = match filter {
            Some(filter) => filter.matches(&row)?,
            None => true,
        } && matches_max != Some(0);
        return Ok(if keep { vec![(key, row)] } else { Vec::new() });
    }
    if let Some(points) = &access.points {
        return read_points(store, table, filter, points, matches_max).await;
    }
    let (start, end) = byte_range(table, &access.range)?;
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

/// The rows at `points` that match `filter`, in key order (as a scan would
/// return them), each key read once.
async fn read_points(
    store: &dyn KvStore,
    table: &TableDescriptor,
    filter: Option<&Expr>,
    points: &[Vec<Value>],
    matches_max: Option<usize>,
) -> Result<Vec<(Vec<u8>, Row)>, GatewayError> {
    let mut keys = Vec::with_capacity(points.len());
    for point in points {
        let key = encode_primary_key(table, point)?;
        check_key_bytes(&key)?;
        keys.push(key);
    }
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    for (key, value) in get_all(store, keys).await? {
        let Some(value) = value else {
            continue;
        };
        if matches_max.is_some_and(|max| rows.len() >= max) {
            break;
        }
        let row: Row = decode_row(table, &key, &value).map_err(GatewayError::Corrupt)?;
        if filter.map_or(Ok(true), |filter| filter.matches(&row))? {
            rows.push((key, row));
        }
    }
    Ok(rows)
}

/// The value of each key (in the order given), at most
/// [`POINT_READS_IN_FLIGHT_MAX`] reads in flight.
pub(crate) async fn get_all(
    store: &dyn KvStore,
    keys: Vec<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, GatewayError> {
    futures::stream::iter(keys)
        .map(|key| async move {
            let value = store.get(&key).await?;
            Ok::<_, GatewayError>((key, value))
        })
        .buffered(POINT_READS_IN_FLIGHT_MAX)
        .try_collect()
        .await
}

/// Refuses a key the store would reject, with 54000 instead of an internal
/// error (a WHERE bound can be any length).
pub(crate) fn check_key_bytes(key: &[u8]) -> Result<(), GatewayError> {
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

/// The text of a row's primary key, for error details.
pub(crate) fn key_text(table: &TableDescriptor, row: &[Datum]) -> String {
    table
        .primary_key
        .iter()
        .map(|&column| row.get(column).map_or("null".to_owned(), Datum::to_text))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A planned RETURNING list: expressions over the written row.
#[derive(Debug)]
pub(crate) struct Returning {
    exprs: Vec<Expr>,
    pub(crate) columns: Vec<crate::value::Column>,
}

impl Returning {
    /// Binds `items` over the rows of `table` (called `scope_name`).
    pub(crate) fn plan(
        table: &TableDescriptor,
        scope_name: &str,
        items: Option<&[sqlparser::ast::SelectItem]>,
        params: &[Value],
    ) -> Result<Option<Returning>, GatewayError> {
        use sqlparser::ast::SelectItem;
        let Some(items) = items else {
            return Ok(None);
        };
        let table_columns = crate::plan::table_columns(table);
        let scope = crate::bind::Scope::single(scope_name, table_columns.clone(), params);
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        for item in items {
            let (expr, alias) = match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    for (index, column) in table_columns.iter().enumerate() {
                        exprs.push(Expr::Column(index));
                        columns.push(column.clone());
                    }
                    continue;
                }
                SelectItem::UnnamedExpr(expr) => (expr, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
                _ => return Err(GatewayError::unsupported("this RETURNING item")),
            };
            let bound = scope.bind(expr)?;
            let name = match (alias, expr) {
                (Some(alias), _) => crate::bind::normalize_ident(alias),
                (None, sqlparser::ast::Expr::Identifier(ident)) => {
                    crate::bind::normalize_ident(ident)
                }
                (None, sqlparser::ast::Expr::CompoundIdentifier(parts)) => parts
                    .last()
                    .map(crate::bind::normalize_ident)
                    .unwrap_or_default(),
                _ => "?column?".to_owned(),
            };
            columns.push(crate::value::Column::new(
                &name,
                bound.bound_type.output_type(),
            ));
            exprs.push(bound.expr);
        }
        Ok(Some(Returning { exprs, columns }))
    }

    /// The RETURNING rows for the rows as written. Fails only when an
    /// expression does (arithmetic); see [`Returning::check`].
    pub(crate) fn result(
        &self,
        tag: &'static str,
        rows: Vec<Vec<Datum>>,
    ) -> Result<QueryResult, GatewayError> {
        Ok(QueryResult::Returning {
            tag,
            columns: self.columns.clone(),
            rows: rows
                .iter()
                .map(|row| self.project(row))
                .collect::<Result<_, _>>()?,
        })
    }

    pub(crate) fn resolve_statement_time(&mut self, now: StatementTime) {
        for expr in &mut self.exprs {
            expr.resolve_statement_time(now);
        }
    }

    /// Evaluates the list over rows about to be written, so an error (say
    /// `RETURNING 1 / n` with n = 0) fails the statement BEFORE a write that
    /// may reach storage at once (an implicit transaction's first write).
    pub(crate) fn check(&self, rows: &[Vec<Datum>]) -> Result<(), GatewayError> {
        rows.iter().try_for_each(|row| self.project(row).map(drop))
    }

    fn project(&self, row: &Row) -> Result<Row, GatewayError> {
        self.exprs.iter().map(|expr| expr.eval(row)).collect()
    }
}
