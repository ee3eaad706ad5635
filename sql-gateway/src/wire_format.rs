//! Values on the wire: Postgres' text and binary formats for every column
//! type, both ways (result columns out, bound parameters in).
//!
//! Invariant: what [`WireValue`] writes in binary, [`decode_binary`] reads
//! back as the same value (tested per type), and decoding never panics on
//! client bytes.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

use crate::error::GatewayError;
use crate::value::{SqlType, Value};

/// Microseconds from 1970-01-01 to 2000-01-01, Postgres' binary epoch.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const POSTGRES_EPOCH_DAYS: i32 = 10_957;
const NUMERIC_NEGATIVE: u16 = 0x4000;
const NUMERIC_POSITIVE: u16 = 0x0000;
/// Base-10000 digits a binary NUMERIC parameter may carry.
const NUMERIC_WIRE_DIGITS_MAX: usize = 1_000;

/// The Postgres type of a column type.
pub(crate) fn pg_type(sql_type: SqlType) -> Type {
    match sql_type {
        SqlType::Bool => Type::BOOL,
        SqlType::Int2 => Type::INT2,
        SqlType::Int4 => Type::INT4,
        SqlType::Int8 => Type::INT8,
        SqlType::Float4 => Type::FLOAT4,
        SqlType::Float8 => Type::FLOAT8,
        SqlType::Numeric => Type::NUMERIC,
        SqlType::Text => Type::TEXT,
        SqlType::Varchar => Type::VARCHAR,
        SqlType::Bytea => Type::BYTEA,
        SqlType::Timestamp => Type::TIMESTAMP,
        SqlType::Timestamptz => Type::TIMESTAMPTZ,
        SqlType::Date => Type::DATE,
        SqlType::Uuid => Type::UUID,
        SqlType::Jsonb => Type::JSONB,
    }
}

/// The column type a Postgres type means, when Arbor has it.
pub(crate) fn sql_type_of(pg: &Type) -> Option<SqlType> {
    SqlType::ALL
        .into_iter()
        .find(|sql_type| pg_type(*sql_type) == *pg)
}

/// One result value with the column type it is sent as.
#[derive(Debug)]
pub(crate) struct WireValue<'a> {
    pub(crate) value: &'a Value,
    pub(crate) sql_type: SqlType,
}

impl ToSqlText for WireValue<'_> {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if self.value.is_null() {
            return Ok(IsNull::Yes);
        }
        out.put_slice(self.value.to_text().as_bytes());
        Ok(IsNull::No)
    }
}

impl ToSql for WireValue<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        encode_binary(self.value, self.sql_type, out)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

fn encode_binary(
    value: &Value,
    sql_type: SqlType,
    out: &mut BytesMut,
) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
    match (value, sql_type) {
        (Value::Null, _) => return Ok(IsNull::Yes),
        (Value::Bool(value), _) => out.put_u8(u8::from(*value)),
        (Value::Int(value), SqlType::Int2) => out.put_i16(i16::try_from(*value)?),
        (Value::Int(value), SqlType::Int4) => out.put_i32(i32::try_from(*value)?),
        (Value::Int(value), _) => out.put_i64(*value),
        (Value::Float(value), SqlType::Float4) => out.put_f32(*value as f32),
        (Value::Float(value), _) => out.put_f64(*value),
        (Value::Numeric(text), _) => encode_numeric(text, out),
        (Value::Text(text), _) => out.put_slice(text.as_bytes()),
        (Value::Json(text), _) => {
            out.put_u8(1);
            out.put_slice(text.as_bytes());
        }
        (Value::Bytes(bytes), _) => out.put_slice(bytes),
        (Value::Uuid(bytes), _) => out.put_slice(bytes),
        (Value::Timestamp(micros) | Value::Timestamptz(micros), _) => {
            out.put_i64(micros - POSTGRES_EPOCH_MICROS)
        }
        (Value::Date(days), _) => out.put_i32(days - POSTGRES_EPOCH_DAYS),
    }
    Ok(IsNull::No)
}

