//! SELECT over kv, a system table, or no table.
//!
//! The pipeline is: source rows (filtered as they are read) -> aggregate, or
//! sort -> OFFSET/LIMIT -> projection. For tables, the WHERE clause's key
//! range becomes a point get, point gets in key order (`k IN (...)`), or a
//! bounded scan, and when rows come out in key order anyway (no ORDER BY,
//! or ORDER BY k ASC) the LIMIT stops the reading. `now()` anywhere in the
//! statement is the one instant the executor passes to `execute`.

use std::cmp::Ordering;

use arbor_catalog::{Catalog, TableDescriptor};
use sqlparser::ast::{
    self, LimitClause, OrderByKind, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
};

use super::{first_key_column, read_rows, resolve_filter, table_access, QueryResult, TableAccess};
use crate::bind::{coerce, count_argument, function_name, normalize_ident, CoercionContext, Scope};
use crate::cluster_view::ClusterViewSource;
use crate::error::GatewayError;
use crate::expr::{Expr, StatementTime};
use crate::plan::{resolve_from, resolve_relation, Relation};
use crate::store::KvStore;
use crate::system_tables::SystemTable;
use crate::value::{sort_cmp, Column, Row, SqlType, Value};

#[derive(Debug)]
pub(crate) struct SelectPlan {
    source: Source,
    filter: Option<Expr>,
    projection: Projection,
    columns: Vec<Column>,
    order_by: Vec<SortKey>,
    offset: usize,
    limit: Option<usize>,
    /// `FOR UPDATE` (or SHARE): the rows read take part in the
    /// transaction's conflict check.
    lock_rows: bool,
}

#[derive(Debug)]
enum Source {
    /// `SELECT 1`: one empty row.
    Constant,
    Table {
        table: TableDescriptor,
        access: TableAccess,
    },
    System(SystemTable),
}

#[derive(Debug)]
enum Projection {
    Rows(Vec<Expr>),
    Aggregate(Vec<Aggregate>),
}

#[derive(Debug)]
enum Aggregate {
    CountRows,
    CountNonNull(Expr),
    Constant(Expr),
}

#[derive(Debug)]
struct SortKey {
    expr: Expr,
    descending: bool,
    nulls_first: bool,
}

impl SelectPlan {
    pub(crate) fn plan(
        query: &ast::Query,
        params: &[Value],
        catalog: &Catalog,
    ) -> Result<Self, GatewayError> {
        if query.with.is_some() {
            return Err(GatewayError::unsupported("WITH"));
        }
        if query.fetch.is_some() || query.for_clause.is_some() {
            return Err(GatewayError::unsupported("FETCH"));
        }
        if query
            .locks
            .iter()
            .any(|lock| lock.nonblock == Some(ast::NonBlock::SkipLocked))
        {
            return Err(GatewayError::unsupported("SKIP LOCKED"));
        }
        // Every row-lock strength is taken as FOR UPDATE: the rows join the
        // transaction's write-conflict check. NOWAIT holds trivially, since
        // a conflict fails at COMMIT instead of waiting.
        let lock_rows = !query.locks.is_empty();
        let select = match query.body.as_ref() {
            SetExpr::Select(select) => select,
            SetExpr::Query(inner) if query.order_by.is_none() && query.limit_clause.is_none() => {
                return SelectPlan::plan(inner, params, catalog)
            }
            SetExpr::Values(_) => return Err(GatewayError::unsupported("VALUES lists")),
            SetExpr::SetOperation { op, .. } => {
                return Err(GatewayError::unsupported(format!("{op}")))
            }
            _ => return Err(GatewayError::unsupported("this query form")),
        };
        check_select_shape(select)?;
        let (relation, scope_name) = match select.from.as_slice() {
            [] => (None, String::new()),
            [from] => {
                let (name, alias) = resolve_from(from)?;
                let relation = resolve_relation(&name, catalog)?;
                let scope_name = alias.unwrap_or_else(|| relation.name());
                (Some(relation), scope_name)
            }
            _ => return Err(GatewayError::unsupported("several tables in FROM (joins)")),
        };
        let scope = match &relation {
            Some(relation) => Scope::single(&scope_name, relation.columns(), params),
            None => Scope::constant(params),
        };
        let filter = select
            .selection
            .as_ref()
            .map(|selection| scope.bind_predicate(selection, "WHERE"))
            .transpose()?;
        let (projection, columns) = plan_projection(&scope, &scope_name, &select.projection)?;
        let order_by = plan_order_by(&scope, query, &projection, &columns)?;
        let (offset, limit) = plan_limit(query, params)?;
        let source = match relation {
            None => Source::Constant,
            Some(Relation::Table(table)) => {
                let access = table_access(&table, filter.as_ref());
                Source::Table { table, access }
            }
            Some(Relation::System(table)) => Source::System(table),
        };
        Ok(SelectPlan {
            source,
            filter,
            projection,
            columns,
            order_by,
            offset,
            limit,
            lock_rows,
        })
    }

