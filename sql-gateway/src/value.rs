//! Runtime values, their SQL types, and the column shape of results; and
//! the value-level operations expressions compute with: exact NUMERIC
//! arithmetic ([`Decimal`]), `LIKE` matching ([`like_matches`]) and `||`
//! ([`concat`]).
//!
//! A runtime value IS a stored value: the gateway computes on
//! [`arbor_catalog::Datum`]s typed by [`arbor_catalog::ColumnType`], so rows
//! go from the store to the wire without conversion. The local names
//! `Value` and `SqlType` say how this crate uses them.
//!
//! Invariant: comparisons follow SQL three-valued logic: anything compared
//! with NULL is unknown (`None`), never true or false. NUMERIC arithmetic is
//! exact (no float on the way) and follows Postgres' result scales; its
//! results are bounded by [`NUMERIC_DIGITS_MAX`] like every stored NUMERIC.

use std::borrow::Cow;
use std::cmp::Ordering;

pub(crate) use arbor_catalog::types::NUMERIC_DIGITS_MAX;
pub(crate) use arbor_catalog::{ColumnType as SqlType, Datum as Value};

use crate::error::GatewayError;

/// Longest value `||` builds (Postgres stops at 1 GB; a row here holds at
/// most one store value, and a result set row should stay far below that).
pub(crate) const CONCAT_BYTES_MAX: usize = 16 << 20;
/// Significant digits a NUMERIC quotient has at least (Postgres'
/// `NUMERIC_MIN_SIG_DIGITS`).
const NUMERIC_DIVISION_DIGITS_MIN: i64 = 16;
/// Most fractional digits a NUMERIC quotient gets (Postgres'
/// `NUMERIC_MAX_DISPLAY_SCALE`).
const NUMERIC_DIVISION_SCALE_MAX: i64 = 1_000;
/// Decimal digits per digit of Postgres' NUMERIC base (10000): the
/// quotient's scale rule counts in those.
const NUMERIC_BASE_DIGITS: i64 = 4;

/// Ordering for ORDER BY: NULLs are placed by the caller; values of
/// different kinds (impossible after binding) compare equal.
pub(crate) fn sort_cmp(left: &Value, right: &Value) -> Ordering {
    left.compare(right).unwrap_or(Ordering::Equal)
}

/// One column of a relation or a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) sql_type: SqlType,
}

impl Column {
    pub(crate) fn new(name: &str, sql_type: SqlType) -> Self {
        Column {
            name: name.to_owned(),
            sql_type,
        }
    }
}

pub(crate) type Row = Vec<Value>;

/// An exact NUMERIC: `magnitude` times 10^-`scale`. The magnitude is decimal
/// digits, least significant first, without high zeros (zero is empty);
/// `scale` is the display scale Postgres keeps (`1.50` has scale 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    negative: bool,
    magnitude: Vec<u8>,
    scale: usize,
}

