//! Expression evaluation for catalog queries: a direct interpreter over
//! sqlparser's AST, dynamically typed, with Postgres' coercions of untyped
//! literals (`c.oid = '16384'`, `relkind IN ('r','p')`).
//!
//! Invariant: evaluation never panics on user input; every shape it does
//! not know is 0A000 and every unknown function 42883, raised only when the
//! expression is actually reached (so subqueries over empty relations
//! that name functions Arbor lacks still answer, as they do in Postgres).

use std::cmp::Ordering;

use sqlparser::ast::{self, BinaryOperator, CastKind, Expr, UnaryOperator};

use super::functions;
use super::query::{run_query, Context};
use super::scope::Scope;
use crate::bind::normalize_ident;
use crate::error::GatewayError;
use crate::value::{SqlType, Value};

pub(crate) fn eval(
    ctx: &Context<'_>,
    expr: &Expr,
    scope: &Scope<'_>,
) -> Result<Value, GatewayError> {
    match expr {
        Expr::Identifier(ident) => identifier(ctx, scope, ident),
        Expr::CompoundIdentifier(parts) => {
            let (qualifier, name) = qualified(parts)?;
            Ok(scope.column(Some(&qualifier), &name)?.0)
        }
        Expr::Value(value) => literal(ctx, &value.value),
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => eval(ctx, inner, scope),
        Expr::IsNull(inner) => Ok(Value::Bool(eval(ctx, inner, scope)?.is_null())),
        Expr::IsNotNull(inner) => Ok(Value::Bool(!eval(ctx, inner, scope)?.is_null())),
        Expr::IsTrue(inner) => Ok(Value::Bool(truth(&eval(ctx, inner, scope)?) == Some(true))),
        Expr::IsFalse(inner) => Ok(Value::Bool(truth(&eval(ctx, inner, scope)?) == Some(false))),
        Expr::IsNotTrue(inner) => Ok(Value::Bool(truth(&eval(ctx, inner, scope)?) != Some(true))),
        Expr::IsNotFalse(inner) => Ok(Value::Bool(truth(&eval(ctx, inner, scope)?) != Some(false))),
        Expr::UnaryOp { op, expr } => unary(*op, eval(ctx, expr, scope)?),
        Expr::BinaryOp { left, op, right } => binary(ctx, left, op, right, scope),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let value = eval(ctx, expr, scope)?;
            let candidates = list
                .iter()
                .map(|item| eval(ctx, item, scope))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(negate(membership(&value, &candidates), *negated))
        }
        Expr::InSubquery {
            expr,
            subquery,
            negated,
        } => {
            let value = eval(ctx, expr, scope)?;
            let table = run_query(ctx, subquery, Some(scope))?;
            let candidates: Vec<Value> = table
                .rows
                .into_iter()
                .filter_map(|row| row.into_iter().next())
                .collect();
            Ok(negate(membership(&value, &candidates), *negated))
        }
        Expr::Exists { subquery, negated } => {
            let found = !run_query(ctx, subquery, Some(scope))?.rows.is_empty();
            Ok(Value::Bool(found != *negated))
        }
        Expr::Subquery(query) => {
            let table = run_query(ctx, query, Some(scope))?;
            if table.rows.len() > 1 {
                return Err(GatewayError::CardinalityViolation {
                    value: "more than one row returned by a subquery used as an expression"
                        .to_owned(),
                });
            }
            Ok(table
                .rows
                .into_iter()
                .next()
                .and_then(|row| row.into_iter().next())
                .unwrap_or(Value::Null))
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let value = eval(ctx, expr, scope)?;
            let low = compare(&value, &eval(ctx, low, scope)?).map(|o| o != Ordering::Less);
            let high = compare(&value, &eval(ctx, high, scope)?).map(|o| o != Ordering::Greater);
            let inside = match (low, high) {
                (Some(low), Some(high)) => Value::Bool(low && high),
                _ => Value::Null,
            };
            Ok(negate(inside, *negated))
        }
        Expr::Like {
            negated,
            expr,
            pattern,
            escape_char,
            ..
        } => like(
            ctx,
            expr,
            pattern,
            escape_char.is_some(),
            *negated,
            false,
            scope,
        ),
        Expr::ILike {
            negated,
            expr,
            pattern,
            escape_char,
            ..
        } => like(
            ctx,
            expr,
            pattern,
            escape_char.is_some(),
            *negated,
            true,
            scope,
        ),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let operand = operand
                .as_ref()
                .map(|operand| eval(ctx, operand, scope))
                .transpose()?;
            for when in conditions {
                let condition = eval(ctx, &when.condition, scope)?;
                let hit = match &operand {
                    Some(operand) => compare(operand, &condition) == Some(Ordering::Equal),
                    None => truth(&condition) == Some(true),
                };
                if hit {
                    return eval(ctx, &when.result, scope);
                }
            }
            else_result
                .as_ref()
                .map_or(Ok(Value::Null), |result| eval(ctx, result, scope))
        }
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            ..
        } => {
            let value = eval(ctx, expr, scope)?;
            functions::cast(ctx, value, &type_name(data_type))
        }
        Expr::TypedString(typed) => functions::cast(
            ctx,
            literal(ctx, &typed.value.value)?,
            &type_name(&typed.data_type),
        ),
        Expr::Function(function) => functions::call(ctx, function, scope),
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        } => {
            let value = eval(ctx, left, scope)?;
            let elements = list_elements(ctx, right, scope)?;
            quantified(&value, compare_op, &elements, false)
        }
        Expr::AllOp {
            left,
            compare_op,
            right,
        } => {
            let value = eval(ctx, left, scope)?;
            let elements = list_elements(ctx, right, scope)?;
            quantified(&value, compare_op, &elements, true)
        }
        Expr::Array(array) => {
            let elements = array
                .elem
                .iter()
                .map(|element| eval(ctx, element, scope))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Text(format_array(&elements)))
        }
        other => Err(GatewayError::unsupported(format!(
            "expression {other} in a catalog query"
        ))),
    }
}

