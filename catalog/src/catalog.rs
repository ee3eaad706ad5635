//! The whole catalog: every user table, the built-in `kv` table, and the
//! versioned byte encoding that root stores opaquely (`CatalogChanged`).
//!
//! Invariants: table names are unique (including `kv`); table ids are never
//! reused (`next_table_id` only grows), because a dropped table's keys may
//! still be on disk while its range is being deleted; the encoding starts
//! with a format byte, so a catalog written by older code still decodes.
//! DDL is pure: `(catalog, change) -> catalog'`; the gateway commits the
//! result to root with the version it read as precondition.

use serde::{Deserialize, Serialize};

use crate::descriptor::{TableDescriptor, TableId, KV_TABLE_NAME};
use crate::error::CatalogError;

/// First byte of an encoded catalog.
pub const CATALOG_FORMAT_VERSION: u8 = 1;
/// Largest encoded catalog root accepts.
pub const CATALOG_BYTES_MAX: usize = 4 << 20;
/// User tables one catalog may hold.
pub const TABLES_MAX: usize = 10_000;
/// Columns one table may have (Postgres allows 1,600).
pub const COLUMNS_MAX: usize = 1_600;
/// Longest table or column name (Postgres' NAMEDATALEN - 1).
pub const IDENTIFIER_BYTES_MAX: usize = 63;
/// The first id given to a user table; ids below are reserved for built-ins.
pub const FIRST_USER_TABLE_ID: TableId = TableId(100);

/// The catalog at one version. Version 0 is the empty catalog a fresh
/// cluster starts with (only `kv`).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// The root catalog version this was read at (not part of the encoding:
    /// root owns it).
    pub version: u64,
    body: CatalogBody,
    kv: TableDescriptor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CatalogBody {
    next_table_id: u32,
    /// User tables in creation order.
    tables: Vec<TableDescriptor>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::empty()
    }
}

impl Catalog {
    pub fn empty() -> Self {
        Catalog {
            version: 0,
            body: CatalogBody {
                next_table_id: FIRST_USER_TABLE_ID.0,
                tables: Vec::new(),
            },
            kv: TableDescriptor::kv(),
        }
    }

    /// Decodes what root stores at `version` (empty bytes: the empty catalog).
    pub fn decode(version: u64, bytes: &[u8]) -> Result<Self, CatalogError> {
        let malformed = |reason: String| CatalogError::MalformedCatalog { reason };
        let mut catalog = Catalog::empty();
        catalog.version = version;
        let Some((&format, body)) = bytes.split_first() else {
            return Ok(catalog);
        };
        if format != CATALOG_FORMAT_VERSION {
            return Err(malformed(format!("unknown catalog format {format}")));
        }
        catalog.body =
            serde_json::from_slice(body).map_err(|error| malformed(error.to_string()))?;
        for table in &catalog.body.tables {
            table.validate()?;
        }
        Ok(catalog)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![CATALOG_FORMAT_VERSION];
        // Serializing plain data structs to a Vec cannot fail.
        serde_json::to_writer(&mut bytes, &self.body).expect("catalog serializes");
        bytes
    }

    /// The table called `name` (`kv` included).
    pub fn table(&self, name: &str) -> Option<&TableDescriptor> {
        if name == KV_TABLE_NAME {
            return Some(&self.kv);
        }
        self.body.tables.iter().find(|table| table.name == name)
    }

    /// Every table, `kv` first, then user tables in creation order.
    pub fn tables(&self) -> impl Iterator<Item = &TableDescriptor> {
        std::iter::once(&self.kv).chain(self.body.tables.iter())
    }

    /// The catalog with `table` added; its id is assigned here (the id in
    /// `table` is ignored).
    pub fn with_table_created(&self, mut table: TableDescriptor) -> Result<Catalog, CatalogError> {
        if self.table(&table.name).is_some() {
            return Err(CatalogError::DuplicateTable { name: table.name });
        }
        if self.body.tables.len() >= TABLES_MAX {
            return Err(CatalogError::TooManyTables { limit: TABLES_MAX });
        }
        check_identifier(&table.name)?;
        if table.columns.len() > COLUMNS_MAX {
            return Err(CatalogError::InvalidDescriptor {
                table: table.name,
                reason: format!("tables can have at most {COLUMNS_MAX} columns"),
            });
        }
        for column in &table.columns {
            check_identifier(&column.name)?;
        }
        table.id = TableId(self.body.next_table_id);
        table.validate()?;
        let mut next = self.clone();
        next.body.next_table_id =
            self.body
                .next_table_id
                .checked_add(1)
                .ok_or(CatalogError::TooManyTables {
                    limit: u32::MAX as usize,
                })?;
        next.body.tables.push(table);
        Ok(next)
    }

