//! Parameter type inference for Parse/Describe: `$n` takes the type of the
//! column it is compared with (`=`, `IN (...)`, `BETWEEN`, `LIKE`), inserted
//! into or assigned to (also in `ON CONFLICT DO UPDATE SET`), as Postgres
//! infers it; an operand of arithmetic takes the other operand's type
//! (`balance + $1`: balance's; `$1 * 2`: integer; `n + 1 > $1`: the type
//! of `n + 1`); an operand of `||` is text; LIMIT/OFFSET take bigint;
//! anything else stays text (Postgres' `unknown`, which drivers send as
//! strings).
//!
//! Pure: (statement, catalog) -> types. Drivers such as asyncpg and pgjdbc
//! encode each parameter by the type Describe reports, so a wrong type here
//! is a client-side error before the statement even runs.

use arbor_catalog::Catalog;
use sqlparser::ast::{
    self, AssignmentTarget, Expr, FromTable, LimitClause, OnConflictAction, OnInsert, SetExpr,
    Statement, TableFactor, TableObject, TableWithJoins,
};

use crate::bind::{arithmetic_operator, arithmetic_result_type, normalize_ident};
use crate::plan::{name_parts, resolve_relation};
use crate::value::{Column, SqlType};

/// Types of `$1..$count` (None: unknown, reported as text).
pub(crate) fn infer(
    statement: &Statement,
    count: usize,
    catalog: &Catalog,
) -> Vec<Option<SqlType>> {
    let mut inference = Inference {
        types: vec![None; count],
        catalog,
    };
    inference.statement(statement);
    inference.types
}

/// Relations in scope: (name or alias, columns).
type Relations = Vec<(String, Vec<Column>)>;

struct Inference<'a> {
    types: Vec<Option<SqlType>>,
    catalog: &'a Catalog,
}

/// The parameter number of `$n` (possibly cast or parenthesized).
fn placeholder(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(value) => match &value.value {
            ast::Value::Placeholder(text) => text.strip_prefix('$')?.parse().ok(),
            _ => None,
        },
        Expr::Nested(inner) => placeholder(inner),
        _ => None,
    }
}

