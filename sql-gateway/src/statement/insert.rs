//! INSERT ... VALUES [ON CONFLICT ...].
//!
//! Plain INSERT writes every row in one batch with MUST_NOT_EXIST on each
//! key: any duplicate (stored, or twice in the statement) fails the whole
//! statement with 23505 and writes nothing. ON CONFLICT DO NOTHING drops the
//! rows whose keys exist and retries; DO UPDATE puts the updated row.

use std::collections::HashSet;

use arbor_catalog::{Catalog, Datum, TableDescriptor};
use arbor_proto::MutationCondition;
use arbor_raftstore::WriteOutcome;
use sqlparser::ast::{self, ConflictTarget, OnConflictAction, OnInsert, SetExpr, TableObject};

use super::{
    check_batch, check_write_rows, key_text, put_row, storable_row, QueryResult, Returning,
};
use crate::bind::{coerce, normalize_ident, CoercionContext, Scope, ScopeRelation};
use crate::error::GatewayError;
use crate::expr::Expr;
use crate::plan::{resolve_writable_table, table_columns};
use crate::store::KvStore;
use crate::value::{Row, Value};

#[derive(Debug)]
pub(crate) struct InsertPlan {
    table: TableDescriptor,
    rows: Vec<Vec<Datum>>,
    on_conflict: ConflictAction,
    returning: Option<Returning>,
}

