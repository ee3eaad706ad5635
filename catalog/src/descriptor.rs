//! Table descriptors: the schema of a table, independent of where it is stored.
//!
//! Invariant kept here: a valid descriptor has at least one column, unique
//! column names, and a non-empty primary key of distinct, existing columns.

use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use crate::types::{ColumnType, Datum};

/// Identifies a table inside the key space (`t | id | ...`). Ids are never
/// reused, because keys of a dropped table may still exist on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId(pub u32);

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The id of the built-in `kv` table. Ids below 100 are reserved for tables
/// that exist from the first start.
pub const KV_TABLE_ID: TableId = TableId(1);
/// The name of the built-in `kv` table.
pub const KV_TABLE_NAME: &str = "kv";

/// What a column holds when an INSERT does not name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnDefault {
    /// A constant, already of the column's type.
    Constant(Datum),
    /// `now()` / `CURRENT_TIMESTAMP`, evaluated per statement.
    CurrentTimestamp,
    /// `gen_random_uuid()`.
    RandomUuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDescriptor {
    pub name: String,
    pub column_type: ColumnType,
    /// Primary-key columns are never nullable, whatever this says.
    pub nullable: bool,
    /// Maximum length in characters, for `VARCHAR(n)`.
    #[serde(default)]
    pub length_max: Option<u32>,
    #[serde(default)]
    pub default: Option<ColumnDefault>,
}

impl ColumnDescriptor {
    /// A nullable column without default or length limit.
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> Self {
        ColumnDescriptor {
            name: name.into(),
            column_type,
            nullable: true,
            length_max: None,
            default: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDescriptor {
    pub id: TableId,
    pub name: String,
    /// In declaration order; rows are `Vec<Datum>` in this order.
    pub columns: Vec<ColumnDescriptor>,
    /// Indexes into `columns`, in key order.
    pub primary_key: Vec<usize>,
}

impl TableDescriptor {
    /// Builds a descriptor and checks it ([`TableDescriptor::validate`]).
    pub fn new(
        id: TableId,
        name: impl Into<String>,
        columns: Vec<ColumnDescriptor>,
        primary_key: Vec<usize>,
    ) -> Result<Self, CatalogError> {
        let descriptor = TableDescriptor {
            id,
            name: name.into(),
            columns,
            primary_key,
        };
        descriptor.validate()?;
        Ok(descriptor)
    }

    /// The built-in `kv (k TEXT PRIMARY KEY, v TEXT)` table.
    pub fn kv() -> Self {
        TableDescriptor {
            id: KV_TABLE_ID,
            name: KV_TABLE_NAME.to_owned(),
            columns: vec![
                ColumnDescriptor {
                    nullable: false,
                    ..ColumnDescriptor::new("k", ColumnType::Text)
                },
                ColumnDescriptor::new("v", ColumnType::Text),
            ],
            primary_key: vec![0],
        }
    }

    pub fn validate(&self) -> Result<(), CatalogError> {
        let invalid = |reason: &str| CatalogError::InvalidDescriptor {
            table: self.name.clone(),
            reason: reason.to_owned(),
        };
        if self.columns.is_empty() {
            return Err(invalid("a table needs at least one column"));
        }
        if self.primary_key.is_empty() {
            return Err(invalid("a table needs a primary key"));
        }
        for (index, column) in self.columns.iter().enumerate() {
            if self.columns[..index].iter().any(|c| c.name == column.name) {
                return Err(invalid("column names must be unique"));
            }
        }
        for (position, &column) in self.primary_key.iter().enumerate() {
            if column >= self.columns.len() {
                return Err(invalid("primary key names a column that does not exist"));
            }
            if self.primary_key[..position].contains(&column) {
                return Err(invalid("primary key repeats a column"));
            }
        }
        Ok(())
    }

    /// Index of the column called `name` (names are compared exactly; the
    /// gateway folds unquoted identifiers to lower case before asking).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn is_primary_key_column(&self, column: usize) -> bool {
        self.primary_key.contains(&column)
    }

    /// Indexes of the columns stored in the row value (not in the key), in
    /// column order.
    pub fn value_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&column| !self.is_primary_key_column(column))
            .collect()
    }

    /// The Postgres name of the primary-key constraint (`<table>_pkey`).
    pub fn primary_key_constraint_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    /// The names of the primary-key columns, in key order.
    pub fn primary_key_names(&self) -> Vec<&str> {
        self.primary_key
            .iter()
            .map(|&column| self.columns[column].name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_descriptor_is_valid_and_keyed_by_k() {
        let kv = TableDescriptor::kv();
        kv.validate().expect("built-in descriptor is valid");
        assert_eq!(kv.id, KV_TABLE_ID);
        assert_eq!(kv.column_index("k"), Some(0));
        assert_eq!(kv.column_index("v"), Some(1));
        assert_eq!(kv.column_index("x"), None);
        assert_eq!(kv.value_columns(), vec![1]);
        assert_eq!(kv.primary_key_constraint_name(), "kv_pkey");
        assert_eq!(kv.primary_key_names(), vec!["k"]);
    }

    #[test]
    fn descriptor_rejects_broken_primary_keys() {
        let column = |name: &str| ColumnDescriptor::new(name, ColumnType::Text);
        let no_key = TableDescriptor::new(TableId(7), "t", vec![column("a")], vec![]);
        assert!(matches!(
            no_key,
            Err(CatalogError::InvalidDescriptor { .. })
        ));
        let missing = TableDescriptor::new(TableId(7), "t", vec![column("a")], vec![1]);
        assert!(missing.is_err());
        let repeated = TableDescriptor::new(TableId(7), "t", vec![column("a")], vec![0, 0]);
        assert!(repeated.is_err());
        let duplicate_names =
            TableDescriptor::new(TableId(7), "t", vec![column("a"), column("a")], vec![0]);
        assert!(duplicate_names.is_err());
        let no_columns = TableDescriptor::new(TableId(7), "t", vec![], vec![0]);
        assert!(no_columns.is_err());
        let fine = TableDescriptor::new(TableId(7), "t", vec![column("a"), column("b")], vec![1]);
        assert!(fine.is_ok());
    }
}
