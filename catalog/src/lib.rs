//! `arbor-catalog`: table descriptors and the key/row encoding.
//!
//! Owns: what a table is ([`TableDescriptor`]: id, name, typed columns, primary
//! key, defaults), the column types and their values ([`types`]: text input
//! and output, comparison), the whole catalog and its versioned encoding that
//! root stores as opaque bytes ([`catalog`], with pure DDL:
//! `(catalog, change) -> catalog'`), the built-in
//! `kv (k TEXT PRIMARY KEY, v TEXT)` table, and the one byte layout that turns
//! a SQL row into a region key/value pair ([`encoding`]).
//!
//! Never knows: IO, async, regions, the network, SQL text or SQLSTATEs. It is
//! pure functions over bytes, so the gateway (and later DDL in root) can use
//! it anywhere and test it without a cluster.
//!
//! **Architecture Invariant:** for two rows of the same table, the byte order
//! of their encoded keys equals the order of their primary-key values, and
//! every key of table `t` lies inside [`encoding::table_key_range`]`(t)`.
//! Range scans in the gateway rely on this; the tests check it for every key
//! type over many generated values.
//!
//! **Architecture Invariant:** row values are versioned (first byte) and
//! columns are only ever appended, so every row written by older code still
//! decodes: columns missing from an old row decode as NULL.

pub mod catalog;
pub mod descriptor;
pub mod encoding;
mod error;
pub mod types;

pub use catalog::{Catalog, CATALOG_BYTES_MAX, FIRST_USER_TABLE_ID};
pub use descriptor::{
    ColumnDefault, ColumnDescriptor, TableDescriptor, TableId, KV_TABLE_ID, KV_TABLE_NAME,
};
pub use encoding::{
    datum_fits, decode_primary_key, decode_row, encode_key_prefix, encode_primary_key, encode_row,
    key_successor, prefix_end, table_key_prefix, table_key_range, ROW_FORMAT_VERSION,
    TABLE_KEY_PREFIX,
};
pub use error::CatalogError;
pub use types::{ColumnType, Datum};