impl Decimal {
    /// Reads canonical NUMERIC text (`-12.50`, as the catalog stores it).
    pub(crate) fn parse(text: &str) -> Option<Decimal> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = || integer.bytes().chain(fraction.bytes());
        if integer.is_empty() && fraction.is_empty() || !digits().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let magnitude = trimmed(digits().rev().map(|b| b - b'0').collect());
        Some(Decimal {
            negative: negative && !magnitude.is_empty(),
            magnitude,
            scale: fraction.len(),
        })
    }

    /// A NUMERIC operand: NUMERIC text, or an integer (Postgres casts
    /// integer operands of NUMERIC arithmetic to numeric implicitly).
    pub(crate) fn of(value: &Value) -> Option<Decimal> {
        match value {
            Value::Numeric(text) => Decimal::parse(text),
            Value::Int(number) => {
                let mut rest = number.unsigned_abs();
                let mut magnitude = Vec::new();
                while rest > 0 {
                    magnitude.push((rest % 10) as u8);
                    rest /= 10;
                }
                Some(Decimal {
                    negative: *number < 0,
                    magnitude,
                    scale: 0,
                })
            }
            _ => None,
        }
    }

    /// Canonical text, the form [`Value::Numeric`] holds.
    pub(crate) fn to_text(&self) -> String {
        let mut digits = self.magnitude.clone();
        // At least one integer digit: `0.05`, not `.05`.
        digits.resize(digits.len().max(self.scale + 1), 0);
        let mut text = String::with_capacity(digits.len() + 2);
        if self.negative {
            text.push('-');
        }
        for (position, digit) in digits.iter().enumerate().rev() {
            text.push(char::from(b'0' + digit));
            if position == self.scale && self.scale > 0 {
                text.push('.');
            }
        }
        text
    }

    /// The value as NUMERIC, or 22003 when its text would exceed what a
    /// NUMERIC may hold here.
    fn into_value(self) -> Result<Value, GatewayError> {
        let text = self.to_text();
        if text.len() > NUMERIC_DIGITS_MAX {
            return Err(numeric_out_of_range());
        }
        Ok(Value::Numeric(text))
    }

    fn is_zero(&self) -> bool {
        self.magnitude.is_empty()
    }

    /// The magnitude at a scale at least `self.scale`.
    fn magnitude_at(&self, scale: usize) -> Vec<u8> {
        shifted(&self.magnitude, scale - self.scale)
    }

    fn signed(negative: bool, magnitude: Vec<u8>, scale: usize) -> Decimal {
        Decimal {
            negative: negative && !magnitude.is_empty(),
            magnitude,
            scale,
        }
    }

    /// Exact sum; the scale is the larger of the two (Postgres' add_var).
    pub(crate) fn add(&self, other: &Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        let (left, right) = (self.magnitude_at(scale), other.magnitude_at(scale));
        if self.negative == other.negative {
            return Decimal::signed(self.negative, add_magnitudes(&left, &right), scale);
        }
        match compare_magnitudes(&left, &right) {
            Ordering::Less => {
                Decimal::signed(other.negative, subtract_magnitudes(&right, &left), scale)
            }
            _ => Decimal::signed(self.negative, subtract_magnitudes(&left, &right), scale),
        }
    }

    pub(crate) fn negated(&self) -> Decimal {
        Decimal::signed(!self.negative, self.magnitude.clone(), self.scale)
    }

    /// Exact product; the scales add (Postgres' numeric_mul).
    pub(crate) fn multiply(&self, other: &Decimal) -> Decimal {
        Decimal::signed(
            self.negative != other.negative,
            multiply_magnitudes(&self.magnitude, &other.magnitude),
            self.scale + other.scale,
        )
    }

    /// The quotient rounded half away from zero at Postgres' scale (at
    /// least 16 significant digits, at least either operand's scale).
    pub(crate) fn divide(&self, other: &Decimal) -> Result<Decimal, GatewayError> {
        if other.is_zero() {
            return Err(GatewayError::DivisionByZero);
        }
        let scale = division_scale(self, other);
        // self / other = (A·10^-sa) / (B·10^-sb); scaled by 10^scale that is
        // A·10^(sb + scale) / (B·10^sa).
        let numerator = shifted(&self.magnitude, other.scale + scale);
        let denominator = shifted(&other.magnitude, self.scale);
        let (mut quotient, remainder) = divide_magnitudes(&numerator, &denominator);
        let twice_remainder = add_magnitudes(&remainder, &remainder);
        if compare_magnitudes(&twice_remainder, &denominator) != Ordering::Less {
            quotient = add_magnitudes(&quotient, &[1]);
        }
        Ok(Decimal::signed(
            self.negative != other.negative,
            quotient,
            scale,
        ))
    }

    /// The remainder of truncating division; its sign is the dividend's and
    /// its scale the larger of the two (Postgres' mod_var).
    pub(crate) fn remainder(&self, other: &Decimal) -> Result<Decimal, GatewayError> {
        if other.is_zero() {
            return Err(GatewayError::DivisionByZero);
        }
        let scale = self.scale.max(other.scale);
        let (_, remainder) =
            divide_magnitudes(&self.magnitude_at(scale), &other.magnitude_at(scale));
        Ok(Decimal::signed(self.negative, remainder, scale))
    }

    /// Postgres' view of the value in base 10000: the weight (power of
    /// 10000) of its first non-zero base-10000 digit, and that digit.
    fn base_weight_and_first_digit(&self) -> (i64, u32) {
        if self.is_zero() {
            return (0, 0);
        }
        let scale = self.scale as i64;
        let leading_power = self.magnitude.len() as i64 - 1 - scale;
        let weight = leading_power.div_euclid(NUMERIC_BASE_DIGITS);
        let lowest = weight * NUMERIC_BASE_DIGITS;
        let digit = (lowest..lowest + NUMERIC_BASE_DIGITS)
            .rev()
            .fold(0u32, |digit, power| {
                let index = usize::try_from(power + scale).ok();
                let decimal = index.and_then(|index| self.magnitude.get(index));
                digit * 10 + u32::from(decimal.copied().unwrap_or(0))
            });
        (weight, digit)
    }
}

