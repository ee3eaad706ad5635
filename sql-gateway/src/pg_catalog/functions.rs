//! Functions, casts and aggregates of catalog queries: the session
//! functions drivers call (`version()`, `current_setting`), the catalog
//! helpers psql calls (`format_type`, `pg_get_indexdef`, ...), and the
//! aggregates and window function their queries use.
//!
//! Invariant: arguments are evaluated only by the function that needs them,
//! and every name not listed here is 42883.

use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::eval::{compare, eval, format_array, infer, parse_array, truth};
use super::query::Context;
use super::relations;
use super::scope::Scope;
use crate::bind::{function_name, SERVER_VERSION_STRING};
use crate::error::GatewayError;
use crate::settings::Scope as SettingScope;
use crate::value::{SqlType, Value};

/// Values of the SQL keywords that read like columns (`current_user`):
/// the session's login user.
pub(crate) fn keyword_value(ctx: &Context<'_>, name: &str) -> Option<String> {
    match name {
        "current_user" | "session_user" | "user" | "current_role" => {
            Some(ctx.settings.borrow().user())
        }
        "current_catalog" => Some(relations::DATABASE_NAME.to_owned()),
        "current_schema" => Some("public".to_owned()),
        _ => None,
    }
}

const AGGREGATES: [&str; 7] = [
    "count",
    "array_agg",
    "string_agg",
    "min",
    "max",
    "bool_or",
    "bool_and",
];

pub(crate) fn is_aggregate(function: &ast::Function) -> bool {
    function.over.is_none() && AGGREGATES.contains(&function_name(function).as_str())
}

fn arguments(function: &ast::Function) -> Result<Vec<&ast::Expr>, GatewayError> {
    let FunctionArguments::List(list) = &function.args else {
        return Ok(Vec::new());
    };
    list.args
        .iter()
        .map(|argument| match argument {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Ok(expr),
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => {
                Err(GatewayError::unsupported("* as an argument"))
            }
            _ => Err(GatewayError::unsupported("named or qualified arguments")),
        })
        .collect()
}

fn is_count_star(function: &ast::Function) -> bool {
    matches!(&function.args, FunctionArguments::List(list)
        if matches!(list.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]))
}

pub(crate) fn call(
    ctx: &Context<'_>,
    function: &ast::Function,
    scope: &Scope<'_>,
) -> Result<Value, GatewayError> {
    let name = function_name(function);
    if function.over.is_some() {
        let key = ast::Expr::Function(function.clone()).to_string();
        return scope
            .window
            .and_then(|(values, row)| values.get(&key).and_then(|values| values.get(row)).cloned())
            .ok_or_else(|| GatewayError::unsupported(format!("window function {name} here")));
    }
    if is_aggregate(function) {
        return aggregate(ctx, function, &name, scope);
    }
    let args = arguments(function)?;
    let values = args
        .iter()
        .map(|arg| eval(ctx, arg, scope))
        .collect::<Result<Vec<_>, _>>()?;
    scalar(ctx, &name, &values)
}

/// `set_config(name, value, is_local)`: SET (or SET LOCAL), answering the
/// value the setting has afterwards, as Postgres does.
fn set_config(ctx: &Context<'_>, values: &[Value]) -> Result<Value, GatewayError> {
    let Some(name) = text_of(values, 0) else {
        return Err(GatewayError::InvalidParameterValue {
            name: "set_config".to_owned(),
            value: "NULL".to_owned(),
            reason: "SET requires parameter name.".to_owned(),
        });
    };
    let value = text_of(values, 1).unwrap_or_default();
    let scope = if values.get(2).and_then(truth) == Some(true) {
        SettingScope::Local
    } else {
        SettingScope::Session
    };
    let mut settings = ctx.settings.borrow_mut();
    settings.set(&name, Some(&value), scope, ctx.in_block)?;
    Ok(Value::Text(settings.get(&name).unwrap_or(value)))
}

fn text_of(values: &[Value], index: usize) -> Option<String> {
    values
        .get(index)
        .filter(|value| !value.is_null())
        .map(Value::to_text)
}

