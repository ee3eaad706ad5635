//! Query evaluation for catalog queries: FROM (comma lists, inner and left
//! joins, derived tables), WHERE, GROUP BY with aggregates, `row_number()`
//! windows, DISTINCT, UNION, ORDER BY and LIMIT, by nested loops over the
//! rendered relations.
//!
//! Invariant: every intermediate result is capped at `CATALOG_ROWS_MAX`
//! rows (54000 beyond), so a careless cross join cannot exhaust memory.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

use arbor_catalog::Catalog;
use sqlparser::ast::{
    self, Expr, GroupByExpr, JoinConstraint, JoinOperator, LimitClause, OrderByExpr, OrderByKind,
    SelectItem, SetExpr, SetOperator, SetQuantifier, TableFactor, TableWithJoins,
};

use super::eval::{compare, eval, infer, truth};
use super::functions::is_aggregate;
use super::relations::{self, VirtualTable};
use super::scope::{Binding, Scope, WindowValues};
use crate::bind::normalize_ident;
use crate::error::GatewayError;
use crate::plan::name_parts;
use crate::settings::Settings;
use crate::value::{Column, Row, SqlType, Value};

/// Most rows any step of a catalog query may hold.
pub(crate) const CATALOG_ROWS_MAX: usize = 100_000;

/// What a catalog query runs against: one catalog snapshot, the bound
/// parameters, and the relations rendered so far (correlated subqueries
/// name the same relation once per outer row).
pub(crate) struct Context<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) params: &'a [Value],
    rendered: RefCell<HashMap<(&'static str, &'static str), Rc<VirtualTable>>>,
    /// The session's settings: `current_setting` reads them, `set_config`
    /// changes this copy, which the caller keeps only if the query
    /// succeeds.
    pub(crate) settings: RefCell<Settings>,
    /// A transaction block is open (`set_config(..., true)` lasts until it
    /// ends; outside one it changes nothing).
    pub(crate) in_block: bool,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        catalog: &'a Catalog,
        params: &'a [Value],
        settings: Settings,
        in_block: bool,
    ) -> Self {
        Context {
            catalog,
            params,
            rendered: RefCell::new(HashMap::new()),
            settings: RefCell::new(settings),
            in_block,
        }
    }

    fn relation(&self, schema: &'static str, name: &'static str) -> Rc<VirtualTable> {
        self.rendered
            .borrow_mut()
            .entry((schema, name))
            .or_insert_with(|| Rc::new(relations::render(schema, name, self.catalog)))
            .clone()
    }
}

fn check_rows(count: usize) -> Result<(), GatewayError> {
    if count > CATALOG_ROWS_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a catalog query step of {count} rows"),
            limit: CATALOG_ROWS_MAX,
        });
    }
    Ok(())
}

pub(crate) fn run_query(
    ctx: &Context<'_>,
    query: &ast::Query,
    outer: Option<&Scope<'_>>,
) -> Result<VirtualTable, GatewayError> {
    if query.with.is_some() {
        return Err(GatewayError::unsupported("WITH in a catalog query"));
    }
    if query.fetch.is_some() || !query.locks.is_empty() {
        return Err(GatewayError::unsupported(
            "FETCH/FOR UPDATE in a catalog query",
        ));
    }
    let order: Vec<&OrderByExpr> = match &query.order_by {
        None => Vec::new(),
        Some(order_by) => match &order_by.kind {
            OrderByKind::Expressions(items) => items.iter().collect(),
            OrderByKind::All(_) => return Err(GatewayError::unsupported("ORDER BY ALL")),
        },
    };
    let mut table = match query.body.as_ref() {
        SetExpr::Select(select) => run_select(ctx, select, &order, outer)?,
        body => {
            let table = run_set_expr(ctx, body, outer)?;
            sort_output(table, &order)?
        }
    };
    let (offset, limit) = limits(ctx, query)?;
    table.rows = table
        .rows
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    Ok(table)
}

