//! Column types and values: what a column may hold, how a value is read
//! from and written as Postgres text, and how two values compare.
//!
//! Invariant: for every key type, [`Datum::compare`] is the order the key
//! encoding ([`crate::encoding`]) preserves in bytes, and text output
//! followed by text input gives the same value back.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;

/// Microseconds per second, for timestamps.
const MICROS_PER_SECOND: i64 = 1_000_000;
/// Longest NUMERIC text accepted (Postgres allows far more; a key must fit
/// a store key and a bound keeps parsing linear and small).
pub const NUMERIC_DIGITS_MAX: usize = 1_000;

/// The type of a column. Integers of every width are stored as `i64`; the
/// width is enforced when a value is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Varchar,
    Bytea,
    Timestamp,
    Timestamptz,
    Date,
    Uuid,
    Jsonb,
}

impl ColumnType {
    pub const ALL: [ColumnType; 15] = [
        ColumnType::Bool,
        ColumnType::Int2,
        ColumnType::Int4,
        ColumnType::Int8,
        ColumnType::Float4,
        ColumnType::Float8,
        ColumnType::Numeric,
        ColumnType::Text,
        ColumnType::Varchar,
        ColumnType::Bytea,
        ColumnType::Timestamp,
        ColumnType::Timestamptz,
        ColumnType::Date,
        ColumnType::Uuid,
        ColumnType::Jsonb,
    ];