/// `value` as `target`, as Postgres casts it: [`SqlType::convert`], except
/// NUMERIC to an integer type, which rounds exactly, half away from zero
/// (`4.5::int` is 5), where the catalog's conversion goes through a float.
/// `None` when there is no such cast.
pub(crate) fn convert(value: &Value, target: SqlType) -> Option<Result<Value, GatewayError>> {
    match value {
        Value::Numeric(text) if target.is_integer() => Some(numeric_to_integer(text, target)),
        _ => target
            .convert(value)
            .map(|converted| converted.map_err(GatewayError::from)),
    }
}

fn numeric_to_integer(text: &str, target: SqlType) -> Result<Value, GatewayError> {
    let out_of_range = || GatewayError::NumericOutOfRange {
        type_name: target.sql_name().to_owned(),
    };
    let decimal = Decimal::parse(text)
        .ok_or_else(|| GatewayError::internal(format!("numeric text {text:?} is not canonical")))?;
    let integer = decimal.magnitude.get(decimal.scale..).unwrap_or_default();
    let round_up = decimal.scale > 0 && decimal.magnitude.get(decimal.scale - 1) >= Some(&5);
    let mut magnitude: i128 = 0;
    for &digit in integer.iter().rev() {
        magnitude = magnitude
            .checked_mul(10)
            .and_then(|shifted| shifted.checked_add(i128::from(digit)))
            .filter(|value| *value <= i128::from(u64::MAX))
            .ok_or_else(out_of_range)?;
    }
    magnitude += i128::from(round_up);
    let signed = if decimal.negative {
        -magnitude
    } else {
        magnitude
    };
    i64::try_from(signed)
        .ok()
        .and_then(|number| target.check_integer(number))
        .map(Value::Int)
        .ok_or_else(out_of_range)
}

/// Postgres' `select_div_scale`: enough fractional digits for 16
/// significant ones in the quotient, and no fewer than either operand shows.
fn division_scale(dividend: &Decimal, divisor: &Decimal) -> usize {
    let (dividend_weight, dividend_digit) = dividend.base_weight_and_first_digit();
    let (divisor_weight, divisor_digit) = divisor.base_weight_and_first_digit();
    let mut quotient_weight = dividend_weight - divisor_weight;
    if dividend_digit <= divisor_digit {
        quotient_weight -= 1;
    }
    let scale = (NUMERIC_DIVISION_DIGITS_MIN - quotient_weight * NUMERIC_BASE_DIGITS)
        .max(dividend.scale as i64)
        .max(divisor.scale as i64)
        .clamp(0, NUMERIC_DIVISION_SCALE_MAX);
    scale as usize
}

fn numeric_out_of_range() -> GatewayError {
    GatewayError::NumericOutOfRange {
        type_name: SqlType::Numeric.sql_name().to_owned(),
    }
}

/// Without high zeros.
fn trimmed(mut magnitude: Vec<u8>) -> Vec<u8> {
    while magnitude.last() == Some(&0) {
        magnitude.pop();
    }
    magnitude
}

