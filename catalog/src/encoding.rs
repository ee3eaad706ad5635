//! The byte layout of table rows in the region key space. The only module
//! that knows it.
//!
//! Key: `TABLE_KEY_PREFIX | table id (u32 big-endian) | primary-key columns`,
//! each key column memcomparable, so byte order of keys == value order of
//! primary keys:
//! - text, jsonb and bytea: the bytes with 0x00 escaped as `0x00 0xFF` and a
//!   `0x00 0x01` terminator: a string sorts before every longer string it is
//!   a prefix of, and no encoded column is a prefix of another;
//! - integers, timestamps and dates: 8 bytes big-endian with the sign bit
//!   flipped; floats: the IEEE bits, all flipped when negative, else the sign
//!   bit flipped; booleans: one byte; uuids: their 16 bytes;
//! - numeric: a sign byte (negative < zero < positive), then the decimal
//!   exponent (i32, sign flipped) and one byte per digit (digit + 1) ended by
//!   0x00, every byte inverted for negative numbers.
//!
//! Row value: `ROW_FORMAT_VERSION | column count (LEB128) | per non-key
//! column: a tag byte and the value` (tags below; lengths are LEB128). The
//! tag says what the value is, so rows written before a type existed still
//! decode. NULL and '' stay distinct. Columns are only appended to tables,
//! so a row with fewer columns than the descriptor decodes the missing ones
//! as NULL.
//!
//! Decoding never panics: malformed bytes give a [`CatalogError`].

use crate::descriptor::{TableDescriptor, TableId};
use crate::error::CatalogError;
use crate::types::{numeric_parts, ColumnType, Datum};

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
const ROW_TAG_FALSE: u8 = 0x02;
const ROW_TAG_TRUE: u8 = 0x03;
const ROW_TAG_INT: u8 = 0x04;
const ROW_TAG_FLOAT: u8 = 0x05;
const ROW_TAG_NUMERIC: u8 = 0x06;
const ROW_TAG_BYTES: u8 = 0x07;
const ROW_TAG_UUID: u8 = 0x08;
const ROW_TAG_TIMESTAMP: u8 = 0x09;
const ROW_TAG_TIMESTAMPTZ: u8 = 0x0A;
const ROW_TAG_DATE: u8 = 0x0B;
const ROW_TAG_JSON: u8 = 0x0C;
const NUMERIC_NEGATIVE: u8 = 0x01;
const NUMERIC_ZERO: u8 = 0x02;
const NUMERIC_POSITIVE: u8 = 0x03;
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
    encode_key_prefix(table, key_values)
}

/// The key prefix shared by every row whose first primary-key columns hold
/// `key_values` (all of them: the full key).
pub fn encode_key_prefix(
    table: &TableDescriptor,
    key_values: &[Datum],
) -> Result<Vec<u8>, CatalogError> {
    if key_values.len() > table.primary_key.len() {
        return Err(CatalogError::WrongValueCount {
            table: table.name.clone(),
            expected: table.primary_key.len(),
            actual: key_values.len(),
        });
    }
    let mut key = table_key_prefix(table.id);
    for (&column, value) in table.primary_key.iter().zip(key_values) {
        let descriptor = &table.columns[column];
        if value.is_null() {
            return Err(CatalogError::NullPrimaryKey {
                table: table.name.clone(),
                column: descriptor.name.clone(),
            });
        }
        if !datum_fits(descriptor.column_type, value) {
            return Err(CatalogError::TypeMismatch {
                table: table.name.clone(),
                column: descriptor.name.clone(),
                expected: descriptor.column_type.sql_name(),
            });
        }
        encode_key_column(&mut key, value);
    }
    Ok(key)
}

/// The smallest byte string greater than every string starting with
/// `prefix` (empty if there is none): the exclusive end of a prefix scan.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    end
}