fn limits(ctx: &Context<'_>, query: &ast::Query) -> Result<(usize, Option<usize>), GatewayError> {
    let count = |expr: &Expr, clause: &'static str| -> Result<Option<usize>, GatewayError> {
        let scope = Scope::new(&[], &[], None);
        match eval(ctx, expr, &scope)? {
            Value::Null => Ok(None),
            Value::Int(number) => usize::try_from(number)
                .map(Some)
                .map_err(|_| GatewayError::InvalidRowCount { clause }),
            _ => Err(GatewayError::InvalidRowCount { clause }),
        }
    };
    match &query.limit_clause {
        None => Ok((0, None)),
        Some(LimitClause::LimitOffset { limit, offset, .. }) => {
            let limit = limit
                .as_ref()
                .map(|limit| count(limit, "LIMIT"))
                .transpose()?
                .flatten();
            let offset = offset
                .as_ref()
                .map(|offset| count(&offset.value, "OFFSET"))
                .transpose()?
                .flatten();
            Ok((offset.unwrap_or(0), limit))
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => {
            Err(GatewayError::unsupported("LIMIT offset, count"))
        }
    }
}

fn run_set_expr(
    ctx: &Context<'_>,
    body: &SetExpr,
    outer: Option<&Scope<'_>>,
) -> Result<VirtualTable, GatewayError> {
    match body {
        SetExpr::Select(select) => run_select(ctx, select, &[], outer),
        SetExpr::Query(query) => run_query(ctx, query, outer),
        SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier,
            left,
            right,
        } => {
            let mut left = run_set_expr(ctx, left, outer)?;
            let right = run_set_expr(ctx, right, outer)?;
            if left.columns.len() != right.columns.len() {
                return Err(GatewayError::Syntax {
                    message: "each UNION query must have the same number of columns".to_owned(),
                });
            }
            left.rows.extend(right.rows);
            check_rows(left.rows.len())?;
            if !matches!(set_quantifier, SetQuantifier::All) {
                left.rows = distinct(left.rows);
            }
            Ok(left)
        }
        SetExpr::Values(values) => {
            let scope = Scope::new(&[], &[], outer);
            let rows = values
                .rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|expr| eval(ctx, expr, &scope))
                        .collect::<Result<Row, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let columns = values.rows.first().map_or_else(Vec::new, |row| {
                row.iter()
                    .enumerate()
                    .map(|(index, expr)| {
                        Column::new(&format!("column{}", index + 1), infer(ctx, expr, &scope))
                    })
                    .collect()
            });
            Ok(VirtualTable { columns, rows })
        }
        other => Err(GatewayError::unsupported(format!(
            "{} in a catalog query",
            set_kind(other)
        ))),
    }
}

fn set_kind(body: &SetExpr) -> String {
    match body {
        SetExpr::SetOperation { op, .. } => op.to_string(),
        _ => "this query form".to_owned(),
    }
}

fn distinct(rows: Vec<Row>) -> Vec<Row> {
    let mut kept: Vec<Row> = Vec::with_capacity(rows.len());
    for row in rows {
        if !kept.contains(&row) {
            kept.push(row);
        }
    }
    kept
}

/// ORDER BY over a finished result (after UNION): by position or name.
fn sort_output(
    mut table: VirtualTable,
    order: &[&OrderByExpr],
) -> Result<VirtualTable, GatewayError> {
    if order.is_empty() {
        return Ok(table);
    }
    let mut positions = Vec::with_capacity(order.len());
    for item in order {
        let position = output_position(&item.expr, &table.columns)
            .ok_or_else(|| GatewayError::unsupported("ORDER BY an expression over a UNION"))?;
        positions.push(position);
    }
    let mut keyed: Vec<(Row, Row)> = table
        .rows
        .into_iter()
        .map(|row| (positions.iter().map(|&at| row[at].clone()).collect(), row))
        .collect();
    keyed.sort_by(|left, right| compare_keys(order, &left.0, &right.0));
    table.rows = keyed.into_iter().map(|(_, row)| row).collect();
    Ok(table)
}

