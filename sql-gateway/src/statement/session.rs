//! Session statements: SET, RESET and SHOW over the session's
//! [`Settings`] (transaction control lives in `transaction`).
//!
//! Planning is pure (statement -> [`SessionCommand`]); running a command
//! changes only the settings it is given, so the executor decides when
//! that happens (never in a failed block) and what ROLLBACK restores.

use sqlparser::ast::{
    ContextModifier, Expr, Ident, ObjectName, Reset, Set, SetSessionAuthorizationParamKind,
    Statement, TransactionIsolationLevel, TransactionMode, UnaryOperator,
};

use super::QueryResult;
use crate::bind::normalize_ident;
use crate::error::GatewayError;
use crate::settings::{self, Scope, Settings};
use crate::value::{Column, SqlType, Value};

/// What SHOW shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShowPlan {
    /// One setting, by the name as written (lowercase) and its canonical
    /// spelling (the column name, as Postgres names it).
    One { name: String, column: String },
    /// SHOW ALL: name, setting, description.
    All,
}

pub(crate) fn plan_show(variable: &[Ident]) -> Result<ShowPlan, GatewayError> {
    let words: Vec<String> = variable.iter().map(normalize_ident).collect();
    let name = match words.join(" ").as_str() {
        "transaction isolation level" => "transaction_isolation".to_owned(),
        "time zone" => "timezone".to_owned(),
        "session authorization" => "session_authorization".to_owned(),
        "all" => return Ok(ShowPlan::All),
        // `SHOW app.setting` arrives as one identifier per part.
        _ => words.join("."),
    };
    let column = settings::known(&name).map_or_else(|| name.clone(), |known| known.name.to_owned());
    Ok(ShowPlan::One { name, column })
}

impl ShowPlan {
    pub(crate) fn columns(&self) -> Vec<Column> {
        match self {
            ShowPlan::One { column, .. } => vec![Column::new(column, SqlType::Text)],
            ShowPlan::All => vec![
                Column::new("name", SqlType::Text),
                Column::new("setting", SqlType::Text),
                Column::new("description", SqlType::Text),
            ],
        }
    }

    pub(crate) fn execute(&self, settings: &Settings) -> Result<QueryResult, GatewayError> {
        let rows = match self {
            ShowPlan::One { name, .. } => {
                let value = settings
                    .get(name)
                    .ok_or_else(|| GatewayError::UndefinedParameter { name: name.clone() })?;
                vec![vec![Value::Text(value)]]
            }
            ShowPlan::All => settings
                .all()
                .into_iter()
                .map(|(name, value, description)| {
                    vec![
                        Value::Text(name),
                        Value::Text(value),
                        Value::Text(description),
                    ]
                })
                .collect(),
        };
        Ok(QueryResult::Rows {
            columns: self.columns(),
            rows,
        })
    }
}

/// A statement that reads or changes the session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionCommand {
    /// `value` None is DEFAULT.
    Set {
        name: String,
        value: Option<String>,
        scope: Scope,
    },
    Reset {
        name: String,
    },
    ResetAll,
    Show(ShowPlan),
    /// Accepted and changes nothing (`SET SESSION AUTHORIZATION DEFAULT`,
    /// `SET ROLE NONE`: the session already is its login user).
    Nothing,
}

impl SessionCommand {
    /// The command `statement` is, if it is one; `Some(Err)` for a session
    /// statement Arbor refuses.
    pub(crate) fn of(statement: &Statement) -> Option<Result<SessionCommand, GatewayError>> {
        match statement {
            Statement::Set(set) => Some(plan_set(set)),
            Statement::Reset(reset) => Some(match &reset.reset {
                Reset::ALL => Ok(SessionCommand::ResetAll),
                Reset::ConfigurationParameter(name) => {
                    setting_name(name).map(|name| SessionCommand::Reset { name })
                }
            }),
            Statement::ShowVariable { variable } => {
                Some(plan_show(variable).map(SessionCommand::Show))
            }
            _ => None,
        }
    }

    /// Runs the command on `settings`; `in_block` says whether a
    /// transaction block is open (SET LOCAL outside one does nothing).
    pub(crate) fn execute(
        &self,
        settings: &mut Settings,
        in_block: bool,
    ) -> Result<QueryResult, GatewayError> {
        let done = |tag| Ok(QueryResult::Command { tag, rows: None });
        match self {
            SessionCommand::Set { name, value, scope } => {
                settings.set(name, value.as_deref(), *scope, in_block)?;
                done("SET")
            }
            SessionCommand::Reset { name } => {
                settings.reset(name, in_block)?;
                done("RESET")
            }
            SessionCommand::ResetAll => {
                settings.reset_all();
                done("RESET")
            }
            SessionCommand::Show(plan) => plan.execute(settings),
            SessionCommand::Nothing => done("SET"),
        }
    }
}

fn scope_of(modifier: Option<&ContextModifier>) -> Scope {
    match modifier {
        Some(ContextModifier::Local) => Scope::Local,
        _ => Scope::Session,
    }
}

