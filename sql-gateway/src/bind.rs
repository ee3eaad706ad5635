//! Binding: sqlparser expressions -> typed [`Expr`]s over a scope of columns.
//!
//! Invariant: after binding, every column is an index into the scope's row,
//! every literal has its final type, and every comparison compares values of
//! one type; so evaluation needs no error path. Placeholders (`$1`) are
//! replaced by their parameter values here, as untyped text literals, the way
//! Postgres treats parameters of unknown type.

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, UnaryOperator,
};

use crate::error::GatewayError;
use crate::expr::{CompareOp, Expr};
use crate::value::{Column, SqlType, Value};

/// The version string `SELECT version()` answers; drivers parse the
/// "PostgreSQL <major>.<minor>" prefix.
pub(crate) const SERVER_VERSION_STRING: &str = "PostgreSQL 16.6 (Arbor 0.1.0)";

/// Postgres folds unquoted identifiers to lower case.
pub(crate) fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// One named relation in scope; its columns occupy
/// `offset..offset + columns.len()` of the evaluated row.
pub(crate) struct ScopeRelation {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) offset: usize,
}

/// What names mean while binding one statement. Unqualified names resolve
/// against the first relation only (as `v` in ON CONFLICT means the target,
/// not `excluded`).
pub(crate) struct Scope<'a> {
    pub(crate) relations: Vec<ScopeRelation>,
    pub(crate) params: &'a [Value],
}

/// The static type of a bound expression. Quoted literals and parameters
/// stay `UnknownText` until context gives them a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoundType {
    Known(SqlType),
    UnknownText,
    Null,
}