/// An unqualified name: a column, or one of the SQL "functions without
/// parentheses" (`current_user`, `current_schema` ...).
fn identifier(
    ctx: &Context<'_>,
    scope: &Scope<'_>,
    ident: &ast::Ident,
) -> Result<Value, GatewayError> {
    let name = normalize_ident(ident);
    match scope.column(None, &name) {
        Ok((value, _)) => Ok(value),
        Err(error) => functions::keyword_value(ctx, &name)
            .map(Value::Text)
            .ok_or(error),
    }
}

/// `[schema.]relation.column` as (relation, column).
pub(crate) fn qualified(parts: &[ast::Ident]) -> Result<(String, String), GatewayError> {
    match parts {
        [.., qualifier, name] => Ok((normalize_ident(qualifier), normalize_ident(name))),
        _ => Err(GatewayError::UndefinedColumn {
            name: parts
                .iter()
                .map(|part| part.value.clone())
                .collect::<Vec<_>>()
                .join("."),
        }),
    }
}

/// A type name as written, lower case, without a `pg_catalog.` prefix.
pub(crate) fn type_name(data_type: &ast::DataType) -> String {
    let text = data_type.to_string().to_lowercase();
    text.strip_prefix("pg_catalog.")
        .unwrap_or(&text)
        .trim_matches('"')
        .to_owned()
}

fn literal(ctx: &Context<'_>, value: &ast::Value) -> Result<Value, GatewayError> {
    match value {
        ast::Value::SingleQuotedString(text)
        | ast::Value::EscapedStringLiteral(text)
        | ast::Value::UnicodeStringLiteral(text)
        | ast::Value::NationalStringLiteral(text) => Ok(Value::Text(text.clone())),
        ast::Value::DollarQuotedString(dollar) => Ok(Value::Text(dollar.value.clone())),
        ast::Value::Number(number, _) => Ok(number_value(number)),
        ast::Value::Boolean(value) => Ok(Value::Bool(*value)),
        ast::Value::Null => Ok(Value::Null),
        ast::Value::Placeholder(placeholder) => {
            let index: Option<usize> = placeholder
                .strip_prefix('$')
                .and_then(|digits| digits.parse().ok());
            index
                .and_then(|index| index.checked_sub(1))
                .and_then(|index| ctx.params.get(index))
                .cloned()
                .ok_or_else(|| GatewayError::Syntax {
                    message: format!("there is no parameter {placeholder}"),
                })
        }
        other => Err(GatewayError::unsupported(format!("literal {other}"))),
    }
}