impl Inference<'_> {
    fn set(&mut self, number: usize, sql_type: SqlType) {
        if let Some(slot) = number
            .checked_sub(1)
            .and_then(|index| self.types.get_mut(index))
        {
            slot.get_or_insert(sql_type);
        }
    }

    fn relation(&self, name: &ast::ObjectName) -> Option<Vec<Column>> {
        if let Ok(relation) = resolve_relation(name, self.catalog) {
            return Some(relation.columns());
        }
        let parts = name_parts(name)?;
        let (schema, relation) = match parts.as_slice() {
            [relation] => (None, relation.as_str()),
            [schema, relation] => (Some(schema.as_str()), relation.as_str()),
            _ => return None,
        };
        crate::pg_catalog::relation_columns(schema, relation)
    }

    fn from_relations(&self, from: &[TableWithJoins]) -> Relations {
        let mut relations = Vec::new();
        let factors = from.iter().flat_map(|item| {
            std::iter::once(&item.relation).chain(item.joins.iter().map(|join| &join.relation))
        });
        for factor in factors {
            if let TableFactor::Table { name, alias, .. } = factor {
                if let Some(columns) = self.relation(name) {
                    let scope_name = alias.as_ref().map_or_else(
                        || {
                            name_parts(name)
                                .and_then(|parts| parts.last().cloned())
                                .unwrap_or_default()
                        },
                        |alias| normalize_ident(&alias.name),
                    );
                    relations.push((scope_name, columns));
                }
            }
        }
        relations
    }

    fn statement(&mut self, statement: &Statement) {
        match statement {
            Statement::Query(query) => self.query(query),
            Statement::Insert(insert) => self.insert(insert),
            Statement::Update(update) => {
                let relations = self.from_relations(std::slice::from_ref(&update.table));
                for assignment in &update.assignments {
                    if let AssignmentTarget::ColumnName(name) = &assignment.target {
                        if let (Some(number), Some(sql_type)) = (
                            placeholder(&assignment.value),
                            column_type(&relations, None, &last_part(name)),
                        ) {
                            self.set(number, sql_type);
                        }
                    }
                    self.expr(&assignment.value, &relations);
                }
                if let Some(selection) = &update.selection {
                    self.expr(selection, &relations);
                }
            }
            Statement::Delete(delete) => {
                let from = match &delete.from {
                    FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
                };
                let relations = self.from_relations(from);
                if let Some(selection) = &delete.selection {
                    self.expr(selection, &relations);
                }
            }
            _ => {}
        }
    }

    fn insert(&mut self, insert: &ast::Insert) {
        let TableObject::TableName(name) = &insert.table else {
            return;
        };
        let Some(columns) = self.relation(name) else {
            return;
        };
        let targets: Vec<Option<SqlType>> = if insert.columns.is_empty() {
            columns.iter().map(|column| Some(column.sql_type)).collect()
        } else {
            insert
                .columns
                .iter()
                .map(|name| {
                    let name = last_part(name);
                    columns
                        .iter()
                        .find(|column| column.name == name)
                        .map(|column| column.sql_type)
                })
                .collect()
        };
        if let Some(source) = &insert.source {
            if let SetExpr::Values(values) = source.body.as_ref() {
                for row in &values.rows {
                    for (expr, target) in row.iter().zip(&targets) {
                        if let (Some(number), Some(sql_type)) = (placeholder(expr), target) {
                            self.set(number, *sql_type);
                        }
                    }
                }
            } else {
                self.query(source);
            }
        }
        let target_name = insert
            .table_alias
            .as_ref()
            .map(|alias| normalize_ident(&alias.alias))
            .or_else(|| name_parts(name).and_then(|parts| parts.last().cloned()))
            .unwrap_or_default();
        let relations = vec![
            ("excluded".to_owned(), columns.clone()),
            (target_name, columns),
        ];
        if let Some(OnInsert::OnConflict(on_conflict)) = &insert.on {
            if let OnConflictAction::DoUpdate(update) = &on_conflict.action {
                for assignment in &update.assignments {
                    if let AssignmentTarget::ColumnName(name) = &assignment.target {
                        if let (Some(number), Some(sql_type)) = (
                            placeholder(&assignment.value),
                            column_type(&relations, None, &last_part(name)),
                        ) {
                            self.set(number, sql_type);
                        }
                    }
                    self.expr(&assignment.value, &relations);
                }
                if let Some(selection) = &update.selection {
                    self.expr(selection, &relations);
                }
            }
        }
    }

    fn query(&mut self, query: &ast::Query) {
        if let Some(LimitClause::LimitOffset { limit, offset, .. }) = &query.limit_clause {
            let counts = limit
                .iter()
                .chain(offset.iter().map(|offset| &offset.value));
            for expr in counts {
                if let Some(number) = placeholder(expr) {
                    self.set(number, SqlType::Int8);
                }
            }
        }
        self.set_expr(&query.body);
    }

    fn set_expr(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(select) => {
                let relations = self.from_relations(&select.from);
                for item in &select.projection {
                    if let ast::SelectItem::UnnamedExpr(expr)
                    | ast::SelectItem::ExprWithAlias { expr, .. } = item
                    {
                        self.expr(expr, &relations);
                    }
                }
                if let Some(selection) = &select.selection {
                    self.expr(selection, &relations);
                }
                for item in &select.from {
                    for join in &item.joins {
                        if let ast::JoinOperator::Join(ast::JoinConstraint::On(on))
                        | ast::JoinOperator::Inner(ast::JoinConstraint::On(on))
                        | ast::JoinOperator::LeftOuter(ast::JoinConstraint::On(on))
                        | ast::JoinOperator::Left(ast::JoinConstraint::On(on)) =
                            &join.join_operator
                        {
                            self.expr(on, &relations);
                        }
                    }
                }
            }
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            _ => {}
        }
    }

    /// Walks a predicate: `column <op> $n`, `$n <op> column`, `column IN
    /// ($n, ...)`, `column BETWEEN $n AND $m`, and `$n::type`.
    fn expr(&mut self, expr: &Expr, relations: &Relations) {
        match expr {
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::StringConcat,
                right,
            } => {
                // `anynonarray || text`: an untyped operand is text,
                // whatever the other side is (`n || $1`).
                for side in [left, right] {
                    match placeholder(side) {
                        Some(number) => self.set(number, SqlType::Text),
                        None => self.expr(side, relations),
                    }
                }
            }
            Expr::BinaryOp { left, op, right } => {
                // Only arithmetic gives a parameter the type of a number
                // literal (`$1 * 2`); a comparison with one keeps it text,
                // which the binder reads as the literal's type anyway.
                let arithmetic = arithmetic_operator(op).is_some();
                self.pair(left, right, relations, arithmetic);
                self.pair(right, left, relations, arithmetic);
                self.expr(left, relations);
                self.expr(right, relations);
            }
            Expr::InList { expr, list, .. } => {
                for item in list {
                    self.pair(expr, item, relations, false);
                    self.pair(item, expr, relations, false);
                    self.expr(item, relations);
                }
                self.expr(expr, relations);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                for bound in [low, high] {
                    self.pair(expr, bound, relations, false);
                    self.pair(bound, expr, relations, false);
                    self.expr(bound, relations);
                }
                self.expr(expr, relations);
            }
            Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
                // Both sides of LIKE are text.
                for side in [expr, pattern] {
                    match placeholder(side) {
                        Some(number) => self.set(number, SqlType::Text),
                        None => self.expr(side, relations),
                    }
                }
                self.pair(expr, pattern, relations, false);
            }
            Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => self.expr(inner, relations),
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                if let (Some(number), Ok((sql_type, _))) =
                    (placeholder(inner), crate::bind::column_type(data_type))
                {
                    self.set(number, sql_type);
                }
            }
            Expr::InSubquery { subquery, .. } | Expr::Exists { subquery, .. } => {
                self.query(subquery)
            }
            Expr::Subquery(query) => self.query(query),
            _ => {}
        }
    }

    /// If `value` is a placeholder and `other` has a type of its own (see
    /// [`operand_type`]), the placeholder takes that type.
    fn pair(&mut self, other: &Expr, value: &Expr, relations: &Relations, number_literals: bool) {
        let Some(number) = placeholder(value) else {
            return;
        };
        if let Some(sql_type) = operand_type(other, relations, number_literals) {
            self.set(number, sql_type);
        }
    }
}