/// Whether `datum` is a value a column of `column_type` can hold.
pub fn datum_fits(column_type: ColumnType, datum: &Datum) -> bool {
    match datum {
        Datum::Null => true,
        Datum::Bool(_) => column_type == ColumnType::Bool,
        Datum::Int(_) => column_type.is_integer(),
        Datum::Float(_) => column_type.is_float(),
        Datum::Numeric(_) => column_type == ColumnType::Numeric,
        Datum::Text(_) => column_type.is_text(),
        Datum::Bytes(_) => column_type == ColumnType::Bytea,
        Datum::Uuid(_) => column_type == ColumnType::Uuid,
        Datum::Timestamp(_) => column_type == ColumnType::Timestamp,
        Datum::Timestamptz(_) => column_type == ColumnType::Timestamptz,
        Datum::Date(_) => column_type == ColumnType::Date,
        Datum::Json(_) => column_type == ColumnType::Jsonb,
    }
}

fn encode_ordered_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&((value as u64) ^ (1 << 63)).to_be_bytes());
}

fn encode_key_column(out: &mut Vec<u8>, value: &Datum) {
    match value {
        Datum::Null => {}
        Datum::Bool(value) => out.push(u8::from(*value)),
        Datum::Int(value) | Datum::Timestamp(value) | Datum::Timestamptz(value) => {
            encode_ordered_i64(out, *value)
        }
        Datum::Date(days) => encode_ordered_i64(out, i64::from(*days)),
        Datum::Float(value) => {
            // -0.0 and 0.0 are equal in SQL, so they are one key.
            let value = if *value == 0.0 { 0.0 } else { *value };
            let bits = value.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Datum::Numeric(text) => encode_numeric_key(out, text),
        Datum::Text(text) | Datum::Json(text) => encode_text_key(out, text.as_bytes()),
        Datum::Bytes(bytes) => encode_text_key(out, bytes),
        Datum::Uuid(bytes) => out.extend_from_slice(bytes),
    }
}

fn encode_numeric_key(out: &mut Vec<u8>, text: &str) {
    let (negative, digits, exponent) = numeric_parts(text);
    if digits.is_empty() {
        out.push(NUMERIC_ZERO);
        return;
    }
    let mut body = Vec::with_capacity(5 + digits.len());
    body.extend_from_slice(&((exponent as u32) ^ (1 << 31)).to_be_bytes());
    body.extend(digits.iter().map(|digit| digit - b'0' + 1));
    body.push(0x00);
    if negative {
        out.push(NUMERIC_NEGATIVE);
        out.extend(body.iter().map(|byte| !byte));
    } else {
        out.push(NUMERIC_POSITIVE);
        out.extend(body);
    }
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
        let (value, remaining) =
            decode_key_column(table.columns[column].column_type, rest).map_err(&malformed)?;
        values.push(value);
        rest = remaining;
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
        if !datum_fits(descriptor.column_type, &row[column]) {
            return Err(CatalogError::TypeMismatch {
                table: table.name.clone(),
                column: descriptor.name.clone(),
                expected: descriptor.column_type.sql_name(),
            });
        }
        encode_row_column(&mut value, &row[column]);
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
        let (datum, remaining) = decode_row_column(tag, remaining).map_err(&malformed)?;
        if !datum_fits(table.columns[column].column_type, &datum) {
            return Err(malformed("column value does not match the column type"));
        }
        values.push(datum);
        rest = remaining;
    }
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the last column"));
    }
    values.resize(value_columns.len(), Datum::Null);
    Ok(values)
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn encode_row_column(out: &mut Vec<u8>, datum: &Datum) {
    match datum {
        Datum::Null => out.push(ROW_TAG_NULL),
        Datum::Text(text) => put_bytes(out, ROW_TAG_TEXT, text.as_bytes()),
        Datum::Bool(false) => out.push(ROW_TAG_FALSE),
        Datum::Bool(true) => out.push(ROW_TAG_TRUE),
        Datum::Int(value) => {
            out.push(ROW_TAG_INT);
            out.extend_from_slice(&value.to_be_bytes());
        }
        Datum::Float(value) => {
            out.push(ROW_TAG_FLOAT);
            out.extend_from_slice(&value.to_bits().to_be_bytes());
        }
        Datum::Numeric(text) => put_bytes(out, ROW_TAG_NUMERIC, text.as_bytes()),
        Datum::Bytes(bytes) => put_bytes(out, ROW_TAG_BYTES, bytes),
        Datum::Uuid(bytes) => {
            out.push(ROW_TAG_UUID);
            out.extend_from_slice(bytes);
        }
        Datum::Timestamp(micros) => {
            out.push(ROW_TAG_TIMESTAMP);
            out.extend_from_slice(&micros.to_be_bytes());
        }
        Datum::Timestamptz(micros) => {
            out.push(ROW_TAG_TIMESTAMPTZ);
            out.extend_from_slice(&micros.to_be_bytes());
        }
        Datum::Date(days) => {
            out.push(ROW_TAG_DATE);
            out.extend_from_slice(&days.to_be_bytes());
        }
        Datum::Json(text) => put_bytes(out, ROW_TAG_JSON, text.as_bytes()),
    }
}