/// NUMERIC's binary form: base-10000 digits around the decimal point.
fn encode_numeric(text: &str, out: &mut BytesMut) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let scale = fraction.len();
    // Pad the integer part on the left and the fraction on the right to
    // whole groups of four digits.
    let integer_pad = (4 - integer.len() % 4) % 4;
    let fraction_pad = (4 - fraction.len() % 4) % 4;
    let digits: String = format!(
        "{}{integer}{fraction}{}",
        "0".repeat(integer_pad),
        "0".repeat(fraction_pad)
    );
    let mut groups: Vec<i16> = digits
        .as_bytes()
        .chunks(4)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0i16, |total, digit| total * 10 + i16::from(digit - b'0'))
        })
        .collect();
    let mut weight = ((integer.len() + integer_pad) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() {
        NUMERIC_NEGATIVE
    } else {
        NUMERIC_POSITIVE
    });
    out.put_i16(scale as i16);
    for group in groups {
        out.put_i16(group);
    }
}

fn decode_numeric(bytes: &[u8]) -> Option<Value> {
    let header = bytes.get(..8)?;
    let count = usize::try_from(i16::from_be_bytes([header[0], header[1]])).ok()?;
    let weight = i16::from_be_bytes([header[2], header[3]]);
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let scale = usize::try_from(i16::from_be_bytes([header[6], header[7]])).ok()?;
    if count > NUMERIC_WIRE_DIGITS_MAX || bytes.len() != 8 + 2 * count {
        return None;
    }
    let groups: Vec<i16> = bytes[8..]
        .chunks(2)
        .map(|pair| i16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    // Write every group as four digits, then place the decimal point.
    let mut digits = String::new();
    for group in &groups {
        if !(0..10_000).contains(group) {
            return None;
        }
        digits.push_str(&format!("{group:04}"));
    }
    let point = (i64::from(weight) + 1) * 4;
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (integer, fraction) = digits.split_at(point as usize);
        format!("{integer}.{fraction}")
    };
    let sign = if sign == NUMERIC_NEGATIVE { "-" } else { "" };
    let parsed = SqlType::Numeric.parse_text(&format!("{sign}{text}")).ok()?;
    // Re-apply the declared scale (trailing zeros the groups dropped).
    let Value::Numeric(canonical) = parsed else {
        return None;
    };
    let (integer, fraction) = canonical.split_once('.').unwrap_or((&canonical, ""));
    let fraction: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(scale)
        .collect();
    Some(Value::Numeric(if scale == 0 {
        integer.to_owned()
    } else {
        format!("{integer}.{fraction}")
    }))
}

/// A binary-format parameter of declared type `pg`.
pub(crate) fn decode_binary(pg: &Type, bytes: &[u8]) -> Result<Value, GatewayError> {
    let invalid = || GatewayError::InvalidTextRepresentation {
        type_name: pg.name().to_owned(),
        value: format!("<{} binary bytes>", bytes.len()),
    };
    let fixed = |length: usize| (bytes.len() == length).then_some(bytes).ok_or_else(invalid);
    let array = |length: usize| -> Result<[u8; 8], GatewayError> {
        let bytes = fixed(length)?;
        let mut padded = [0u8; 8];
        padded[8 - length..].copy_from_slice(bytes);
        Ok(padded)
    };
    let utf8 = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| invalid())
    };
    Ok(match *pg {
        Type::BOOL => Value::Bool(fixed(1)?[0] != 0),
        Type::INT2 => Value::Int(i64::from(i16::from_be_bytes([fixed(2)?[0], bytes[1]]))),
        Type::INT4 => Value::Int(i64::from(i32::from_be_bytes(
            fixed(4)?.try_into().map_err(|_| invalid())?,
        ))),
        Type::INT8 => Value::Int(i64::from_be_bytes(array(8)?)),
        Type::FLOAT4 => Value::Float(f64::from(f32::from_be_bytes(
            fixed(4)?.try_into().map_err(|_| invalid())?,
        ))),
        Type::FLOAT8 => Value::Float(f64::from_be_bytes(array(8)?)),
        Type::NUMERIC => decode_numeric(bytes).ok_or_else(invalid)?,
        Type::BYTEA => Value::Bytes(bytes.to_vec()),
        Type::UUID => Value::Uuid(fixed(16)?.try_into().map_err(|_| invalid())?),
        Type::TIMESTAMP => Value::Timestamp(
            i64::from_be_bytes(array(8)?)
                .checked_add(POSTGRES_EPOCH_MICROS)
                .ok_or_else(invalid)?,
        ),
        Type::TIMESTAMPTZ => Value::Timestamptz(
            i64::from_be_bytes(array(8)?)
                .checked_add(POSTGRES_EPOCH_MICROS)
                .ok_or_else(invalid)?,
        ),
        Type::DATE => Value::Date(
            i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| invalid())?)
                .checked_add(POSTGRES_EPOCH_DAYS)
                .ok_or_else(invalid)?,
        ),
        Type::JSONB => match bytes.split_first() {
            Some((1, text)) => SqlType::Jsonb.parse_text(&utf8(text)?)?,
            _ => return Err(invalid()),
        },
        Type::JSON => SqlType::Jsonb.parse_text(&utf8(bytes)?)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Value::Text(utf8(bytes)?)
        }
        ref other => {
            return Err(GatewayError::unsupported(format!(
                "binary parameters of type {}",
                other.name()
            )))
        }
    })
}

