//! `pg_catalog` and `information_schema`: the catalog views psql and
//! drivers query for metadata (`\dt`, `\d t`, `\l`, `getTables`,
//! `inspect().has_table`), served from one catalog snapshot by a small
//! general evaluator rather than per-query special cases.
//!
//! Files by operation: `relations` renders the virtual relations (pure,
//! stable OIDs), `query` evaluates SELECTs over them (joins, subqueries,
//! grouping, UNION, ORDER BY), `eval` evaluates expressions, `functions`
//! holds the functions, casts and aggregates, `scope` resolves names.
//!
//! **Invariant:** this module does no IO: a catalog query is a pure
//! function of (catalog, query, parameters, session settings), and its
//! only effect is the settings `set_config` returns changed. It never sees user rows:
//! a query that mixes user tables with catalog relations is 0A000.

mod eval;
mod functions;
mod query;
mod relations;
mod scope;

use arbor_catalog::Catalog;
use sqlparser::ast::{self, SetExpr, Statement, TableFactor};

use crate::error::GatewayError;
use crate::plan::name_parts;
use crate::settings::Settings;
use crate::statement::QueryResult;
use crate::value::{Column, Value};

/// True when `statement` is a query over catalog relations (anywhere in
/// its FROM clauses), which this module answers.
pub(crate) fn is_catalog_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Query(query) if query_names_catalog(query))
}

/// True when `statement` is a SELECT without any FROM (`SELECT
/// current_setting('x')`): the statement planner answers those it knows and
/// hands the rest here.
pub(crate) fn is_constant_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Query(query)
        if matches!(query.body.as_ref(), SetExpr::Select(select) if select.from.is_empty()))
}

fn query_names_catalog(query: &ast::Query) -> bool {
    set_names_catalog(&query.body)
}

fn set_names_catalog(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.from.iter().any(|item| {
            factor_names_catalog(&item.relation)
                || item
                    .joins
                    .iter()
                    .any(|join| factor_names_catalog(&join.relation))
        }),
        SetExpr::Query(query) => query_names_catalog(query),
        SetExpr::SetOperation { left, right, .. } => {
            set_names_catalog(left) || set_names_catalog(right)
        }
        _ => false,
    }
}

fn factor_names_catalog(factor: &TableFactor) -> bool {
    match factor {
        TableFactor::Table {
            name, args: None, ..
        } => match name_parts(name).as_deref() {
            Some([relation]) => relations::lookup(None, relation).is_some(),
            Some([schema, relation]) => relations::lookup(Some(schema), relation).is_some(),
            _ => false,
        },
        TableFactor::Derived { subquery, .. } => query_names_catalog(subquery),
        _ => false,
    }
}

/// Runs a catalog query against `catalog` as a session that set nothing
/// (logged in as the catalog's owner).
pub(crate) fn execute(
    statement: &Statement,
    params: &[Value],
    catalog: &Catalog,
) -> Result<QueryResult, GatewayError> {
    let mut settings = Settings::for_login(relations::OWNER_NAME, []);
    execute_in_session(statement, params, catalog, &mut settings, false)
}

/// Runs a catalog query against `catalog` with the session's `settings`,
/// which `set_config` may change (only when the query succeeds).
pub(crate) fn execute_in_session(
    statement: &Statement,
    params: &[Value],
    catalog: &Catalog,
    settings: &mut Settings,
    in_block: bool,
) -> Result<QueryResult, GatewayError> {
    let Statement::Query(query) = statement else {
        return Err(GatewayError::internal("a catalog query must be a SELECT"));
    };
    let ctx = query::Context::new(catalog, params, settings.clone(), in_block);
    let table = query::run_query(&ctx, query, None)?;
    *settings = ctx.settings.into_inner();
    Ok(QueryResult::Rows {
        columns: table.columns,
        rows: table.rows,
    })
}

/// The result columns of a catalog query (for Describe): the query runs
/// with every parameter NULL, which is cheap and gives the exact shape.
pub(crate) fn describe(
    statement: &Statement,
    parameter_count: usize,
    catalog: &Catalog,
) -> Result<Vec<Column>, GatewayError> {
    let params = vec![Value::Null; parameter_count];
    match execute(statement, &params, catalog)? {
        QueryResult::Rows { columns, .. } => Ok(columns),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests;

/// The columns of catalog relation `schema.name` (for parameter types).
pub(crate) fn relation_columns(schema: Option<&str>, name: &str) -> Option<Vec<Column>> {
    let (schema, name) = relations::lookup(schema, name)?;
    Some(relations::render(schema, name, &Catalog::empty()).columns)
}
