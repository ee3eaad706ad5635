//! The byte layout of table rows in the region key space. The only module
//! that knows it.
//!
//! Key: `TABLE_KEY_PREFIX | table id (u32 big-endian) | primary-key columns`,
//! each key column memcomparable, so byte order of keys == value order of
//! primary keys. Text is memcomparable as its UTF-8 bytes with 0x00 escaped as
//! `0x00 0xFF` and a `0x00 0x01` terminator: a string sorts before every
//! longer string it is a prefix of, and no encoded key is a prefix of another.
//!
//! Row value: `ROW_FORMAT_VERSION | column count (LEB128) | per non-key
//! column: 0x00 (NULL) or 0x01 + length (LEB128) + UTF-8 bytes`. NULL and ''
//! stay distinct. Columns are only appended to tables, so a row with fewer
//! columns than the descriptor decodes the missing ones as NULL.
//!
//! Decoding never panics: malformed bytes give a [`CatalogError`].

use crate::descriptor::{ColumnType, Datum, TableDescriptor, TableId};
use crate::error::CatalogError;

/// First byte of every table key; other key spaces (e.g. future indexes or
/// metadata) take other prefixes.
pub const TABLE_KEY_PREFIX: u8 = b't';
/// First byte of every row value written by this code.
pub const ROW_FORMAT_VERSION: u8 = 1;

const TEXT_ESCAPE: u8 = 0x00;
const TEXT_ESCAPED_ZERO: u8 = 0xFF;
const TEXT_TERMINATOR: u8 = 0x01;
const ROW_TAG_NULL: u8 = 0x00;
const ROW_TAG_TEXT: u8 = 0x01;
/// A LEB128 u64 takes at most 10 bytes.
const VARINT_BYTES_MAX: usize = 10;

const TABLE_ID_BYTES: usize = 4;
const TABLE_PREFIX_BYTES: usize = 1 + TABLE_ID_BYTES;
const _: () = assert!(TABLE_PREFIX_BYTES == 5);

/// `TABLE_KEY_PREFIX | id`: every key of the table starts with these bytes.
pub fn table_key_prefix(table: TableId) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(TABLE_PREFIX_BYTES);
    prefix.push(TABLE_KEY_PREFIX);
    prefix.extend_from_slice(&table.0.to_be_bytes());
    prefix
}

/// `[start, end)` holding exactly the keys of `table`.
pub fn table_key_range(table: TableId) -> (Vec<u8>, Vec<u8>) {
    let start = table_key_prefix(table);
    let end = match table.0.checked_add(1) {
        Some(next) => table_key_prefix(TableId(next)),
        // The last table id: everything under the prefix byte.
        None => vec![TABLE_KEY_PREFIX + 1],
    };
    (start, end)
}

/// The smallest byte string strictly greater than `key`: used to turn an
/// inclusive bound into an exclusive one (`k > x` starts at
/// `key_successor(key(x))`, `k <= x` ends before it).
pub fn key_successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0x00);
    next
}

/// The key of the row whose primary-key columns hold `key_values` (in
/// primary-key order).
pub fn encode_primary_key(
    table: &TableDescriptor,
    key_values: &[Datum],
) -> Result<Vec<u8>, CatalogError> {
    if key_values.len() != table.primary_key.len() {
        return Err(CatalogError::WrongValueCount {
            table: table.name.clone(),
            expected: table.primary_key.len(),
            actual: key_values.len(),
        });
    }
    let mut key = table_key_prefix(table.id);
    for (&column, value) in table.primary_key.iter().zip(key_values) {
        let descriptor = &table.columns[column];
        match (descriptor.column_type, value) {
            (_, Datum::Null) => {
                return Err(CatalogError::NullPrimaryKey {
                    table: table.name.clone(),
                    column: descriptor.name.clone(),
                })
            }
            (ColumnType::Text, Datum::Text(text)) => encode_text_key(&mut key, text),
        }
    }
    Ok(key)
}

/// The primary-key values stored in `key`, in primary-key order.
pub fn decode_primary_key(table: &TableDescriptor, key: &[u8]) -> Result<Vec<Datum>, CatalogError> {
    let malformed = |reason: &str| CatalogError::MalformedKey {
        table: table.name.clone(),
        reason: reason.to_owned(),
    };
    let prefix = table_key_prefix(table.id);
    let Some(mut rest) = key.strip_prefix(prefix.as_slice()) else {
        return Err(malformed("key does not start with the table prefix"));
    };
    let mut values = Vec::with_capacity(table.primary_key.len());
    for &column in &table.primary_key {
        match table.columns[column].column_type {
            ColumnType::Text => {
                let (text, remaining) = decode_text_key(rest).map_err(&malformed)?;
                values.push(Datum::Text(text));
                rest = remaining;
            }
        }
    }
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the primary key"));
    }
    Ok(values)
}