/// `ORDER BY 2` or `ORDER BY name` of an output column.
fn output_position(expr: &Expr, columns: &[Column]) -> Option<usize> {
    match expr {
        Expr::Value(value) => match &value.value {
            ast::Value::Number(number, _) => number
                .parse::<usize>()
                .ok()?
                .checked_sub(1)
                .filter(|&at| at < columns.len()),
            _ => None,
        },
        Expr::Identifier(ident) => {
            let name = normalize_ident(ident);
            columns.iter().position(|column| column.name == name)
        }
        _ => None,
    }
}

fn compare_keys(order: &[&OrderByExpr], left: &[Value], right: &[Value]) -> Ordering {
    for ((item, left), right) in order.iter().zip(left).zip(right) {
        let descending = item.options.asc == Some(false);
        let nulls_first = item.options.nulls_first.unwrap_or(descending);
        let ordering = match (left.is_null(), right.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let ordering = compare(left, right).unwrap_or(Ordering::Equal);
                if descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            }
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// The relations of a FROM clause and their joined rows.
fn from_clause(
    ctx: &Context<'_>,
    from: &[TableWithJoins],
    outer: Option<&Scope<'_>>,
) -> Result<(Vec<Binding>, Vec<Row>), GatewayError> {
    let mut bindings: Vec<Binding> = Vec::new();
    let mut rows: Vec<Row> = vec![Vec::new()];
    for item in from {
        let relation = factor(ctx, &item.relation, outer)?;
        (bindings, rows) = join(ctx, bindings, rows, relation, JoinKind::Inner, None, outer)?;
        for joined in &item.joins {
            let (kind, constraint) = match &joined.join_operator {
                JoinOperator::Join(constraint) | JoinOperator::Inner(constraint) => {
                    (JoinKind::Inner, constraint)
                }
                JoinOperator::Left(constraint) | JoinOperator::LeftOuter(constraint) => {
                    (JoinKind::Left, constraint)
                }
                JoinOperator::CrossJoin(constraint) => (JoinKind::Inner, constraint),
                _ => {
                    return Err(GatewayError::unsupported(
                        "this JOIN kind in a catalog query",
                    ))
                }
            };
            let on = match constraint {
                JoinConstraint::On(on) => Some(on),
                JoinConstraint::None => None,
                _ => {
                    return Err(GatewayError::unsupported(
                        "JOIN USING/NATURAL in a catalog query",
                    ))
                }
            };
            let relation = factor(ctx, &joined.relation, outer)?;
            (bindings, rows) = join(ctx, bindings, rows, relation, kind, on, outer)?;
        }
    }
    Ok((bindings, rows))
}

#[derive(Clone, Copy, PartialEq)]
enum JoinKind {
    Inner,
    Left,
}

fn join(
    ctx: &Context<'_>,
    mut bindings: Vec<Binding>,
    rows: Vec<Row>,
    (binding, right_rows): (Binding, Rc<Vec<Row>>),
    kind: JoinKind,
    on: Option<&Expr>,
    outer: Option<&Scope<'_>>,
) -> Result<(Vec<Binding>, Vec<Row>), GatewayError> {
    let width = bindings
        .last()
        .map_or(0, |last| last.offset + last.columns.len());
    let right_width = binding.columns.len();
    bindings.push(Binding {
        offset: width,
        ..binding
    });
    let mut joined = Vec::new();
    for left in &rows {
        let mut matched = false;
        for right in right_rows.iter() {
            let mut row = Vec::with_capacity(width + right_width);
            row.extend_from_slice(left);
            row.extend_from_slice(right);
            let keep = match on {
                None => true,
                Some(on) => {
                    truth(&eval(ctx, on, &Scope::new(&bindings, &row, outer))?) == Some(true)
                }
            };
            if keep {
                matched = true;
                joined.push(row);
                check_rows(joined.len())?;
            }
        }
        if !matched && kind == JoinKind::Left {
            let mut row = left.clone();
            row.resize(width + right_width, Value::Null);
            joined.push(row);
        }
    }
    Ok((bindings, joined))
}

/// One FROM item: its binding (offset still 0) and its rows.
fn factor(
    ctx: &Context<'_>,
    factor: &TableFactor,
    outer: Option<&Scope<'_>>,
) -> Result<(Binding, Rc<Vec<Row>>), GatewayError> {
    let (default_name, table, alias) = match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let (schema, relation) = resolve(name)?;
            let table = ctx.relation(schema, relation);
            (relation.to_owned(), (*table).clone(), alias)
        }
        TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } => {
            let table = table_function(ctx, name, args, outer)?;
            (
                name_parts(name)
                    .and_then(|parts| parts.last().cloned())
                    .unwrap_or_default(),
                table,
                alias,
            )
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => (String::new(), run_query(ctx, subquery, outer)?, alias),
        _ => {
            return Err(GatewayError::unsupported(
                "this FROM item in a catalog query",
            ))
        }
    };
    let mut columns = table.columns;
    let name = match alias {
        Some(alias) => {
            for (column, renamed) in columns.iter_mut().zip(&alias.columns) {
                column.name = normalize_ident(&renamed.name);
            }
            normalize_ident(&alias.name)
        }
        None => default_name,
    };
    Ok((
        Binding {
            name,
            columns,
            offset: 0,
        },
        Rc::new(table.rows),
    ))
}