/// `magnitude` times 10^`places`.
fn shifted(magnitude: &[u8], places: usize) -> Vec<u8> {
    if magnitude.is_empty() {
        return Vec::new();
    }
    let mut shifted = vec![0; places];
    shifted.extend_from_slice(magnitude);
    shifted
}

fn compare_magnitudes(left: &[u8], right: &[u8]) -> Ordering {
    left.len()
        .cmp(&right.len())
        .then_with(|| left.iter().rev().cmp(right.iter().rev()))
}

fn add_magnitudes(left: &[u8], right: &[u8]) -> Vec<u8> {
    let mut sum = Vec::with_capacity(left.len().max(right.len()) + 1);
    let mut carry = 0;
    for index in 0..left.len().max(right.len()) {
        let digit = left.get(index).unwrap_or(&0) + right.get(index).unwrap_or(&0) + carry;
        sum.push(digit % 10);
        carry = digit / 10;
    }
    if carry > 0 {
        sum.push(carry);
    }
    sum
}

/// `left - right` for `left >= right`.
fn subtract_magnitudes(left: &[u8], right: &[u8]) -> Vec<u8> {
    let mut difference = Vec::with_capacity(left.len());
    let mut borrow = 0;
    for (index, &digit) in left.iter().enumerate() {
        let subtrahend = right.get(index).unwrap_or(&0) + borrow;
        if digit >= subtrahend {
            difference.push(digit - subtrahend);
            borrow = 0;
        } else {
            difference.push(digit + 10 - subtrahend);
            borrow = 1;
        }
    }
    trimmed(difference)
}

fn multiply_magnitudes(left: &[u8], right: &[u8]) -> Vec<u8> {
    if left.is_empty() || right.is_empty() {
        return Vec::new();
    }
    let mut columns = vec![0u64; left.len() + right.len()];
    for (i, &a) in left.iter().enumerate() {
        for (j, &b) in right.iter().enumerate() {
            columns[i + j] += u64::from(a) * u64::from(b);
        }
    }
    let mut product = Vec::with_capacity(columns.len());
    let mut carry = 0u64;
    for column in columns {
        let total = column + carry;
        product.push((total % 10) as u8);
        carry = total / 10;
    }
    while carry > 0 {
        product.push((carry % 10) as u8);
        carry /= 10;
    }
    trimmed(product)
}

/// Schoolbook long division: (quotient, remainder) of `dividend /
/// divisor`, divisor non-zero. At most nine subtractions per digit.
fn divide_magnitudes(dividend: &[u8], divisor: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut quotient = vec![0; dividend.len()];
    let mut remainder: Vec<u8> = Vec::with_capacity(divisor.len() + 1);
    for index in (0..dividend.len()).rev() {
        remainder.insert(0, dividend[index]);
        remainder = trimmed(remainder);
        let mut digit = 0;
        while compare_magnitudes(&remainder, divisor) != Ordering::Less {
            remainder = subtract_magnitudes(&remainder, divisor);
            digit += 1;
        }
        quotient[index] = digit;
    }
    (trimmed(quotient), remainder)
}

/// `left op right` on NUMERIC (or integer) operands, exactly.
pub(crate) fn numeric_arithmetic(
    op: NumericOp,
    left: &Decimal,
    right: &Decimal,
) -> Result<Value, GatewayError> {
    let result = match op {
        NumericOp::Add => left.add(right),
        NumericOp::Subtract => left.add(&right.negated()),
        NumericOp::Multiply => left.multiply(right),
        NumericOp::Divide => left.divide(right)?,
        NumericOp::Modulo => left.remainder(right)?,
    };
    result.into_value()
}

/// The operators [`numeric_arithmetic`] computes (the caller maps its own
/// operator enum onto this one, so values know nothing of expressions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumericOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
}

/// One element of a LIKE pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LikeToken {
    /// `%`: any run of characters, the empty one too.
    AnyRun,
    /// `_`: exactly one character.
    AnyOne,
    Literal(char),
}