/// Encodes a whole row (values in column order) into its key and value.
pub fn encode_row(
    table: &TableDescriptor,
    row: &[Datum],
) -> Result<(Vec<u8>, Vec<u8>), CatalogError> {
    if row.len() != table.columns.len() {
        return Err(CatalogError::WrongValueCount {
            table: table.name.clone(),
            expected: table.columns.len(),
            actual: row.len(),
        });
    }
    let key_values: Vec<Datum> = table
        .primary_key
        .iter()
        .map(|&column| row[column].clone())
        .collect();
    let key = encode_primary_key(table, &key_values)?;
    let value_columns = table.value_columns();
    let mut value = vec![ROW_FORMAT_VERSION];
    put_varint(&mut value, value_columns.len() as u64);
    for column in value_columns {
        let descriptor = &table.columns[column];
        match (descriptor.column_type, &row[column]) {
            (_, Datum::Null) => value.push(ROW_TAG_NULL),
            (ColumnType::Text, Datum::Text(text)) => {
                value.push(ROW_TAG_TEXT);
                put_varint(&mut value, text.len() as u64);
                value.extend_from_slice(text.as_bytes());
            }
        }
    }
    Ok((key, value))
}

/// Decodes a stored key/value pair back into a row in column order.
pub fn decode_row(
    table: &TableDescriptor,
    key: &[u8],
    value: &[u8],
) -> Result<Vec<Datum>, CatalogError> {
    let key_values = decode_primary_key(table, key)?;
    let stored_values = decode_row_value(table, value)?;
    let mut row = vec![Datum::Null; table.columns.len()];
    for (&column, datum) in table.primary_key.iter().zip(key_values) {
        row[column] = datum;
    }
    for (column, datum) in table.value_columns().into_iter().zip(stored_values) {
        row[column] = datum;
    }
    Ok(row)
}

/// The non-key values of a row value, in column order, padded with NULL for
/// columns appended after the row was written.
fn decode_row_value(table: &TableDescriptor, value: &[u8]) -> Result<Vec<Datum>, CatalogError> {
    let malformed = |reason: &str| CatalogError::MalformedRow {
        table: table.name.clone(),
        reason: reason.to_owned(),
    };
    let Some((&version, mut rest)) = value.split_first() else {
        return Err(malformed("empty row value"));
    };
    if version != ROW_FORMAT_VERSION {
        return Err(CatalogError::UnsupportedRowVersion {
            table: table.name.clone(),
            version,
        });
    }
    let value_columns = table.value_columns();
    let (stored_count, remaining) = take_varint(rest).map_err(&malformed)?;
    rest = remaining;
    if stored_count > value_columns.len() as u64 {
        return Err(malformed("row has more columns than the table"));
    }
    let mut values = Vec::with_capacity(value_columns.len());
    for &column in value_columns.iter().take(stored_count as usize) {
        let Some((&tag, remaining)) = rest.split_first() else {
            return Err(malformed("row ends before its last column"));
        };
        rest = remaining;
        match (tag, table.columns[column].column_type) {
            (ROW_TAG_NULL, _) => values.push(Datum::Null),
            (ROW_TAG_TEXT, ColumnType::Text) => {
                let (length, remaining) = take_varint(rest).map_err(&malformed)?;
                let length = usize::try_from(length)
                    .ok()
                    .filter(|&length| length <= remaining.len())
                    .ok_or_else(|| malformed("text length runs past the end of the row"))?;
                let (bytes, remaining) = remaining.split_at(length);
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| malformed("text column is not valid UTF-8"))?;
                values.push(Datum::Text(text.to_owned()));
                rest = remaining;
            }
            _ => return Err(malformed("unknown column tag")),
        }
    }
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the last column"));
    }
    values.resize(value_columns.len(), Datum::Null);
    Ok(values)
}