fn take_array<const N: usize>(input: &[u8]) -> Result<([u8; N], &[u8]), &'static str> {
    let Some((bytes, rest)) = input.split_first_chunk::<N>() else {
        return Err("row ends inside a fixed-width column");
    };
    Ok((*bytes, rest))
}

fn take_length_prefixed(input: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (length, rest) = take_varint(input)?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&length| length <= rest.len())
        .ok_or("length runs past the end of the row")?;
    Ok(rest.split_at(length))
}

fn take_utf8(input: &[u8]) -> Result<(String, &[u8]), &'static str> {
    let (bytes, rest) = take_length_prefixed(input)?;
    let text = std::str::from_utf8(bytes).map_err(|_| "text column is not valid UTF-8")?;
    Ok((text.to_owned(), rest))
}

/// One row column after its tag byte.
fn decode_row_column(tag: u8, input: &[u8]) -> Result<(Datum, &[u8]), &'static str> {
    Ok(match tag {
        ROW_TAG_NULL => (Datum::Null, input),
        ROW_TAG_FALSE => (Datum::Bool(false), input),
        ROW_TAG_TRUE => (Datum::Bool(true), input),
        ROW_TAG_TEXT => {
            let (text, rest) = take_utf8(input)?;
            (Datum::Text(text), rest)
        }
        ROW_TAG_NUMERIC => {
            let (text, rest) = take_utf8(input)?;
            (Datum::Numeric(text), rest)
        }
        ROW_TAG_JSON => {
            let (text, rest) = take_utf8(input)?;
            (Datum::Json(text), rest)
        }
        ROW_TAG_BYTES => {
            let (bytes, rest) = take_length_prefixed(input)?;
            (Datum::Bytes(bytes.to_vec()), rest)
        }
        ROW_TAG_INT => {
            let (bytes, rest) = take_array::<8>(input)?;
            (Datum::Int(i64::from_be_bytes(bytes)), rest)
        }
        ROW_TAG_FLOAT => {
            let (bytes, rest) = take_array::<8>(input)?;
            (
                Datum::Float(f64::from_bits(u64::from_be_bytes(bytes))),
                rest,
            )
        }
        ROW_TAG_UUID => {
            let (bytes, rest) = take_array::<16>(input)?;
            (Datum::Uuid(bytes), rest)
        }
        ROW_TAG_TIMESTAMP => {
            let (bytes, rest) = take_array::<8>(input)?;
            (Datum::Timestamp(i64::from_be_bytes(bytes)), rest)
        }
        ROW_TAG_TIMESTAMPTZ => {
            let (bytes, rest) = take_array::<8>(input)?;
            (Datum::Timestamptz(i64::from_be_bytes(bytes)), rest)
        }
        ROW_TAG_DATE => {
            let (bytes, rest) = take_array::<4>(input)?;
            (Datum::Date(i32::from_be_bytes(bytes)), rest)
        }
        _ => return Err("unknown column tag"),
    })
}

