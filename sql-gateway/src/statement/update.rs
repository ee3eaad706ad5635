//! UPDATE kv SET ... [WHERE ...].
//!
//! `WHERE k = 'a'` with constant assignments is one put with MUST_EXIST
//! (a failed condition means `UPDATE 0`). Other shapes read the matching
//! rows (point get or bounded scan), compute the new rows and write them in
//! one batch with MUST_EXIST; a row deleted meanwhile is dropped and the
//! batch retried. The read and the write belong to the statement's
//! transaction, so a concurrent update of a row read here fails the commit
//! with 40001 (an implicit transaction is run again) instead of being
//! overwritten: `SET n = n + 1` loses no increment. `now()` in SET or WHERE
//! is the statement's time, the same for every row.

use arbor_catalog::{Catalog, Datum, TableDescriptor};
use arbor_proto::MutationCondition;
use arbor_raftstore::WriteOutcome;
use sqlparser::ast::{self, AssignmentTarget};

use super::{
    check_batch, check_write_rows, default_expr, put_row, read_rows, resolve_filter, storable_row,
    table_access, QueryResult, Returning, TableAccess, WRITE_ROWS_MAX,
};
use crate::bind::{coerce, normalize_ident, CoercionContext, Scope};
use crate::error::GatewayError;
use crate::expr::{Expr, StatementTime};
use crate::plan::{resolve_from, resolve_writable_table, table_columns};
use crate::store::KvStore;
use crate::value::{Row, Value};

#[derive(Debug)]
pub(crate) struct UpdatePlan {
    table: TableDescriptor,
    assignments: Vec<(usize, Expr)>,
    filter: Option<Expr>,
    access: TableAccess,
    returning: Option<Returning>,
}

impl UpdatePlan {
    pub(crate) fn plan(
        update: &ast::Update,
        params: &[Value],
        catalog: &Catalog,
    ) -> Result<Self, GatewayError> {
        if update.from.is_some() || !update.order_by.is_empty() || update.limit.is_some() {
            return Err(GatewayError::unsupported("UPDATE ... FROM/ORDER BY/LIMIT"));
        }
        let (name, alias) = resolve_from(&update.table)?;
        let table = resolve_writable_table(&name, "UPDATE", catalog)?;
        let scope_name = alias.unwrap_or_else(|| table.name.clone());
        let scope = Scope::single(&scope_name, table_columns(&table), params);
        let assignments = plan_assignments(&table, &scope, &update.assignments)?;
        let filter = update
            .selection
            .as_ref()
            .map(|selection| scope.bind_predicate(selection, "WHERE"))
            .transpose()?;
        let access = table_access(&table, filter.as_ref());
        let returning = Returning::plan(&table, &scope_name, update.returning.as_deref(), params)?;
        Ok(UpdatePlan {
            table,
            assignments,
            filter,
            access,
            returning,
        })
    }

    pub(crate) fn returning_columns(&self) -> Vec<crate::value::Column> {
        self.returning
            .as_ref()
            .map(|returning| returning.columns.clone())
            .unwrap_or_default()
    }

    pub(crate) async fn execute(
        mut self,
        store: &dyn KvStore,
        now: StatementTime,
    ) -> Result<QueryResult, GatewayError> {
        resolve_filter(&self.table, &mut self.filter, &mut self.access, now);
        for (_, expr) in &mut self.assignments {
            expr.resolve_statement_time(now);
        }
        if let Some(returning) = &mut self.returning {
            returning.resolve_statement_time(now);
        }
        let updated = self.write(store).await?;
        Ok(match &self.returning {
            Some(returning) => returning.result("UPDATE", updated)?,
            None => QueryResult::command("UPDATE", updated.len()),
        })
    }