impl BoundType {
    fn sql_name(self) -> &'static str {
        match self {
            BoundType::Known(sql_type) => sql_type.sql_name(),
            BoundType::UnknownText => "unknown",
            BoundType::Null => "unknown",
        }
    }

    /// The output column type when this is selected.
    pub(crate) fn output_type(self) -> SqlType {
        match self {
            BoundType::Known(sql_type) => sql_type,
            _ => SqlType::Text,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub(crate) expr: Expr,
    pub(crate) bound_type: BoundType,
}

impl<'a> Scope<'a> {
    pub(crate) fn constant(params: &'a [Value]) -> Self {
        Scope {
            relations: Vec::new(),
            params,
        }
    }

    pub(crate) fn single(name: &str, columns: Vec<Column>, params: &'a [Value]) -> Self {
        Scope {
            relations: vec![ScopeRelation {
                name: name.to_owned(),
                columns,
                offset: 0,
            }],
            params,
        }
    }

    fn column(&self, qualifier: Option<&str>, name: &str) -> Result<Bound, GatewayError> {
        let relation = match qualifier {
            None => self.relations.first(),
            Some(qualifier) => self.relations.iter().find(|r| r.name == qualifier),
        };
        let undefined = || GatewayError::UndefinedColumn {
            name: match qualifier {
                Some(qualifier) => format!("{qualifier}.{name}"),
                None => name.to_owned(),
            },
        };
        let relation = relation.ok_or_else(undefined)?;
        let index = relation
            .columns
            .iter()
            .position(|column| column.name == name)
            .ok_or_else(undefined)?;
        Ok(Bound {
            expr: Expr::Column(relation.offset + index),
            bound_type: BoundType::Known(relation.columns[index].sql_type),
        })
    }

    /// Binds `expr` and requires a boolean (or NULL) result, as WHERE does.
    pub(crate) fn bind_predicate(
        &self,
        expr: &ast::Expr,
        clause: &str,
    ) -> Result<Expr, GatewayError> {
        let bound = self.bind(expr)?;
        require_boolean(bound, clause)
    }

    pub(crate) fn bind(&self, expr: &ast::Expr) -> Result<Bound, GatewayError> {
        match expr {
            ast::Expr::Identifier(ident) => self.column(None, &normalize_ident(ident)),
            ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [qualifier, name] => {
                    self.column(Some(&normalize_ident(qualifier)), &normalize_ident(name))
                }
                [_schema, qualifier, name] => {
                    self.column(Some(&normalize_ident(qualifier)), &normalize_ident(name))
                }
                _ => Err(GatewayError::UndefinedColumn {
                    name: expr.to_string(),
                }),
            },
            ast::Expr::Value(value) => self.bind_value(&value.value),
            ast::Expr::Nested(inner) => self.bind(inner),
            ast::Expr::IsNull(inner) => Ok(boolean(Expr::IsNull(Box::new(self.bind(inner)?.expr)))),
            ast::Expr::IsNotNull(inner) => {
                Ok(boolean(Expr::IsNotNull(Box::new(self.bind(inner)?.expr))))
            }
            ast::Expr::UnaryOp { op, expr: inner } => self.bind_unary(*op, inner),
            ast::Expr::BinaryOp { left, op, right } => self.bind_binary(left, op, right),
            ast::Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type,
                ..
            } => self.bind_cast(inner, data_type),
            ast::Expr::Function(function) => self.bind_function(function),
            other => Err(GatewayError::unsupported(format!("expression {other}"))),
        }
    }

    fn bind_value(&self, value: &ast::Value) -> Result<Bound, GatewayError> {
        let text = |text: &str| Bound {
            expr: Expr::Literal(Value::Text(text.to_owned())),
            bound_type: BoundType::UnknownText,
        };
        match value {
            ast::Value::SingleQuotedString(string)
            | ast::Value::EscapedStringLiteral(string)
            | ast::Value::UnicodeStringLiteral(string)
            | ast::Value::NationalStringLiteral(string) => Ok(text(string)),
            ast::Value::DollarQuotedString(dollar) => Ok(text(&dollar.value)),
            ast::Value::Number(number, _) => Ok(number_literal(number)),
            ast::Value::Boolean(boolean) => Ok(Bound {
                expr: Expr::Literal(Value::Bool(*boolean)),
                bound_type: BoundType::Known(SqlType::Bool),
            }),
            ast::Value::Null => Ok(null()),
            ast::Value::Placeholder(placeholder) => self.bind_placeholder(placeholder),
            other => Err(GatewayError::unsupported(format!("literal {other}"))),
        }
    }

    fn bind_placeholder(&self, placeholder: &str) -> Result<Bound, GatewayError> {
        let missing = || GatewayError::Syntax {
            message: format!("there is no parameter {placeholder}"),
        };
        let index: usize = placeholder
            .strip_prefix('$')
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(missing)?;
        let value = index
            .checked_sub(1)
            .and_then(|index| self.params.get(index))
            .ok_or_else(missing)?;
        Ok(match value {
            Value::Null => null(),
            Value::Text(text) => Bound {
                expr: Expr::Literal(Value::Text(text.clone())),
                bound_type: BoundType::UnknownText,
            },
            typed => Bound {
                expr: Expr::Literal(typed.clone()),
                bound_type: typed
                    .natural_type()
                    .map_or(BoundType::Null, BoundType::Known),
            },
        })
    }

    fn bind_unary(&self, op: UnaryOperator, inner: &ast::Expr) -> Result<Bound, GatewayError> {
        match op {
            UnaryOperator::Not => {
                let operand = require_boolean(self.bind(inner)?, "NOT")?;
                Ok(boolean(Expr::Not(Box::new(operand))))
            }
            UnaryOperator::Minus | UnaryOperator::Plus => {
                let operand = self.bind(inner)?;
                let negate = op == UnaryOperator::Minus;
                match operand.expr {
                    Expr::Literal(Value::Int(number)) if negate => {
                        Ok(number_literal(&format!("-{number}")))
                    }
                    Expr::Literal(Value::Numeric(text)) if negate => {
                        Ok(number_literal(&format!("-{text}")))
                    }
                    Expr::Literal(Value::Float(number)) if negate => Ok(Bound {
                        expr: Expr::Literal(Value::Float(-number)),
                        bound_type: operand.bound_type,
                    }),
                    expr @ Expr::Literal(Value::Int(_) | Value::Numeric(_) | Value::Float(_)) => {
                        Ok(Bound {
                            expr,
                            bound_type: operand.bound_type,
                        })
                    }
                    _ => Err(GatewayError::unsupported(format!(
                        "unary {op} on a non-literal"
                    ))),
                }
            }
            other => Err(GatewayError::unsupported(format!("operator {other}"))),
        }
    }

    fn bind_binary(
        &self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
    ) -> Result<Bound, GatewayError> {
        let compare_op = match op {
            BinaryOperator::And => {
                let left = require_boolean(self.bind(left)?, "AND")?;
                let right = require_boolean(self.bind(right)?, "AND")?;
                return Ok(boolean(Expr::And(Box::new(left), Box::new(right))));
            }
            BinaryOperator::Or => {
                let left = require_boolean(self.bind(left)?, "OR")?;
                let right = require_boolean(self.bind(right)?, "OR")?;
                return Ok(boolean(Expr::Or(Box::new(left), Box::new(right))));
            }
            BinaryOperator::Eq => CompareOp::Eq,
            BinaryOperator::NotEq => CompareOp::NotEq,
            BinaryOperator::Lt => CompareOp::Lt,
            BinaryOperator::LtEq => CompareOp::LtEq,
            BinaryOperator::Gt => CompareOp::Gt,
            BinaryOperator::GtEq => CompareOp::GtEq,
            other => return Err(GatewayError::unsupported(format!("operator {other}"))),
        };
        let (left, right) = unify(self.bind(left)?, self.bind(right)?, compare_op)?;
        Ok(boolean(Expr::Compare(
            compare_op,
            Box::new(left),
            Box::new(right),
        )))
    }

    fn bind_cast(&self, inner: &ast::Expr, data_type: &DataType) -> Result<Bound, GatewayError> {
        let target = cast_target(data_type)?;
        let bound = self.bind(inner)?;
        let expr = coerce(bound, target, CoercionContext::Explicit)?;
        Ok(Bound {
            expr,
            bound_type: BoundType::Known(target),
        })
    }

    fn bind_function(&self, function: &ast::Function) -> Result<Bound, GatewayError> {
        let name = function_name(function);
        let has_arguments = match &function.args {
            FunctionArguments::None => false,
            FunctionArguments::List(list) => !list.args.is_empty(),
            FunctionArguments::Subquery(_) => true,
        };
        let constant = |value: &str| Bound {
            expr: Expr::Literal(Value::Text(value.to_owned())),
            bound_type: BoundType::Known(SqlType::Text),
        };
        match (name.as_str(), has_arguments) {
            ("version", false) => Ok(constant(SERVER_VERSION_STRING)),
            ("current_database", false) => Ok(constant("arbor")),
            ("current_schema", false) => Ok(constant("public")),
            ("current_user" | "session_user" | "user", false) => Ok(constant("arbor")),
            ("count", _) => Err(GatewayError::unsupported("count() outside the select list")),
            _ => Err(GatewayError::UndefinedFunction {
                name: format!("{name}()"),
            }),
        }
    }
}

