//! Planning: one parsed statement -> one [`Plan`] the executor can run.
//!
//! Pure (no IO): table names are resolved against the catalog snapshot the
//! executor read for this statement and the system tables, expressions are bound ([`crate::bind`]), and every
//! shape outside what the executor supports is refused here with a
//! Postgres error, so execution never meets an unexpected statement.

use arbor_catalog::{Catalog, TableDescriptor};
use sqlparser::ast::{self, ObjectName, Statement};

use crate::bind::normalize_ident;
use crate::error::GatewayError;
use crate::statement::ddl::{CreateTablePlan, DropTablePlan};
use crate::statement::delete::DeletePlan;
use crate::statement::insert::InsertPlan;
use crate::statement::select::SelectPlan;
use crate::statement::session::{self, ShowPlan};
use crate::statement::update::UpdatePlan;
use crate::system_tables::{SystemTable, SYSTEM_SCHEMA};
use crate::value::{Column, Value};

#[derive(Debug)]
pub(crate) enum Plan {
    Insert(InsertPlan),
    Update(UpdatePlan),
    Delete(DeletePlan),
    Select(SelectPlan),
    CreateTable(CreateTablePlan),
    DropTable(DropTablePlan),
    /// SET / SHOW run on the session's settings before planning
    /// (`Executor::execute`); planned only for Describe.
    Set,
    /// `DEALLOCATE [ALL | name]`: drivers (psycopg 3 after DDL) drop their
    /// named statements; a later Parse of the same name replaces it anyway.
    Deallocate {
        all: bool,
    },
    Show(ShowPlan),
}

/// A relation a statement reads or writes.
#[derive(Debug, Clone)]
pub(crate) enum Relation {
    Table(TableDescriptor),
    System(SystemTable),
}

impl Relation {
    pub(crate) fn name(&self) -> String {
        match self {
            Relation::Table(table) => table.name.clone(),
            Relation::System(table) => table.name().to_owned(),
        }
    }

    pub(crate) fn columns(&self) -> Vec<Column> {
        match self {
            Relation::Table(table) => table_columns(table),
            Relation::System(table) => table.columns(),
        }
    }
}

pub(crate) fn table_columns(table: &TableDescriptor) -> Vec<Column> {
    table
        .columns
        .iter()
        .map(|column| Column::new(&column.name, column.column_type))
        .collect()
}

/// The parts of a possibly qualified name, folded as Postgres folds them.
pub(crate) fn name_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| part.as_ident().map(normalize_ident))
        .collect()
}

/// Resolves `t`, `public.t` (tables of the catalog, `kv` included) and
/// `system.<table>`.
pub(crate) fn resolve_relation(
    name: &ObjectName,
    catalog: &Catalog,
) -> Result<Relation, GatewayError> {
    let undefined = || GatewayError::UndefinedTable {
        name: name.to_string(),
    };
    let parts = name_parts(name).ok_or_else(undefined)?;
    let user_table = |table: &str| {
        catalog
            .table(table)
            .cloned()
            .map(Relation::Table)
            .ok_or_else(undefined)
    };
    match parts.as_slice() {
        [table] => user_table(table),
        [schema, table] if schema == "public" => user_table(table),
        [schema, table] if schema == SYSTEM_SCHEMA => SystemTable::from_name(table)
            .map(Relation::System)
            .ok_or_else(undefined),
        _ => Err(undefined()),
    }
}

/// Resolves a relation that a statement writes: only stored tables.
pub(crate) fn resolve_writable_table(
    name: &ObjectName,
    operation: &str,
    catalog: &Catalog,
) -> Result<TableDescriptor, GatewayError> {
    match resolve_relation(name, catalog)? {
        Relation::Table(table) => Ok(table),
        Relation::System(table) => Err(GatewayError::ReadOnlyTable {
            table: format!("{SYSTEM_SCHEMA}.{}", table.name()),
            operation: operation.to_owned(),
        }),
    }
}

/// The relation named by a single-table FROM item, with its alias.
pub(crate) fn resolve_from(
    from: &ast::TableWithJoins,
) -> Result<(ObjectName, Option<String>), GatewayError> {
    if !from.joins.is_empty() {
        return Err(GatewayError::unsupported("JOIN"));
    }
    match &from.relation {
        ast::TableFactor::Table {
            name, alias, args, ..
        } => {
            if args.is_some() {
                return Err(GatewayError::unsupported("table functions"));
            }
            if alias
                .as_ref()
                .is_some_and(|alias| !alias.columns.is_empty())
            {
                return Err(GatewayError::unsupported("column aliases in FROM"));
            }
            Ok((
                name.clone(),
                alias.as_ref().map(|alias| normalize_ident(&alias.name)),
            ))
        }
        _ => Err(GatewayError::unsupported(
            "subqueries and functions in FROM",
        )),
    }
}

/// Plans one statement with its parameter values (`$1` is `params[0]`).
pub(crate) fn plan_statement(
    statement: &Statement,
    params: &[Value],
    catalog: &Catalog,
) -> Result<Plan, GatewayError> {
    match statement {
        Statement::Query(query) => SelectPlan::plan(query, params, catalog).map(Plan::Select),
        Statement::Insert(insert) => InsertPlan::plan(insert, params, catalog).map(Plan::Insert),
        Statement::Update(update) => UpdatePlan::plan(update, params, catalog).map(Plan::Update),
        Statement::Delete(delete) => DeletePlan::plan(delete, params, catalog).map(Plan::Delete),
        Statement::CreateTable(create) => CreateTablePlan::plan(create).map(Plan::CreateTable),
        Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } => DropTablePlan::plan(*object_type, *if_exists, names, *cascade).map(Plan::DropTable),
        Statement::Set(_) => Ok(Plan::Set),
        Statement::Deallocate { name, .. } => Ok(Plan::Deallocate {
            all: name.value.eq_ignore_ascii_case("all"),
        }),
        Statement::ShowVariable { variable } => session::plan_show(variable).map(Plan::Show),
        other => Err(GatewayError::unsupported(statement_kind(other))),
    }
}

/// The leading keywords of a statement, for "X is not supported".
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("statement").to_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" | "SHOW" | "GRANT" | "REVOKE" | "ROLLBACK" => {
            let second = words.next().unwrap_or_default().to_uppercase();
            format!("{first} {second}").trim_end().to_owned()
        }
        _ => first,
    }
}