    /// The Postgres name of the type, as `format_type` shows it.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Bool => "boolean",
            ColumnType::Int2 => "smallint",
            ColumnType::Int4 => "integer",
            ColumnType::Int8 => "bigint",
            ColumnType::Float4 => "real",
            ColumnType::Float8 => "double precision",
            ColumnType::Numeric => "numeric",
            ColumnType::Text => "text",
            ColumnType::Varchar => "character varying",
            ColumnType::Bytea => "bytea",
            ColumnType::Timestamp => "timestamp without time zone",
            ColumnType::Timestamptz => "timestamp with time zone",
            ColumnType::Date => "date",
            ColumnType::Uuid => "uuid",
            ColumnType::Jsonb => "jsonb",
        }
    }

    /// The type's OID in Postgres' `pg_type`; clients hard-code these.
    pub fn oid(self) -> u32 {
        match self {
            ColumnType::Bool => 16,
            ColumnType::Int2 => 21,
            ColumnType::Int4 => 23,
            ColumnType::Int8 => 20,
            ColumnType::Float4 => 700,
            ColumnType::Float8 => 701,
            ColumnType::Numeric => 1700,
            ColumnType::Text => 25,
            ColumnType::Varchar => 1043,
            ColumnType::Bytea => 17,
            ColumnType::Timestamp => 1114,
            ColumnType::Timestamptz => 1184,
            ColumnType::Date => 1082,
            ColumnType::Uuid => 2950,
            ColumnType::Jsonb => 3802,
        }
    }

    /// The short name in `pg_type.typname`.
    pub fn type_name(self) -> &'static str {
        match self {
            ColumnType::Bool => "bool",
            ColumnType::Int2 => "int2",
            ColumnType::Int4 => "int4",
            ColumnType::Int8 => "int8",
            ColumnType::Float4 => "float4",
            ColumnType::Float8 => "float8",
            ColumnType::Numeric => "numeric",
            ColumnType::Text => "text",
            ColumnType::Varchar => "varchar",
            ColumnType::Bytea => "bytea",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Timestamptz => "timestamptz",
            ColumnType::Date => "date",
            ColumnType::Uuid => "uuid",
            ColumnType::Jsonb => "jsonb",
        }
    }

    /// Bytes of the fixed-width binary form (`pg_type.typlen`), -1 if variable.
    pub fn type_length(self) -> i16 {
        match self {
            ColumnType::Bool => 1,
            ColumnType::Int2 => 2,
            ColumnType::Int4 | ColumnType::Float4 | ColumnType::Date => 4,
            ColumnType::Int8
            | ColumnType::Float8
            | ColumnType::Timestamp
            | ColumnType::Timestamptz => 8,
            ColumnType::Uuid => 16,
            _ => -1,
        }
    }

    pub fn is_integer(self) -> bool {
        matches!(self, ColumnType::Int2 | ColumnType::Int4 | ColumnType::Int8)
    }

    pub fn is_float(self) -> bool {
        matches!(self, ColumnType::Float4 | ColumnType::Float8)
    }

    pub fn is_text(self) -> bool {
        matches!(self, ColumnType::Text | ColumnType::Varchar)
    }

    /// Reads a value written in Postgres' text format for this type.
    pub fn parse_text(self, text: &str) -> Result<Datum, CatalogError> {
        let invalid = || CatalogError::InvalidText {
            type_name: self.sql_name(),
            value: text.to_owned(),
        };
        let trimmed = text.trim();
        match self {
            ColumnType::Text | ColumnType::Varchar => Ok(Datum::Text(text.to_owned())),
            ColumnType::Jsonb => {
                let value: serde_json::Value = serde_json::from_str(text).map_err(|_| invalid())?;
                Ok(Datum::Json(value.to_string()))
            }
            ColumnType::Bool => match trimmed.to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "y" | "on" | "1" => Ok(Datum::Bool(true)),
                "f" | "false" | "no" | "n" | "off" | "0" => Ok(Datum::Bool(false)),
                _ => Err(invalid()),
            },
            ColumnType::Int2 | ColumnType::Int4 | ColumnType::Int8 => {
                let number: i64 = trimmed.parse().map_err(|_| invalid())?;
                self.check_integer(number)
                    .map(Datum::Int)
                    .ok_or(CatalogError::OutOfRange {
                        type_name: self.sql_name(),
                    })
            }
            ColumnType::Float4 | ColumnType::Float8 => parse_float(trimmed)
                .map(|value| Datum::Float(self.round_float(value)))
                .ok_or_else(invalid),
            ColumnType::Numeric => parse_numeric(trimmed)
                .map(Datum::Numeric)
                .ok_or_else(invalid),
            ColumnType::Bytea => parse_bytea(text).map(Datum::Bytes).ok_or_else(invalid),
            ColumnType::Uuid => parse_uuid(trimmed).map(Datum::Uuid).ok_or_else(invalid),
            // Postgres reads a date from a longer datetime text and ignores
            // the rest (pgjdbc sends `setDate` as `2024-05-03 +00`).
            ColumnType::Date => trimmed
                .split_whitespace()
                .next()
                .and_then(|date| NaiveDate::parse_from_str(date, "%Y-%m-%d").ok())
                .map(|date| Datum::Date(days_from_date(date)))
                .ok_or_else(invalid),
            ColumnType::Timestamp => parse_timestamp(trimmed, false)
                .map(Datum::Timestamp)
                .ok_or_else(invalid),
            ColumnType::Timestamptz => parse_timestamp(trimmed, true)
                .map(Datum::Timestamptz)
                .ok_or_else(invalid),
        }
    }

    /// `number` if it fits this integer type.
    pub fn check_integer(self, number: i64) -> Option<i64> {
        let fits = match self {
            ColumnType::Int2 => i16::try_from(number).is_ok(),
            ColumnType::Int4 => i32::try_from(number).is_ok(),
            _ => true,
        };
        fits.then_some(number)
    }

    /// REAL keeps single precision, as Postgres does.
    pub fn round_float(self, value: f64) -> f64 {
        if self == ColumnType::Float4 {
            f64::from(value as f32)
        } else {
            value
        }
    }

    /// Converts a value of another type to this one, as Postgres' assignment
    /// and explicit casts do; `None` when there is no such cast.
    pub fn convert(self, datum: &Datum) -> Option<Result<Datum, CatalogError>> {
        let out_of_range = || CatalogError::OutOfRange {
            type_name: self.sql_name(),
        };
        Some(match (datum, self) {
            (Datum::Null, _) => Ok(Datum::Null),
            // `true::text` is 'true', unlike the 't' of boolean output.
            (Datum::Bool(value), ColumnType::Text | ColumnType::Varchar) => {
                Ok(Datum::Text(value.to_string()))
            }
            (_, ColumnType::Text | ColumnType::Varchar) => Ok(Datum::Text(datum.to_text())),
            (Datum::Text(text), _) => self.parse_text(text),
            (Datum::Int(number), _) if self.is_integer() => self
                .check_integer(*number)
                .map(Datum::Int)
                .ok_or_else(out_of_range),
            (Datum::Int(number), _) if self.is_float() => {
                Ok(Datum::Float(self.round_float(*number as f64)))
            }
            (Datum::Int(number), ColumnType::Numeric) => Ok(Datum::Numeric(number.to_string())),
            (Datum::Float(value), _) if self.is_float() => {
                Ok(Datum::Float(self.round_float(*value)))
            }
            (Datum::Float(value), _) if self.is_integer() => {
                let rounded = value.round_ties_even();
                if !rounded.is_finite() || rounded.abs() > 9.2e18 {
                    Err(out_of_range())
                } else {
                    self.check_integer(rounded as i64)
                        .map(Datum::Int)
                        .ok_or_else(out_of_range)
                }
            }
            (Datum::Float(value), ColumnType::Numeric) => self.parse_text(&value.to_string()),
            (Datum::Numeric(text), _) if self.is_float() => self.parse_text(text),
            (Datum::Numeric(text), _) if self.is_integer() => {
                let value: f64 = text.parse().unwrap_or(f64::NAN);
                ColumnType::Float8
                    .convert(&Datum::Float(value))
                    .and_then(|converted| converted.ok())
                    .and_then(|converted| self.convert(&converted))
                    .unwrap_or_else(|| Err(out_of_range()))
            }
            (Datum::Numeric(text), ColumnType::Numeric) => Ok(Datum::Numeric(text.clone())),
            (Datum::Bool(value), _) if self.is_integer() => Ok(Datum::Int(i64::from(*value))),
            (Datum::Timestamp(micros), ColumnType::Timestamptz) => Ok(Datum::Timestamptz(*micros)),
            (Datum::Timestamptz(micros), ColumnType::Timestamp) => Ok(Datum::Timestamp(*micros)),
            (Datum::Timestamp(micros) | Datum::Timestamptz(micros), ColumnType::Date) => Ok(
                Datum::Date(i32::try_from(micros.div_euclid(86_400 * MICROS_PER_SECOND)).ok()?),
            ),
            (Datum::Date(days), ColumnType::Timestamp) => Ok(Datum::Timestamp(
                i64::from(*days) * 86_400 * MICROS_PER_SECOND,
            )),
            (Datum::Date(days), ColumnType::Timestamptz) => Ok(Datum::Timestamptz(
                i64::from(*days) * 86_400 * MICROS_PER_SECOND,
            )),
            _ if datum.natural_type() == Some(self) => Ok(datum.clone()),
            _ => return None,
        })
    }
}

