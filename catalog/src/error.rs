//! The one error type of the catalog. Variants carry the table and column
//! they are about so the gateway can turn them into precise Postgres errors.

/// Everything that can go wrong describing, encoding or decoding a table row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// A primary-key column was given NULL; keys never hold NULL.
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NullPrimaryKey { table: String, column: String },
    /// The caller passed a row or key with the wrong number of values.
    #[error("table \"{table}\" expects {expected} values, got {actual}")]
    WrongValueCount {
        table: String,
        expected: usize,
        actual: usize,
    },
    /// A value does not fit its column's type.
    #[error("column \"{column}\" of table \"{table}\" expects type {expected}")]
    TypeMismatch {
        table: String,
        column: String,
        expected: &'static str,
    },
    /// A stored key does not decode for this table (corruption or wrong table).
    #[error("malformed key for table \"{table}\": {reason}")]
    MalformedKey { table: String, reason: String },
    /// A stored row value does not decode for this table.
    #[error("malformed row for table \"{table}\": {reason}")]
    MalformedRow { table: String, reason: String },
    /// A row written in a format version this code does not know.
    #[error("row of table \"{table}\" has unknown format version {version}")]
    UnsupportedRowVersion { table: String, version: u8 },
    /// A descriptor that breaks the catalog's own rules (e.g. no primary key).
    #[error("invalid descriptor for table \"{table}\": {reason}")]
    InvalidDescriptor { table: String, reason: String },
    /// Text that is not a value of the type (`'x'` for an integer).
    #[error("invalid input syntax for type {type_name}: \"{value}\"")]
    InvalidText {
        type_name: &'static str,
        value: String,
    },
    /// A number outside its type's range.
    #[error("value out of range for type {type_name}")]
    OutOfRange { type_name: &'static str },
    /// CREATE TABLE of a name that exists.
    #[error("relation \"{name}\" already exists")]
    DuplicateTable { name: String },
    /// DROP TABLE of a name that does not exist.
    #[error("relation \"{name}\" does not exist")]
    UndefinedTable { name: String },
    /// DROP of the built-in `kv` table.
    #[error("table \"{name}\" is built in and cannot be dropped")]
    BuiltInTable { name: String },
    #[error("the catalog holds at most {limit} tables")]
    TooManyTables { limit: usize },
    #[error("identifier \"{name}\" must be 1 to {limit} bytes long")]
    InvalidIdentifier { name: String, limit: usize },
    /// The catalog bytes from root do not decode.
    #[error("malformed catalog: {reason}")]
    MalformedCatalog { reason: String },
}