fn encode_text_key(out: &mut Vec<u8>, text: &str) {
    for &byte in text.as_bytes() {
        if byte == TEXT_ESCAPE {
            out.extend_from_slice(&[TEXT_ESCAPE, TEXT_ESCAPED_ZERO]);
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(&[TEXT_ESCAPE, TEXT_TERMINATOR]);
}

/// Decodes one memcomparable text and returns it with the bytes after it.
fn decode_text_key(input: &[u8]) -> Result<(String, &[u8]), &'static str> {
    let mut bytes = Vec::new();
    let mut index = 0;
    loop {
        match input.get(index) {
            None => return Err("text key column is not terminated"),
            Some(&TEXT_ESCAPE) => match input.get(index + 1) {
                Some(&TEXT_TERMINATOR) => {
                    let text =
                        String::from_utf8(bytes).map_err(|_| "text key column is not UTF-8")?;
                    return Ok((text, &input[index + 2..]));
                }
                Some(&TEXT_ESCAPED_ZERO) => {
                    bytes.push(0x00);
                    index += 2;
                }
                _ => return Err("bad escape in text key column"),
            },
            Some(&byte) => {
                bytes.push(byte);
                index += 1;
            }
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(input: &[u8]) -> Result<(u64, &[u8]), &'static str> {
    let mut value: u64 = 0;
    for (index, &byte) in input.iter().enumerate().take(VARINT_BYTES_MAX) {
        let bits = u64::from(byte & 0x7F);
        let shift = 7 * index as u32;
        if shift == 63 && bits > 1 {
            return Err("varint overflows u64");
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok((value, &input[index + 1..]));
        }
    }
    Err("truncated or overlong varint")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::{ColumnDescriptor, KV_TABLE_ID};

    fn text(value: &str) -> Datum {
        Datum::Text(value.to_owned())
    }

    fn kv_key(k: &str) -> Vec<u8> {
        encode_primary_key(&TableDescriptor::kv(), &[text(k)]).expect("text keys encode")
    }

    /// Deterministic generator (xorshift64*) so failures reproduce from the
    /// printed seed without a `rand` dependency.
    struct Generator(u64);
    impl Generator {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Short strings over an alphabet chosen to hit the escaping edge
        /// cases: NUL, the terminator and escape bytes, and multi-byte UTF-8.
        fn string(&mut self) -> String {
            const ALPHABET: [char; 8] = ['\0', '\u{1}', 'a', 'b', '\u{ff}', 'é', '\u{7f}', 'z'];
            let length = (self.next() % 6) as usize;
            (0..length)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn key_byte_order_equals_string_order_over_generated_strings() {
        let seed = 0x5EED_1234_u64;
        let mut generator = Generator(seed);
        let mut strings: Vec<String> = (0..2_000).map(|_| generator.string()).collect();
        strings.extend(["", "a", "a\0", "a\0\0", "a\u{1}", "ab", "\0", "\0a"].map(String::from));
        for left in strings.iter().take(300) {
            for right in &strings {
                assert_eq!(
                    left.cmp(right),
                    kv_key(left).cmp(&kv_key(right)),
                    "seed {seed:#x}: order of {left:?} vs {right:?}"
                );
            }
        }
    }

    #[test]
    fn keys_round_trip_including_nuls_and_prefixes() {
        let kv = TableDescriptor::kv();
        let mut generator = Generator(42);
        let mut strings: Vec<String> = (0..500).map(|_| generator.string()).collect();
        strings.extend(["", "\0", "\0\u{1}", "\u{ff}\0", "prefix", "prefix\0"].map(String::from));
        for value in strings {
            let key = kv_key(&value);
            assert_eq!(decode_primary_key(&kv, &key), Ok(vec![text(&value)]));
        }
    }

    #[test]
    fn prefix_sorts_first_and_successor_bounds_are_tight() {
        assert!(kv_key("a") < kv_key("a\0"));
        assert!(kv_key("a\0") < kv_key("a\u{1}"));
        assert!(kv_key("a") < kv_key("ab"));
        let successor = key_successor(&kv_key("a"));
        assert!(kv_key("a") < successor);
        assert!(successor < kv_key("a\0"));
        assert!(successor < kv_key("ab"));
    }

    #[test]
    fn table_key_range_holds_every_key_of_the_table_and_no_other() {
        let (start, end) = table_key_range(KV_TABLE_ID);
        for value in ["", "\0", "zzzz", "\u{10FFFF}\u{10FFFF}"] {
            let key = kv_key(value);
            assert!(start <= key && key < end, "{value:?} outside the kv range");
        }
        let mut other = TableDescriptor::kv();
        other.id = TableId(KV_TABLE_ID.0 + 1);
        let other_key = encode_primary_key(&other, &[text("")]).expect("encodes");
        assert!(other_key >= end);
        let (last_start, last_end) = table_key_range(TableId(u32::MAX));
        assert!(last_start < last_end);
        assert_eq!(last_end, vec![TABLE_KEY_PREFIX + 1]);
    }

    #[test]
    fn rows_round_trip_and_keep_null_apart_from_empty() {
        let kv = TableDescriptor::kv();
        for row in [
            vec![text("a"), text("1")],
            vec![text("a"), text("")],
            vec![text("a"), Datum::Null],
            vec![text(""), text("\0x\0")],
        ] {
            let (key, value) = encode_row(&kv, &row).expect("encodes");
            assert_eq!(decode_row(&kv, &key, &value), Ok(row));
        }
        let (_, null_value) = encode_row(&kv, &[text("a"), Datum::Null]).expect("encodes");
        let (_, empty_value) = encode_row(&kv, &[text("a"), text("")]).expect("encodes");
        assert_ne!(null_value, empty_value);
    }

    #[test]
    fn null_primary_key_is_refused() {
        let kv = TableDescriptor::kv();
        assert!(matches!(
            encode_row(&kv, &[Datum::Null, text("x")]),
            Err(CatalogError::NullPrimaryKey { column, .. }) if column == "k"
        ));
        assert!(matches!(
            encode_row(&kv, &[text("x")]),
            Err(CatalogError::WrongValueCount {
                expected: 2,
                actual: 1,
                ..
            })
        ));
    }

    #[test]
    fn malformed_keys_give_errors_not_panics() {
        let kv = TableDescriptor::kv();
        let good = kv_key("ab");
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![TABLE_KEY_PREFIX],
            table_key_prefix(KV_TABLE_ID),
            table_key_prefix(TableId(9)),
            [table_key_prefix(KV_TABLE_ID), vec![b'a', 0x00]].concat(),
            [table_key_prefix(KV_TABLE_ID), vec![b'a', 0x00, 0x07]].concat(),
            [table_key_prefix(KV_TABLE_ID), vec![0xC3, 0x00, 0x01]].concat(),
            [good.clone(), vec![0x00]].concat(),
        ];
        for cut in 0..good.len() {
            cases.push(good[..cut].to_vec());
        }
        for key in cases {
            assert!(decode_primary_key(&kv, &key).is_err(), "{key:?} decoded");
        }
    }

    #[test]
    fn malformed_rows_give_errors_not_panics() {
        let kv = TableDescriptor::kv();
        let key = kv_key("a");
        let (_, good) = encode_row(&kv, &[text("a"), text("hello")]).expect("encodes");
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![ROW_FORMAT_VERSION + 1, 1, ROW_TAG_NULL],
            vec![ROW_FORMAT_VERSION, 2, ROW_TAG_NULL, ROW_TAG_NULL],
            vec![ROW_FORMAT_VERSION, 1, 0x07],
            vec![ROW_FORMAT_VERSION, 1, ROW_TAG_TEXT, 0xFF],
            vec![ROW_FORMAT_VERSION, 1, ROW_TAG_TEXT, 2, 0xC3, 0x28],
            vec![
                ROW_FORMAT_VERSION,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
            ],
            [good.clone(), vec![0]].concat(),
        ];
        for cut in 1..good.len() {
            cases.push(good[..cut].to_vec());
        }
        for value in cases {
            assert!(decode_row(&kv, &key, &value).is_err(), "{value:?} decoded");
        }
    }

    #[test]
    fn rows_written_before_a_column_was_appended_decode_it_as_null() {
        let kv = TableDescriptor::kv();
        let mut wider = kv.clone();
        wider.columns.push(ColumnDescriptor {
            name: "w".to_owned(),
            column_type: ColumnType::Text,
            nullable: true,
        });
        let (key, value) = encode_row(&kv, &[text("a"), text("1")]).expect("encodes");
        assert_eq!(
            decode_row(&wider, &key, &value),
            Ok(vec![text("a"), text("1"), Datum::Null])
        );
        let (_, wide_value) =
            encode_row(&wider, &[text("a"), text("1"), text("2")]).expect("encodes");
        assert!(decode_row(&kv, &key, &wide_value).is_err());
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            assert_eq!(take_varint(&bytes), Ok((value, &[][..])));
        }
    }
}