/// One value of a row. `Null` and an empty text are different values and
/// stay different through every encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Datum {
    Null,
    Bool(bool),
    /// Every integer width.
    Int(i64),
    /// REAL and DOUBLE PRECISION.
    Float(f64),
    /// A NUMERIC in canonical text form (`-12.50`, no exponent).
    Numeric(String),
    /// TEXT and VARCHAR.
    Text(String),
    Bytes(Vec<u8>),
    Uuid([u8; 16]),
    /// Microseconds since 1970-01-01 00:00:00 (no time zone).
    Timestamp(i64),
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    Timestamptz(i64),
    /// Days since 1970-01-01.
    Date(i32),
    /// JSONB in its normalized text form.
    Json(String),
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The column type a value of this kind has without context (`Int` and
    /// `Float` have several; this gives the widest).
    pub fn natural_type(&self) -> Option<ColumnType> {
        Some(match self {
            Datum::Null => return None,
            Datum::Bool(_) => ColumnType::Bool,
            Datum::Int(_) => ColumnType::Int8,
            Datum::Float(_) => ColumnType::Float8,
            Datum::Numeric(_) => ColumnType::Numeric,
            Datum::Text(_) => ColumnType::Text,
            Datum::Bytes(_) => ColumnType::Bytea,
            Datum::Uuid(_) => ColumnType::Uuid,
            Datum::Timestamp(_) => ColumnType::Timestamp,
            Datum::Timestamptz(_) => ColumnType::Timestamptz,
            Datum::Date(_) => ColumnType::Date,
            Datum::Json(_) => ColumnType::Jsonb,
        })
    }

    /// SQL comparison: `None` when either side is NULL or the kinds differ.
    /// Integers and floats compare with each other numerically.
    pub fn compare(&self, other: &Datum) -> Option<Ordering> {
        Some(match (self, other) {
            (Datum::Bool(a), Datum::Bool(b)) => a.cmp(b),
            (Datum::Int(a), Datum::Int(b)) => a.cmp(b),
            (Datum::Float(a), Datum::Float(b)) => a.total_cmp(b),
            (Datum::Int(a), Datum::Float(b)) => (*a as f64).total_cmp(b),
            (Datum::Float(a), Datum::Int(b)) => a.total_cmp(&(*b as f64)),
            (Datum::Numeric(a), Datum::Numeric(b)) => compare_numeric(a, b),
            (Datum::Text(a), Datum::Text(b)) | (Datum::Json(a), Datum::Json(b)) => a.cmp(b),
            (Datum::Bytes(a), Datum::Bytes(b)) => a.cmp(b),
            (Datum::Uuid(a), Datum::Uuid(b)) => a.cmp(b),
            (Datum::Timestamp(a), Datum::Timestamp(b))
            | (Datum::Timestamptz(a), Datum::Timestamptz(b)) => a.cmp(b),
            (Datum::Date(a), Datum::Date(b)) => a.cmp(b),
            _ => return None,
        })
    }

    /// Postgres' text output format (`t`/`f`, `\x..` bytea, ISO times).
    pub fn to_text(&self) -> String {
        match self {
            Datum::Null => "null".to_owned(),
            Datum::Bool(true) => "t".to_owned(),
            Datum::Bool(false) => "f".to_owned(),
            Datum::Int(number) => number.to_string(),
            Datum::Float(value) => format_float(*value),
            Datum::Numeric(text) | Datum::Text(text) | Datum::Json(text) => text.clone(),
            Datum::Bytes(bytes) => {
                let mut text = String::with_capacity(2 + 2 * bytes.len());
                text.push_str("\\x");
                for byte in bytes {
                    text.push_str(&format!("{byte:02x}"));
                }
                text
            }
            Datum::Uuid(bytes) => format_uuid(bytes),
            Datum::Timestamp(micros) => format_timestamp(*micros),
            Datum::Timestamptz(micros) => format!("{}+00", format_timestamp(*micros)),
            Datum::Date(days) => date_from_days(*days)
                .map(|date| date.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| days.to_string()),
        }
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" | "+infinity" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        value.to_string()
    }
}

