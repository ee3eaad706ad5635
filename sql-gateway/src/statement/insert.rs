//! INSERT ... VALUES [ON CONFLICT ...].
//!
//! Plain INSERT writes every row in one batch with MUST_NOT_EXIST on each
//! key: any duplicate (stored, or twice in the statement) fails the whole
//! statement with 23505 and writes nothing. ON CONFLICT DO NOTHING drops the
//! rows whose keys exist and retries. DO UPDATE whose SET gives every
//! non-key column a value that does not read the stored row (`SET v =
//! EXCLUDED.v`) writes without reading; any other DO UPDATE (`SET n = t.n +
//! EXCLUDED.n`, a column left as stored, a WHERE) reads each stored row in
//! the statement's transaction and writes the new rows conditioned on what
//! it read, so a concurrent change of those keys fails the commit (40001,
//! and an implicit transaction runs again) instead of being overwritten.
//!
//! VALUES rows are bound when planning and evaluated when the statement
//! runs, so `now()` and `DEFAULT now()` columns take the statement's time.

use std::collections::HashSet;

use arbor_catalog::{decode_row, Catalog, Datum, TableDescriptor};
use arbor_proto::{Mutation, MutationCondition};
use arbor_raftstore::WriteOutcome;
use sqlparser::ast::{self, ConflictTarget, OnConflictAction, OnInsert, SetExpr, TableObject};

use super::{
    check_batch, check_write_rows, default_expr, get_all, key_text, put_row, storable_row,
    QueryResult, Returning,
};
use crate::bind::{coerce, normalize_ident, CoercionContext, Scope, ScopeRelation};
use crate::error::GatewayError;
use crate::expr::{Expr, StatementTime};
use crate::plan::{resolve_writable_table, table_columns};
use crate::store::KvStore;
use crate::value::{Row, Value};

#[derive(Debug)]
pub(crate) struct InsertPlan {
    table: TableDescriptor,
    /// Each VALUES row as one expression per table column (defaults for
    /// the columns it leaves out), already of the column's type.
    rows: Vec<Vec<Expr>>,
    on_conflict: ConflictAction,
    returning: Option<Returning>,
}

#[derive(Debug)]
enum ConflictAction {
    Fail,
    DoNothing,
    /// `(column, expression)` and the WHERE filter, over the row `[stored
    /// columns.., excluded columns..]`.
    DoUpdate {
        assignments: Vec<(usize, Expr)>,
        filter: Option<Expr>,
    },
}

impl InsertPlan {
    pub(crate) fn plan(
        insert: &ast::Insert,
        params: &[Value],
        catalog: &Catalog,
    ) -> Result<Self, GatewayError> {
        if !insert.assignments.is_empty() || insert.partitioned.is_some() {
            return Err(GatewayError::unsupported("this form of INSERT"));
        }
        let TableObject::TableName(name) = &insert.table else {
            return Err(GatewayError::unsupported("INSERT into a table function"));
        };
        let table = resolve_writable_table(name, "INSERT", catalog)?;
        let targets = target_columns(&table, &insert.columns)?;
        let values = values_rows(insert)?;
        check_write_rows(values.len())?;
        let rows = values
            .iter()
            .map(|exprs| bind_row(&table, &targets, exprs, params))
            .collect::<Result<Vec<_>, _>>()?;
        let alias = insert
            .table_alias
            .as_ref()
            .map(|alias| normalize_ident(&alias.alias))
            .unwrap_or_else(|| table.name.clone());
        let on_conflict = match &insert.on {
            None => ConflictAction::Fail,
            Some(OnInsert::OnConflict(on_conflict)) => {
                plan_conflict(&table, &alias, on_conflict, params)?
            }
            Some(_) => return Err(GatewayError::unsupported("ON DUPLICATE KEY UPDATE")),
        };
        let returning = Returning::plan(&table, &alias, insert.returning.as_deref(), params)?;
        Ok(InsertPlan {
            table,
            rows,
            on_conflict,
            returning,
        })
    }

    pub(crate) fn returning_columns(&self) -> Vec<crate::value::Column> {
        self.returning
            .as_ref()
            .map(|returning| returning.columns.clone())
            .unwrap_or_default()
    }