/// The catalog relation a FROM name means, or 42P01 / 0A000.
pub(crate) fn resolve(
    name: &ast::ObjectName,
) -> Result<(&'static str, &'static str), GatewayError> {
    let undefined = || GatewayError::UndefinedTable {
        name: name.to_string(),
    };
    let parts = name_parts(name).ok_or_else(undefined)?;
    let found = match parts.as_slice() {
        [relation] => relations::lookup(None, relation),
        [schema, relation] => relations::lookup(Some(schema), relation),
        [_database, schema, relation] => relations::lookup(Some(schema), relation),
        _ => None,
    };
    found.ok_or_else(|| match parts.as_slice() {
        [schema, _] if schema == "pg_catalog" || schema == "information_schema" => undefined(),
        [relation] if relation.starts_with("pg_") => undefined(),
        _ => GatewayError::unsupported("user tables together with catalog tables in one query"),
    })
}

/// `generate_series(start, stop)` in FROM.
fn table_function(
    ctx: &Context<'_>,
    name: &ast::ObjectName,
    args: &ast::TableFunctionArgs,
    outer: Option<&Scope<'_>>,
) -> Result<VirtualTable, GatewayError> {
    let function = name_parts(name)
        .and_then(|parts| parts.last().cloned())
        .unwrap_or_default();
    if function != "generate_series" {
        return Err(GatewayError::UndefinedFunction {
            name: format!("{function}()"),
        });
    }
    let scope = Scope::new(&[], &[], outer);
    let mut bounds = Vec::new();
    for arg in &args.args {
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(expr)) = arg else {
            return Err(GatewayError::unsupported("this generate_series argument"));
        };
        bounds.push(eval(ctx, expr, &scope)?);
    }
    let rows = match bounds.as_slice() {
        [Value::Int(start), Value::Int(stop)] => {
            let count = usize::try_from(stop.saturating_sub(*start).saturating_add(1)).unwrap_or(0);
            check_rows(count)?;
            (*start..=*stop)
                .map(|value| vec![Value::Int(value)])
                .collect()
        }
        [_, _] => Vec::new(),
        _ => return Err(GatewayError::unsupported("generate_series with a step")),
    };
    Ok(VirtualTable {
        columns: vec![Column::new("generate_series", SqlType::Int8)],
        rows,
    })
}

fn contains_aggregate(expr: &Expr) -> bool {
    match expr {
        Expr::Function(function) => {
            is_aggregate(function)
                || matches!(&function.args, ast::FunctionArguments::List(list) if list.args.iter().any(|arg| {
                    matches!(arg, ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(inner)) if contains_aggregate(inner))
                }))
        }
        Expr::BinaryOp { left, right, .. } => contains_aggregate(left) || contains_aggregate(right),
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::Cast { expr, .. }
        | Expr::Collate { expr, .. } => contains_aggregate(expr),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand.as_deref().is_some_and(contains_aggregate)
                || conditions.iter().any(|when| {
                    contains_aggregate(&when.condition) || contains_aggregate(&when.result)
                })
                || else_result.as_deref().is_some_and(contains_aggregate)
        }
        _ => false,
    }
}