    pub(crate) fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Every `now()` of the plan becomes `now`; a filter bounding the key by
    /// it narrows the scan from then on.
    fn resolve_statement_time(&mut self, now: StatementTime) {
        match &mut self.source {
            Source::Table { table, access } => {
                resolve_filter(table, &mut self.filter, access, now);
            }
            Source::Constant | Source::System(_) => {
                if let Some(filter) = &mut self.filter {
                    filter.resolve_statement_time(now);
                }
            }
        }
        let exprs: Vec<&mut Expr> = match &mut self.projection {
            Projection::Rows(exprs) => exprs.iter_mut().collect(),
            Projection::Aggregate(aggregates) => aggregates
                .iter_mut()
                .filter_map(|aggregate| match aggregate {
                    Aggregate::CountRows => None,
                    Aggregate::CountNonNull(expr) | Aggregate::Constant(expr) => Some(expr),
                })
                .collect(),
        };
        for expr in exprs
            .into_iter()
            .chain(self.order_by.iter_mut().map(|key| &mut key.expr))
        {
            expr.resolve_statement_time(now);
        }
    }

    pub(crate) async fn execute(
        mut self,
        store: &dyn KvStore,
        views: &dyn ClusterViewSource,
        now: StatementTime,
    ) -> Result<QueryResult, GatewayError> {
        self.resolve_statement_time(now);
        let rows = match &self.source {
            Source::Constant => {
                let row = Vec::new();
                if self.keeps(&row)? {
                    vec![row]
                } else {
                    Vec::new()
                }
            }
            Source::Table { table, access } => {
                let matches_max = self.scan_matches_max(table);
                let (keys, rows): (Vec<_>, Vec<_>) =
                    read_rows(store, table, self.filter.as_ref(), access, matches_max)
                        .await?
                        .into_iter()
                        .unzip();
                if self.lock_rows {
                    store.lock_keys(keys).await?;
                }
                rows
            }
            Source::System(table) => {
                let view = views.cluster_view().await?;
                let mut kept = Vec::new();
                for row in table.rows(&view) {
                    if self.keeps(&row)? {
                        kept.push(row);
                    }
                }
                kept
            }
        };
        Ok(QueryResult::Rows {
            columns: self.columns.clone(),
            rows: self.finish(rows)?,
        })
    }

    fn keeps(&self, row: &Row) -> Result<bool, GatewayError> {
        match &self.filter {
            Some(filter) => filter.matches(row),
            None => Ok(true),
        }
    }

    /// How many matching rows the scan may stop after: OFFSET + LIMIT when
    /// the scan's key order is the output order.
    fn scan_matches_max(&self, table: &TableDescriptor) -> Option<usize> {
        let Projection::Rows(_) = self.projection else {
            return None;
        };
        let limit = self.limit?;
        let key_order = match self.order_by.as_slice() {
            [] => true,
            [key] => !key.descending && key.expr == Expr::Column(first_key_column(table)),
            _ => false,
        };
        key_order.then(|| self.offset.saturating_add(limit))
    }