fn number_value(number: &str) -> Value {
    match number.parse::<i64>() {
        Ok(value) => Value::Int(value),
        Err(_) => number
            .parse::<f64>()
            .map_or_else(|_| Value::Text(number.to_owned()), Value::Float),
    }
}

/// SQL truth of a value: booleans, and the text forms Postgres accepts.
pub(crate) fn truth(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(value) => Some(*value),
        Value::Text(text) => match text.to_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Some(true),
            "f" | "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn negate(value: Value, negated: bool) -> Value {
    match value {
        Value::Bool(value) => Value::Bool(value != negated),
        other => other,
    }
}

/// Compares two values, converting an untyped text to the other side's
/// kind first (Postgres resolves `oid = '16384'` as `oid = 16384::oid`).
pub(crate) fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    if left.is_null() || right.is_null() {
        return None;
    }
    if let Some(ordering) = left.compare(right) {
        return Some(ordering);
    }
    match (left, right) {
        (Value::Text(text), other) => coerce_text(text, other).and_then(|left| left.compare(other)),
        (other, Value::Text(text)) => {
            coerce_text(text, other).and_then(|right| other.compare(&right))
        }
        _ => Some(left.to_text().cmp(&right.to_text())),
    }
}

fn coerce_text(text: &str, like: &Value) -> Option<Value> {
    match like {
        Value::Int(_) => text.trim().parse().ok().map(Value::Int),
        Value::Float(_) => text.trim().parse().ok().map(Value::Float),
        Value::Bool(_) => truth(&Value::Text(text.to_owned())).map(Value::Bool),
        other => other
            .natural_type()
            .and_then(|sql_type| sql_type.parse_text(text).ok()),
    }
}

fn membership(value: &Value, candidates: &[Value]) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    let mut saw_null = false;
    for candidate in candidates {
        match compare(value, candidate) {
            Some(Ordering::Equal) => return Value::Bool(true),
            None => saw_null = true,
            Some(_) => {}
        }
    }
    if saw_null {
        Value::Null
    } else {
        Value::Bool(false)
    }
}

fn unary(op: UnaryOperator, value: Value) -> Result<Value, GatewayError> {
    match (op, value) {
        (_, Value::Null) => Ok(Value::Null),
        (UnaryOperator::Not, value) => {
            Ok(truth(&value).map_or(Value::Null, |value| Value::Bool(!value)))
        }
        (UnaryOperator::Minus, Value::Int(number)) => Ok(Value::Int(number.saturating_neg())),
        (UnaryOperator::Minus, Value::Float(number)) => Ok(Value::Float(-number)),
        (UnaryOperator::Plus, value @ (Value::Int(_) | Value::Float(_))) => Ok(value),
        (op, value) => Err(GatewayError::UndefinedOperator {
            left_type: String::new(),
            operator: op.to_string(),
            right_type: type_label(&value),
        }),
    }
}

fn type_label(value: &Value) -> String {
    value
        .natural_type()
        .map_or("unknown", |sql_type| sql_type.sql_name())
        .to_owned()
}

fn binary(
    ctx: &Context<'_>,
    left: &Expr,
    op: &BinaryOperator,
    right: &Expr,
    scope: &Scope<'_>,
) -> Result<Value, GatewayError> {
    // AND/OR short-circuit like Postgres' planner may: a FALSE left side
    // decides AND without evaluating the right.
    match op {
        BinaryOperator::And => {
            let left = truth(&eval(ctx, left, scope)?);
            if left == Some(false) {
                return Ok(Value::Bool(false));
            }
            let right = truth(&eval(ctx, right, scope)?);
            return Ok(match (left, right) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            });
        }
        BinaryOperator::Or => {
            let left = truth(&eval(ctx, left, scope)?);
            if left == Some(true) {
                return Ok(Value::Bool(true));
            }
            let right = truth(&eval(ctx, right, scope)?);
            return Ok(match (left, right) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            });
        }
        _ => {}
    }
    let left = eval(ctx, left, scope)?;
    let right = eval(ctx, right, scope)?;
    apply_binary(op, &left, &right)
}