#[derive(Debug)]
enum ConflictAction {
    Fail,
    DoNothing,
    /// `(column, expression)` over the row `[target columns.., excluded columns..]`;
    /// the target half is always NULL because expressions may only read
    /// `excluded` (reading the stored row is refused when planning).
    DoUpdate {
        assignments: Vec<(usize, Expr)>,
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

    pub(crate) async fn execute(&self, store: &dyn KvStore) -> Result<QueryResult, GatewayError> {
        if let Some(returning) = &self.returning {
            // The first write of an implicit transaction may reach storage
            // at once, so RETURNING must not fail after it.
            returning.check(&self.rows)?;
        }
        let written = match &self.on_conflict {
            ConflictAction::Fail => self.insert_all(store).await?,
            ConflictAction::DoNothing => self.insert_new(store).await?,
            ConflictAction::DoUpdate { assignments } => self.upsert(store, assignments).await?,
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

    async fn insert_all(&self, store: &dyn KvStore) -> Result<Vec<Vec<Datum>>, GatewayError> {
        let mut seen = HashSet::new();
        let mut mutations = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let mutation = put_row(&self.table, row, MutationCondition::MustNotExist)?;
            if !seen.insert(mutation.key.clone()) {
                return Err(self.duplicate(row));
            }
            mutations.push(mutation);
        }
        check_batch(&mutations)?;
        match store.write(mutations).await? {
            WriteOutcome::Applied { .. } => Ok(self.rows.clone()),
            WriteOutcome::ConditionFailed { mutation_index } => {
                let row = self.rows.get(mutation_index).ok_or_else(|| {
                    GatewayError::internal("condition failed on a mutation that was not sent")
                })?;
                Err(self.duplicate(row))
            }
        }
    }

    /// ON CONFLICT DO NOTHING: keep the first of repeated keys, then drop
    /// each row whose key turns out to exist and retry; every retry drops a
    /// row, so this ends after at most `rows + 1` writes.
    async fn insert_new(&self, store: &dyn KvStore) -> Result<Vec<Vec<Datum>>, GatewayError> {
        let mut seen = HashSet::new();
        let mut pending = Vec::new();
        let mut pending_rows = Vec::new();
        for row in &self.rows {
            let mutation = put_row(&self.table, row, MutationCondition::MustNotExist)?;
            if seen.insert(mutation.key.clone()) {
                pending.push(mutation);
                pending_rows.push(row.clone());
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

    /// ON CONFLICT DO UPDATE. When the updated row equals the proposed one
    /// (`SET v = EXCLUDED.v`), one unconditional put is exact. Otherwise each
    /// row is written as "insert if absent" or "update if present", and a
    /// failed condition flips that row's guess and retries.
    async fn upsert(
        &self,
        store: &dyn KvStore,
        assignments: &[(usize, Expr)],
    ) -> Result<Vec<Vec<Datum>>, GatewayError> {
        let mut seen = HashSet::new();
        let mut candidates = Vec::with_capacity(self.rows.len());
        let mut updated_rows = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let proposed = put_row(&self.table, row, MutationCondition::None)?;
            if !seen.insert(proposed.key.clone()) {
                return Err(GatewayError::CardinalityViolation {
                    value: key_text(&self.table, row),
                });
            }
            let updated = self.updated_row(row, assignments)?;
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
                WriteOutcome::Applied { .. } => Ok(self.rows.clone()),
                WriteOutcome::ConditionFailed { .. } => Err(GatewayError::internal(
                    "an unconditional write reported a failed condition",
                )),
            };
        }
        let exists = self.upsert_guessing(store, candidates).await?;
        Ok(self
            .rows
            .iter()
            .zip(updated_rows)
            .zip(exists)
            .map(|((proposed, updated), exists)| if exists { updated } else { proposed.clone() })
            .collect())
    }

    /// Which rows existed (and were updated rather than inserted).
    async fn upsert_guessing(
        &self,
        store: &dyn KvStore,
        candidates: Vec<(arbor_proto::Mutation, arbor_proto::Mutation)>,
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

    fn updated_row(
        &self,
        proposed: &[Datum],
        assignments: &[(usize, Expr)],
    ) -> Result<Vec<Datum>, GatewayError> {
        let width = self.table.columns.len();
        let mut scope_row: Row = vec![Value::Null; width];
        scope_row.extend(proposed.iter().cloned().map(Value::from));
        let mut updated: Row = proposed.iter().cloned().map(Value::from).collect();
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
) -> Result<Vec<Datum>, GatewayError> {
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
    let mut values: Row = table.columns.iter().map(default_value).collect();
    for (expr, &column) in exprs.iter().zip(targets) {
        if is_default_keyword(expr) {
            continue;
        }
        let bound = scope.bind(expr)?;
        let expr = coerce(
            bound,
            table.columns[column].column_type,
            CoercionContext::Assignment,
        )?;
        values[column] = expr.eval(&Vec::new())?;
    }
    storable_row(table, values)
}

/// `DEFAULT` in a VALUES list (sqlparser reads it as an identifier).
fn is_default_keyword(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Identifier(ident)
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

/// What a column holds when an INSERT does not give it a value.
fn default_value(column: &arbor_catalog::ColumnDescriptor) -> Value {
    match &column.default {
        Some(arbor_catalog::ColumnDefault::Constant(value)) => value.clone(),
        // Defaults that need a clock or randomness are refused at CREATE
        // TABLE, so they cannot be found here.
        _ => Value::Null,
    }
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
            if update.selection.is_some() {
                return Err(GatewayError::unsupported("ON CONFLICT DO UPDATE ... WHERE"));
            }
            let assignments = plan_conflict_assignments(table, alias, &update.assignments, params)?;
            Ok(ConflictAction::DoUpdate { assignments })
        }
    }
}

fn plan_conflict_assignments(
    table: &TableDescriptor,
    alias: &str,
    assignments: &[ast::Assignment],
    params: &[Value],
) -> Result<Vec<(usize, Expr)>, GatewayError> {
    let columns = table_columns(table);
    let width = columns.len();
    let scope = Scope {
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
    };
    let planned = super::update::plan_assignments(table, &scope, assignments)?;
    for (_, expr) in &planned {
        if reads_target_row(expr, width) {
            return Err(GatewayError::unsupported(
                "ON CONFLICT DO UPDATE reading the existing row (use EXCLUDED.column)",
            ));
        }
    }
    Ok(planned)
}

/// Whether `expr` reads a column of the stored row (the first `width`
/// columns of the DO UPDATE scope) rather than only `excluded`.
fn reads_target_row(expr: &Expr, width: usize) -> bool {
    match expr {
        Expr::Column(index) => *index < width,
        Expr::Literal(_) => false,
        Expr::Compare(_, left, right)
        | Expr::And(left, right)
        | Expr::Or(left, right)
        | Expr::Arithmetic { left, right, .. } => {
            reads_target_row(left, width) || reads_target_row(right, width)
        }
        Expr::Not(inner)
        | Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::Negate { operand: inner, .. } => reads_target_row(inner, width),
    }
}