/// The pattern as tokens: `escape` (Postgres' default is `\`; `None` after
/// `ESCAPE ''`) makes the next character literal, and a pattern may not end
/// with it.
fn like_tokens(pattern: &str, escape: Option<char>) -> Result<Vec<LikeToken>, GatewayError> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let token = if Some(c) == escape {
            match chars.next() {
                Some(escaped) => LikeToken::Literal(escaped),
                // Postgres: 22025 "LIKE pattern must not end with escape
                // character"; the error table has no variant of that class
                // member, 22P02 is the nearest data exception it has.
                None => {
                    return Err(GatewayError::InvalidTextRepresentation {
                        type_name: "LIKE pattern (it must not end with the escape character)"
                            .to_owned(),
                        value: pattern.to_owned(),
                    })
                }
            }
        } else {
            match c {
                '%' => LikeToken::AnyRun,
                '_' => LikeToken::AnyOne,
                other => LikeToken::Literal(other),
            }
        };
        // `%%` means what `%` does; one keeps the matcher's backtracking short.
        if !(token == LikeToken::AnyRun && tokens.last() == Some(&LikeToken::AnyRun)) {
            tokens.push(token);
        }
    }
    Ok(tokens)
}

/// The characters a pattern pins at its start, before any wildcard, if it
/// can be read (the key-range narrowing of `k LIKE 'abc%'`).
pub(crate) fn like_prefix(pattern: &str, escape: Option<char>) -> Option<String> {
    let tokens = like_tokens(pattern, escape).ok()?;
    Some(
        tokens
            .iter()
            .map_while(|token| match token {
                LikeToken::Literal(c) => Some(*c),
                _ => None,
            })
            .collect(),
    )
}

/// SQL LIKE (ILIKE when `case_insensitive`): the whole `value` must match.
/// Greedy with one backtrack point, so it runs in O(value × pattern) at
/// worst, never exponentially.
pub(crate) fn like_matches(
    value: &str,
    pattern: &str,
    escape: Option<char>,
    case_insensitive: bool,
) -> Result<bool, GatewayError> {
    let mut tokens = like_tokens(pattern, escape)?;
    let value: Vec<char> = if case_insensitive {
        tokens = tokens
            .into_iter()
            .flat_map(|token| match token {
                LikeToken::Literal(c) => c.to_lowercase().map(LikeToken::Literal).collect(),
                other => vec![other],
            })
            .collect();
        value.to_lowercase().chars().collect()
    } else {
        value.chars().collect()
    };
    let (mut v, mut p) = (0, 0);
    // The last `%` seen, and where in the value its run would end next.
    let mut backtrack: Option<(usize, usize)> = None;
    while v < value.len() {
        match tokens.get(p) {
            Some(LikeToken::AnyRun) => {
                backtrack = Some((p, v));
                p += 1;
                continue;
            }
            Some(LikeToken::AnyOne) => {
                p += 1;
                v += 1;
                continue;
            }
            Some(LikeToken::Literal(c)) if *c == value[v] => {
                p += 1;
                v += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((run, start)) => {
                backtrack = Some((run, start + 1));
                p = run + 1;
                v = start + 1;
            }
            None => return Ok(false),
        }
    }
    while tokens.get(p) == Some(&LikeToken::AnyRun) {
        p += 1;
    }
    Ok(p == tokens.len())
}

/// `left || right`: NULL if either is NULL; two byteas concatenate as
/// bytes; anything else as text, non-text operands in their text output
/// form (Postgres' `anynonarray || text`: `1 || 'a'` is `1a`).
pub(crate) fn concat(left: &Value, right: &Value) -> Result<Value, GatewayError> {
    let too_long = |length: usize| GatewayError::ProgramLimitExceeded {
        what: format!("a concatenation of {length} bytes"),
        limit: CONCAT_BYTES_MAX,
    };
    match (left, right) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Bytes(left), Value::Bytes(right)) => {
            let length = left.len() + right.len();
            if length > CONCAT_BYTES_MAX {
                return Err(too_long(length));
            }
            Ok(Value::Bytes([left.as_slice(), right.as_slice()].concat()))
        }
        _ => {
            let (left, right) = (output_text(left), output_text(right));
            let length = left.len() + right.len();
            if length > CONCAT_BYTES_MAX {
                return Err(too_long(length));
            }
            Ok(Value::Text(left.into_owned() + &right))
        }
    }
}