pub(crate) fn apply_binary(
    op: &BinaryOperator,
    left: &Value,
    right: &Value,
) -> Result<Value, GatewayError> {
    let ordered = |holds: fn(Ordering) -> bool| {
        Ok(compare(left, right).map_or(Value::Null, |o| Value::Bool(holds(o))))
    };
    match op {
        BinaryOperator::Eq => ordered(|o| o == Ordering::Equal),
        BinaryOperator::NotEq => ordered(|o| o != Ordering::Equal),
        BinaryOperator::Lt => ordered(|o| o == Ordering::Less),
        BinaryOperator::LtEq => ordered(|o| o != Ordering::Greater),
        BinaryOperator::Gt => ordered(|o| o == Ordering::Greater),
        BinaryOperator::GtEq => ordered(|o| o != Ordering::Less),
        BinaryOperator::StringConcat => Ok(if left.is_null() || right.is_null() {
            Value::Null
        } else {
            Value::Text(format!("{}{}", left.to_text(), right.to_text()))
        }),
        BinaryOperator::PGRegexMatch => regex_match(left, right, false, false),
        BinaryOperator::PGRegexIMatch => regex_match(left, right, true, false),
        BinaryOperator::PGRegexNotMatch => regex_match(left, right, false, true),
        BinaryOperator::PGRegexNotIMatch => regex_match(left, right, true, true),
        BinaryOperator::PGCustomBinaryOperator(parts) => {
            let operator = parts.last().map(String::as_str).unwrap_or_default();
            match operator {
                "~" => regex_match(left, right, false, false),
                "~*" => regex_match(left, right, true, false),
                "!~" => regex_match(left, right, false, true),
                "!~*" => regex_match(left, right, true, true),
                "=" => apply_binary(&BinaryOperator::Eq, left, right),
                "<>" => apply_binary(&BinaryOperator::NotEq, left, right),
                other => Err(undefined_operator(other, left, right)),
            }
        }
        BinaryOperator::Plus
        | BinaryOperator::Minus
        | BinaryOperator::Multiply
        | BinaryOperator::Divide
        | BinaryOperator::Modulo => arithmetic(op, left, right),
        other => Err(GatewayError::unsupported(format!(
            "operator {other} in a catalog query"
        ))),
    }
}

fn undefined_operator(operator: &str, left: &Value, right: &Value) -> GatewayError {
    GatewayError::UndefinedOperator {
        left_type: type_label(left),
        operator: operator.to_owned(),
        right_type: type_label(right),
    }
}

fn arithmetic(op: &BinaryOperator, left: &Value, right: &Value) -> Result<Value, GatewayError> {
    let as_int = |value: &Value| match value {
        Value::Int(number) => Some(*number),
        Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    };
    if left.is_null() || right.is_null() {
        return Ok(Value::Null);
    }
    let (Some(a), Some(b)) = (as_int(left), as_int(right)) else {
        return Err(undefined_operator(&op.to_string(), left, right));
    };
    let result = match op {
        BinaryOperator::Plus => a.checked_add(b),
        BinaryOperator::Minus => a.checked_sub(b),
        BinaryOperator::Multiply => a.checked_mul(b),
        BinaryOperator::Divide | BinaryOperator::Modulo if b == 0 => {
            return Err(GatewayError::DivisionByZero)
        }
        BinaryOperator::Divide => a.checked_div(b),
        _ => a.checked_rem(b),
    };
    result
        .map(Value::Int)
        .ok_or(GatewayError::NumericOutOfRange {
            type_name: "bigint".to_owned(),
        })
}

/// Longest regular expression a catalog query may use (patterns come from
/// users typing `\d name`).
const REGEX_BYTES_MAX: usize = 4_096;

