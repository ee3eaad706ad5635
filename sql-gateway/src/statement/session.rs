//! Session statements clients send on connect: SHOW answers from a fixed
//! table of settings (SET is accepted in `plan.rs`; transaction control
//! lives in `transaction`).

use sqlparser::ast::Ident;

use super::QueryResult;
use crate::bind::normalize_ident;
use crate::error::GatewayError;
use crate::value::{Column, SqlType, Value};

/// The settings SHOW answers. Values describe what Arbor actually does:
/// every transaction reads one snapshot and the first committer of a key
/// wins, which Postgres calls REPEATABLE READ (snapshot isolation).
pub(crate) const SETTINGS: [(&str, &str); 23] = [
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("datestyle", "ISO, MDY"),
    ("timezone", "UTC"),
    ("search_path", "public"),
    ("transaction_isolation", "repeatable read"),
    ("default_transaction_isolation", "repeatable read"),
    ("max_identifier_length", "63"),
    ("application_name", ""),
    ("extra_float_digits", "1"),
    ("lc_messages", "C"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("session_authorization", "arbor"),
];

/// The value of setting `name` (case-insensitive), if Arbor has it.
pub(crate) fn setting(name: &str) -> Option<&'static str> {
    let name = name.to_lowercase();
    SETTINGS
        .iter()
        .find(|(setting, _)| *setting == name)
        .map(|(_, value)| *value)
}

#[derive(Debug)]
pub(crate) struct ShowPlan {
    name: String,
    value: &'static str,
}

pub(crate) fn plan_show(variable: &[Ident]) -> Result<ShowPlan, GatewayError> {
    let words: Vec<String> = variable.iter().map(normalize_ident).collect();
    let name = match words.join(" ").as_str() {
        "transaction isolation level" => "transaction_isolation".to_owned(),
        "all" => return Err(GatewayError::unsupported("SHOW ALL")),
        joined => joined.to_owned(),
    };
    let value =
        setting(&name).ok_or_else(|| GatewayError::UndefinedParameter { name: name.clone() })?;
    Ok(ShowPlan { name, value })
}

impl ShowPlan {
    pub(crate) fn columns(&self) -> Vec<Column> {
        vec![Column::new(&self.name, SqlType::Text)]
    }

    pub(crate) fn execute(&self) -> QueryResult {
        QueryResult::Rows {
            columns: self.columns(),
            rows: vec![vec![Value::Text(self.value.to_owned())]],
        }
    }
}