    /// Aggregate, or sort, cut and project the source rows.
    fn finish(&self, rows: Vec<Row>) -> Result<Vec<Row>, GatewayError> {
        let output = match &self.projection {
            Projection::Aggregate(aggregates) => vec![aggregate(aggregates, &rows)?],
            Projection::Rows(exprs) => {
                let rows = sorted(&self.order_by, rows)?;
                return rows
                    .into_iter()
                    .skip(self.offset)
                    .take(self.limit.unwrap_or(usize::MAX))
                    .map(|row| exprs.iter().map(|expr| expr.eval(&row)).collect())
                    .collect();
            }
        };
        Ok(output
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect())
    }
}

/// `rows` in ORDER BY order (stable: ties keep their read order). Each
/// row's sort keys are computed once, before sorting, so an error in one
/// (`ORDER BY 1 / n`) fails the statement instead of hiding in a comparator.
fn sorted(keys: &[SortKey], rows: Vec<Row>) -> Result<Vec<Row>, GatewayError> {
    if keys.is_empty() {
        return Ok(rows);
    }
    let mut keyed = rows
        .into_iter()
        .map(|row| {
            let values = keys
                .iter()
                .map(|key| key.expr.eval(&row))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((values, row))
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    keyed.sort_by(|(left, _), (right, _)| compare_keys(keys, left, right));
    Ok(keyed.into_iter().map(|(_, row)| row).collect())
}

fn aggregate(aggregates: &[Aggregate], rows: &[Row]) -> Result<Row, GatewayError> {
    let count = |rows: usize| Value::Int(i64::try_from(rows).unwrap_or(i64::MAX));
    aggregates
        .iter()
        .map(|aggregate| match aggregate {
            Aggregate::CountRows => Ok(count(rows.len())),
            Aggregate::CountNonNull(expr) => {
                let mut non_null = 0;
                for row in rows {
                    if !expr.eval(row)?.is_null() {
                        non_null += 1;
                    }
                }
                Ok(count(non_null))
            }
            Aggregate::Constant(expr) => expr.eval(&Vec::new()),
        })
        .collect()
}

/// Compares two rows' precomputed sort keys (`left[i]` is the value of
/// `keys[i]`).
fn compare_keys(keys: &[SortKey], left: &[Value], right: &[Value]) -> Ordering {
    for ((key, left), right) in keys.iter().zip(left).zip(right) {
        let ordering = match (left.is_null(), right.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) if key.nulls_first => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, true) if key.nulls_first => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) if key.descending => sort_cmp(right, left),
            (false, false) => sort_cmp(left, right),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn check_select_shape(select: &ast::Select) -> Result<(), GatewayError> {
    let grouped = match &select.group_by {
        ast::GroupByExpr::All(_) => true,
        ast::GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped || select.having.is_some() {
        return Err(GatewayError::unsupported("GROUP BY/HAVING"));
    }
    if select.distinct.is_some() {
        return Err(GatewayError::unsupported("DISTINCT"));
    }
    if select.into.is_some() {
        return Err(GatewayError::unsupported("SELECT INTO"));
    }
    if select.top.is_some()
        || !select.lateral_views.is_empty()
        || select.prewhere.is_some()
        || select.qualify.is_some()
        || !select.named_window.is_empty()
        || !select.sort_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.connect_by.is_empty()
    {
        return Err(GatewayError::unsupported("this SELECT clause"));
    }
    Ok(())
}

fn plan_projection(
    scope: &Scope<'_>,
    scope_name: &str,
    items: &[SelectItem],
) -> Result<(Projection, Vec<Column>), GatewayError> {
    let mut exprs = Vec::new();
    let mut aggregates: Vec<Option<Aggregate>> = Vec::new();
    let mut columns = Vec::new();
    let all_columns = |exprs: &mut Vec<Expr>,
                       aggregates: &mut Vec<Option<Aggregate>>,
                       columns: &mut Vec<Column>| {
        for relation in &scope.relations {
            for (index, column) in relation.columns.iter().enumerate() {
                exprs.push(Expr::Column(relation.offset + index));
                aggregates.push(None);
                columns.push(column.clone());
            }
        }
    };
    for item in items {
        match item {
            SelectItem::Wildcard(_) => {
                if scope.relations.is_empty() {
                    return Err(GatewayError::Syntax {
                        message: "SELECT * with no tables specified is not valid".to_owned(),
                    });
                }
                all_columns(&mut exprs, &mut aggregates, &mut columns);
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                let qualifier = name
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .map(normalize_ident)
                    .unwrap_or_default();
                if scope.relations.is_empty() || qualifier != scope_name {
                    return Err(GatewayError::UndefinedTable {
                        name: name.to_string(),
                    });
                }
                all_columns(&mut exprs, &mut aggregates, &mut columns);
            }
            SelectItem::UnnamedExpr(expr) => {
                let (planned, aggregate, column) = plan_item(scope, expr, None)?;
                exprs.push(planned);
                aggregates.push(aggregate);
                columns.push(column);
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let (planned, aggregate, column) = plan_item(scope, expr, Some(alias))?;
                exprs.push(planned);
                aggregates.push(aggregate);
                columns.push(column);
            }
            _ => return Err(GatewayError::unsupported("this select list item")),
        }
    }
    if aggregates.iter().all(Option::is_none) {
        return Ok((Projection::Rows(exprs), columns));
    }
    let mut planned = Vec::with_capacity(exprs.len());
    for ((expr, aggregate), column) in exprs.into_iter().zip(aggregates).zip(&columns) {
        match aggregate {
            Some(aggregate) => planned.push(aggregate),
            None if expr.references_columns() => {
                return Err(GatewayError::Grouping {
                    column: column.name.clone(),
                })
            }
            None => planned.push(Aggregate::Constant(expr)),
        }
    }
    Ok((Projection::Aggregate(planned), columns))
}

/// One select-list expression: its row expression, its aggregate (for
/// count), and its output column.
fn plan_item(
    scope: &Scope<'_>,
    expr: &ast::Expr,
    alias: Option<&ast::Ident>,
) -> Result<(Expr, Option<Aggregate>, Column), GatewayError> {
    let name = alias
        .map(normalize_ident)
        .unwrap_or_else(|| output_name(expr));
    if let ast::Expr::Function(function) = expr {
        if let Some(argument) = count_argument(function) {
            let aggregate = match argument? {
                None => Aggregate::CountRows,
                Some(argument) => Aggregate::CountNonNull(scope.bind(argument)?.expr),
            };
            let placeholder = Expr::Literal(Value::Null);
            return Ok((
                placeholder,
                Some(aggregate),
                Column::new(&name, SqlType::Int8),
            ));
        }
    }
    let bound = scope.bind(expr)?;
    let sql_type = bound.bound_type.output_type();
    Ok((bound.expr, None, Column::new(&name, sql_type)))
}

/// The column name Postgres gives an unaliased select-list expression.
fn output_name(expr: &ast::Expr) -> String {
    match expr {
        ast::Expr::Identifier(ident) => normalize_ident(ident),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map(normalize_ident).unwrap_or_default()
        }
        ast::Expr::Function(function) => function_name(function),
        ast::Expr::Nested(inner) => output_name(inner),
        ast::Expr::Cast { expr, .. } => match expr.as_ref() {
            ast::Expr::Identifier(_) | ast::Expr::Function(_) => output_name(expr),
            _ => "?column?".to_owned(),
        },
        _ => "?column?".to_owned(),
    }
}

fn plan_order_by(
    scope: &Scope<'_>,
    query: &ast::Query,
    projection: &Projection,
    columns: &[Column],
) -> Result<Vec<SortKey>, GatewayError> {
    let Some(order_by) = &query.order_by else {
        return Ok(Vec::new());
    };
    if order_by.interpolate.is_some() {
        return Err(GatewayError::unsupported("ORDER BY ... INTERPOLATE"));
    }
    let OrderByKind::Expressions(items) = &order_by.kind else {
        return Err(GatewayError::unsupported("ORDER BY ALL"));
    };
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        if item.with_fill.is_some() {
            return Err(GatewayError::unsupported("ORDER BY ... WITH FILL"));
        }
        let expr = order_expr(scope, &item.expr, projection, columns)?;
        let descending = item.options.asc == Some(false);
        keys.push(SortKey {
            expr,
            descending,
            nulls_first: item.options.nulls_first.unwrap_or(descending),
        });
    }
    if let Projection::Aggregate(_) = projection {
        // One output row: ordering is moot, but column references are not
        // allowed next to an aggregate.
        if let Some(key) = keys.iter().find(|key| key.expr.references_columns()) {
            let column = match key.expr {
                Expr::Column(index) => scope
                    .relations
                    .first()
                    .and_then(|relation| relation.columns.get(index))
                    .map(|column| column.name.clone())
                    .unwrap_or_default(),
                _ => "?column?".to_owned(),
            };
            return Err(GatewayError::Grouping { column });
        }
        return Ok(Vec::new());
    }
    Ok(keys)
}

/// An ORDER BY item: an output position (`ORDER BY 1`), an output alias, or
/// an expression over the source row.
fn order_expr(
    scope: &Scope<'_>,
    expr: &ast::Expr,
    projection: &Projection,
    columns: &[Column],
) -> Result<Expr, GatewayError> {
    let Projection::Rows(exprs) = projection else {
        return scope.bind(expr).map(|bound| bound.expr);
    };
    if let ast::Expr::Value(value) = expr {
        if let ast::Value::Number(number, _) = &value.value {
            let position: usize = number.parse().map_err(|_| GatewayError::Syntax {
                message: format!("non-integer constant in ORDER BY: {number}"),
            })?;
            return position
                .checked_sub(1)
                .and_then(|index| exprs.get(index))
                .cloned()
                .ok_or_else(|| GatewayError::UndefinedColumn {
                    name: format!("ORDER BY position {position}"),
                });
        }
    }
    match scope.bind(expr) {
        Ok(bound) => Ok(bound.expr),
        Err(error @ GatewayError::UndefinedColumn { .. }) => {
            let ast::Expr::Identifier(ident) = expr else {
                return Err(error);
            };
            let name = normalize_ident(ident);
            columns
                .iter()
                .position(|column| column.name == name)
                .and_then(|index| exprs.get(index))
                .cloned()
                .ok_or(error)
        }
        Err(error) => Err(error),
    }
}

fn plan_limit(
    query: &ast::Query,
    params: &[Value],
) -> Result<(usize, Option<usize>), GatewayError> {
    match &query.limit_clause {
        None => Ok((0, None)),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(GatewayError::unsupported("LIMIT BY"));
            }
            let limit = limit
                .as_ref()
                .map(|limit| row_count(limit, "LIMIT", params))
                .transpose()?
                .flatten();
            let offset = offset
                .as_ref()
                .map(|offset| row_count(&offset.value, "OFFSET", params))
                .transpose()?
                .flatten()
                .unwrap_or(0);
            Ok((offset, limit))
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => {
            Err(GatewayError::unsupported("LIMIT offset, count"))
        }
    }
}

/// A LIMIT/OFFSET value: a constant non-negative integer; NULL (and
/// `LIMIT ALL`) mean no limit.
fn row_count(
    expr: &ast::Expr,
    clause: &'static str,
    params: &[Value],
) -> Result<Option<usize>, GatewayError> {
    let bound = Scope::constant(params).bind(expr)?;
    let expr = coerce(bound, SqlType::Int8, CoercionContext::Implicit)?;
    match expr.eval(&Vec::new())? {
        Value::Null => Ok(None),
        Value::Int(count) => usize::try_from(count)
            .map(Some)
            .map_err(|_| GatewayError::InvalidRowCount { clause }),
        _ => Err(GatewayError::DatatypeMismatch {
            message: format!("argument of {clause} must be type bigint"),
        }),
    }
}