    /// The rows as written.
    async fn write(&self, store: &dyn KvStore) -> Result<Vec<Vec<Datum>>, GatewayError> {
        if let Some(row) = self.blind_point_row()? {
            // This write may reach storage at once (see `Returning::check`).
            if let Some(returning) = &self.returning {
                returning.check(std::slice::from_ref(&row))?;
            }
            let mutation = put_row(&self.table, &row, MutationCondition::MustExist)?;
            check_batch(std::slice::from_ref(&mutation))?;
            return Ok(match store.write(vec![mutation]).await? {
                WriteOutcome::Applied { .. } => vec![row],
                WriteOutcome::ConditionFailed { .. } => Vec::new(),
            });
        }
        let rows = read_rows(
            store,
            &self.table,
            self.filter.as_ref(),
            &self.access,
            Some(WRITE_ROWS_MAX + 1),
        )
        .await?;
        check_write_rows(rows.len())?;
        let mut pending = Vec::with_capacity(rows.len());
        let mut pending_rows = Vec::with_capacity(rows.len());
        for (_, row) in rows {
            let updated = self.apply(&row)?;
            pending.push(put_row(
                &self.table,
                &updated,
                MutationCondition::MustExist,
            )?);
            pending_rows.push(updated);
        }
        check_batch(&pending)?;
        // Each failed condition drops one row, so this loop ends.
        while !pending.is_empty() {
            match store.write(pending.clone()).await? {
                WriteOutcome::Applied { .. } => break,
                WriteOutcome::ConditionFailed { mutation_index } => {
                    if mutation_index >= pending.len() {
                        return Err(GatewayError::internal(
                            "condition failed on a mutation that was not sent",
                        ));
                    }
                    pending.remove(mutation_index);
                    pending_rows.remove(mutation_index);
                }
            }
        }
        Ok(pending_rows)
    }

    /// The whole new row when the statement needs no read: a plain
    /// `key = literal` filter and constant assignments covering every
    /// non-key column.
    fn blind_point_row(&self) -> Result<Option<Vec<Datum>>, GatewayError> {
        let (Some(key), true) = (&self.access.point, self.access.exact_point) else {
            return Ok(None);
        };
        let assigned_all = self
            .table
            .value_columns()
            .iter()
            .all(|column| self.assignments.iter().any(|(target, _)| target == column));
        if !assigned_all
            || self
                .assignments
                .iter()
                .any(|(_, expr)| expr.references_columns())
        {
            return Ok(None);
        }
        let mut row: Row = vec![Value::Null; self.table.columns.len()];
        for (&column, value) in self.table.primary_key.iter().zip(key) {
            row[column] = value.clone();
        }
        for (column, expr) in &self.assignments {
            row[*column] = expr.eval(&Vec::new())?;
        }
        storable_row(&self.table, row).map(Some)
    }

    fn apply(&self, row: &Row) -> Result<Vec<Datum>, GatewayError> {
        let mut updated = row.clone();
        for (column, expr) in &self.assignments {
            updated[*column] = expr.eval(row)?;
        }
        storable_row(&self.table, updated)
    }
}

/// `SET col = expr, ...` bound in `scope`: targets must be distinct,
/// existing, non-key columns; values are coerced to the column type.
pub(crate) fn plan_assignments(
    table: &TableDescriptor,
    scope: &Scope<'_>,
    assignments: &[ast::Assignment],
) -> Result<Vec<(usize, Expr)>, GatewayError> {
    let mut planned: Vec<(usize, Expr)> = Vec::with_capacity(assignments.len());
    for assignment in assignments {
        let AssignmentTarget::ColumnName(target) = &assignment.target else {
            return Err(GatewayError::unsupported("tuple assignment"));
        };
        let name = target
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(normalize_ident)
            .unwrap_or_default();
        let column = table
            .column_index(&name)
            .ok_or_else(|| GatewayError::UndefinedColumn { name: name.clone() })?;
        if table.is_primary_key_column(column) {
            return Err(GatewayError::unsupported("changing a primary key column"));
        }
        if planned.iter().any(|(existing, _)| *existing == column) {
            return Err(GatewayError::DuplicateColumn { name });
        }
        let expr = if is_default_keyword(&assignment.value) {
            default_expr(&table.columns[column])?
        } else {
            coerce(
                scope.bind(&assignment.value)?,
                table.columns[column].column_type,
                CoercionContext::Assignment,
            )?
        };
        planned.push((column, expr));
    }
    Ok(planned)
}

/// `SET c = DEFAULT` (sqlparser reads DEFAULT as an identifier).
fn is_default_keyword(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Identifier(ident)
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}