pub(crate) fn function_name(function: &ast::Function) -> String {
    function
        .name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .map(normalize_ident)
        .unwrap_or_default()
}

/// If `function` is `count(*)` or `count(expr)`, the counted expression
/// (`None` for `*`).
pub(crate) fn count_argument(
    function: &ast::Function,
) -> Option<Result<Option<&ast::Expr>, GatewayError>> {
    if function_name(function) != "count" {
        return None;
    }
    if function.over.is_some() || function.filter.is_some() {
        return Some(Err(GatewayError::unsupported("window or filtered count()")));
    }
    let FunctionArguments::List(list) = &function.args else {
        return Some(Err(GatewayError::unsupported("count without arguments")));
    };
    if list.duplicate_treatment.is_some() {
        return Some(Err(GatewayError::unsupported("count(DISTINCT ...)")));
    }
    Some(match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => Ok(None),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))] => Ok(Some(expr)),
        _ => Err(GatewayError::unsupported("this form of count()")),
    })
}

fn boolean(expr: Expr) -> Bound {
    Bound {
        expr,
        bound_type: BoundType::Known(SqlType::Bool),
    }
}

fn null() -> Bound {
    Bound {
        expr: Expr::Literal(Value::Null),
        bound_type: BoundType::Null,
    }
}