/// One output item of a SELECT list.
enum Item<'q> {
    Expr(&'q Expr, String),
    Columns(Vec<usize>),
}

fn select_items<'q>(
    items: &'q [SelectItem],
    bindings: &[Binding],
) -> Result<Vec<Item<'q>>, GatewayError> {
    items
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Ok(Item::Expr(expr, output_name(expr))),
            SelectItem::ExprWithAlias { expr, alias } => {
                Ok(Item::Expr(expr, normalize_ident(alias)))
            }
            SelectItem::Wildcard(_) => Ok(Item::Columns(
                bindings
                    .iter()
                    .flat_map(|b| b.offset..b.offset + b.columns.len())
                    .collect(),
            )),
            SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) => {
                let qualifier = name_parts(name)
                    .and_then(|parts| parts.last().cloned())
                    .unwrap_or_default();
                let binding = bindings
                    .iter()
                    .find(|binding| binding.name == qualifier)
                    .ok_or_else(|| GatewayError::UndefinedTable {
                        name: name.to_string(),
                    })?;
                Ok(Item::Columns(
                    (binding.offset..binding.offset + binding.columns.len()).collect(),
                ))
            }
            _ => Err(GatewayError::unsupported("this select list item")),
        })
        .collect()
}

/// The column name Postgres gives an unaliased select-list expression.
fn output_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => normalize_ident(ident),
        Expr::CompoundIdentifier(parts) => parts.last().map(normalize_ident).unwrap_or_default(),
        Expr::Function(function) => crate::bind::function_name(function),
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => output_name(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Function(_)
            | Expr::Cast { .. } => output_name(expr),
            _ => super::eval::type_name(data_type),
        },
        Expr::Case { .. } => "case".to_owned(),
        Expr::Exists { .. } => "exists".to_owned(),
        Expr::Array(_) => "array".to_owned(),
        _ => "?column?".to_owned(),
    }
}

fn flat_columns(bindings: &[Binding]) -> Vec<&Column> {
    bindings
        .iter()
        .flat_map(|binding| binding.columns.iter())
        .collect()
}

fn run_select(
    ctx: &Context<'_>,
    select: &ast::Select,
    order: &[&OrderByExpr],
    outer: Option<&Scope<'_>>,
) -> Result<VirtualTable, GatewayError> {
    if select.into.is_some() || !select.lateral_views.is_empty() || select.top.is_some() {
        return Err(GatewayError::unsupported(
            "this SELECT clause in a catalog query",
        ));
    }
    let (bindings, rows) = from_clause(ctx, &select.from, outer)?;
    let mut kept = Vec::new();
    for row in rows {
        let keep = match &select.selection {
            None => true,
            Some(filter) => {
                truth(&eval(ctx, filter, &Scope::new(&bindings, &row, outer))?) == Some(true)
            }
        };
        if keep {
            kept.push(row);
        }
    }
    let items = select_items(&select.projection, &bindings)?;
    let type_scope = Scope::new(&bindings, &[], outer);
    let all_columns = flat_columns(&bindings);
    let mut columns = Vec::new();
    for item in &items {
        match item {
            Item::Expr(expr, name) => {
                columns.push(Column::new(name, infer(ctx, expr, &type_scope)))
            }
            Item::Columns(indexes) => {
                columns.extend(indexes.iter().map(|&at| all_columns[at].clone()))
            }
        }
    }
    let group_by: &[Expr] = match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => exprs,
        GroupByExpr::All(_) => return Err(GatewayError::unsupported("GROUP BY ALL")),
    };
    let aggregated = !group_by.is_empty()
        || select.having.is_some()
        || items
            .iter()
            .any(|item| matches!(item, Item::Expr(expr, _) if contains_aggregate(expr)));
    let mut output: Vec<(Row, Row)> = if aggregated {
        grouped_rows(
            ctx, select, group_by, &items, &columns, order, &bindings, kept, outer,
        )?
    } else {
        plain_rows(
            ctx,
            &items,
            &columns,
            order,
            &bindings,
            kept,
            outer,
            &select.projection,
        )?
    };
    if select.distinct.is_some() {
        let mut unique: Vec<(Row, Row)> = Vec::with_capacity(output.len());
        for entry in output {
            if !unique.iter().any(|(_, row)| *row == entry.1) {
                unique.push(entry);
            }
        }
        output = unique;
    }
    if !order.is_empty() {
        output.sort_by(|left, right| compare_keys(order, &left.0, &right.0));
    }
    let rows = output
        .into_iter()
        .map(|(_, row)| {
            row.into_iter()
                .zip(&columns)
                .map(|(value, column)| conform(value, column.sql_type))
                .collect()
        })
        .collect();
    Ok(VirtualTable { columns, rows })
}