fn take_ordered_i64(input: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    let Some((bytes, rest)) = input.split_first_chunk::<8>() else {
        return Err("key ends inside a fixed-width column");
    };
    Ok(((u64::from_be_bytes(*bytes) ^ (1 << 63)) as i64, rest))
}

/// One memcomparable key column of `column_type` and the bytes after it.
fn decode_key_column(
    column_type: ColumnType,
    input: &[u8],
) -> Result<(Datum, &[u8]), &'static str> {
    let text =
        |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| "text key column is not UTF-8");
    Ok(match column_type {
        ColumnType::Text | ColumnType::Varchar => {
            let (bytes, rest) = decode_text_key(input)?;
            (Datum::Text(text(bytes)?), rest)
        }
        ColumnType::Jsonb => {
            let (bytes, rest) = decode_text_key(input)?;
            (Datum::Json(text(bytes)?), rest)
        }
        ColumnType::Bytea => {
            let (bytes, rest) = decode_text_key(input)?;
            (Datum::Bytes(bytes), rest)
        }
        ColumnType::Bool => match input.split_first() {
            Some((0, rest)) => (Datum::Bool(false), rest),
            Some((1, rest)) => (Datum::Bool(true), rest),
            _ => return Err("bad boolean key column"),
        },
        ColumnType::Int2 | ColumnType::Int4 | ColumnType::Int8 => {
            let (value, rest) = take_ordered_i64(input)?;
            (Datum::Int(value), rest)
        }
        ColumnType::Timestamp => {
            let (value, rest) = take_ordered_i64(input)?;
            (Datum::Timestamp(value), rest)
        }
        ColumnType::Timestamptz => {
            let (value, rest) = take_ordered_i64(input)?;
            (Datum::Timestamptz(value), rest)
        }
        ColumnType::Date => {
            let (value, rest) = take_ordered_i64(input)?;
            let days = i32::try_from(value).map_err(|_| "date key column out of range")?;
            (Datum::Date(days), rest)
        }
        ColumnType::Float4 | ColumnType::Float8 => {
            let Some((bytes, rest)) = input.split_first_chunk::<8>() else {
                return Err("key ends inside a float column");
            };
            let ordered = u64::from_be_bytes(*bytes);
            let bits = if ordered >> 63 == 1 {
                ordered ^ (1 << 63)
            } else {
                !ordered
            };
            (Datum::Float(f64::from_bits(bits)), rest)
        }
        ColumnType::Uuid => {
            let Some((bytes, rest)) = input.split_first_chunk::<16>() else {
                return Err("key ends inside a uuid column");
            };
            (Datum::Uuid(*bytes), rest)
        }
        ColumnType::Numeric => decode_numeric_key(input)?,
    })
}

fn decode_numeric_key(input: &[u8]) -> Result<(Datum, &[u8]), &'static str> {
    let Some((&sign, rest)) = input.split_first() else {
        return Err("key ends before a numeric column");
    };
    let negative = match sign {
        NUMERIC_ZERO => return Ok((Datum::Numeric("0".to_owned()), rest)),
        NUMERIC_NEGATIVE => true,
        NUMERIC_POSITIVE => false,
        _ => return Err("bad numeric sign in key"),
    };
    let flip = |byte: u8| if negative { !byte } else { byte };
    let Some((exponent_bytes, mut rest)) = rest.split_first_chunk::<4>() else {
        return Err("key ends inside a numeric exponent");
    };
    let exponent_bytes = exponent_bytes.map(flip);
    let exponent = (u32::from_be_bytes(exponent_bytes) ^ (1 << 31)) as i32;
    let mut digits = String::new();
    loop {
        let Some((&byte, remaining)) = rest.split_first() else {
            return Err("numeric key column is not terminated");
        };
        rest = remaining;
        match flip(byte) {
            0 => break,
            digit @ 1..=10 => digits.push(char::from(b'0' + digit - 1)),
            _ => return Err("bad numeric digit in key"),
        }
        if digits.len() > crate::types::NUMERIC_DIGITS_MAX {
            return Err("numeric key column is too long");
        }
    }
    if exponent.unsigned_abs() as usize > crate::types::NUMERIC_DIGITS_MAX {
        return Err("numeric key exponent out of range");
    }
    let sign = if negative { "-" } else { "" };
    let text = if exponent <= 0 {
        format!(
            "{sign}0.{}{digits}",
            "0".repeat(exponent.unsigned_abs() as usize)
        )
    } else if exponent as usize >= digits.len() {
        format!(
            "{sign}{digits}{}",
            "0".repeat(exponent as usize - digits.len())
        )
    } else {
        let (integer, fraction) = digits.split_at(exponent as usize);
        format!("{sign}{integer}.{fraction}")
    };
    Ok((Datum::Numeric(text), rest))
}

