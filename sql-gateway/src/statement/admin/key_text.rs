//! How admin results show a storage key of a table: as the primary-key
//! values it encodes, `/v1/v2` (CockroachDB's pretty keys without the
//! table part), text values in double quotes (`/"k"`), so `/1` is the key
//! where the rows with first key column 1 start.
//!
//! A key outside the table (before its first possible key, at or after its
//! end, or the unbounded ends of the key space) is `None` (SQL NULL): the
//! region runs on past the table's edge. A key inside the table that is
//! not a primary-key prefix (a split chosen by size inside a row's key)
//! shows as its escaped bytes, as `system.regions` shows keys.

use arbor_catalog::{decode_primary_key, table_key_range, Datum, TableDescriptor};

use crate::system_tables::display_key;

/// `key` as the table's primary-key values, or None outside the table.
pub(crate) fn key_text(table: &TableDescriptor, key: &[u8]) -> Option<String> {
    let (table_start, table_end) = table_key_range(table.id);
    if key.is_empty() || key <= table_start.as_slice() || key >= table_end.as_slice() {
        return None;
    }
    // The longest primary-key prefix the key encodes exactly: a split at
    // `VALUES (1)` of a two-column key is the one-column prefix.
    for length in (1..=table.primary_key.len()).rev() {
        let prefix = TableDescriptor {
            primary_key: table.primary_key[..length].to_vec(),
            ..table.clone()
        };
        if let Ok(values) = decode_primary_key(&prefix, key) {
            return Some(values_text(&values));
        }
    }
    Some(display_key(key))
}

/// `/v1/v2`: each value as Postgres prints it, text in double quotes.
pub(crate) fn values_text(values: &[Datum]) -> String {
    values
        .iter()
        .map(|value| format!("/{}", value_text(value)))
        .collect()
}

fn value_text(value: &Datum) -> String {
    match value {
        Datum::Text(text) | Datum::Json(text) => {
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        }
        other => other.to_text(),
    }
}