/// An integer literal is INTEGER or BIGINT by size; others are NUMERIC.
fn number_literal(number: &str) -> Bound {
    match number.parse::<i64>() {
        Ok(value) => Bound {
            expr: Expr::Literal(Value::Int(value)),
            bound_type: BoundType::Known(if i32::try_from(value).is_ok() {
                SqlType::Int4
            } else {
                SqlType::Int8
            }),
        },
        Err(_) => match SqlType::Numeric.parse_text(number) {
            Ok(value) => Bound {
                expr: Expr::Literal(value),
                bound_type: BoundType::Known(SqlType::Numeric),
            },
            Err(_) => Bound {
                expr: Expr::Literal(Value::Text(number.to_owned())),
                bound_type: BoundType::UnknownText,
            },
        },
    }
}

/// Types whose values share one runtime kind and compare with each other.
fn same_family(left: SqlType, right: SqlType) -> bool {
    left == right
        || (left.is_integer() || left.is_float()) && (right.is_integer() || right.is_float())
        || left.is_text() && right.is_text()
}

fn is_number(sql_type: SqlType) -> bool {
    sql_type.is_integer() || sql_type.is_float() || sql_type == SqlType::Numeric
}

fn require_boolean(bound: Bound, clause: &str) -> Result<Expr, GatewayError> {
    match bound.bound_type {
        BoundType::Known(SqlType::Bool) | BoundType::Null => Ok(bound.expr),
        BoundType::UnknownText => coerce(bound, SqlType::Bool, CoercionContext::Implicit),
        other => Err(GatewayError::DatatypeMismatch {
            message: format!(
                "argument of {clause} must be type boolean, not type {}",
                other.sql_name()
            ),
        }),
    }
}

