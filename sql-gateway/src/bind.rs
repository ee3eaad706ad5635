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
    pub(crate) params: &'a [Option<String>],
}

/// The static type of a bound expression. Quoted literals and parameters
/// stay `UnknownText` until context gives them a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoundType {
    Known(SqlType),
    UnknownText,
    /// A non-integer number literal, kept as its text (only assignable).
    Numeric,
    Null,
}

impl BoundType {
    fn sql_name(self) -> &'static str {
        match self {
            BoundType::Known(sql_type) => sql_type.sql_name(),
            BoundType::UnknownText => "unknown",
            BoundType::Numeric => "numeric",
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
    pub(crate) fn constant(params: &'a [Option<String>]) -> Self {
        Scope {
            relations: Vec::new(),
            params,
        }
    }

    pub(crate) fn single(name: &str, columns: Vec<Column>, params: &'a [Option<String>]) -> Self {
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
            Some(text) => Bound {
                expr: Expr::Literal(Value::Text(text.clone())),
                bound_type: BoundType::UnknownText,
            },
            None => null(),
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
                match (op, operand.expr) {
                    (UnaryOperator::Plus, expr @ Expr::Literal(Value::Int(_))) => Ok(Bound {
                        expr,
                        bound_type: operand.bound_type,
                    }),
                    (UnaryOperator::Minus, Expr::Literal(Value::Int(number))) => {
                        Ok(number_literal(&format!("-{number}")))
                    }
                    (_, Expr::Literal(Value::Text(text)))
                        if operand.bound_type == BoundType::Numeric =>
                    {
                        let sign = if op == UnaryOperator::Minus { "-" } else { "" };
                        Ok(number_literal(&format!("{sign}{text}")))
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
        Err(_) => Bound {
            expr: Expr::Literal(Value::Text(number.to_owned())),
            bound_type: BoundType::Numeric,
        },
    }
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
        (Known(a), Known(b)) if a == b || (a.is_integer() && b.is_integer()) => {
            Ok((left.expr, right.expr))
        }
        (Known(target), UnknownText) => {
            Ok((left.expr, coerce(right, target, CoercionContext::Implicit)?))
        }
        (UnknownText, Known(target)) => {
            Ok((coerce(left, target, CoercionContext::Implicit)?, right.expr))
        }
        (UnknownText, UnknownText) => Ok((left.expr, right.expr)),
        // Numeric literals (`1.5`) and mixed known types have no operator.
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
    if source == BoundType::Known(target)
        || matches!(source, BoundType::Known(t) if t.is_integer() && target.is_integer())
        || source == BoundType::Null
    {
        return Ok(bound.expr);
    }
    let Expr::Literal(value) = &bound.expr else {
        return Err(GatewayError::DatatypeMismatch {
            message: format!(
                "cannot use an expression of type {} as type {}",
                source.sql_name(),
                target.sql_name()
            ),
        });
    };
    let converts = match (source, target) {
        (BoundType::UnknownText, _) => true,
        (_, SqlType::Text) => context != CoercionContext::Implicit,
        (BoundType::Numeric, SqlType::Int4 | SqlType::Int8) => context == CoercionContext::Explicit,
        _ => false,
    };
    if !converts {
        return Err(GatewayError::DatatypeMismatch {
            message: format!(
                "cannot cast type {} to {}",
                source.sql_name(),
                target.sql_name()
            ),
        });
    }
    literal_as(value, target).map(Expr::Literal)
}

/// A literal value read as `target` (text input rules of Postgres).
fn literal_as(value: &Value, target: SqlType) -> Result<Value, GatewayError> {
    let text = value.display_text();
    let invalid = || GatewayError::InvalidTextRepresentation {
        type_name: target.sql_name().to_owned(),
        value: text.clone(),
    };
    match (value, target) {
        (Value::Null, _) => Ok(Value::Null),
        (Value::Bool(boolean), SqlType::Text) => Ok(Value::Text(boolean.to_string())),
        (_, SqlType::Text) => Ok(Value::Text(text.clone())),
        (_, SqlType::Int4 | SqlType::Int8) => {
            let number: i64 = text.trim().parse().map_err(|_| invalid())?;
            if target == SqlType::Int4 && i32::try_from(number).is_err() {
                return Err(invalid());
            }
            Ok(Value::Int(number))
        }
        (_, SqlType::Bool) => match text.trim().to_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => Ok(Value::Bool(true)),
            "f" | "false" | "no" | "n" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(invalid()),
        },
    }
}

fn cast_target(data_type: &DataType) -> Result<SqlType, GatewayError> {
    match data_type {
        DataType::Text
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::String(_) => Ok(SqlType::Text),
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => Ok(SqlType::Int4),
        DataType::BigInt(_) | DataType::Int8(_) => Ok(SqlType::Int8),
        DataType::Boolean | DataType::Bool => Ok(SqlType::Bool),
        other => Err(GatewayError::unsupported(format!("type {other}"))),
    }
}

/// Converts an evaluated value into what a TEXT column stores (Postgres'
/// assignment cast: numbers and booleans become their text form).
pub(crate) fn value_as_text(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Text(text) => Some(text),
        Value::Int(number) => Some(number.to_string()),
        Value::Bool(boolean) => Some(boolean.to_string()),
    }
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

    fn kv_scope(params: &[Option<String>]) -> Scope<'_> {
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
        let params = [Some("a".to_owned()), None];
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