/// Canonical NUMERIC text: optional `-`, digits, optional `.digits`; the
/// scale the user wrote is kept (`1.50` stays `1.50`), as in Postgres.
fn parse_numeric(text: &str) -> Option<String> {
    if text.len() > NUMERIC_DIGITS_MAX {
        return None;
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if integer.is_empty() && fraction.is_empty() {
        return None;
    }
    if !integer
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if exponent.unsigned_abs() as usize > NUMERIC_DIGITS_MAX {
        return None;
    }
    // Shift the decimal point by the exponent.
    let mut digits: String = format!("{integer}{fraction}");
    let mut point = integer.len() as i64 + i64::from(exponent);
    if point < 0 {
        digits.insert_str(0, &"0".repeat(point.unsigned_abs() as usize));
        point = 0;
    }
    let point = point as usize;
    if point > digits.len() {
        digits.push_str(&"0".repeat(point - digits.len()));
    }
    let (integer, fraction) = digits.split_at(point);
    let integer = integer.trim_start_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    let is_zero = integer == "0" && fraction.bytes().all(|b| b == b'0');
    let sign = if negative && !is_zero { "-" } else { "" };
    Some(if fraction.is_empty() {
        format!("{sign}{integer}")
    } else {
        format!("{sign}{integer}.{fraction}")
    })
}

/// Splits canonical NUMERIC text into (negative, significant digits without
/// leading or trailing zeros, decimal exponent): the value is
/// `0.<digits> * 10^exponent`. Zero has no digits.
pub(crate) fn numeric_parts(text: &str) -> (bool, Vec<u8>, i32) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer = integer.trim_start_matches('0');
    let mut digits: Vec<u8> = integer.bytes().chain(fraction.bytes()).collect();
    let mut exponent = integer.len() as i32;
    if integer.is_empty() {
        let leading = fraction.bytes().take_while(|&b| b == b'0').count();
        digits.drain(..leading);
        exponent = -(leading as i32);
    }
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return (false, Vec::new(), 0);
    }
    (negative, digits, exponent)
}