    /// Every `now()` of the plan becomes `now`.
    fn resolve_statement_time(&mut self, now: StatementTime) {
        let conflict_exprs: Vec<&mut Expr> = match &mut self.on_conflict {
            ConflictAction::DoUpdate {
                assignments,
                filter,
            } => assignments
                .iter_mut()
                .map(|(_, expr)| expr)
                .chain(filter.as_mut())
                .collect(),
            ConflictAction::Fail | ConflictAction::DoNothing => Vec::new(),
        };
        for expr in self.rows.iter_mut().flatten().chain(conflict_exprs) {
            expr.resolve_statement_time(now);
        }
        if let Some(returning) = &mut self.returning {
            returning.resolve_statement_time(now);
        }
    }

    pub(crate) async fn execute(
        mut self,
        store: &dyn KvStore,
        now: StatementTime,
    ) -> Result<QueryResult, GatewayError> {
        self.resolve_statement_time(now);
        let empty = Vec::new();
        let rows = self
            .rows
            .iter()
            .map(|exprs| {
                let values = exprs
                    .iter()
                    .map(|expr| expr.eval(&empty))
                    .collect::<Result<Row, _>>()?;
                storable_row(&self.table, values)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(returning) = &self.returning {
            // The first write of an implicit transaction may reach storage
            // at once, so RETURNING must not fail after it.
            returning.check(&rows)?;
        }
        let written = match &self.on_conflict {
            ConflictAction::Fail => self.insert_all(store, rows).await?,
            ConflictAction::DoNothing => self.insert_new(store, rows).await?,
            ConflictAction::DoUpdate {
                assignments,
                filter,
            } if filter.is_none() && self.writes_blind(assignments) => {
                self.upsert(store, rows, assignments).await?
            }
            ConflictAction::DoUpdate {
                assignments,
                filter,
            } => {
                self.upsert_reading(store, rows, assignments, filter.as_ref())
                    .await?
            }
        };
        // Postgres' INSERT tag carries an OID (always 0 now) before the count.
        Ok(match &self.returning {
            Some(returning) => returning.result("INSERT", written)?,
            None => QueryResult::command("INSERT", written.len()),
        })
    }

    fn duplicate(&self, row: &[Datum]) -> GatewayError {
        GatewayError::UniqueViolation {
            constraint: self.table.primary_key_constraint_name(),
            column: self.table.primary_key_names().join(", "),
            value: key_text(&self.table, row),
        }
    }

    async fn insert_all(
        &self,
        store: &dyn KvStore,
        rows: Vec<Vec<Datum>>,
    ) -> Result<Vec<Vec<Datum>>, GatewayError> {
        let mut seen = HashSet::new();
        let mut mutations = Vec::with_capacity(rows.len());
        for row in &rows {
            let mutation = put_row(&self.table, row, MutationCondition::MustNotExist)?;
            if !seen.insert(mutation.key.clone()) {
                return Err(self.duplicate(row));
            }
            mutations.push(mutation);
        }
        check_batch(&mutations)?;
        match store.write(mutations).await? {
            WriteOutcome::Applied { .. } => Ok(rows),
            WriteOutcome::ConditionFailed { mutation_index } => {
                let row = rows.get(mutation_index).ok_or_else(|| {
                    GatewayError::internal("condition failed on a mutation that was not sent")
                })?;
                Err(self.duplicate(row))
            }
        }
    }

    /// ON CONFLICT DO NOTHING: keep the first of repeated keys, then drop
    /// each row whose key turns out to exist and retry; every retry drops a
    /// row, so this ends after at most `rows + 1` writes.
    async fn insert_new(
        &self,
        store: &dyn KvStore,
        rows: Vec<Vec<Datum>>,
    ) -> Result<Vec<Vec<Datum>>, GatewayError> {
        let mut seen = HashSet::new();
        let mut pending = Vec::new();
        let mut pending_rows = Vec::new();
        for row in rows {
            let mutation = put_row(&self.table, &row, MutationCondition::MustNotExist)?;
            if seen.insert(mutation.key.clone()) {
                pending.push(mutation);
                pending_rows.push(row);
            }
        }
        check_batch(&pending)?;
        while !pending.is_empty() {
            match store.write(pending.clone()).await? {
                WriteOutcome::Applied { .. } => return Ok(pending_rows),
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
        Ok(Vec::new())
    }

    /// Whether DO UPDATE can write without reading: SET gives every non-key
    /// column a value and none of them reads the stored row, so the updated
    /// row does not depend on it.
    fn writes_blind(&self, assignments: &[(usize, Expr)]) -> bool {
        let width = self.table.columns.len();
        self.table
            .value_columns()
            .iter()
            .all(|column| assignments.iter().any(|(target, _)| target == column))
            && !assignments
                .iter()
                .any(|(_, expr)| reads_target_row(expr, width))
    }

    /// ON CONFLICT DO UPDATE without reading (see [`Self::writes_blind`]).
    /// When the updated row equals the proposed one (`SET v = EXCLUDED.v`),
    /// one unconditional put is exact. Otherwise each row is written as
    /// "insert if absent" or "update if present", and a failed condition
    /// flips that row's guess and retries.
    async fn upsert(
        &self,
        store: &dyn KvStore,
        rows: Vec<Vec<Datum>>,
        assignments: &[(usize, Expr)],
    ) -> Result<Vec<Vec<Datum>>, GatewayError> {
        let mut seen = HashSet::new();
        let mut candidates = Vec::with_capacity(rows.len());
        let mut updated_rows = Vec::with_capacity(rows.len());
        for row in &rows {
            let proposed = put_row(&self.table, row, MutationCondition::None)?;
            if !seen.insert(proposed.key.clone()) {
                return Err(GatewayError::CardinalityViolation {
                    value: key_text(&self.table, row),
                });
            }
            let updated = self.updated_row(row, None, assignments)?;
            candidates.push((
                proposed,
                put_row(&self.table, &updated, MutationCondition::None)?,
            ));
            updated_rows.push(updated);
        }
        if let Some(returning) = &self.returning {
            returning.check(&updated_rows)?;
        }
        let proposed: Vec<_> = candidates
            .iter()
            .map(|(proposed, _)| proposed.clone())
            .collect();
        check_batch(&proposed)?;
        let updated: Vec<_> = candidates
            .iter()
            .map(|(_, updated)| updated.clone())
            .collect();
        check_batch(&updated)?;
        if candidates
            .iter()
            .all(|(proposed, updated)| proposed == updated)
        {
            let mutations = candidates
                .into_iter()
                .map(|(proposed, _)| proposed)
                .collect();
            return match store.write(mutations).await? {
                WriteOutcome::Applied { .. } => Ok(rows),
                WriteOutcome::ConditionFailed { .. } => Err(GatewayError::internal(
                    "an unconditional write reported a failed condition",
                )),
            };
        }
        let exists = self.upsert_guessing(store, candidates).await?;
        Ok(rows
            .into_iter()
            .zip(updated_rows)
            .zip(exists)
            .map(|((proposed, updated), exists)| if exists { updated } else { proposed })
            .collect())
    }

    /// ON CONFLICT DO UPDATE that reads the stored rows: each key is read
    /// in the statement's transaction; a row found is updated (when the
    /// WHERE holds over it) and written with MUST_EXIST, a row not found is
    /// inserted with MUST_NOT_EXIST. The transaction read those keys, so a
    /// change committed to them after its snapshot fails the commit (40001)
    /// rather than being lost; a condition failing here means the store
    /// answered the write differently from the read, also 40001.
    async fn upsert_reading(
        &self,
        store: &dyn KvStore,
        rows: Vec<Vec<Datum>>,
        assignments: &[(usize, Expr)],
        filter: Option<&Expr>,
    ) -> Result<Vec<Vec<Datum>>, GatewayError> {
        let mut seen = HashSet::new();
        let mut proposed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mutation = put_row(&self.table, row, MutationCondition::MustNotExist)?;
            if !seen.insert(mutation.key.clone()) {
                return Err(GatewayError::CardinalityViolation {
                    value: key_text(&self.table, row),
                });
            }
            proposed.push(mutation);
        }
        let keys = proposed
            .iter()
            .map(|mutation| mutation.key.clone())
            .collect();
        let stored = get_all(store, keys).await?;
        let mut mutations = Vec::with_capacity(rows.len());
        let mut written = Vec::with_capacity(rows.len());
        for ((row, insert), (_, stored)) in rows.into_iter().zip(proposed).zip(stored) {
            let Some(stored) = stored else {
                mutations.push(insert);
                written.push(row);
                continue;
            };
            let stored: Row =
                decode_row(&self.table, &insert.key, &stored).map_err(GatewayError::Corrupt)?;
            if let Some(filter) = filter {
                if !filter.matches(&self.conflict_scope_row(&row, Some(&stored)))? {
                    continue;
                }
            }
            let updated = self.updated_row(&row, Some(stored), assignments)?;
            mutations.push(put_row(
                &self.table,
                &updated,
                MutationCondition::MustExist,
            )?);
            written.push(updated);
        }
        if let Some(returning) = &self.returning {
            returning.check(&written)?;
        }
        if mutations.is_empty() {
            return Ok(written);
        }
        check_batch(&mutations)?;
        match store.write(mutations).await? {
            WriteOutcome::Applied { .. } => Ok(written),
            WriteOutcome::ConditionFailed { .. } => Err(GatewayError::SerializationFailure {
                reason: "a row changed between INSERT ... ON CONFLICT DO UPDATE reading it and \
                         writing it"
                    .to_owned(),
            }),
        }
    }

    /// Which rows existed (and were updated rather than inserted).
    async fn upsert_guessing(
        &self,
        store: &dyn KvStore,
        candidates: Vec<(Mutation, Mutation)>,
    ) -> Result<Vec<bool>, GatewayError> {
        let mut exists = vec![false; candidates.len()];
        // Each row can flip at most twice unless others keep racing it.
        let attempts_max = 2 * candidates.len() + 2;
        for _ in 0..attempts_max {
            let mutations = candidates
                .iter()
                .zip(&exists)
                .map(|((proposed, updated), &exists)| {
                    let (mut mutation, condition) = if exists {
                        (updated.clone(), MutationCondition::MustExist)
                    } else {
                        (proposed.clone(), MutationCondition::MustNotExist)
                    };
                    mutation.condition = condition as i32;
                    mutation
                })
                .collect();
            match store.write(mutations).await? {
                WriteOutcome::Applied { .. } => return Ok(exists),
                WriteOutcome::ConditionFailed { mutation_index } => {
                    let guess = exists.get_mut(mutation_index).ok_or_else(|| {
                        GatewayError::internal("condition failed on a mutation that was not sent")
                    })?;
                    *guess = !*guess;
                }
            }
        }
        Err(GatewayError::SerializationFailure {
            reason: "rows kept changing during INSERT ... ON CONFLICT DO UPDATE".to_owned(),
        })
    }

    /// The DO UPDATE scope's row: the stored row (NULLs when the update
    /// does not read it), then `excluded`, the proposed row.
    fn conflict_scope_row(&self, proposed: &[Datum], stored: Option<&Row>) -> Row {
        let mut scope_row: Row = match stored {
            Some(stored) => stored.clone(),
            None => vec![Value::Null; self.table.columns.len()],
        };
        scope_row.extend(proposed.iter().cloned());
        scope_row
    }

    /// The stored row with SET applied (the proposed row stands in for it
    /// when the assignments cover every column without reading it).
    fn updated_row(
        &self,
        proposed: &[Datum],
        stored: Option<Row>,
        assignments: &[(usize, Expr)],
    ) -> Result<Vec<Datum>, GatewayError> {
        let scope_row = self.conflict_scope_row(proposed, stored.as_ref());
        let mut updated: Row = stored.unwrap_or_else(|| proposed.to_vec());
        for (column, expr) in assignments {
            updated[*column] = expr.eval(&scope_row)?;
        }
        storable_row(&self.table, updated)
    }
}

/// Column indexes the VALUES lists fill, in order.
fn target_columns(
    table: &TableDescriptor,
    columns: &[ast::ObjectName],
) -> Result<Vec<usize>, GatewayError> {
    if columns.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    let mut targets = Vec::with_capacity(columns.len());
    for column in columns {
        let name = column
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(normalize_ident)
            .unwrap_or_default();
        let index = table
            .column_index(&name)
            .ok_or_else(|| GatewayError::UndefinedColumn { name: name.clone() })?;
        if targets.contains(&index) {
            return Err(GatewayError::DuplicateColumn { name });
        }
        targets.push(index);
    }
    Ok(targets)
}

fn values_rows(insert: &ast::Insert) -> Result<&[ast::Parens<Vec<ast::Expr>>], GatewayError> {
    let Some(source) = &insert.source else {
        return Err(GatewayError::unsupported("INSERT ... DEFAULT VALUES"));
    };
    if source.order_by.is_some() || source.limit_clause.is_some() || source.with.is_some() {
        return Err(GatewayError::unsupported("INSERT ... SELECT"));
    }
    match source.body.as_ref() {
        SetExpr::Values(values) => Ok(&values.rows),
        _ => Err(GatewayError::unsupported("INSERT ... SELECT")),
    }
}

fn bind_row(
    table: &TableDescriptor,
    targets: &[usize],
    row: &ast::Parens<Vec<ast::Expr>>,
    params: &[Value],
) -> Result<Vec<Expr>, GatewayError> {
    let exprs = &row.content;
    if exprs.len() > targets.len() {
        return Err(GatewayError::Syntax {
            message: "INSERT has more expressions than target columns".to_owned(),
        });
    }
    // Without a column list, a short VALUES row fills the first columns and
    // the rest take their defaults, as in Postgres.
    let implicit = targets.len() == table.columns.len()
        && targets
            .iter()
            .enumerate()
            .all(|(index, &column)| index == column);
    let targets = if implicit && exprs.len() < targets.len() {
        &targets[..exprs.len()]
    } else {
        targets
    };
    if exprs.len() < targets.len() {
        return Err(GatewayError::Syntax {
            message: "INSERT has more target columns than expressions".to_owned(),
        });
    }
    let scope = Scope::constant(params);
    let mut given: Vec<Option<Expr>> = vec![None; table.columns.len()];
    for (expr, &column) in exprs.iter().zip(targets) {
        if is_default_keyword(expr) {
            continue;
        }
        let bound = scope.bind(expr)?;
        given[column] = Some(coerce(
            bound,
            table.columns[column].column_type,
            CoercionContext::Assignment,
        )?);
    }
    given
        .into_iter()
        .zip(&table.columns)
        .map(|(expr, column)| match expr {
            Some(expr) => Ok(expr),
            None => default_expr(column),
        })
        .collect()
}

/// `DEFAULT` in a VALUES list (sqlparser reads it as an identifier).
fn is_default_keyword(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Identifier(ident)
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

fn plan_conflict(
    table: &TableDescriptor,
    alias: &str,
    on_conflict: &ast::OnConflict,
    params: &[Value],
) -> Result<ConflictAction, GatewayError> {
    match &on_conflict.conflict_target {
        None => {}
        Some(ConflictTarget::Columns(columns)) => {
            let mut names: Vec<String> = columns.iter().map(normalize_ident).collect();
            let mut key: Vec<String> = table
                .primary_key_names()
                .into_iter()
                .map(str::to_owned)
                .collect();
            names.sort();
            key.sort();
            if names != key {
                return Err(GatewayError::InvalidConflictTarget);
            }
        }
        Some(ConflictTarget::OnConstraint(name)) => {
            let constraint = name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map(normalize_ident);
            if constraint.as_deref() != Some(table.primary_key_constraint_name().as_str()) {
                return Err(GatewayError::InvalidConflictTarget);
            }
        }
    }
    match &on_conflict.action {
        OnConflictAction::DoNothing => Ok(ConflictAction::DoNothing),
        OnConflictAction::DoUpdate(update) => {
            if on_conflict.conflict_target.is_none() {
                return Err(GatewayError::Syntax {
                    message:
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name"
                            .to_owned(),
                });
            }
            let scope = conflict_scope(table, alias, params);
            let assignments = super::update::plan_assignments(table, &scope, &update.assignments)?;
            let filter = update
                .selection
                .as_ref()
                .map(|selection| scope.bind_predicate(selection, "WHERE"))
                .transpose()?;
            Ok(ConflictAction::DoUpdate {
                assignments,
                filter,
            })
        }
    }
}

/// What DO UPDATE's SET and WHERE see: the stored row under the table's
/// name (or alias), unqualified names included, and the proposed row as
/// `excluded`.
fn conflict_scope<'a>(table: &TableDescriptor, alias: &str, params: &'a [Value]) -> Scope<'a> {
    let columns = table_columns(table);
    let width = columns.len();
    Scope {
        relations: vec![
            ScopeRelation {
                name: alias.to_owned(),
                columns: columns.clone(),
                offset: 0,
            },
            ScopeRelation {
                name: "excluded".to_owned(),
                columns,
                offset: width,
            },
        ],
        params,
    }
}

/// Whether `expr` reads a column of the stored row (the first `width`
/// columns of the DO UPDATE scope) rather than only `excluded`.
fn reads_target_row(expr: &Expr, width: usize) -> bool {
    expr.any(&|expr| matches!(expr, Expr::Column(index) if *index < width))
}