fn encode_text_key(out: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        if byte == TEXT_ESCAPE {
            out.extend_from_slice(&[TEXT_ESCAPE, TEXT_ESCAPED_ZERO]);
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(&[TEXT_ESCAPE, TEXT_TERMINATOR]);
}

/// Decodes one memcomparable byte string and returns it with the bytes
/// after it.
fn decode_text_key(input: &[u8]) -> Result<(Vec<u8>, &[u8]), &'static str> {
    let mut bytes = Vec::new();
    let mut index = 0;
    loop {
        match input.get(index) {
            None => return Err("text key column is not terminated"),
            Some(&TEXT_ESCAPE) => match input.get(index + 1) {
                Some(&TEXT_TERMINATOR) => return Ok((bytes, &input[index + 2..])),
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
        wider
            .columns
            .push(ColumnDescriptor::new("w", ColumnType::Text));
        let (key, value) = encode_row(&kv, &[text("a"), text("1")]).expect("encodes");
        assert_eq!(
            decode_row(&wider, &key, &value),
            Ok(vec![text("a"), text("1"), Datum::Null])
        );
        let (_, wide_value) =
            encode_row(&wider, &[text("a"), text("1"), text("2")]).expect("encodes");
        assert!(decode_row(&kv, &key, &wide_value).is_err());
    }

    /// A one-column table keyed by `column_type`, for order tests.
    fn keyed_by(column_type: ColumnType) -> TableDescriptor {
        TableDescriptor::new(
            TableId(100),
            "t",
            vec![ColumnDescriptor::new("k", column_type)],
            vec![0],
        )
        .expect("valid")
    }

    fn generated_values(column_type: ColumnType, generator: &mut Generator) -> Vec<Datum> {
        let mut values = Vec::new();
        for _ in 0..300 {
            let raw = generator.next();
            values.push(match column_type {
                ColumnType::Int8 => Datum::Int(raw as i64 >> (raw % 60)),
                ColumnType::Timestamptz => Datum::Timestamptz(raw as i64 >> 8),
                ColumnType::Date => Datum::Date((raw as i32) >> 8),
                ColumnType::Float8 => Datum::Float(f64::from_bits(raw) % 1e6),
                ColumnType::Bool => Datum::Bool(raw % 2 == 0),
                ColumnType::Uuid => {
                    Datum::Uuid((u128::from(raw) << 64 | u128::from(raw)).to_be_bytes())
                }
                ColumnType::Bytea => Datum::Bytes(generator.string().into_bytes()),
                ColumnType::Numeric => {
                    let digits = raw % 100_000;
                    let scale = (raw >> 20) % 7;
                    let sign = if raw >> 40 & 1 == 1 { "-" } else { "" };
                    let text = format!("{sign}{digits}e-{scale}");
                    column_type.parse_text(&text).expect("generated numeric")
                }
                other => panic!("no generator for {other:?}"),
            });
        }
        values
    }

    #[test]
    fn key_byte_order_equals_value_order_for_every_key_type() {
        let seed = 0xC0FF_EE11_u64;
        let mut generator = Generator(seed);
        for column_type in [
            ColumnType::Int8,
            ColumnType::Timestamptz,
            ColumnType::Date,
            ColumnType::Float8,
            ColumnType::Bool,
            ColumnType::Uuid,
            ColumnType::Bytea,
            ColumnType::Numeric,
        ] {
            let table = keyed_by(column_type);
            let mut values = generated_values(column_type, &mut generator);
            if column_type == ColumnType::Numeric {
                for text in [
                    "0", "-0.001", "0.001", "1", "1.0", "10", "9.99", "-10", "-9.99",
                ] {
                    values.push(Datum::Numeric(text.to_owned()));
                }
            }
            if column_type == ColumnType::Int8 {
                values.extend([
                    Datum::Int(i64::MIN),
                    Datum::Int(-1),
                    Datum::Int(0),
                    Datum::Int(i64::MAX),
                ]);
            }
            let keys: Vec<Vec<u8>> = values
                .iter()
                .map(|value| {
                    encode_primary_key(&table, std::slice::from_ref(value)).expect("encodes")
                })
                .collect();
            for (left, left_key) in values.iter().zip(&keys) {
                let decoded = decode_primary_key(&table, left_key).expect("decodes");
                assert_eq!(
                    decoded[0].compare(left),
                    Some(std::cmp::Ordering::Equal),
                    "seed {seed:#x}: {left:?}"
                );
                for (right, right_key) in values.iter().zip(&keys) {
                    assert_eq!(
                        left.compare(right),
                        Some(left_key.cmp(right_key)),
                        "seed {seed:#x}: {column_type:?} {left:?} vs {right:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn composite_keys_order_by_first_column_then_second() {
        let table = TableDescriptor::new(
            TableId(100),
            "t",
            vec![
                ColumnDescriptor::new("a", ColumnType::Text),
                ColumnDescriptor::new("b", ColumnType::Int4),
            ],
            vec![0, 1],
        )
        .expect("valid");
        let key = |a: &str, b: i64| {
            encode_primary_key(&table, &[text(a), Datum::Int(b)]).expect("encodes")
        };
        assert!(key("a", 5) < key("a", 6));
        assert!(key("a", 99) < key("ab", -5));
        let prefix = encode_key_prefix(&table, &[text("a")]).expect("prefix");
        assert!(prefix <= key("a", i64::MIN) && key("a", i64::MAX) < prefix_end(&prefix));
        assert!(prefix_end(&prefix) <= key("a\0", 0));
        assert_eq!(
            decode_primary_key(&table, &key("x", -3)),
            Ok(vec![text("x"), Datum::Int(-3)])
        );
    }

    #[test]
    fn every_datum_kind_round_trips_through_a_row() {
        let mut columns = vec![ColumnDescriptor::new("id", ColumnType::Int8)];
        let samples = [
            (ColumnType::Bool, "t"),
            (ColumnType::Int2, "7"),
            (ColumnType::Float4, "1.5"),
            (ColumnType::Numeric, "-3.25"),
            (ColumnType::Varchar, "v"),
            (ColumnType::Bytea, "\\x00ff"),
            (ColumnType::Timestamp, "2024-01-02 03:04:05"),
            (ColumnType::Timestamptz, "2024-01-02 03:04:05+00"),
            (ColumnType::Date, "2024-01-02"),
            (ColumnType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            (ColumnType::Jsonb, "{\"a\":1}"),
        ];
        let mut row = vec![Datum::Int(1)];
        for (index, (column_type, text)) in samples.iter().enumerate() {
            columns.push(ColumnDescriptor::new(format!("c{index}"), *column_type));
            row.push(column_type.parse_text(text).expect(text));
        }
        let table = TableDescriptor::new(TableId(100), "t", columns, vec![0]).expect("valid");
        let (key, value) = encode_row(&table, &row).expect("encodes");
        assert_eq!(decode_row(&table, &key, &value), Ok(row.clone()));
        let mut wrong = row;
        wrong[1] = Datum::Int(1);
        assert!(matches!(
            encode_row(&table, &wrong),
            Err(CatalogError::TypeMismatch { .. })
        ));
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