/// The type `expr` has without context: a column's, a cast's, the result
/// type of arithmetic (an untyped operand taking the other's, as the binder
/// does), or, when `number_literals`, a number literal's.
fn operand_type(expr: &Expr, relations: &Relations, number_literals: bool) -> Option<SqlType> {
    match expr {
        Expr::Identifier(ident) => column_type(relations, None, &normalize_ident(ident)),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [.., qualifier, name] => column_type(
                relations,
                Some(&normalize_ident(qualifier)),
                &normalize_ident(name),
            ),
            _ => None,
        },
        Expr::Cast { data_type, .. } => crate::bind::column_type(data_type)
            .ok()
            .map(|(sql_type, _)| sql_type),
        Expr::Nested(inner) => operand_type(inner, relations, number_literals),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus | ast::UnaryOperator::Plus,
            expr: inner,
        } => operand_type(inner, relations, number_literals),
        Expr::BinaryOp { left, op, right } => {
            let op = arithmetic_operator(op)?;
            match (
                operand_type(left, relations, true),
                operand_type(right, relations, true),
            ) {
                (Some(left), Some(right)) => arithmetic_result_type(op, left, right),
                (Some(known), None) | (None, Some(known)) => Some(known),
                (None, None) => None,
            }
        }
        Expr::Value(value) if number_literals => match &value.value {
            ast::Value::Number(number, _) => crate::bind::number_literal_type(number),
            _ => None,
        },
        _ => None,
    }
}

fn last_part(name: &ast::ObjectName) -> String {
    name_parts(name)
        .and_then(|parts| parts.last().cloned())
        .unwrap_or_default()
}