/// A value as its type's output function writes it.
fn output_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Text(text) => Cow::Borrowed(text),
        other => Cow::Owned(other.to_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str) -> Decimal {
        Decimal::parse(text).expect("canonical numeric text")
    }

    fn compute(op: NumericOp, left: &str, right: &str) -> Result<String, &'static str> {
        match numeric_arithmetic(op, &decimal(left), &decimal(right)) {
            Ok(Value::Numeric(text)) => Ok(text),
            Ok(other) => panic!("{left} {op:?} {right}: {other:?}"),
            Err(error) => Err(error.sqlstate()),
        }
    }

    #[test]
    fn numeric_text_round_trips_with_its_scale() {
        for text in [
            "0",
            "7",
            "-12.50",
            "0.05",
            "0.000",
            "123456789012345678901234567890.5",
        ] {
            assert_eq!(decimal(text).to_text(), text);
        }
        assert_eq!(Decimal::parse("1e5"), None);
        assert_eq!(Decimal::parse(""), None);
        assert_eq!(
            Decimal::of(&Value::Int(i64::MIN)).map(|d| d.to_text()),
            Some(i64::MIN.to_string())
        );
    }

    #[test]
    fn numeric_sums_and_products_are_exact_with_postgres_scales() {
        use NumericOp::*;
        assert_eq!(compute(Add, "1.50", "2"), Ok("3.50".into()));
        assert_eq!(compute(Add, "-1.5", "1.5"), Ok("0.0".into()));
        assert_eq!(compute(Subtract, "1", "2.25"), Ok("-1.25".into()));
        assert_eq!(compute(Add, "0.1", "0.2"), Ok("0.3".into()));
        assert_eq!(compute(Multiply, "1.50", "2.0"), Ok("3.000".into()));
        assert_eq!(compute(Multiply, "-0.5", "0"), Ok("0.0".into()));
        assert_eq!(
            compute(Multiply, "99999999999999999999", "99999999999999999999"),
            Ok("9999999999999999999800000000000000000001".into())
        );
        assert_eq!(compute(Modulo, "7.5", "2"), Ok("1.5".into()));
        assert_eq!(compute(Modulo, "-7", "3"), Ok("-1".into()));
    }

    #[test]
    fn numeric_division_keeps_sixteen_significant_digits_rounded_half_away() {
        use NumericOp::*;
        assert_eq!(
            compute(Divide, "1", "3"),
            Ok("0.33333333333333333333".into())
        );
        assert_eq!(
            compute(Divide, "2", "3"),
            Ok("0.66666666666666666667".into())
        );
        assert_eq!(
            compute(Divide, "-2", "3"),
            Ok("-0.66666666666666666667".into())
        );
        assert_eq!(compute(Divide, "10", "4"), Ok("2.5000000000000000".into()));
        assert_eq!(
            compute(Divide, "100", "3"),
            Ok("33.3333333333333333".into())
        );
        assert_eq!(
            compute(Divide, "7.5", "2.5"),
            Ok("3.0000000000000000".into())
        );
        assert_eq!(
            compute(Divide, "0.001", "3"),
            Ok("0.00033333333333333333".into())
        );
        assert_eq!(
            compute(Divide, "1.000000000000000000000000", "8"),
            Ok("0.125000000000000000000000".into())
        );
        assert_eq!(compute(Divide, "1", "0.00"), Err("22012"));
        assert_eq!(compute(Modulo, "1", "0"), Err("22012"));
    }

    #[test]
    fn numeric_to_integer_rounds_half_away_from_zero_exactly() {
        let cast = |text: &str, target: SqlType| {
            convert(&Value::Numeric(text.to_owned()), target)
                .expect("a cast exists")
                .map_err(|error| error.sqlstate())
        };
        assert_eq!(cast("4.5", SqlType::Int4), Ok(Value::Int(5)));
        assert_eq!(cast("-4.5", SqlType::Int4), Ok(Value::Int(-5)));
        assert_eq!(cast("4.49", SqlType::Int4), Ok(Value::Int(4)));
        assert_eq!(cast("0.5", SqlType::Int2), Ok(Value::Int(1)));
        assert_eq!(
            cast("9223372036854775807.4", SqlType::Int8),
            Ok(Value::Int(i64::MAX))
        );
        assert_eq!(cast("9223372036854775807.5", SqlType::Int8), Err("22003"));
        assert_eq!(cast("32767.5", SqlType::Int2), Err("22003"));
        let huge = format!("1{}", "0".repeat(30));
        assert_eq!(cast(&huge, SqlType::Int8), Err("22003"));
    }

    #[test]
    fn numeric_results_longer_than_a_numeric_may_be_are_out_of_range() {
        let huge = format!("1{}", "0".repeat(NUMERIC_DIGITS_MAX - 1));
        assert_eq!(compute(NumericOp::Multiply, &huge, "10"), Err("22003"));
        let nines = "9".repeat(NUMERIC_DIGITS_MAX - 1);
        assert_eq!(
            compute(NumericOp::Add, &nines, "1").map(|text| text.len()),
            Ok(NUMERIC_DIGITS_MAX)
        );
        let widest = "9".repeat(NUMERIC_DIGITS_MAX);
        assert_eq!(compute(NumericOp::Add, &widest, "1"), Err("22003"));
        assert_eq!(
            compute(NumericOp::Subtract, &format!("-{}", &widest[1..]), "1"),
            Err("22003")
        );
    }

    fn like(value: &str, pattern: &str) -> bool {
        like_matches(value, pattern, Some('\\'), false).expect("valid pattern")
    }

    #[test]
    fn like_matches_percent_underscore_and_escapes() {
        assert!(like("abc", "a%"));
        assert!(like("abc", "_b_"));
        assert!(!like("abc", "a_"));
        assert!(like("abc", "%"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("aaa", "%a%a%a%"));
        assert!(!like("ab", "%a%a%"));
        assert!(like("mississippi", "%iss%ppi"));
        assert!(like("a%c", "a\\%c"));
        assert!(!like("abc", "a\\%c"));
        assert!(like("a_c", "a\\_c"));
        assert!(!like("abc", "a\\_c"));
        assert!(like("a\\c", "a\\\\c"));
        assert!(like("ünï", "_n_"));
        assert!(!like("ABC", "a%"));
        assert!(like_matches("ABC", "a%", Some('\\'), true).expect("valid"));
        assert!(like_matches("10%", "10!%", Some('!'), false).expect("valid"));
        assert!(like_matches("a\\b", "a\\b", None, false).expect("no escape"));
        let error = like_matches("a", "a\\", Some('\\'), false).expect_err("dangling escape");
        assert_eq!(error.sqlstate(), "22P02");
    }

    #[test]
    fn like_prefix_stops_at_the_first_wildcard() {
        assert_eq!(like_prefix("user:%", Some('\\')).as_deref(), Some("user:"));
        assert_eq!(like_prefix("a\\%b%", Some('\\')).as_deref(), Some("a%b"));
        assert_eq!(like_prefix("%x", Some('\\')).as_deref(), Some(""));
        assert_eq!(like_prefix("a_", Some('\\')).as_deref(), Some("a"));
        assert_eq!(like_prefix("a\\", Some('\\')), None);
    }

    #[test]
    fn concatenation_is_null_strict_and_writes_non_text_as_text() {
        let text = |s: &str| Value::Text(s.to_owned());
        assert_eq!(concat(&text("a"), &text("b")).expect("fits"), text("ab"));
        assert_eq!(concat(&text("a"), &Value::Null).expect("fits"), Value::Null);
        assert_eq!(
            concat(&Value::Int(1), &text("a")).expect("fits"),
            text("1a")
        );
        assert_eq!(
            concat(&Value::Bool(true), &text("")).expect("fits"),
            text("t")
        );
        assert_eq!(
            concat(&Value::Bytes(vec![1]), &Value::Bytes(vec![2])).expect("fits"),
            Value::Bytes(vec![1, 2])
        );
    }
}