fn plan_set(set: &Set) -> Result<SessionCommand, GatewayError> {
    match set {
        Set::SingleAssignment {
            scope,
            hivevar: false,
            variable,
            values,
        } => Ok(SessionCommand::Set {
            name: setting_name(variable)?,
            value: set_value(values)?,
            scope: scope_of(scope.as_ref()),
        }),
        Set::SetTimeZone { local, value } => Ok(SessionCommand::Set {
            name: "timezone".to_owned(),
            value: set_value(std::slice::from_ref(value))?,
            scope: if *local { Scope::Local } else { Scope::Session },
        }),
        Set::SetNames { charset_name, .. } => Ok(SessionCommand::Set {
            name: "client_encoding".to_owned(),
            value: Some(charset_name.value.clone()),
            scope: Scope::Session,
        }),
        Set::SetNamesDefault {} => Ok(SessionCommand::Set {
            name: "client_encoding".to_owned(),
            value: None,
            scope: Scope::Session,
        }),
        Set::SetTransaction {
            modes,
            snapshot: None,
            session,
        } => plan_set_transaction(modes, *session),
        Set::SetSessionAuthorization(param) => match param.kind {
            SetSessionAuthorizationParamKind::Default => Ok(SessionCommand::Nothing),
            SetSessionAuthorizationParamKind::User(_) => {
                Err(GatewayError::unsupported("SET SESSION AUTHORIZATION"))
            }
        },
        Set::SetRole {
            role_name: None, ..
        } => Ok(SessionCommand::Nothing),
        _ => Err(GatewayError::unsupported(format!("{set}"))),
    }
}

/// `SET TRANSACTION ISOLATION LEVEL x` (this block) and `SET SESSION
/// CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL x` (JDBC's
/// `setTransactionIsolation`; every later transaction). Access modes:
/// READ WRITE is what Arbor does; READ ONLY would not be enforced.
fn plan_set_transaction(
    modes: &[TransactionMode],
    session: bool,
) -> Result<SessionCommand, GatewayError> {
    let mut command = SessionCommand::Nothing;
    for mode in modes {
        match mode {
            TransactionMode::IsolationLevel(level) => {
                let level = match level {
                    TransactionIsolationLevel::ReadUncommitted => "read uncommitted",
                    TransactionIsolationLevel::ReadCommitted => "read committed",
                    TransactionIsolationLevel::RepeatableRead => "repeatable read",
                    TransactionIsolationLevel::Serializable => {
                        return Err(settings::serializable_refused())
                    }
                    _ => {
                        return Err(GatewayError::unsupported(format!(
                            "isolation level {level}"
                        )))
                    }
                };
                command = SessionCommand::Set {
                    name: if session {
                        "default_transaction_isolation"
                    } else {
                        "transaction_isolation"
                    }
                    .to_owned(),
                    value: Some(level.to_owned()),
                    scope: Scope::Session,
                };
            }
            TransactionMode::AccessMode(sqlparser::ast::TransactionAccessMode::ReadWrite) => {}
            other => {
                return Err(GatewayError::unsupported(format!(
                    "SET TRANSACTION {other}"
                )))
            }
        }
    }
    Ok(command)
}

/// `a` or `a.b`, folded as Postgres folds identifiers.
fn setting_name(name: &ObjectName) -> Result<String, GatewayError> {
    let parts = crate::plan::name_parts(name).ok_or_else(|| GatewayError::UndefinedParameter {
        name: name.to_string(),
    })?;
    Ok(parts.join("."))
}

/// The text of a SET value list (`None`: DEFAULT): literals as written,
/// identifiers folded, several values joined with ", " as Postgres joins
/// list settings such as `search_path`.
fn set_value(values: &[Expr]) -> Result<Option<String>, GatewayError> {
    if let [Expr::Identifier(ident)] = values {
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default") {
            return Ok(None);
        }
    }
    let parts = values
        .iter()
        .map(value_text)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(parts.join(", ")))
}

fn value_text(expr: &Expr) -> Result<String, GatewayError> {
    use sqlparser::ast::Value as Literal;
    match expr {
        Expr::Identifier(ident) => Ok(normalize_ident(ident)),
        Expr::CompoundIdentifier(parts) => Ok(parts
            .iter()
            .map(normalize_ident)
            .collect::<Vec<_>>()
            .join(".")),
        Expr::Value(value) => match &value.value {
            Literal::SingleQuotedString(text)
            | Literal::EscapedStringLiteral(text)
            | Literal::DoubleQuotedString(text) => Ok(text.clone()),
            Literal::Number(number, _) => Ok(number.to_string()),
            Literal::Boolean(true) => Ok("on".to_owned()),
            Literal::Boolean(false) => Ok("off".to_owned()),
            other => Err(GatewayError::unsupported(format!("SET value {other}"))),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => Ok(format!("-{}", value_text(expr)?)),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => Ok(format!("+{}", value_text(expr)?)),
        other => Err(GatewayError::unsupported(format!("SET value {other}"))),
    }
}