/// A text-format parameter: typed when the client declared a non-text type
/// Arbor knows, otherwise untyped text (Postgres' `unknown`).
pub(crate) fn decode_text(pg: Option<&Type>, text: &str) -> Result<Value, GatewayError> {
    match pg.and_then(sql_type_of) {
        Some(sql_type) if !sql_type.is_text() => Ok(sql_type.parse_text(text)?),
        _ => Ok(Value::Text(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_round_trip_for_every_type() {
        for sql_type in SqlType::ALL {
            let text = match sql_type {
                SqlType::Bool => "t",
                SqlType::Int2 => "-7",
                SqlType::Int4 => "70000",
                SqlType::Int8 => "-9000000000",
                SqlType::Float4 => "1.5",
                SqlType::Float8 => "-2.25",
                SqlType::Numeric => "-12345.0670",
                SqlType::Text | SqlType::Varchar => "héllo",
                SqlType::Bytea => "\\x00ff",
                SqlType::Timestamp => "1999-12-31 23:59:59.5",
                SqlType::Timestamptz => "2024-05-01 12:00:00+00",
                SqlType::Date => "1970-01-02",
                SqlType::Uuid => "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                SqlType::Jsonb => "{\"a\":1}",
            };
            let value = sql_type.parse_text(text).expect(text);
            let mut out = BytesMut::new();
            encode_binary(&value, sql_type, &mut out).expect("encodes");
            let decoded = decode_binary(&pg_type(sql_type), &out).expect("decodes");
            assert_eq!(decoded, value, "{sql_type:?}");
        }
    }

    #[test]
    fn numeric_binary_matches_postgres_layout() {
        let mut out = BytesMut::new();
        encode_numeric("12345.67", &mut out);
        // ndigits 3, weight 1, positive, dscale 2, digits 1 2345 6700.
        assert_eq!(
            out.as_ref(),
            &[0, 3, 0, 1, 0, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1A, 0x2C]
        );
        for text in ["0", "0.001", "-1", "10000", "0.5000"] {
            let mut out = BytesMut::new();
            encode_numeric(text, &mut out);
            assert_eq!(decode_numeric(&out), Some(Value::Numeric(text.into())));
        }
    }

    #[test]
    fn malformed_binary_parameters_are_errors() {
        assert!(decode_binary(&Type::INT4, &[1, 2]).is_err());
        assert!(decode_binary(&Type::UUID, &[0; 15]).is_err());
        assert!(decode_binary(&Type::NUMERIC, &[0, 5, 0, 0]).is_err());
        assert!(decode_binary(&Type::TEXT, &[0xC3, 0x28]).is_err());
        assert!(decode_binary(&Type::JSONB, &[2, b'1']).is_err());
    }
}