    /// The catalog without the table called `name`, and the dropped table.
    pub fn with_table_dropped(
        &self,
        name: &str,
    ) -> Result<(Catalog, TableDescriptor), CatalogError> {
        if name == KV_TABLE_NAME {
            return Err(CatalogError::BuiltInTable {
                name: name.to_owned(),
            });
        }
        let index = self
            .body
            .tables
            .iter()
            .position(|table| table.name == name)
            .ok_or_else(|| CatalogError::UndefinedTable {
                name: name.to_owned(),
            })?;
        let mut next = self.clone();
        let dropped = next.body.tables.remove(index);
        Ok((next, dropped))
    }
}

fn check_identifier(name: &str) -> Result<(), CatalogError> {
    if name.is_empty() || name.len() > IDENTIFIER_BYTES_MAX {
        return Err(CatalogError::InvalidIdentifier {
            name: name.to_owned(),
            limit: IDENTIFIER_BYTES_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::ColumnDescriptor;
    use crate::types::{ColumnType, Datum};
    use crate::ColumnDefault;

    fn table(name: &str) -> TableDescriptor {
        TableDescriptor {
            id: TableId(0),
            name: name.to_owned(),
            columns: vec![
                ColumnDescriptor::new("id", ColumnType::Int8),
                ColumnDescriptor {
                    default: Some(ColumnDefault::Constant(Datum::Numeric("1.5".into()))),
                    ..ColumnDescriptor::new("n", ColumnType::Numeric)
                },
            ],
            primary_key: vec![0],
        }
    }

    #[test]
    fn empty_bytes_are_the_empty_catalog_with_kv() {
        let catalog = Catalog::decode(0, &[]).expect("decodes");
        assert_eq!(catalog, Catalog::empty());
        assert!(catalog.table("kv").is_some());
        assert_eq!(catalog.tables().count(), 1);
    }

    #[test]
    fn created_tables_round_trip_and_get_fresh_ids() {
        let one = Catalog::empty().with_table_created(table("a")).expect("a");
        let two = one.with_table_created(table("b")).expect("b");
        let (three, dropped) = two.with_table_dropped("a").expect("drop a");
        assert_eq!(dropped.id, FIRST_USER_TABLE_ID);
        let four = three.with_table_created(table("a")).expect("a again");
        let ids: Vec<u32> = four.tables().map(|table| table.id.0).collect();
        assert_eq!(ids, vec![1, 101, 102], "ids are never reused");
        let decoded = Catalog::decode(7, &four.encode()).expect("decodes");
        assert_eq!(decoded.version, 7);
        assert_eq!(
            decoded.tables().collect::<Vec<_>>(),
            four.tables().collect::<Vec<_>>()
        );
    }

    #[test]
    fn duplicate_missing_and_built_in_tables_are_refused() {
        let one = Catalog::empty().with_table_created(table("a")).expect("a");
        assert!(matches!(
            one.with_table_created(table("a")),
            Err(CatalogError::DuplicateTable { .. })
        ));
        assert!(matches!(
            one.with_table_created(table("kv")),
            Err(CatalogError::DuplicateTable { .. })
        ));
        assert!(matches!(
            one.with_table_dropped("nope"),
            Err(CatalogError::UndefinedTable { .. })
        ));
        assert!(matches!(
            one.with_table_dropped("kv"),
            Err(CatalogError::BuiltInTable { .. })
        ));
        assert!(matches!(
            one.with_table_created(table(&"x".repeat(64))),
            Err(CatalogError::InvalidIdentifier { .. })
        ));
    }

    #[test]
    fn unknown_formats_and_garbage_are_errors() {
        assert!(Catalog::decode(1, &[CATALOG_FORMAT_VERSION + 1]).is_err());
        assert!(Catalog::decode(1, &[CATALOG_FORMAT_VERSION, b'{']).is_err());
    }
}