fn compare_numeric(left: &str, right: &str) -> Ordering {
    let (left_negative, left_digits, left_exponent) = numeric_parts(left);
    let (right_negative, right_digits, right_exponent) = numeric_parts(right);
    let sign = |negative: bool, digits: &[u8]| match (negative, digits.is_empty()) {
        (_, true) => 0,
        (true, false) => -1,
        (false, false) => 1,
    };
    let (left_sign, right_sign) = (
        sign(left_negative, &left_digits),
        sign(right_negative, &right_digits),
    );
    if left_sign != right_sign || left_sign == 0 {
        return left_sign.cmp(&right_sign);
    }
    let magnitude = left_exponent
        .cmp(&right_exponent)
        .then_with(|| left_digits.cmp(&right_digits));
    if left_sign < 0 {
        magnitude.reverse()
    } else {
        magnitude
    }
}

/// `\x0a0b` hex form, or the traditional escape form (`\\`, `\ooo`).
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if hex.len() % 2 != 0 {
            return None;
        }
        return hex
            .chunks(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).ok()?;
                u8::from_str_radix(text, 16).ok()
            })
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'\\' {
            out.push(bytes[index]);
            index += 1;
        } else if bytes.get(index + 1) == Some(&b'\\') {
            out.push(b'\\');
            index += 2;
        } else {
            let octal = std::str::from_utf8(bytes.get(index + 1..index + 4)?).ok()?;
            out.push(u8::from_str_radix(octal, 8).ok()?);
            index += 4;
        }
    }
    Some(out)
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let text = text
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(text);
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

const UNIX_EPOCH_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(date) => date,
    None => panic!("1970-01-01 is a date"),
};

fn days_from_date(date: NaiveDate) -> i32 {
    (date - UNIX_EPOCH_DATE).num_days() as i32
}

fn date_from_days(days: i32) -> Option<NaiveDate> {
    UNIX_EPOCH_DATE.checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
}

/// ISO timestamps (`2024-05-01 12:34:56.789`, `T` allowed, a date alone is
/// midnight). With `zoned`, an offset (`+02`, `+02:00`, `Z`) is applied and
/// a missing one means UTC (the session time zone is always UTC).
fn parse_timestamp(text: &str, zoned: bool) -> Option<i64> {
    let text = text.replacen('T', " ", 1);
    if zoned {
        for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.fZ"] {
            if let Ok(parsed) = DateTime::parse_from_str(&text, format) {
                return Some(parsed.timestamp_micros());
            }
        }
        if let Some(stripped) = text.strip_suffix('Z') {
            return parse_timestamp(stripped, false);
        }
    }
    let naive = NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M"))
        .or_else(|_| {
            NaiveDate::parse_from_str(&text, "%Y-%m-%d").map(|date| date.and_time(NaiveTime::MIN))
        })
        .ok()?;
    Some(naive.and_utc().timestamp_micros())
}