fn int_of(values: &[Value], index: usize) -> Option<i64> {
    match values.get(index)? {
        Value::Int(number) => Some(*number),
        Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn optional_text(text: Option<String>) -> Value {
    text.map_or(Value::Null, Value::Text)
}

fn scalar(ctx: &Context<'_>, name: &str, values: &[Value]) -> Result<Value, GatewayError> {
    let text = |value: &str| Ok(Value::Text(value.to_owned()));
    match (name, values.len()) {
        ("version", 0) => text(SERVER_VERSION_STRING),
        ("current_database" | "current_catalog", 0) => text(relations::DATABASE_NAME),
        ("current_schema", 0) => text("public"),
        ("current_user" | "session_user" | "user" | "current_role", 0) => {
            Ok(Value::Text(ctx.settings.borrow().user()))
        }
        ("current_schemas", 1) => text(if truth(&values[0]) == Some(true) {
            "{pg_catalog,public}"
        } else {
            "{public}"
        }),
        ("current_setting", 1 | 2) => {
            let name = text_of(values, 0).unwrap_or_default();
            match ctx.settings.borrow().get(&name) {
                Some(value) => Ok(Value::Text(value)),
                None if values.get(1).and_then(truth) == Some(true) => Ok(Value::Null),
                None => Err(GatewayError::UndefinedParameter { name }),
            }
        }
        ("set_config", 3) => set_config(ctx, values),
        ("pg_backend_pid", 0) => Ok(Value::Int(1)),
        ("pg_is_in_recovery", 0) => Ok(Value::Bool(false)),
        ("inet_server_addr" | "inet_client_addr", 0) => Ok(Value::Null),
        ("pg_table_is_visible", 1) => Ok(int_of(values, 0).map_or(Value::Null, |oid| {
            Value::Bool(relations::relation_visible(oid, ctx.catalog))
        })),
        ("pg_type_is_visible" | "pg_function_is_visible", 1) => Ok(Value::Bool(true)),
        ("format_type", 2) => Ok(int_of(values, 0).map_or(Value::Null, |oid| {
            Value::Text(
                relations::format_type(oid, int_of(values, 1)).unwrap_or_else(|| "???".to_owned()),
            )
        })),
        ("pg_get_userbyid", 1) => text(relations::OWNER_NAME),
        ("obj_description" | "col_description" | "shobj_description", 1 | 2) => Ok(Value::Null),
        ("pg_encoding_to_char", 1) => {
            text(if int_of(values, 0) == Some(relations::UTF8_ENCODING) {
                "UTF8"
            } else {
                "SQL_ASCII"
            })
        }
        ("pg_char_to_encoding", 1) => Ok(Value::Int(relations::UTF8_ENCODING)),
        (
            "has_table_privilege"
            | "has_schema_privilege"
            | "has_database_privilege"
            | "has_column_privilege"
            | "has_any_column_privilege",
            2..=4,
        ) => Ok(Value::Bool(true)),
        ("pg_has_role", 2 | 3) => Ok(Value::Bool(true)),
        ("pg_get_expr", 2 | 3) => Ok(values[0].clone()),
        ("pg_get_indexdef", 1 | 3) => {
            Ok(optional_text(int_of(values, 0).and_then(|oid| {
                relations::index_definition(oid, ctx.catalog)
            })))
        }
        ("pg_get_constraintdef", 1 | 2) => {
            Ok(optional_text(int_of(values, 0).and_then(|oid| {
                relations::constraint_definition(oid, ctx.catalog)
            })))
        }
        ("pg_relation_is_publishable", 1) => Ok(Value::Bool(false)),
        (
            "pg_get_viewdef"
            | "pg_get_partkeydef"
            | "pg_get_serial_sequence"
            | "pg_get_triggerdef"
            | "pg_get_functiondef",
            _,
        ) => Ok(Value::Null),
        ("pg_get_statisticsobjdef_columns", 1) => Ok(Value::Null),
        ("array_to_string", 2 | 3) => Ok(if values[0].is_null() {
            Value::Null
        } else {
            let separator = text_of(values, 1).unwrap_or_default();
            Value::Text(
                parse_array(&values[0])
                    .iter()
                    .filter(|element| !element.is_null())
                    .map(Value::to_text)
                    .collect::<Vec<_>>()
                    .join(&separator),
            )
        }),
        ("array_upper" | "array_length", 2) => Ok(if values[0].is_null() {
            Value::Null
        } else {
            Value::Int(i64::try_from(parse_array(&values[0]).len()).unwrap_or(i64::MAX))
        }),
        ("coalesce", _) => Ok(values
            .iter()
            .find(|value| !value.is_null())
            .cloned()
            .unwrap_or(Value::Null)),
        ("nullif", 2) => Ok(
            if compare(&values[0], &values[1]) == Some(std::cmp::Ordering::Equal) {
                Value::Null
            } else {
                values[0].clone()
            },
        ),
        ("lower", 1) => Ok(optional_text(
            text_of(values, 0).map(|text| text.to_lowercase()),
        )),
        ("upper", 1) => Ok(optional_text(
            text_of(values, 0).map(|text| text.to_uppercase()),
        )),
        ("length" | "char_length", 1) => Ok(text_of(values, 0).map_or(Value::Null, |text| {
            Value::Int(i64::try_from(text.chars().count()).unwrap_or(i64::MAX))
        })),
        ("concat", _) => text(
            &values
                .iter()
                .filter(|value| !value.is_null())
                .map(Value::to_text)
                .collect::<String>(),
        ),
        ("quote_ident", 1) => Ok(optional_text(
            text_of(values, 0).map(|name| quote_ident(&name)),
        )),
        ("txid_current" | "pg_current_xact_id", 0) => Ok(Value::Int(1)),
        _ => Err(GatewayError::UndefinedFunction {
            name: format!("{name}({})", vec!["unknown"; values.len()].join(", ")),
        }),
    }
}

fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// An aggregate over the rows of the current group (the whole input when
/// the query has aggregates but no GROUP BY).
fn aggregate(
    ctx: &Context<'_>,
    function: &ast::Function,
    name: &str,
    scope: &Scope<'_>,
) -> Result<Value, GatewayError> {
    let Some(group) = scope.group else {
        return Err(GatewayError::unsupported(format!(
            "aggregate {name}() here"
        )));
    };
    if name == "count" && is_count_star(function) {
        return Ok(Value::Int(i64::try_from(group.len()).unwrap_or(i64::MAX)));
    }
    let args = arguments(function)?;
    let Some(argument) = args.first() else {
        return Err(GatewayError::UndefinedFunction {
            name: format!("{name}()"),
        });
    };
    let mut values = Vec::with_capacity(group.len());
    for row in group {
        let row_scope = Scope {
            row,
            group: None,
            ..*scope
        };
        values.push(eval(ctx, argument, &row_scope)?);
    }
    let present = || values.iter().filter(|value| !value.is_null());
    Ok(match name {
        "count" => Value::Int(i64::try_from(present().count()).unwrap_or(i64::MAX)),
        "array_agg" => Value::Text(format_array(&values)),
        "string_agg" => {
            let separator = match args.get(1) {
                Some(separator) => eval(ctx, separator, scope)?.to_text(),
                None => String::new(),
            };
            let parts: Vec<String> = present().map(Value::to_text).collect();
            if parts.is_empty() {
                Value::Null
            } else {
                Value::Text(parts.join(&separator))
            }
        }
        "min" | "max" => {
            let wanted = if name == "min" {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            };
            present()
                .fold(None::<&Value>, |best, value| match best {
                    Some(best) if compare(value, best) != Some(wanted) => Some(best),
                    _ => Some(value),
                })
                .cloned()
                .unwrap_or(Value::Null)
        }
        "bool_or" => present().next().map_or(Value::Null, |_| {
            Value::Bool(present().any(|v| truth(v) == Some(true)))
        }),
        _ => present().next().map_or(Value::Null, |_| {
            Value::Bool(present().all(|v| truth(v) == Some(true)))
        }),
    })
}

/// `value::target` for the types catalog queries cast to.
pub(crate) fn cast(ctx: &Context<'_>, value: Value, target: &str) -> Result<Value, GatewayError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let invalid = |type_name: &str, value: &Value| GatewayError::InvalidTextRepresentation {
        type_name: type_name.to_owned(),
        value: value.to_text(),
    };
    match target {
        // regclass/regtype/regnamespace: a name in, an OID; an OID in, a name.
        "regclass" => match value {
            Value::Int(oid) => Ok(Value::Text(
                relations::relation_name(oid, ctx.catalog)
                    .map(|(schema, name)| {
                        if schema == "public" || schema == "pg_catalog" {
                            name
                        } else {
                            format!("{schema}.{name}")
                        }
                    })
                    .unwrap_or_else(|| oid.to_string()),
            )),
            other => relations::relation_oid(&other.to_text().to_lowercase(), ctx.catalog)
                .map(Value::Int)
                .ok_or_else(|| GatewayError::UndefinedTable {
                    name: other.to_text(),
                }),
        },
        "regtype" => match value {
            Value::Int(oid) => Ok(Value::Text(
                relations::format_type(oid, None).unwrap_or_else(|| oid.to_string()),
            )),
            other => relations::type_oid(&other.to_text().to_lowercase())
                .map(Value::Int)
                .ok_or_else(|| invalid("regtype", &other)),
        },
        "regnamespace" => match value {
            Value::Int(oid) => Ok(Value::Text(
                relations::namespace_name(oid).map_or_else(|| oid.to_string(), str::to_owned),
            )),
            other => Ok(other),
        },
        "regproc" | "regprocedure" => Ok(Value::Text(value.to_text())),
        "text" | "varchar" | "character varying" | "name" | "char" | "\"char\"" | "bpchar" => {
            Ok(Value::Text(value.to_text()))
        }
        "oid" | "int" | "int2" | "int4" | "int8" | "integer" | "bigint" | "smallint" => match value
        {
            Value::Int(_) => Ok(value),
            Value::Float(number) => Ok(Value::Int(number.round() as i64)),
            Value::Bool(flag) => Ok(Value::Int(i64::from(flag))),
            other => other
                .to_text()
                .trim()
                .parse()
                .map(Value::Int)
                .map_err(|_| invalid("integer", &other)),
        },
        "bool" | "boolean" => truth(&value)
            .map(Value::Bool)
            .ok_or_else(|| invalid("boolean", &value)),
        other if other.ends_with("[]") => Ok(value),
        other => match cast_type(other) {
            SqlType::Text => Err(GatewayError::unsupported(format!(
                "casting to {other} in a catalog query"
            ))),
            sql_type => match sql_type.convert(&value) {
                Some(converted) => Ok(converted?),
                None => Ok(value),
            },
        },
    }
}

/// The result type of a cast to `target`.
pub(crate) fn cast_type(target: &str) -> SqlType {
    match target {
        "oid" | "int8" | "bigint" | "regclass_oid" => SqlType::Int8,
        "int" | "int4" | "integer" => SqlType::Int4,
        "int2" | "smallint" => SqlType::Int2,
        "bool" | "boolean" => SqlType::Bool,
        "float8" | "double precision" => SqlType::Float8,
        "float4" | "real" => SqlType::Float4,
        "numeric" => SqlType::Numeric,
        "date" => SqlType::Date,
        "timestamp" => SqlType::Timestamp,
        "timestamptz" => SqlType::Timestamptz,
        "uuid" => SqlType::Uuid,
        "jsonb" => SqlType::Jsonb,
        "bytea" => SqlType::Bytea,
        _ => SqlType::Text,
    }
}

/// The static result type of a function call.
pub(crate) fn return_type(
    ctx: &Context<'_>,
    function: &ast::Function,
    scope: &Scope<'_>,
) -> SqlType {
    let name = function_name(function);
    match name.as_str() {
        "count" | "row_number" | "rank" | "dense_rank" | "pg_backend_pid" | "txid_current"
        | "pg_current_xact_id" => SqlType::Int8,
        "array_upper" | "array_length" | "length" | "char_length" | "pg_char_to_encoding" => {
            SqlType::Int4
        }
        "pg_table_is_visible"
        | "pg_type_is_visible"
        | "pg_function_is_visible"
        | "has_table_privilege"
        | "has_schema_privilege"
        | "has_database_privilege"
        | "has_column_privilege"
        | "has_any_column_privilege"
        | "pg_has_role"
        | "pg_is_in_recovery"
        | "pg_relation_is_publishable"
        | "bool_or"
        | "bool_and" => SqlType::Bool,
        "min" | "max" | "coalesce" | "nullif" => arguments(function)
            .ok()
            .and_then(|args| args.first().map(|arg| infer(ctx, arg, scope)))
            .unwrap_or(SqlType::Text),
        _ => SqlType::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_quotes_only_when_needed() {
        assert_eq!(quote_ident("t"), "t");
        assert_eq!(quote_ident("My Table"), "\"My Table\"");
    }
}