fn regex_match(
    value: &Value,
    pattern: &Value,
    insensitive: bool,
    negated: bool,
) -> Result<Value, GatewayError> {
    if value.is_null() || pattern.is_null() {
        return Ok(Value::Null);
    }
    let pattern = pattern.to_text();
    if pattern.len() > REGEX_BYTES_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a regular expression of {} bytes", pattern.len()),
            limit: REGEX_BYTES_MAX,
        });
    }
    let regex = regex_lite::RegexBuilder::new(&pattern)
        .case_insensitive(insensitive)
        .build()
        .map_err(|error| GatewayError::InvalidRegularExpression {
            reason: error.to_string(),
        })?;
    Ok(Value::Bool(regex.is_match(&value.to_text()) != negated))
}

#[allow(clippy::too_many_arguments)]
fn like(
    ctx: &Context<'_>,
    expr: &Expr,
    pattern: &Expr,
    has_escape: bool,
    negated: bool,
    insensitive: bool,
    scope: &Scope<'_>,
) -> Result<Value, GatewayError> {
    if has_escape {
        return Err(GatewayError::unsupported("LIKE ... ESCAPE"));
    }
    let value = eval(ctx, expr, scope)?;
    let pattern = eval(ctx, pattern, scope)?;
    if value.is_null() || pattern.is_null() {
        return Ok(Value::Null);
    }
    let (mut value, mut pattern) = (value.to_text(), pattern.to_text());
    if insensitive {
        value = value.to_lowercase();
        pattern = pattern.to_lowercase();
    }
    let value: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    Ok(Value::Bool(like_matches(&value, &pattern) != negated))
}