fn format_timestamp(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(time) if micros % MICROS_PER_SECOND == 0 => {
            time.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string()
        }
        Some(time) => {
            let text = time.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            text.trim_end_matches('0').to_owned()
        }
        None => micros.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_what_it_writes() {
        let cases: [(ColumnType, &str); 15] = [
            (ColumnType::Bool, "t"),
            (ColumnType::Int2, "-32768"),
            (ColumnType::Int4, "2147483647"),
            (ColumnType::Int8, "-9223372036854775808"),
            (ColumnType::Float4, "1.5"),
            (ColumnType::Float8, "-0.25"),
            (ColumnType::Numeric, "-12.50"),
            (ColumnType::Text, " spaced "),
            (ColumnType::Varchar, "v"),
            (ColumnType::Bytea, "\\x00ff10"),
            (ColumnType::Timestamp, "2024-05-01 12:34:56.789"),
            (ColumnType::Timestamptz, "2024-05-01 12:34:56+00"),
            (ColumnType::Date, "1969-12-31"),
            (ColumnType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            (ColumnType::Jsonb, "{\"a\":[1,2]}"),
        ];
        for (column_type, text) in cases {
            let datum = column_type.parse_text(text).expect(text);
            assert_eq!(datum.to_text(), text, "{column_type:?}");
            assert_eq!(column_type.parse_text(&datum.to_text()), Ok(datum));
        }
    }

    #[test]
    fn bad_literals_and_out_of_range_integers_are_refused() {
        for (column_type, text) in [
            (ColumnType::Int4, "x"),
            (ColumnType::Bool, "maybe"),
            (ColumnType::Numeric, "1.2.3"),
            (ColumnType::Uuid, "123"),
            (ColumnType::Date, "2024-13-01"),
            (ColumnType::Jsonb, "{"),
            (ColumnType::Bytea, "\\x0"),
        ] {
            assert!(
                matches!(
                    column_type.parse_text(text),
                    Err(CatalogError::InvalidText { .. })
                ),
                "{column_type:?} {text}"
            );
        }
        assert!(matches!(
            ColumnType::Int2.parse_text("40000"),
            Err(CatalogError::OutOfRange { .. })
        ));
    }

    #[test]
    fn numeric_text_is_canonical_and_compares_by_value() {
        let parse = |text: &str| parse_numeric(text).expect(text);
        assert_eq!(parse("+007.50"), "7.50");
        assert_eq!(parse("-0.0"), "0.0");
        assert_eq!(parse("1.5e2"), "150");
        assert_eq!(parse(".5"), "0.5");
        assert_eq!(compare_numeric("1.50", "1.5"), Ordering::Equal);
        assert_eq!(compare_numeric("-2", "-10"), Ordering::Greater);
        assert_eq!(compare_numeric("0.09", "0.1"), Ordering::Less);
        assert_eq!(compare_numeric("0", "-0.0"), Ordering::Equal);
    }

    #[test]
    fn timestamps_accept_offsets_and_iso_t() {
        let utc = ColumnType::Timestamptz
            .parse_text("2024-05-01T14:00:00+02:00")
            .expect("parses");
        assert_eq!(utc.to_text(), "2024-05-01 12:00:00+00");
        let naive = ColumnType::Timestamp
            .parse_text("2024-05-01")
            .expect("parses");
        assert_eq!(naive.to_text(), "2024-05-01 00:00:00");
    }

    #[test]
    fn dates_ignore_a_trailing_time_or_zone() {
        for text in ["2024-05-03", "2024-05-03 +00", " 2024-05-03 12:00:00 "] {
            let date = ColumnType::Date.parse_text(text).expect(text);
            assert_eq!(date.to_text(), "2024-05-03", "{text}");
        }
        assert!(ColumnType::Date.parse_text("+00 2024-05-03").is_err());
    }
}