/// The select list and sort keys of one source row.
fn project(
    ctx: &Context<'_>,
    items: &[Item<'_>],
    columns: &[Column],
    order: &[&OrderByExpr],
    scope: &Scope<'_>,
) -> Result<(Row, Row), GatewayError> {
    let mut row = Vec::with_capacity(columns.len());
    for item in items {
        match item {
            Item::Expr(expr, _) => row.push(eval(ctx, expr, scope)?),
            Item::Columns(indexes) => row.extend(
                indexes
                    .iter()
                    .map(|&at| scope.row.get(at).cloned().unwrap_or(Value::Null)),
            ),
        }
    }
    let mut keys = Vec::with_capacity(order.len());
    for item in order {
        keys.push(match output_position(&item.expr, columns) {
            Some(position) => row[position].clone(),
            None => eval(ctx, &item.expr, scope)?,
        });
    }
    Ok((keys, row))
}

#[allow(clippy::too_many_arguments)]
fn plain_rows(
    ctx: &Context<'_>,
    items: &[Item<'_>],
    columns: &[Column],
    order: &[&OrderByExpr],
    bindings: &[Binding],
    rows: Vec<Row>,
    outer: Option<&Scope<'_>>,
    projection: &[SelectItem],
) -> Result<Vec<(Row, Row)>, GatewayError> {
    let windows = window_values(ctx, projection, bindings, &rows, outer)?;
    let mut output = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let scope = Scope {
            window: Some((&windows, index)),
            ..Scope::new(bindings, row, outer)
        };
        output.push(project(ctx, items, columns, order, &scope)?);
    }
    Ok(output)
}

#[allow(clippy::too_many_arguments)]
fn grouped_rows(
    ctx: &Context<'_>,
    select: &ast::Select,
    group_by: &[Expr],
    items: &[Item<'_>],
    columns: &[Column],
    order: &[&OrderByExpr],
    bindings: &[Binding],
    rows: Vec<Row>,
    outer: Option<&Scope<'_>>,
) -> Result<Vec<(Row, Row)>, GatewayError> {
    let mut groups: Vec<(Row, Vec<Row>)> = Vec::new();
    if group_by.is_empty() {
        groups.push((Vec::new(), rows));
    } else {
        for row in rows {
            let scope = Scope::new(bindings, &row, outer);
            let key = group_by
                .iter()
                .map(|expr| {
                    let expr = match output_position(expr, columns).and_then(|at| items.get(at)) {
                        Some(Item::Expr(item, _)) if matches!(expr, Expr::Value(_)) => *item,
                        _ => expr,
                    };
                    eval(ctx, expr, &scope)
                })
                .collect::<Result<Row, _>>()?;
            match groups.iter_mut().find(|(existing, _)| *existing == key) {
                Some((_, members)) => members.push(row),
                None => groups.push((key, vec![row])),
            }
        }
    }
    let width = bindings
        .last()
        .map_or(0, |last| last.offset + last.columns.len());
    let empty_row = vec![Value::Null; width];
    let mut output = Vec::with_capacity(groups.len());
    for (_, members) in &groups {
        let first = members.first().unwrap_or(&empty_row);
        let scope = Scope {
            group: Some(members),
            ..Scope::new(bindings, first, outer)
        };
        if let Some(having) = &select.having {
            if truth(&eval(ctx, having, &scope)?) != Some(true) {
                continue;
            }
        }
        output.push(project(ctx, items, columns, order, &scope)?);
    }
    Ok(output)
}

/// `row_number() OVER (PARTITION BY ... ORDER BY ...)` for every row.
fn window_values(
    ctx: &Context<'_>,
    projection: &[SelectItem],
    bindings: &[Binding],
    rows: &[Row],
    outer: Option<&Scope<'_>>,
) -> Result<WindowValues, GatewayError> {
    let mut values = WindowValues::new();
    for item in projection {
        let expr = match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => continue,
        };
        let Expr::Function(function) = expr else {
            continue;
        };
        let Some(over) = &function.over else { continue };
        let ast::WindowType::WindowSpec(spec) = over else {
            return Err(GatewayError::unsupported("named windows"));
        };
        if crate::bind::function_name(function) != "row_number" {
            return Err(GatewayError::unsupported(
                "window functions other than row_number()",
            ));
        }
        let order: Vec<&OrderByExpr> = spec.order_by.iter().collect();
        let mut keyed = Vec::with_capacity(rows.len());
        for (index, row) in rows.iter().enumerate() {
            let scope = Scope::new(bindings, row, outer);
            let partition = spec
                .partition_by
                .iter()
                .map(|expr| eval(ctx, expr, &scope))
                .collect::<Result<Row, _>>()?;
            let keys = order
                .iter()
                .map(|item| eval(ctx, &item.expr, &scope))
                .collect::<Result<Row, _>>()?;
            keyed.push((partition, keys, index));
        }
        keyed.sort_by(|left, right| {
            let partition = left
                .0
                .iter()
                .zip(&right.0)
                .map(|(l, r)| compare(l, r).unwrap_or(Ordering::Equal))
                .find(|o| *o != Ordering::Equal);
            partition
                .unwrap_or_else(|| compare_keys(&order, &left.1, &right.1))
                .then(left.2.cmp(&right.2))
        });
        let mut numbers = vec![Value::Null; rows.len()];
        let mut previous: Option<&Row> = None;
        let mut number = 0;
        for (partition, _, index) in &keyed {
            number = if previous == Some(partition) {
                number + 1
            } else {
                1
            };
            previous = Some(partition);
            numbers[*index] = Value::Int(number);
        }
        values.insert(expr.to_string(), numbers);
    }
    Ok(values)
}

/// A value converted to its column's declared type, so the wire encoding
/// (binary included) matches the RowDescription.
fn conform(value: Value, sql_type: SqlType) -> Value {
    match (&value, sql_type) {
        (Value::Null, _) => value,
        (Value::Text(_), SqlType::Text | SqlType::Varchar) => value,
        (_, SqlType::Text | SqlType::Varchar) => Value::Text(value.to_text()),
        (Value::Int(_), t) if t.is_integer() => value,
        (Value::Int(number), t) if t.is_float() => Value::Float(*number as f64),
        (Value::Text(text), t) => t.parse_text(text).unwrap_or(value),
        _ => value,
    }
}

/// The type of a scalar subquery's first column (for Describe).
pub(crate) fn first_column_type(
    ctx: &Context<'_>,
    query: &ast::Query,
    scope: &Scope<'_>,
) -> SqlType {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return SqlType::Text;
    };
    let Ok((bindings, _)) = from_clause(ctx, &select.from, Some(scope)) else {
        return SqlType::Text;
    };
    match select.projection.first() {
        Some(SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) => {
            infer(ctx, expr, &Scope::new(&bindings, &[], Some(scope)))
        }
        _ => SqlType::Text,
    }
}