/// Gives both sides of a comparison one type, as Postgres resolves
/// `column = 'literal'` by reading the literal as the column's type.
fn unify(left: Bound, right: Bound, op: CompareOp) -> Result<(Expr, Expr), GatewayError> {
    use BoundType::{Known, Null, UnknownText};
    let mismatch = |left: BoundType, right: BoundType| GatewayError::UndefinedOperator {
        left_type: left.sql_name().to_owned(),
        operator: op.symbol().to_owned(),
        right_type: right.sql_name().to_owned(),
    };
    match (left.bound_type, right.bound_type) {
        (Null, _) | (_, Null) => Ok((left.expr, right.expr)),
        (Known(a), Known(b)) if same_family(a, b) => Ok((left.expr, right.expr)),
        // A number literal meets a number of another kind (`numeric_col =
        // 1`, `int_col < 2.5`): read the literal as the other side's type.
        (Known(a), Known(b)) if is_number(a) && is_number(b) => {
            if matches!(right.expr, Expr::Literal(_)) && b != SqlType::Numeric
                || a == SqlType::Numeric
            {
                Ok((
                    left.expr,
                    coerce(right, a, CoercionContext::Implicit)
                        .or_else(|_| Err(mismatch(Known(a), Known(b))))?,
                ))
            } else if matches!(left.expr, Expr::Literal(_)) {
                Ok((coerce(left, b, CoercionContext::Implicit)?, right.expr))
            } else {
                Err(mismatch(Known(a), Known(b)))
            }
        }
        (Known(target), UnknownText) => {
            Ok((left.expr, coerce(right, target, CoercionContext::Implicit)?))
        }
        (UnknownText, Known(target)) => {
            Ok((coerce(left, target, CoercionContext::Implicit)?, right.expr))
        }
        (UnknownText, UnknownText) => Ok((left.expr, right.expr)),
        (a, b) => Err(mismatch(a, b)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoercionContext {
    /// A literal read as the type context wants (`k = '1'`).
    Implicit,
    /// Storing into a column: Postgres' assignment casts (any -> text).
    Assignment,
    /// `CAST(x AS t)` / `x::t`.
    Explicit,
}

/// Converts a bound expression to `target`, at bind time when it is a
/// literal. Column expressions only pass through when already of the type.
pub(crate) fn coerce(
    bound: Bound,
    target: SqlType,
    context: CoercionContext,
) -> Result<Expr, GatewayError> {
    let source = bound.bound_type;
    let passes = match source {
        BoundType::Null => true,
        BoundType::Known(source) => {
            same_family(source, target)
                // Storing converts numbers and anything into text columns
                // when the row is stored (`storable_row`).
                || context == CoercionContext::Assignment
                    && (is_number(source) && is_number(target) || target.is_text())
        }
        BoundType::UnknownText => false,
    };
    if passes && !matches!(bound.expr, Expr::Literal(_)) {
        return Ok(bound.expr);
    }
    let Expr::Literal(value) = &bound.expr else {
        return Err(GatewayError::DatatypeMismatch {
            message: format!(
                "column is of type {} but expression is of type {}",
                target.sql_name(),
                source.sql_name()
            ),
        });
    };
    let converts = match source {
        BoundType::Null | BoundType::UnknownText => true,
        BoundType::Known(source) => {
            passes
                || context == CoercionContext::Explicit
                || context == CoercionContext::Implicit && is_number(source) && is_number(target)
        }
    };
    if !converts {
        return Err(GatewayError::DatatypeMismatch {
            message: format!(
                "column is of type {} but expression is of type {}",
                target.sql_name(),
                source.sql_name()
            ),
        });
    }
    literal_as(value, target).map(Expr::Literal)
}

/// A literal value read as `target` (text input rules of Postgres).
fn literal_as(value: &Value, target: SqlType) -> Result<Value, GatewayError> {
    match target.convert(value) {
        Some(converted) => Ok(converted?),
        None => Err(GatewayError::DatatypeMismatch {
            message: format!(
                "cannot cast type {} to {}",
                value
                    .natural_type()
                    .map_or("unknown", |value_type| value_type.sql_name()),
                target.sql_name()
            ),
        }),
    }
}

/// The column type a SQL type name means, with its VARCHAR(n) length.
pub(crate) fn column_type(data_type: &DataType) -> Result<(SqlType, Option<u32>), GatewayError> {
    use sqlparser::ast::CharacterLength;
    let length = |length: &Option<CharacterLength>| match length {
        Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length).ok(),
        _ => None,
    };
    Ok(match data_type {
        DataType::Text | DataType::String(_) => (SqlType::Text, None),
        DataType::Varchar(max) | DataType::CharacterVarying(max) => (SqlType::Varchar, length(max)),
        DataType::SmallInt(_) | DataType::Int2(_) => (SqlType::Int2, None),
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => (SqlType::Int4, None),
        DataType::BigInt(_) | DataType::Int8(_) => (SqlType::Int8, None),
        DataType::Boolean | DataType::Bool => (SqlType::Bool, None),
        DataType::Real | DataType::Float4 => (SqlType::Float4, None),
        DataType::DoublePrecision | DataType::Float8 | DataType::Double(_) => {
            (SqlType::Float8, None)
        }
        DataType::Float(_) => (SqlType::Float8, None),
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => (SqlType::Numeric, None),
        DataType::Bytea => (SqlType::Bytea, None),
        DataType::Timestamp(_, tz) => match tz {
            sqlparser::ast::TimezoneInfo::WithTimeZone | sqlparser::ast::TimezoneInfo::Tz => {
                (SqlType::Timestamptz, None)
            }
            _ => (SqlType::Timestamp, None),
        },
        DataType::Date => (SqlType::Date, None),
        DataType::Uuid => (SqlType::Uuid, None),
        DataType::JSONB | DataType::JSON => (SqlType::Jsonb, None),
        DataType::Custom(name, _) => {
            let name = name.to_string().to_lowercase();
            match name.as_str() {
                "timestamptz" => (SqlType::Timestamptz, None),
                "int2" => (SqlType::Int2, None),
                "float4" => (SqlType::Float4, None),
                "float8" => (SqlType::Float8, None),
                "regclass" | "name" | "oid" => (SqlType::Text, None),
                _ => return Err(GatewayError::unsupported(format!("type {name}"))),
            }
        }
        other => return Err(GatewayError::unsupported(format!("type {other}"))),
    })
}

fn cast_target(data_type: &DataType) -> Result<SqlType, GatewayError> {
    column_type(data_type).map(|(sql_type, _)| sql_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn parse_expr(sql: &str) -> ast::Expr {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_expr())
            .expect("test expression parses")
    }

    fn kv_scope(params: &[Value]) -> Scope<'_> {
        Scope::single(
            "kv",
            vec![
                Column::new("k", SqlType::Text),
                Column::new("v", SqlType::Text),
            ],
            params,
        )
    }

    #[test]
    fn literals_take_the_type_of_the_column_they_meet() {
        let scope = kv_scope(&[]);
        let bound = scope.bind(&parse_expr("k = 'a'")).expect("binds");
        assert_eq!(bound.bound_type, BoundType::Known(SqlType::Bool));
        let error = scope
            .bind(&parse_expr("k = 1"))
            .expect_err("text = integer");
        assert_eq!(error.sqlstate(), "42883");
        let error = scope
            .bind(&parse_expr("nope = 'a'"))
            .expect_err("no column");
        assert_eq!(error.sqlstate(), "42703");
        let error = scope
            .bind_predicate(&parse_expr("k"), "WHERE")
            .expect_err("text");
        assert_eq!(error.sqlstate(), "42804");
    }

    #[test]
    fn placeholders_become_text_literals() {
        let params = [Value::Text("a".to_owned()), Value::Null];
        let scope = kv_scope(&params);
        let bound = scope.bind(&parse_expr("k = $1")).expect("binds");
        assert!(bound
            .expr
            .matches(&vec![Value::Text("a".into()), Value::Null]));
        let bound = scope.bind(&parse_expr("v = $2")).expect("binds");
        assert_eq!(
            bound.expr.eval(&vec![Value::Null, Value::Null]),
            Value::Null
        );
        let error = scope.bind(&parse_expr("k = $3")).expect_err("no $3");
        assert_eq!(error.sqlstate(), "42601");
    }

    #[test]
    fn casts_and_negative_numbers_bind_to_literals() {
        let scope = Scope::constant(&[]);
        let bound = scope.bind(&parse_expr("'12'::bigint")).expect("binds");
        assert_eq!(bound.expr, Expr::Literal(Value::Int(12)));
        let bound = scope.bind(&parse_expr("-5")).expect("binds");
        assert_eq!(bound.expr, Expr::Literal(Value::Int(-5)));
        let error = scope
            .bind(&parse_expr("'x'::int"))
            .expect_err("not a number");
        assert_eq!(error.sqlstate(), "22P02");
        let error = scope
            .bind(&parse_expr("nosuch()"))
            .expect_err("no function");
        assert_eq!(error.sqlstate(), "42883");
    }
}
