//! `ALTER TABLE t SPLIT AT VALUES (v1, ...), ...`: one region split per
//! VALUES row, at the key where the rows whose primary key starts with
//! those values begin (a row may give a prefix of a composite key).
//!
//! Planning is pure: the rows are constants evaluated with the gateway's
//! expression code and converted to the key columns' types as INSERT
//! converts them, then encoded by the catalog's key encoding. Execution
//! asks [`Storage::split_at`] for each key in turn, in the order given.
//!
//! Result (one row per VALUES row): `split_key` text (the key as the
//! primary-key values, `/50`), `left_region_id` and `right_region_id`
//! bigint (the regions ending and starting at the key). CockroachDB
//! answers `key`, `pretty` and `split_enforced_until`; Arbor has no split
//! expiry and shows keys one way, so it answers the pretty key and the two
//! region ids, which `SHOW REGIONS FROM TABLE` lists.

use arbor_catalog::{encode_key_prefix, TableDescriptor};
use sqlparser::ast::{self, Query, SetExpr};

use crate::bind::{coerce, CoercionContext, Scope};
use crate::error::GatewayError;
use crate::expr::StatementTime;
use crate::statement::{assign, check_key_bytes, QueryResult};
use crate::store::Storage;
use crate::value::{Column, SqlType, Value};

use super::key_text::key_text;
use super::{column, int, SPLIT_AT_STATEMENT};

/// VALUES rows one SPLIT AT may give: each is a coordinator round trip
/// (a raft admin command and two root proposals), so a statement stays
/// well inside a client's patience.
pub(crate) const SPLIT_ROWS_MAX: usize = 64;

pub(crate) fn columns() -> Vec<Column> {
    vec![
        column("split_key", SqlType::Text),
        column("left_region_id", SqlType::Int8),
        column("right_region_id", SqlType::Int8),
    ]
}

#[derive(Debug)]
pub(crate) struct SplitAtPlan {
    table: TableDescriptor,
    /// One storage key per VALUES row, in the order given.
    keys: Vec<Vec<u8>>,
}

impl SplitAtPlan {
    /// Evaluates `rows` (a `VALUES` list of constants) into split keys of
    /// `table`.
    pub(crate) fn plan(
        table: TableDescriptor,
        rows: &Query,
        now: StatementTime,
    ) -> Result<Self, GatewayError> {
        let rows = values_rows(rows, SPLIT_AT_STATEMENT)?;
        if rows.len() > SPLIT_ROWS_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("{SPLIT_AT_STATEMENT} with {} rows", rows.len()),
                limit: SPLIT_ROWS_MAX,
            });
        }
        let keys = rows
            .iter()
            .map(|row| split_key(&table, &row.content, now, "SPLIT AT"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SplitAtPlan { table, keys })
    }

    /// Splits at each key in turn. A failure stops the statement; the
    /// splits before it stay (each is committed on its own, as in
    /// CockroachDB), and running the statement again skips them at once.
    pub(crate) async fn execute(&self, storage: &dyn Storage) -> Result<QueryResult, GatewayError> {
        let mut rows = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let outcome = storage.split_at(key).await?;
            rows.push(vec![
                key_text(&self.table, key).map_or(Value::Null, Value::Text),
                outcome.left_region_id.map_or(Value::Null, int),
                int(outcome.right_region_id),
            ]);
        }
        Ok(QueryResult::Rows {
            columns: columns(),
            rows,
        })
    }
}

/// The rows of a `VALUES` query; anything else (a SELECT) is refused
/// (`statement` names the statement in the error).
pub(super) fn values_rows<'q>(
    query: &'q Query,
    statement: &str,
) -> Result<&'q [ast::Parens<Vec<ast::Expr>>], GatewayError> {
    let plain = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none();
    match query.body.as_ref() {
        SetExpr::Values(values) if plain => Ok(&values.rows),
        _ => Err(GatewayError::unsupported(format!(
            "{statement} with a query other than VALUES"
        ))),
    }
}

/// The key where rows whose primary key starts with `exprs` begin
/// (`keyword`, e.g. `SPLIT AT`, names the statement in errors).
pub(super) fn split_key(
    table: &TableDescriptor,
    exprs: &[ast::Expr],
    now: StatementTime,
    keyword: &str,
) -> Result<Vec<u8>, GatewayError> {
    let key_columns = table.primary_key.len();
    if exprs.is_empty() || exprs.len() > key_columns {
        return Err(GatewayError::DatatypeMismatch {
            message: format!(
                "{keyword} data has {} columns but the primary key of \"{}\" has {key_columns}",
                exprs.len(),
                table.name
            ),
        });
    }
    let scope = Scope::constant(&[]);
    let mut values = Vec::with_capacity(exprs.len());
    for (expr, &index) in exprs.iter().zip(&table.primary_key) {
        let column = &table.columns[index];
        let named = |error| name_column(error, &column.name);
        let bound = scope.bind(expr)?;
        let mut expr =
            coerce(bound, column.column_type, CoercionContext::Assignment).map_err(named)?;
        expr.resolve_statement_time(now);
        let value = expr.eval(&Vec::new())?;
        values.push(assign(value, column.column_type).map_err(named)?);
    }
    let key = encode_key_prefix(table, &values)?;
    check_key_bytes(&key)?;
    Ok(key)
}

/// Postgres names the column in a type mismatch (`column "id" is of type
/// bigint but ...`); the shared coercion code does not know it.
fn name_column(error: GatewayError, name: &str) -> GatewayError {
    match error {
        GatewayError::DatatypeMismatch { message } if message.starts_with("column is") => {
            GatewayError::DatatypeMismatch {
                message: message.replacen("column is", &format!("column \"{name}\" is"), 1),
            }
        }
        other => other,
    }
}