/// SQL LIKE: `%` any run, `_` one character, `\` escapes the next.
/// Iterative with one backtrack point, so it is linear-ish on any input.
fn like_matches(value: &[char], pattern: &[char]) -> bool {
    let (mut v, mut p) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some('%') => {
                backtrack = Some((p, v));
                p += 1;
                continue;
            }
            Some('\\') if pattern.get(p + 1) == Some(&value[v]) => {
                p += 2;
                v += 1;
                continue;
            }
            Some('_') => {
                p += 1;
                v += 1;
                continue;
            }
            Some(&c) if c != '\\' && c == value[v] => {
                p += 1;
                v += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((star, start)) => {
                p = star + 1;
                v = start + 1;
                backtrack = Some((star, start + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
}

/// The elements `ANY(...)`/`ALL(...)` ranges over: an ARRAY[...] literal,
/// a subquery, or an array value in its text form.
fn list_elements(
    ctx: &Context<'_>,
    expr: &Expr,
    scope: &Scope<'_>,
) -> Result<Vec<Value>, GatewayError> {
    match expr {
        Expr::Array(array) => array
            .elem
            .iter()
            .map(|element| eval(ctx, element, scope))
            .collect(),
        Expr::Nested(inner) => list_elements(ctx, inner, scope),
        Expr::Subquery(query) => Ok(run_query(ctx, query, Some(scope))?
            .rows
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect()),
        other => Ok(parse_array(&eval(ctx, other, scope)?)),
    }
}

fn quantified(
    value: &Value,
    op: &BinaryOperator,
    elements: &[Value],
    all: bool,
) -> Result<Value, GatewayError> {
    let mut saw_null = false;
    for element in elements {
        match truth(&apply_binary(op, value, element)?) {
            Some(hit) if hit != all => return Ok(Value::Bool(hit)),
            None => saw_null = true,
            Some(_) => {}
        }
    }
    Ok(if saw_null {
        Value::Null
    } else {
        Value::Bool(all)
    })
}

/// An array in Postgres' text form: `{a,b}`; int2vector/oidvector: `1 2`.
pub(crate) fn parse_array(value: &Value) -> Vec<Value> {
    let text = match value {
        Value::Null => return Vec::new(),
        other => other.to_text(),
    };
    let inner = match text
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(inner) => inner.split(',').collect::<Vec<_>>(),
        None => text.split_whitespace().collect(),
    };
    inner
        .into_iter()
        .filter(|element| !element.is_empty())
        .map(|element| match element.trim_matches('"') {
            "NULL" => Value::Null,
            element => element
                .parse()
                .map_or_else(|_| Value::Text(element.to_owned()), Value::Int),
        })
        .collect()
}

pub(crate) fn format_array(elements: &[Value]) -> String {
    let shown: Vec<String> = elements
        .iter()
        .map(|element| match element {
            Value::Null => "NULL".to_owned(),
            other => {
                let text = other.to_text();
                let plain = !text.is_empty() && !text.contains([',', '{', '}', '"', ' ', '\\']);
                if plain {
                    text
                } else {
                    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
                }
            }
        })
        .collect();
    format!("{{{}}}", shown.join(","))
}

/// The static type of `expr` in `scope` (for Describe and result columns):
/// column types, function return types, cast targets; TEXT when unknown.
pub(crate) fn infer(ctx: &Context<'_>, expr: &Expr, scope: &Scope<'_>) -> SqlType {
    match expr {
        Expr::Identifier(ident) => scope
            .column(None, &normalize_ident(ident))
            .map_or(SqlType::Text, |(_, sql_type)| sql_type),
        Expr::CompoundIdentifier(parts) => qualified(parts)
            .ok()
            .and_then(|(qualifier, name)| scope.column(Some(&qualifier), &name).ok())
            .map_or(SqlType::Text, |(_, sql_type)| sql_type),
        Expr::Value(value) => match &value.value {
            ast::Value::Number(number, _) => match number_value(number) {
                Value::Int(number) if i32::try_from(number).is_ok() => SqlType::Int4,
                Value::Int(_) => SqlType::Int8,
                Value::Float(_) => SqlType::Numeric,
                _ => SqlType::Text,
            },
            ast::Value::Boolean(_) => SqlType::Bool,
            ast::Value::Placeholder(_) => literal(ctx, &value.value)
                .ok()
                .and_then(|value| value.natural_type())
                .unwrap_or(SqlType::Text),
            _ => SqlType::Text,
        },
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => infer(ctx, inner, scope),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => SqlType::Bool,
        Expr::UnaryOp { expr, .. } => infer(ctx, expr, scope),
        Expr::BinaryOp { left, op, .. } => match op {
            BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::Modulo => infer(ctx, left, scope),
            BinaryOperator::StringConcat => SqlType::Text,
            _ => SqlType::Bool,
        },
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::InList { .. }
        | Expr::InSubquery { .. }
        | Expr::Exists { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::AnyOp { .. }
        | Expr::AllOp { .. } => SqlType::Bool,
        Expr::Case {
            conditions,
            else_result,
            ..
        } => conditions
            .iter()
            .map(|when| &when.result)
            .chain(else_result.as_deref())
            .find(|result| !matches!(result, Expr::Value(value) if value.value == ast::Value::Null))
            .map_or(SqlType::Text, |result| infer(ctx, result, scope)),
        Expr::Cast { data_type, .. } => functions::cast_type(&type_name(data_type)),
        Expr::Function(function) => functions::return_type(ctx, function, scope),
        Expr::Subquery(query) => super::query::first_column_type(ctx, query, scope),
        _ => SqlType::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like_text(value: &str, pattern: &str) -> bool {
        let value: Vec<char> = value.chars().collect();
        let pattern: Vec<char> = pattern.chars().collect();
        like_matches(&value, &pattern)
    }

    #[test]
    fn like_understands_percent_underscore_and_escapes() {
        assert!(like_text("jdbc_accounts", "jdbc_%"));
        assert!(like_text("jdbc_accounts", "jdbc\\_accounts"));
        assert!(!like_text("jdbcxaccounts", "jdbc\\_accounts"));
        assert!(like_text("public", "public"));
        assert!(like_text("abc", "%"));
        assert!(like_text("abc", "a_c"));
        assert!(!like_text("abcd", "a_c"));
        assert!(like_text("aXbXc", "%b%c"));
    }

    #[test]
    fn untyped_text_compares_as_the_other_side() {
        assert_eq!(
            compare(&Value::Int(16384), &Value::Text("16384".into())),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(&Value::Text("t".into()), &Value::Bool(true)),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(&Value::Null, &Value::Int(1)), None);
    }

    #[test]
    fn arrays_round_trip_through_their_text_form() {
        let elements = vec![Value::Text("a b".into()), Value::Int(1), Value::Null];
        assert_eq!(parse_array(&Value::Text(format_array(&elements))), elements);
        assert_eq!(
            parse_array(&Value::Text("1 2".into())),
            vec![Value::Int(1), Value::Int(2)]
        );
    }
}