fn column_type(relations: &Relations, qualifier: Option<&str>, name: &str) -> Option<SqlType> {
    relations
        .iter()
        .filter(|(relation, _)| qualifier.is_none_or(|qualifier| qualifier == relation))
        .find_map(|(_, columns)| columns.iter().find(|column| column.name == name))
        .map(|column| column.sql_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_catalog::{ColumnDescriptor, TableDescriptor, TableId};

    fn catalog() -> Catalog {
        let table = TableDescriptor::new(
            TableId(100),
            "orders",
            vec![
                ColumnDescriptor::new("id", SqlType::Int8),
                ColumnDescriptor::new("customer", SqlType::Text),
                ColumnDescriptor::new("qty", SqlType::Int2),
                ColumnDescriptor::new("placed", SqlType::Date),
            ],
            vec![0],
        )
        .expect("valid table");
        Catalog::empty()
            .with_table_created(table)
            .expect("new table")
    }

    fn types(sql: &str) -> Vec<Option<SqlType>> {
        let statement = crate::executor::parse_sql(sql)
            .expect("valid SQL")
            .remove(0);
        infer(
            &statement,
            crate::executor::parameter_count(sql),
            &catalog(),
        )
    }

    #[test]
    fn insert_parameters_take_their_target_column_types() {
        assert_eq!(
            types("INSERT INTO orders (id, customer, qty, placed) VALUES ($1, $2, $3, $4)"),
            vec![
                Some(SqlType::Int8),
                Some(SqlType::Text),
                Some(SqlType::Int2),
                Some(SqlType::Date)
            ]
        );
        assert_eq!(
            types("INSERT INTO orders VALUES ($1, $2)"),
            vec![Some(SqlType::Int8), Some(SqlType::Text)]
        );
    }

    #[test]
    fn compared_and_assigned_parameters_take_the_column_type() {
        assert_eq!(
            types("SELECT customer FROM orders WHERE id = $1"),
            vec![Some(SqlType::Int8)]
        );
        assert_eq!(
            types("SELECT * FROM orders o WHERE $1 < o.qty LIMIT $2"),
            vec![Some(SqlType::Int2), Some(SqlType::Int8)]
        );
        assert_eq!(
            types("UPDATE orders SET qty = $1 WHERE id = $2"),
            vec![Some(SqlType::Int2), Some(SqlType::Int8)]
        );
        assert_eq!(
            types("DELETE FROM orders WHERE id IN ($1, $2)"),
            vec![Some(SqlType::Int8), Some(SqlType::Int8)]
        );
    }

    #[test]
    fn in_between_like_and_concatenation_type_their_parameters() {
        assert_eq!(
            types("SELECT * FROM orders WHERE id IN ($1, $2) AND qty BETWEEN $3 AND $4"),
            vec![
                Some(SqlType::Int8),
                Some(SqlType::Int8),
                Some(SqlType::Int2),
                Some(SqlType::Int2)
            ]
        );
        assert_eq!(
            types("SELECT * FROM orders WHERE $1 BETWEEN qty AND id"),
            vec![Some(SqlType::Int2)]
        );
        assert_eq!(
            types("SELECT customer || $1, qty || $2 FROM orders WHERE customer LIKE $3"),
            vec![
                Some(SqlType::Text),
                Some(SqlType::Text),
                Some(SqlType::Text)
            ]
        );
        assert_eq!(
            types("SELECT * FROM orders WHERE qty + $1 IN (3, 4)"),
            vec![Some(SqlType::Int2)]
        );
    }

    #[test]
    fn upsert_parameters_take_types_from_the_stored_and_excluded_rows() {
        assert_eq!(
            types(
                "INSERT INTO orders AS o (id, qty) VALUES ($1, $2) ON CONFLICT (id) \
                 DO UPDATE SET qty = o.qty + $3, customer = o.customer || $4 WHERE o.id < $5"
            ),
            vec![
                Some(SqlType::Int8),
                Some(SqlType::Int2),
                Some(SqlType::Int2),
                Some(SqlType::Text),
                Some(SqlType::Int8)
            ]
        );
    }

    #[test]
    fn parameters_without_context_stay_unknown() {
        assert_eq!(types("SELECT $1"), vec![None]);
        assert_eq!(types("SELECT $1::int4"), vec![Some(SqlType::Int4)]);
    }

    #[test]
    fn arithmetic_operands_take_the_other_operands_type() {
        assert_eq!(
            types("UPDATE orders SET qty = qty + $1 WHERE id = $2"),
            vec![Some(SqlType::Int2), Some(SqlType::Int8)]
        );
        assert_eq!(
            types("UPDATE orders SET qty = $1 - qty"),
            vec![Some(SqlType::Int2)]
        );
        assert_eq!(
            types("SELECT id * 2 FROM orders WHERE qty + 1 > $1 AND $2 * 2 < id"),
            vec![Some(SqlType::Int4), Some(SqlType::Int4)]
        );
        // A comparison with a literal alone does not type the parameter.
        assert_eq!(types("SELECT * FROM orders WHERE $1 = 2"), vec![None]);
    }
}
