//! The gateway's one error type and the one table that maps it to SQLSTATE.
//!
//! Invariant: every variant has exactly one SQLSTATE, chosen in
//! [`GatewayError::sqlstate`]; the tests walk every variant. Only this crate
//! knows SQLSTATEs, and only this module decides them.

use pgwire::error::{ErrorInfo, PgWireError};

/// Everything a statement or the server can fail with. Variants carry the
/// names and values a user needs to fix the statement; callers branch on
/// variants, never on messages.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    Syntax { message: String },
    #[error("{feature} is not supported")]
    Unsupported { feature: String },
    #[error("relation \"{name}\" does not exist")]
    UndefinedTable { name: String },
    #[error("column \"{name}\" does not exist")]
    UndefinedColumn { name: String },
    #[error("column \"{name}\" specified more than once")]
    DuplicateColumn { name: String },
    #[error("column reference \"{name}\" is ambiguous")]
    AmbiguousColumn { name: String },
    #[error("invalid regular expression: {reason}")]
    InvalidRegularExpression { reason: String },
    #[error("division by zero")]
    DivisionByZero,
    #[error("{operation} is not allowed on system table \"{table}\"")]
    ReadOnlyTable { table: String, operation: String },
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        constraint: String,
        column: String,
        value: String,
    },
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation {
        table: String,
        column: String,
        row: String,
    },
    #[error("{what} exceeds the limit of {limit}")]
    ProgramLimitExceeded { what: String, limit: usize },
    #[error("operator does not exist: {left_type} {operator} {right_type}")]
    UndefinedOperator {
        left_type: String,
        operator: String,
        right_type: String,
    },
    #[error("function {name} does not exist")]
    UndefinedFunction { name: String },
    #[error("{message}")]
    DatatypeMismatch { message: String },
    #[error("invalid input syntax for type {type_name}: \"{value}\"")]
    InvalidTextRepresentation { type_name: String, value: String },
    #[error("column \"{column}\" must appear in the GROUP BY clause or be used in an aggregate function")]
    Grouping { column: String },
    #[error("ON CONFLICT DO UPDATE command cannot affect row a second time")]
    CardinalityViolation { value: String },
    #[error("there is no unique or exclusion constraint matching the ON CONFLICT specification")]
    InvalidConflictTarget,
    #[error("{clause} must not be negative")]
    InvalidRowCount { clause: &'static str },
    #[error("unrecognized configuration parameter \"{name}\"")]
    UndefinedParameter { name: String },
    /// A SET value Arbor cannot honour or Postgres would refuse; `reason`
    /// says which values are accepted (the DETAIL line).
    #[error("invalid value for parameter \"{name}\": \"{value}\"")]
    InvalidParameterValue {
        name: String,
        value: String,
        reason: String,
    },
    #[error("parameter \"{name}\" cannot be changed")]
    CantChangeParameter { name: String },
    #[error("cannot insert multiple commands into a prepared statement")]
    MultipleStatementsInPrepare,
    #[error("could not serialize access due to concurrent update: {reason}")]
    SerializationFailure { reason: String },
    #[error("snapshot too old: {reason}")]
    SnapshotTooOld { reason: String },
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    #[error("{statement} can only be used in transaction blocks")]
    NoActiveTransaction { statement: &'static str },
    #[error("{statement} cannot run inside a transaction block")]
    ActiveSqlTransaction { statement: &'static str },
    #[error("savepoint \"{name}\" does not exist")]
    UndefinedSavepoint { name: String },
    #[error("the storage layer is unavailable: {reason}")]
    StorageUnavailable { reason: String },
    #[error("no coordinator answered ({addresses}): {reason}")]
    CoordinatorUnavailable { addresses: String, reason: String },
    #[error("the storage layer reports corrupt data: {reason}")]
    StorageCorrupt { reason: String },
    #[error("stored data could not be decoded: {0}")]
    Corrupt(arbor_catalog::CatalogError),
    #[error("relation \"{name}\" already exists")]
    DuplicateTable { name: String },
    #[error("{type_name} out of range")]
    NumericOutOfRange { type_name: String },
    #[error("value too long for type character varying({length_max})")]
    StringTooLong { length_max: u32 },
    #[error("\"{name}\" is not a table that can be {operation}")]
    WrongObjectType { name: String, operation: String },
    #[error("invalid name \"{name}\": {reason}")]
    InvalidName { name: String, reason: String },
    #[error("no root peer answered ({addresses}): {reason}")]
    RootUnavailable { addresses: String, reason: String },
    #[error("the catalog was changed concurrently {attempts} times; retry the statement")]
    CatalogContention { attempts: usize },
    #[error("could not listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("canceling statement due to user request")]
    QueryCanceled,
    #[error("password authentication failed for user \"{user}\"")]
    PasswordAuthenticationFailed { user: String },
    #[error("SSL connection is required: host \"{host}\", user \"{user}\", no encryption")]
    EncryptionRequired { host: String, user: String },
    #[error("could not load the TLS {what} from {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("could not load users from {path}, line {line}: {reason}")]
    UsersFile {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
    #[error("invalid authentication settings: {reason}")]
    AuthConfig { reason: String },
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl GatewayError {
    /// THE table from error to SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            GatewayError::Syntax { .. } => "42601",
            GatewayError::MultipleStatementsInPrepare => "42601",
            GatewayError::Unsupported { .. } => "0A000",
            // Postgres answers writes to read-only catalogs with
            // insufficient_privilege; system tables are views, not data.
            GatewayError::ReadOnlyTable { .. } => "42501",
            GatewayError::UndefinedTable { .. } => "42P01",
            GatewayError::UndefinedColumn { .. } => "42703",
            GatewayError::DuplicateColumn { .. } => "42701",
            GatewayError::AmbiguousColumn { .. } => "42702",
            GatewayError::InvalidRegularExpression { .. } => "2201B",
            GatewayError::DivisionByZero => "22012",
            GatewayError::UniqueViolation { .. } => "23505",
            GatewayError::NotNullViolation { .. } => "23502",
            GatewayError::ProgramLimitExceeded { .. } => "54000",
            GatewayError::UndefinedOperator { .. } => "42883",
            GatewayError::UndefinedFunction { .. } => "42883",
            GatewayError::DatatypeMismatch { .. } => "42804",
            GatewayError::InvalidTextRepresentation { .. } => "22P02",
            GatewayError::Grouping { .. } => "42803",
            GatewayError::CardinalityViolation { .. } => "21000",
            GatewayError::InvalidConflictTarget => "42P10",
            GatewayError::InvalidRowCount { .. } => "2201W",
            GatewayError::UndefinedParameter { .. } => "42704",
            GatewayError::InvalidParameterValue { .. } => "22023",
            GatewayError::CantChangeParameter { .. } => "55P02",
            // Retrying the statement may succeed, as after a Postgres
            // serialization failure.
            GatewayError::SerializationFailure { .. } => "40001",
            // Postgres' snapshot_too_old: the transaction read past the GC
            // lifetime; a new transaction (not a retry at the same
            // snapshot) may succeed.
            GatewayError::SnapshotTooOld { .. } => "72000",
            GatewayError::InFailedTransaction => "25P02",
            GatewayError::NoActiveTransaction { .. } => "25P01",
            // As Postgres refuses CREATE DATABASE or VACUUM in a block: the
            // statement acts on the cluster at once and cannot be rolled back.
            GatewayError::ActiveSqlTransaction { .. } => "25001",
            GatewayError::UndefinedSavepoint { .. } => "3B001",
            // The cluster behind this session cannot serve right now, but the
            // session itself is healthy. 57P03 (cannot_connect_now) says
            // "transient, try again" to drivers and poolers; the 08xxx class
            // would make drivers such as pgjdbc mark this connection broken
            // and throw it away, which is wrong: the next statement may work.
            GatewayError::StorageUnavailable { .. } => "57P03",
            GatewayError::CoordinatorUnavailable { .. } => "57P03",
            GatewayError::Corrupt(_) | GatewayError::StorageCorrupt { .. } => "XX001",
            GatewayError::DuplicateTable { .. } => "42P07",
            GatewayError::NumericOutOfRange { .. } => "22003",
            GatewayError::StringTooLong { .. } => "22001",
            GatewayError::WrongObjectType { .. } => "42809",
            GatewayError::InvalidName { .. } => "42622",
            GatewayError::RootUnavailable { .. } => "57P03",
            GatewayError::CatalogContention { .. } => "40001",
            GatewayError::Listen { .. } => "58000",
            GatewayError::QueryCanceled => "57014",
            GatewayError::PasswordAuthenticationFailed { .. } => "28P01",
            // invalid_authorization_specification, as Postgres answers a
            // connection no pg_hba.conf line admits.
            GatewayError::EncryptionRequired { .. } => "28000",
            // config_file_error: the gateway refuses to start on them.
            GatewayError::TlsFile { .. }
            | GatewayError::UsersFile { .. }
            | GatewayError::AuthConfig { .. } => "F0000",
            GatewayError::Internal { .. } => "XX000",
        }
    }

    /// The DETAIL line Postgres would send, if any.
    pub fn detail(&self) -> Option<String> {
        match self {
            GatewayError::UniqueViolation { column, value, .. } => {
                Some(format!("Key ({column})=({value}) already exists."))
            }
            GatewayError::NotNullViolation { row, .. } => {
                Some(format!("Failing row contains ({row})."))
            }
            GatewayError::InvalidParameterValue { reason, .. } => Some(reason.clone()),
            _ => None,
        }
    }

    /// A HINT line telling the user what to do instead.
    pub fn hint(&self) -> Option<String> {
        let hint = match self {
            GatewayError::Unsupported { .. } => {
                "Arbor supports CREATE TABLE, DROP TABLE, INSERT, UPDATE, DELETE and single-table SELECT on user tables and kv, ALTER TABLE ... SPLIT AT VALUES (...) and SHOW REGIONS FROM TABLE, and SELECT on system.* and catalog tables."
            }
            GatewayError::UndefinedTable { .. } => {
                "List tables with \\dt or SELECT relname FROM pg_class; system tables are system.regions, system.stores, system.leases, system.root_events, system.root_peers, system.coordinators."
            }
            GatewayError::ProgramLimitExceeded { .. } => {
                "Narrow the statement with a WHERE on the primary key or a LIMIT."
            }
            GatewayError::UndefinedOperator { .. } => {
                "Compare values of the same type; quote text literals."
            }
            GatewayError::CardinalityViolation { .. } => {
                "Ensure that no rows proposed for insertion within the same command have duplicate constrained values."
            }
            GatewayError::SerializationFailure { .. } | GatewayError::CatalogContention { .. } => {
                "The transaction might succeed if retried."
            }
            GatewayError::InFailedTransaction => {
                "Run ROLLBACK (or ROLLBACK TO SAVEPOINT) to continue."
            }
            GatewayError::StorageUnavailable { .. }
            | GatewayError::CoordinatorUnavailable { .. }
            | GatewayError::RootUnavailable { .. } => {
                "The cluster may be electing a leader or restarting; retry shortly."
            }
            GatewayError::EncryptionRequired { .. } => {
                "Connect with sslmode=require (the gateway runs with --tls-required)."
            }
            GatewayError::TlsFile { .. } => {
                "--tls-cert takes a PEM certificate chain, --tls-key the PEM private key of its first certificate."
            }
            GatewayError::UsersFile { .. } => {
                "Write one user:password per line; blank lines and lines starting with # are ignored."
            }
            GatewayError::AuthConfig { .. } => {
                "--auth scram-sha-256 needs --users-file or --user with --password; --auth trust takes neither."
            }
            _ => return None,
        };
        Some(hint.to_owned())
    }

    pub(crate) fn unsupported(feature: impl Into<String>) -> Self {
        GatewayError::Unsupported {
            feature: feature.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        GatewayError::Internal {
            message: message.into(),
        }
    }

    /// The Postgres ErrorResponse fields for this error.
    pub(crate) fn to_error_info(&self) -> ErrorInfo {
        let mut info = ErrorInfo::new(
            "ERROR".to_owned(),
            self.sqlstate().to_owned(),
            self.to_string(),
        );
        info.detail = self.detail();
        info.hint = self.hint();
        info
    }
}

impl From<GatewayError> for PgWireError {
    fn from(error: GatewayError) -> Self {
        PgWireError::UserError(Box::new(error.to_error_info()))
    }
}

/// Catalog errors caused by the statement become the Postgres error a user
/// expects; errors in stored bytes are corruption.
impl From<arbor_catalog::CatalogError> for GatewayError {
    fn from(error: arbor_catalog::CatalogError) -> Self {
        use arbor_catalog::CatalogError as E;
        match error {
            E::NullPrimaryKey { table, column } => GatewayError::NotNullViolation {
                table,
                column,
                row: String::new(),
            },
            E::InvalidText { type_name, value } => GatewayError::InvalidTextRepresentation {
                type_name: type_name.to_owned(),
                value,
            },
            E::OutOfRange { type_name } => GatewayError::NumericOutOfRange {
                type_name: type_name.to_owned(),
            },
            E::DuplicateTable { name } => GatewayError::DuplicateTable { name },
            E::UndefinedTable { name } => GatewayError::UndefinedTable { name },
            E::BuiltInTable { name } => GatewayError::WrongObjectType {
                name,
                operation: "dropped (it is built in)".to_owned(),
            },
            E::TooManyTables { limit } => GatewayError::ProgramLimitExceeded {
                what: "creating another table".to_owned(),
                limit,
            },
            E::InvalidIdentifier { name, limit } => GatewayError::InvalidName {
                name,
                reason: format!("names are 1 to {limit} bytes long"),
            },
            E::InvalidDescriptor { table, reason } => GatewayError::InvalidName {
                name: table,
                reason,
            },
            E::TypeMismatch {
                table,
                column,
                expected,
            } => GatewayError::DatatypeMismatch {
                message: format!(
                    "column \"{column}\" of relation \"{table}\" is of type {expected}"
                ),
            },
            other @ (E::WrongValueCount { .. }
            | E::MalformedKey { .. }
            | E::MalformedRow { .. }
            | E::UnsupportedRowVersion { .. }
            | E::MalformedCatalog { .. }) => GatewayError::Corrupt(other),
        }
    }
}

impl From<sqlparser::parser::ParserError> for GatewayError {
    fn from(error: sqlparser::parser::ParserError) -> Self {
        let message = match error {
            sqlparser::parser::ParserError::TokenizerError(message)
            | sqlparser::parser::ParserError::ParserError(message) => {
                format!("syntax error: {message}")
            }
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                "syntax error: statement nests too deeply".to_owned()
            }
        };
        GatewayError::Syntax { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value of every variant: adding a variant without a line here
    /// fails to compile the exhaustive match below.
    fn every_variant() -> Vec<GatewayError> {
        vec![
            GatewayError::Syntax {
                message: "x".into(),
            },
            GatewayError::Unsupported {
                feature: "x".into(),
            },
            GatewayError::UndefinedTable { name: "x".into() },
            GatewayError::UndefinedColumn { name: "x".into() },
            GatewayError::DuplicateColumn { name: "x".into() },
            GatewayError::AmbiguousColumn { name: "x".into() },
            GatewayError::InvalidRegularExpression { reason: "x".into() },
            GatewayError::DivisionByZero,
            GatewayError::ReadOnlyTable {
                table: "x".into(),
                operation: "INSERT".into(),
            },
            GatewayError::UniqueViolation {
                constraint: "kv_pkey".into(),
                column: "k".into(),
                value: "a".into(),
            },
            GatewayError::NotNullViolation {
                table: "kv".into(),
                column: "k".into(),
                row: "null, 1".into(),
            },
            GatewayError::ProgramLimitExceeded {
                what: "x".into(),
                limit: 1,
            },
            GatewayError::UndefinedOperator {
                left_type: "text".into(),
                operator: "=".into(),
                right_type: "integer".into(),
            },
            GatewayError::UndefinedFunction { name: "f()".into() },
            GatewayError::DatatypeMismatch {
                message: "x".into(),
            },
            GatewayError::InvalidTextRepresentation {
                type_name: "bigint".into(),
                value: "x".into(),
            },
            GatewayError::Grouping { column: "k".into() },
            GatewayError::CardinalityViolation { value: "a".into() },
            GatewayError::InvalidConflictTarget,
            GatewayError::InvalidRowCount { clause: "LIMIT" },
            GatewayError::UndefinedParameter { name: "x".into() },
            GatewayError::InvalidParameterValue {
                name: "x".into(),
                value: "y".into(),
                reason: "z".into(),
            },
            GatewayError::CantChangeParameter { name: "x".into() },
            GatewayError::MultipleStatementsInPrepare,
            GatewayError::SerializationFailure { reason: "x".into() },
            GatewayError::SnapshotTooOld { reason: "x".into() },
            GatewayError::InFailedTransaction,
            GatewayError::NoActiveTransaction {
                statement: "SAVEPOINT",
            },
            GatewayError::ActiveSqlTransaction {
                statement: "ALTER TABLE ... SPLIT AT",
            },
            GatewayError::UndefinedSavepoint { name: "s".into() },
            GatewayError::StorageUnavailable { reason: "x".into() },
            GatewayError::CoordinatorUnavailable {
                addresses: "a".into(),
                reason: "x".into(),
            },
            GatewayError::StorageCorrupt { reason: "x".into() },
            GatewayError::Corrupt(arbor_catalog::CatalogError::MalformedRow {
                table: "kv".into(),
                reason: "x".into(),
            }),
            GatewayError::DuplicateTable { name: "t".into() },
            GatewayError::NumericOutOfRange {
                type_name: "smallint".into(),
            },
            GatewayError::StringTooLong { length_max: 3 },
            GatewayError::WrongObjectType {
                name: "kv".into(),
                operation: "dropped".into(),
            },
            GatewayError::InvalidName {
                name: "x".into(),
                reason: "x".into(),
            },
            GatewayError::RootUnavailable {
                addresses: "a".into(),
                reason: "x".into(),
            },
            GatewayError::CatalogContention { attempts: 3 },
            GatewayError::Listen {
                address: "127.0.0.1:1".parse().expect("literal address"),
                source: std::io::Error::other("x"),
            },
            GatewayError::QueryCanceled,
            GatewayError::PasswordAuthenticationFailed { user: "x".into() },
            GatewayError::EncryptionRequired {
                host: "127.0.0.1".into(),
                user: "x".into(),
            },
            GatewayError::TlsFile {
                what: "certificate",
                path: "cert.pem".into(),
                reason: "x".into(),
            },
            GatewayError::UsersFile {
                path: "users".into(),
                line: 1,
                reason: "x".into(),
            },
            GatewayError::AuthConfig { reason: "x".into() },
            GatewayError::Internal {
                message: "x".into(),
            },
        ]
    }

    fn expected_sqlstate(error: &GatewayError) -> &'static str {
        match error {
            GatewayError::Syntax { .. } | GatewayError::MultipleStatementsInPrepare => "42601",
            GatewayError::Unsupported { .. } => "0A000",
            GatewayError::ReadOnlyTable { .. } => "42501",
            GatewayError::UndefinedTable { .. } => "42P01",
            GatewayError::UndefinedColumn { .. } => "42703",
            GatewayError::DuplicateColumn { .. } => "42701",
            GatewayError::AmbiguousColumn { .. } => "42702",
            GatewayError::InvalidRegularExpression { .. } => "2201B",
            GatewayError::DivisionByZero => "22012",
            GatewayError::UniqueViolation { .. } => "23505",
            GatewayError::NotNullViolation { .. } => "23502",
            GatewayError::ProgramLimitExceeded { .. } => "54000",
            GatewayError::UndefinedOperator { .. } | GatewayError::UndefinedFunction { .. } => {
                "42883"
            }
            GatewayError::DatatypeMismatch { .. } => "42804",
            GatewayError::InvalidTextRepresentation { .. } => "22P02",
            GatewayError::Grouping { .. } => "42803",
            GatewayError::CardinalityViolation { .. } => "21000",
            GatewayError::InvalidConflictTarget => "42P10",
            GatewayError::InvalidRowCount { .. } => "2201W",
            GatewayError::UndefinedParameter { .. } => "42704",
            GatewayError::InvalidParameterValue { .. } => "22023",
            GatewayError::CantChangeParameter { .. } => "55P02",
            GatewayError::SerializationFailure { .. } => "40001",
            GatewayError::SnapshotTooOld { .. } => "72000",
            GatewayError::InFailedTransaction => "25P02",
            GatewayError::NoActiveTransaction { .. } => "25P01",
            GatewayError::ActiveSqlTransaction { .. } => "25001",
            GatewayError::UndefinedSavepoint { .. } => "3B001",
            GatewayError::StorageUnavailable { .. }
            | GatewayError::CoordinatorUnavailable { .. } => "57P03",
            GatewayError::Corrupt(_) | GatewayError::StorageCorrupt { .. } => "XX001",
            GatewayError::DuplicateTable { .. } => "42P07",
            GatewayError::NumericOutOfRange { .. } => "22003",
            GatewayError::StringTooLong { .. } => "22001",
            GatewayError::WrongObjectType { .. } => "42809",
            GatewayError::InvalidName { .. } => "42622",
            GatewayError::RootUnavailable { .. } => "57P03",
            GatewayError::CatalogContention { .. } => "40001",
            GatewayError::Listen { .. } => "58000",
            GatewayError::QueryCanceled => "57014",
            GatewayError::PasswordAuthenticationFailed { .. } => "28P01",
            GatewayError::EncryptionRequired { .. } => "28000",
            GatewayError::TlsFile { .. }
            | GatewayError::UsersFile { .. }
            | GatewayError::AuthConfig { .. } => "F0000",
            GatewayError::Internal { .. } => "XX000",
        }
    }

    #[test]
    fn every_variant_maps_to_its_sqlstate() {
        let errors = every_variant();
        assert_eq!(errors.len(), 49, "a variant is missing from every_variant");
        for error in &errors {
            assert_eq!(error.sqlstate(), expected_sqlstate(error), "{error:?}");
            assert_eq!(error.sqlstate().len(), 5);
            let info = error.to_error_info();
            assert_eq!(info.code, error.sqlstate());
            assert_eq!(info.severity, "ERROR");
            assert!(!info.message.is_empty());
        }
    }

    #[test]
    fn unique_violation_reads_like_postgres() {
        let error = GatewayError::UniqueViolation {
            constraint: "kv_pkey".into(),
            column: "k".into(),
            value: "a".into(),
        };
        assert_eq!(
            error.to_string(),
            "duplicate key value violates unique constraint \"kv_pkey\""
        );
        assert_eq!(
            error.detail().as_deref(),
            Some("Key (k)=(a) already exists.")
        );
    }

    #[test]
    fn parser_errors_are_syntax_errors() {
        let error = sqlparser::parser::Parser::parse_sql(
            &sqlparser::dialect::PostgreSqlDialect {},
            "SELEC 1",
        )
        .map_err(GatewayError::from)
        .expect_err("not SQL");
        assert_eq!(error.sqlstate(), "42601");
    }
}
