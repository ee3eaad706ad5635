//! Bound expressions: what the binder produces from sqlparser's AST and the
//! row evaluator runs. Columns are resolved to indexes, literals to typed
//! values and every operator to the types it works on before execution, so
//! evaluation fails only where Postgres' does at run time: arithmetic that
//! overflows its result type (22003) or divides by zero (22012), a cast of a
//! value its target cannot hold, a malformed LIKE pattern, an oversize
//! concatenation (54000). NULL in gives NULL out, never an error.
//!
//! Operators: comparisons, AND/OR/NOT, IS [NOT] NULL, `[NOT] IN (list)`
//! (three-valued: `1 IN (2, NULL)` is NULL), `[NOT] LIKE`/`ILIKE`, `||`,
//! casts, integer/float/exact NUMERIC arithmetic, and the statement's time
//! (`now()`, `CURRENT_DATE`...). BETWEEN is bound as two comparisons. The
//! time is a node of its own ([`Expr::StatementTime`]) until the statement
//! runs: the executor reads its clock once per statement and
//! [`Expr::resolve_statement_time`] turns every such node into a literal, so
//! every row and every `now()` of one statement sees the same instant.
//!
//! Also derives the primary-key range a predicate implies
//! ([`key_range`]), which is how WHERE clauses become bounded scans, and the
//! key points a predicate pins ([`key_point`], [`key_points`] for IN lists).
//! Only `column <op> literal`, `column IN (literals)` and `column LIKE
//! 'prefix%'` narrow a range; arithmetic over constants is folded to a
//! literal when it is bound, arithmetic over columns (`k = k + 0`) never
//! narrows one.

use std::cmp::Ordering;
use std::ops::Bound;

use crate::error::GatewayError;
use crate::value::{
    concat, convert, like_matches, like_prefix, numeric_arithmetic, sort_cmp, Decimal, NumericOp,
    Row, SqlType, Value,
};

/// Key points one statement may read one by one (`k IN (...)` over the
/// whole key); a longer list is a range scan with the list as its filter.
pub(crate) const KEY_POINTS_MAX: usize = 1_000;
/// Microseconds in a day, for `CURRENT_DATE`.
const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;
/// Fractional-second digits a timestamp keeps (microseconds).
pub(crate) const TIMESTAMP_PRECISION_MAX: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CompareOp {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering == Ordering::Equal,
            CompareOp::NotEq => ordering != Ordering::Equal,
            CompareOp::Lt => ordering == Ordering::Less,
            CompareOp::LtEq => ordering != Ordering::Greater,
            CompareOp::Gt => ordering == Ordering::Greater,
            CompareOp::GtEq => ordering != Ordering::Less,
        }
    }

    /// The operator seen from the other side: `a < b` is `b > a`.
    fn flipped(self) -> CompareOp {
        match self {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::LtEq => CompareOp::GtEq,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::GtEq => CompareOp::LtEq,
            other => other,
        }
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::NotEq => "<>",
            CompareOp::Lt => "<",
            CompareOp::LtEq => "<=",
            CompareOp::Gt => ">",
            CompareOp::GtEq => ">=",
        }
    }
}

/// A binary arithmetic operator. Which number kind it computes in is
/// decided at bind time and carried by [`Expr::Arithmetic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithmeticOp {
    Add,
    Subtract,
    Multiply,
    /// Integer division truncates toward zero, as in Postgres.
    Divide,
    /// Integer remainder; its sign follows the dividend, as in Postgres.
    Modulo,
}

impl ArithmeticOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            ArithmeticOp::Add => "+",
            ArithmeticOp::Subtract => "-",
            ArithmeticOp::Multiply => "*",
            ArithmeticOp::Divide => "/",
            ArithmeticOp::Modulo => "%",
        }
    }
}

/// The instant a statement runs at, read once from the executor's clock:
/// every `now()` of the statement (and every row) sees this one value.
/// Sessions run in UTC (the TimeZone the gateway reports), so the local
/// time of `LOCALTIMESTAMP` and `CURRENT_DATE` is UTC too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatementTime {
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    micros: i64,
}

/// Where statements get their time: microseconds since the Unix epoch.
/// Injected into the executor so tests can fix it.
pub(crate) type Clock = std::sync::Arc<dyn Fn() -> i64 + Send + Sync>;

/// The host's wall clock, for a running gateway.
pub(crate) fn system_clock() -> Clock {
    std::sync::Arc::new(|| {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        }
    })
}

impl StatementTime {
    pub(crate) fn from_unix_micros(micros: i64) -> Self {
        StatementTime { micros }
    }

    /// The time as `sql_type` (timestamptz, timestamp or date), with
    /// `precision` fractional-second digits (rounded half away from zero,
    /// as Postgres rounds `current_timestamp(p)`).
    fn value(self, sql_type: SqlType, precision: u32) -> Value {
        let unit = 10i64.pow(TIMESTAMP_PRECISION_MAX - precision.min(TIMESTAMP_PRECISION_MAX));
        let half = unit / 2;
        let micros = if self.micros >= 0 {
            self.micros.saturating_add(half) / unit * unit
        } else {
            -(self.micros.saturating_neg().saturating_add(half) / unit * unit)
        };
        match sql_type {
            SqlType::Timestamp => Value::Timestamp(micros),
            SqlType::Date => Value::Date(
                i32::try_from(self.micros.div_euclid(MICROS_PER_DAY)).unwrap_or(i32::MAX),
            ),
            _ => Value::Timestamptz(micros),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Column(usize),
    Literal(Value),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    IsNull(Box<Expr>),
    IsNotNull(Box<Expr>),
    /// `left op right` computed as `result`, an integer, float or NUMERIC
    /// type; the binder made both operands values of that family (integers
    /// as `Value::Int`; a float operation also accepts integer and NUMERIC
    /// operands and computes in `f64`; a NUMERIC one accepts integers and
    /// computes exactly).
    Arithmetic {
        op: ArithmeticOp,
        left: Box<Expr>,
        right: Box<Expr>,
        result: SqlType,
    },
    /// Unary minus of a number of type `result` (NUMERIC too: that is exact).
    Negate {
        operand: Box<Expr>,
        result: SqlType,
    },
    /// `operand [NOT] IN (list)`: the binder gave every item the operand's
    /// type. TRUE on the first equal item; else NULL if the operand or any
    /// item was NULL; else FALSE (NOT IN negates TRUE and FALSE only).
    InList {
        operand: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `operand [NOT] LIKE pattern` (ILIKE when `case_insensitive`), both
    /// text; `escape` is the escape character (`None` after `ESCAPE ''`).
    Like {
        operand: Box<Expr>,
        pattern: Box<Expr>,
        escape: Option<char>,
        case_insensitive: bool,
        negated: bool,
    },
    /// `left || right` (see [`concat`]).
    Concat(Box<Expr>, Box<Expr>),
    /// A cast evaluated per row (`n::text`, a timestamptz stored into a
    /// timestamp column); the binder allowed only casts that exist.
    Cast {
        operand: Box<Expr>,
        target: SqlType,
    },
    /// `now()` and friends as `sql_type` (timestamptz, timestamp, date)
    /// rounded to `precision` fractional digits; replaced by a literal
    /// before the statement runs ([`Expr::resolve_statement_time`]).
    StatementTime {
        sql_type: SqlType,
        precision: u32,
    },
}

impl Expr {
    /// The value of this expression over `row`. Fails only where the module
    /// doc says.
    pub(crate) fn eval(&self, row: &Row) -> Result<Value, GatewayError> {
        Ok(match self {
            Expr::Column(index) => row.get(*index).cloned().unwrap_or(Value::Null),
            Expr::Literal(value) => value.clone(),
            Expr::Compare(op, left, right) => match left.eval(row)?.compare(&right.eval(row)?) {
                Some(ordering) => Value::Bool(op.holds(ordering)),
                None => Value::Null,
            },
            // FALSE AND x is FALSE whatever x is, so x is not evaluated (and
            // cannot fail the row), as Postgres short-circuits too.
            Expr::And(left, right) => match left.eval(row)? {
                Value::Bool(false) => Value::Bool(false),
                left => match (left, right.eval(row)?) {
                    (_, Value::Bool(false)) => Value::Bool(false),
                    (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                    _ => Value::Null,
                },
            },
            Expr::Or(left, right) => match left.eval(row)? {
                Value::Bool(true) => Value::Bool(true),
                left => match (left, right.eval(row)?) {
                    (_, Value::Bool(true)) => Value::Bool(true),
                    (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                    _ => Value::Null,
                },
            },
            Expr::Not(inner) => match inner.eval(row)? {
                Value::Bool(value) => Value::Bool(!value),
                _ => Value::Null,
            },
            Expr::IsNull(inner) => Value::Bool(inner.eval(row)?.is_null()),
            Expr::IsNotNull(inner) => Value::Bool(!inner.eval(row)?.is_null()),
            Expr::Arithmetic {
                op,
                left,
                right,
                result,
            } => arithmetic(*op, &left.eval(row)?, &right.eval(row)?, *result)?,
            Expr::Negate { operand, result } => negate(&operand.eval(row)?, *result)?,
            Expr::InList {
                operand,
                list,
                negated,
            } => in_list(&operand.eval(row)?, list, *negated, row)?,
            Expr::Like {
                operand,
                pattern,
                escape,
                case_insensitive,
                negated,
            } => match (operand.eval(row)?, pattern.eval(row)?) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (value, pattern) => Value::Bool(
                    like_matches(
                        &value.to_text(),
                        &pattern.to_text(),
                        *escape,
                        *case_insensitive,
                    )? != *negated,
                ),
            },
            Expr::Concat(left, right) => concat(&left.eval(row)?, &right.eval(row)?)?,
            Expr::Cast { operand, target } => match convert(&operand.eval(row)?, *target) {
                Some(converted) => converted?,
                None => {
                    return Err(GatewayError::internal(format!(
                        "a cast to {} that does not exist was bound",
                        target.sql_name()
                    )))
                }
            },
            Expr::StatementTime { .. } => {
                return Err(GatewayError::internal(
                    "the statement time was not resolved before evaluation",
                ))
            }
        })
    }

    /// WHERE semantics: only TRUE keeps the row (NULL does not).
    pub(crate) fn matches(&self, row: &Row) -> Result<bool, GatewayError> {
        Ok(self.eval(row)? == Value::Bool(true))
    }

    /// The direct sub-expressions.
    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Column(_) | Expr::Literal(_) | Expr::StatementTime { .. } => Vec::new(),
            Expr::Compare(_, left, right)
            | Expr::And(left, right)
            | Expr::Or(left, right)
            | Expr::Concat(left, right)
            | Expr::Arithmetic { left, right, .. }
            | Expr::Like {
                operand: left,
                pattern: right,
                ..
            } => vec![left, right],
            Expr::Not(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::Negate { operand: inner, .. }
            | Expr::Cast { operand: inner, .. } => vec![inner],
            Expr::InList { operand, list, .. } => {
                std::iter::once(operand.as_ref()).chain(list).collect()
            }
        }
    }

    fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Column(_) | Expr::Literal(_) | Expr::StatementTime { .. } => Vec::new(),
            Expr::Compare(_, left, right)
            | Expr::And(left, right)
            | Expr::Or(left, right)
            | Expr::Concat(left, right)
            | Expr::Arithmetic { left, right, .. }
            | Expr::Like {
                operand: left,
                pattern: right,
                ..
            } => vec![left, right],
            Expr::Not(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::Negate { operand: inner, .. }
            | Expr::Cast { operand: inner, .. } => vec![inner],
            Expr::InList { operand, list, .. } => {
                std::iter::once(operand.as_mut()).chain(list).collect()
            }
        }
    }

    /// Whether this expression or any part of it satisfies `test`.
    pub(crate) fn any(&self, test: &impl Fn(&Expr) -> bool) -> bool {
        test(self) || self.children().into_iter().any(|child| child.any(test))
    }

    pub(crate) fn references_columns(&self) -> bool {
        self.any(&|expr| matches!(expr, Expr::Column(_)))
    }

    pub(crate) fn reads_statement_time(&self) -> bool {
        self.any(&|expr| matches!(expr, Expr::StatementTime { .. }))
    }

    /// Reads neither a column nor the statement time: its value can be
    /// computed now, when it is bound.
    pub(crate) fn is_constant(&self) -> bool {
        !self.any(&|expr| matches!(expr, Expr::Column(_) | Expr::StatementTime { .. }))
    }

    /// Replaces every statement-time node by the time the statement runs at.
    pub(crate) fn resolve_statement_time(&mut self, now: StatementTime) {
        if let Expr::StatementTime {
            sql_type,
            precision,
        } = self
        {
            *self = Expr::Literal(now.value(*sql_type, *precision));
            return;
        }
        for child in self.children_mut() {
            child.resolve_statement_time(now);
        }
    }
}

/// [`Expr::InList`] for an evaluated operand.
fn in_list(value: &Value, list: &[Expr], negated: bool, row: &Row) -> Result<Value, GatewayError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let mut unknown = false;
    for item in list {
        match value.compare(&item.eval(row)?) {
            Some(Ordering::Equal) => return Ok(Value::Bool(!negated)),
            Some(_) => {}
            None => unknown = true,
        }
    }
    Ok(if unknown {
        Value::Null
    } else {
        Value::Bool(negated)
    })
}

/// `left op right` in the number kind of `result`; NULL if either is NULL.
pub(crate) fn arithmetic(
    op: ArithmeticOp,
    left: &Value,
    right: &Value,
    result: SqlType,
) -> Result<Value, GatewayError> {
    if left.is_null() || right.is_null() {
        return Ok(Value::Null);
    }
    if result.is_integer() {
        let (Value::Int(left), Value::Int(right)) = (left, right) else {
            return Err(operand_mismatch(op, left, right, result));
        };
        return integer_arithmetic(op, *left, *right, result).map(Value::Int);
    }
    if result.is_float() {
        let (Some(left_number), Some(right_number)) = (as_float(left), as_float(right)) else {
            return Err(operand_mismatch(op, left, right, result));
        };
        return float_arithmetic(op, left_number, right_number, result).map(Value::Float);
    }
    if result == SqlType::Numeric {
        let (Some(left_number), Some(right_number)) = (Decimal::of(left), Decimal::of(right))
        else {
            return Err(operand_mismatch(op, left, right, result));
        };
        let numeric_op = match op {
            ArithmeticOp::Add => NumericOp::Add,
            ArithmeticOp::Subtract => NumericOp::Subtract,
            ArithmeticOp::Multiply => NumericOp::Multiply,
            ArithmeticOp::Divide => NumericOp::Divide,
            ArithmeticOp::Modulo => NumericOp::Modulo,
        };
        return numeric_arithmetic(numeric_op, &left_number, &right_number);
    }
    Err(operand_mismatch(op, left, right, result))
}

/// Checked i64 arithmetic, then the range of `result` (int2, int4, int8):
/// Postgres computes `int4 + int4` in int4, so its overflow is an error
/// even when the i64 sum is fine.
fn integer_arithmetic(
    op: ArithmeticOp,
    left: i64,
    right: i64,
    result: SqlType,
) -> Result<i64, GatewayError> {
    if matches!(op, ArithmeticOp::Divide | ArithmeticOp::Modulo) && right == 0 {
        return Err(GatewayError::DivisionByZero);
    }
    let computed = match op {
        ArithmeticOp::Add => left.checked_add(right),
        ArithmeticOp::Subtract => left.checked_sub(right),
        ArithmeticOp::Multiply => left.checked_mul(right),
        // Rust's `/` truncates toward zero, as Postgres' does.
        ArithmeticOp::Divide => left.checked_div(right),
        // `x % -1` is 0 even for the most negative x (Postgres special-cases
        // it; i64's checked_rem would call i64::MIN % -1 an overflow).
        ArithmeticOp::Modulo if right == -1 => Some(0),
        ArithmeticOp::Modulo => left.checked_rem(right),
    };
    computed
        .and_then(|value| result.check_integer(value))
        .ok_or_else(|| out_of_range(result))
}

/// f64 arithmetic rounded to `result` (REAL keeps single precision), with
/// Postgres' checks (float.c): an infinite result from non-infinite inputs
/// is an overflow, a zero product or quotient of a non-zero dividend an
/// underflow; both are 22003.
fn float_arithmetic(
    op: ArithmeticOp,
    left: f64,
    right: f64,
    result: SqlType,
) -> Result<f64, GatewayError> {
    let computed = match op {
        ArithmeticOp::Add => left + right,
        ArithmeticOp::Subtract => left - right,
        ArithmeticOp::Multiply => left * right,
        ArithmeticOp::Divide if right == 0.0 => return Err(GatewayError::DivisionByZero),
        ArithmeticOp::Divide => left / right,
        // The binder refuses `%` on floats (Postgres has no such operator).
        ArithmeticOp::Modulo => return Err(GatewayError::internal("% bound on float operands")),
    };
    let rounded = result.round_float(computed);
    let (overflow, underflow) = match op {
        ArithmeticOp::Add | ArithmeticOp::Subtract | ArithmeticOp::Modulo => {
            (!left.is_infinite() && !right.is_infinite(), false)
        }
        ArithmeticOp::Multiply => (
            !left.is_infinite() && !right.is_infinite(),
            left != 0.0 && right != 0.0,
        ),
        ArithmeticOp::Divide => (!left.is_infinite(), left != 0.0 && !right.is_infinite()),
    };
    if rounded.is_infinite() && overflow || rounded == 0.0 && underflow {
        return Err(out_of_range(result));
    }
    Ok(rounded)
}

/// `-value` as `result`; NULL stays NULL.
pub(crate) fn negate(value: &Value, result: SqlType) -> Result<Value, GatewayError> {
    match value {
        Value::Null => Ok(Value::Null),
        Value::Int(number) if result.is_integer() => number
            .checked_neg()
            .and_then(|negated| result.check_integer(negated))
            .map(Value::Int)
            .ok_or_else(|| out_of_range(result)),
        // Exact: only the sign of the canonical text changes; zero has none.
        Value::Numeric(text) if result == SqlType::Numeric => {
            Ok(Value::Numeric(match text.strip_prefix('-') {
                Some(positive) => positive.to_owned(),
                None if text.bytes().all(|byte| matches!(byte, b'0' | b'.')) => text.clone(),
                None => format!("-{text}"),
            }))
        }
        other if result.is_float() => match as_float(other) {
            Some(number) => Ok(Value::Float(result.round_float(-number))),
            None => Err(GatewayError::internal(format!(
                "unary - bound as {} on {other:?}",
                result.sql_name()
            ))),
        },
        other => Err(GatewayError::internal(format!(
            "unary - bound as {} on {other:?}",
            result.sql_name()
        ))),
    }
}

/// A number operand of a float operation as f64 (Postgres casts integer
/// and NUMERIC operands to float8 implicitly).
fn as_float(value: &Value) -> Option<f64> {
    match value {
        Value::Float(number) => Some(*number),
        Value::Int(number) => Some(*number as f64),
        Value::Numeric(text) => text.parse().ok(),
        _ => None,
    }
}

/// Postgres' message names the type whose range was left: "integer out of
/// range", "bigint out of range".
fn out_of_range(result: SqlType) -> GatewayError {
    GatewayError::NumericOutOfRange {
        type_name: result.sql_name().to_owned(),
    }
}

/// Operand values the binder should never have let through: a bug here,
/// not a user error.
fn operand_mismatch(
    op: ArithmeticOp,
    left: &Value,
    right: &Value,
    result: SqlType,
) -> GatewayError {
    GatewayError::internal(format!(
        "{} bound as {} on {left:?} and {right:?}",
        op.symbol(),
        result.sql_name()
    ))
}

/// A range of values of the first primary-key column. Always a superset of
/// the rows the predicate it came from can match; the predicate is still
/// applied to every row scanned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyRange {
    pub(crate) lower: Bound<Value>,
    pub(crate) upper: Bound<Value>,
}

impl KeyRange {
    pub(crate) fn full() -> Self {
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// The single value this range holds, if it is `[x, x]`.
    #[cfg(test)]
    pub(crate) fn point(&self) -> Option<&Value> {
        match (&self.lower, &self.upper) {
            (Bound::Included(lower), Bound::Included(upper))
                if lower.compare(upper) == Some(Ordering::Equal) =>
            {
                Some(lower)
            }
            _ => None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        let order = |lower: &Value, upper: &Value| lower.compare(upper).unwrap_or(Ordering::Less);
        match (&self.lower, &self.upper) {
            (Bound::Included(lower), Bound::Included(upper)) => {
                order(lower, upper) == Ordering::Greater
            }
            (Bound::Included(lower), Bound::Excluded(upper))
            | (Bound::Excluded(lower), Bound::Included(upper))
            | (Bound::Excluded(lower), Bound::Excluded(upper)) => {
                order(lower, upper) != Ordering::Less
            }
            _ => false,
        }
    }

    fn intersect(self, other: KeyRange) -> KeyRange {
        KeyRange {
            lower: tighter(self.lower, other.lower, Ordering::Greater),
            upper: tighter(self.upper, other.upper, Ordering::Less),
        }
    }

    /// The smallest single range covering both (an over-approximation of OR).
    fn hull(self, other: KeyRange) -> KeyRange {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        KeyRange {
            lower: looser(self.lower, other.lower, Ordering::Less),
            upper: looser(self.upper, other.upper, Ordering::Greater),
        }
    }
}

/// Of two bounds on the same side, the one further towards `direction`
/// (Greater for lower bounds, Less for upper bounds).
fn tighter(left: Bound<Value>, right: Bound<Value>, direction: Ordering) -> Bound<Value> {
    match (&left, &right) {
        (Bound::Unbounded, _) => right,
        (_, Bound::Unbounded) => left,
        _ => {
            let (left_value, right_value) = (bound_value(&left), bound_value(&right));
            match sort_cmp(left_value, right_value) {
                ordering if ordering == direction => left,
                Ordering::Equal if matches!(left, Bound::Excluded(_)) => left,
                Ordering::Equal => right,
                _ => right,
            }
        }
    }
}

/// Of two bounds on the same side, the one further towards `direction`
/// (Less for lower bounds, Greater for upper bounds); unbounded wins.
fn looser(left: Bound<Value>, right: Bound<Value>, direction: Ordering) -> Bound<Value> {
    match (&left, &right) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => Bound::Unbounded,
        _ => {
            let (left_value, right_value) = (bound_value(&left), bound_value(&right));
            match sort_cmp(left_value, right_value) {
                ordering if ordering == direction => left,
                Ordering::Equal if matches!(left, Bound::Included(_)) => left,
                Ordering::Equal => right,
                _ => right,
            }
        }
    }
}

fn bound_value(bound: &Bound<Value>) -> &Value {
    match bound {
        Bound::Included(value) | Bound::Excluded(value) => value,
        Bound::Unbounded => &Value::Null,
    }
}

/// The values of every key column when `predicate` pins each of them with
/// `column = literal` in its top-level AND chain (a point read).
pub(crate) fn key_point(predicate: Option<&Expr>, key_columns: &[usize]) -> Option<Vec<Value>> {
    let mut values: Vec<Option<Value>> = vec![None; key_columns.len()];
    collect_equalities(predicate?, key_columns, &mut values);
    values.into_iter().collect()
}

fn collect_equalities(predicate: &Expr, key_columns: &[usize], values: &mut [Option<Value>]) {
    match predicate {
        Expr::And(left, right) => {
            collect_equalities(left, key_columns, values);
            collect_equalities(right, key_columns, values);
        }
        Expr::Compare(CompareOp::Eq, left, right) => {
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(column), Expr::Literal(value))
                | (Expr::Literal(value), Expr::Column(column)) => (*column, value),
                _ => return,
            };
            if value.is_null() {
                return;
            }
            if let Some(position) = key_columns.iter().position(|&key| key == column) {
                values[position].get_or_insert_with(|| value.clone());
            }
        }
        _ => {}
    }
}

/// Every key the predicate can match when its top-level AND chain pins
/// each key column with `column = literal` or `column IN (literals)`: the
/// product of the pinned values, at most [`KEY_POINTS_MAX`] of them (else
/// `None`, and the caller scans a range). A superset: the predicate is
/// still applied to each row read.
pub(crate) fn key_points(
    predicate: Option<&Expr>,
    key_columns: &[usize],
) -> Option<Vec<Vec<Value>>> {
    let mut candidates: Vec<Option<Vec<Value>>> = vec![None; key_columns.len()];
    collect_candidates(predicate?, key_columns, &mut candidates);
    let candidates: Vec<Vec<Value>> = candidates.into_iter().collect::<Option<_>>()?;
    let count = candidates
        .iter()
        .try_fold(1usize, |count, values| count.checked_mul(values.len()))?;
    if count > KEY_POINTS_MAX {
        return None;
    }
    let mut points: Vec<Vec<Value>> = vec![Vec::with_capacity(key_columns.len())];
    for values in candidates {
        points = points
            .into_iter()
            .flat_map(|point| {
                values.iter().map(move |value| {
                    let mut extended = point.clone();
                    extended.push(value.clone());
                    extended
                })
            })
            .collect();
    }
    Some(points)
}

fn collect_candidates(
    predicate: &Expr,
    key_columns: &[usize],
    candidates: &mut [Option<Vec<Value>>],
) {
    let (column, values) = match predicate {
        Expr::And(left, right) => {
            collect_candidates(left, key_columns, candidates);
            collect_candidates(right, key_columns, candidates);
            return;
        }
        Expr::Compare(CompareOp::Eq, left, right) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(column), Expr::Literal(value))
            | (Expr::Literal(value), Expr::Column(column)) => (*column, vec![value.clone()]),
            _ => return,
        },
        Expr::InList {
            operand,
            list,
            negated: false,
        } => {
            let Expr::Column(column) = operand.as_ref() else {
                return;
            };
            let literals: Option<Vec<Value>> = list
                .iter()
                .map(|item| match item {
                    Expr::Literal(value) => Some(value.clone()),
                    _ => None,
                })
                .collect();
            let Some(values) = literals else {
                return;
            };
            (*column, values)
        }
        _ => return,
    };
    let Some(position) = key_columns.iter().position(|&key| key == column) else {
        return;
    };
    // NULL equals nothing; repeated items are one key.
    let mut values: Vec<Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    values.sort_by(sort_cmp);
    values.dedup_by(|a, b| a.compare(b) == Some(Ordering::Equal));
    candidates[position].get_or_insert(values);
}

/// True when `predicate` is exactly the AND of `key column = literal` for
/// each key column, so the point read says everything the filter does.
pub(crate) fn is_exact_point(predicate: Option<&Expr>, key_columns: &[usize]) -> bool {
    fn count_terms(predicate: &Expr) -> usize {
        match predicate {
            Expr::And(left, right) => count_terms(left) + count_terms(right),
            _ => 1,
        }
    }
    match predicate {
        Some(predicate) => {
            key_point(Some(predicate), key_columns).is_some()
                && count_terms(predicate) == key_columns.len()
        }
        None => false,
    }
}

/// The range of values of column `key_column` that `predicate` can
/// match. Conservative: shapes it does not understand give the full range.
pub(crate) fn key_range(predicate: Option<&Expr>, key_column: usize) -> KeyRange {
    match predicate {
        None => KeyRange::full(),
        Some(predicate) => range_of(predicate, key_column),
    }
}

fn range_of(predicate: &Expr, key_column: usize) -> KeyRange {
    match predicate {
        Expr::And(left, right) => range_of(left, key_column).intersect(range_of(right, key_column)),
        Expr::Or(left, right) => range_of(left, key_column).hull(range_of(right, key_column)),
        Expr::Compare(op, left, right) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(column), Expr::Literal(value)) if *column == key_column => {
                comparison_range(*op, value)
            }
            (Expr::Literal(value), Expr::Column(column)) if *column == key_column => {
                comparison_range(op.flipped(), value)
            }
            _ => KeyRange::full(),
        },
        // `k = NULL` and friends match nothing; keys are never NULL.
        Expr::IsNull(inner) if matches!(inner.as_ref(), Expr::Column(c) if *c == key_column) => {
            empty_range()
        }
        Expr::Literal(Value::Bool(false)) | Expr::Literal(Value::Null) => empty_range(),
        // `k IN (a, b)` is `k = a OR k = b`: the hull of its points.
        Expr::InList {
            operand,
            list,
            negated: false,
        } if matches!(operand.as_ref(), Expr::Column(c) if *c == key_column) => {
            list.iter().fold(empty_range(), |range, item| match item {
                Expr::Literal(value) => range.hull(comparison_range(CompareOp::Eq, value)),
                _ => KeyRange::full(),
            })
        }
        Expr::Like {
            operand,
            pattern,
            escape,
            case_insensitive: false,
            negated: false,
        } if matches!(operand.as_ref(), Expr::Column(c) if *c == key_column) => {
            match pattern.as_ref() {
                Expr::Literal(Value::Text(pattern)) => prefix_range(pattern, *escape),
                _ => KeyRange::full(),
            }
        }
        _ => KeyRange::full(),
    }
}

/// The texts starting with the pattern's fixed prefix: `['abc', 'abd')`
/// for `'abc%'`. Text keys order by their bytes, and UTF-8 byte order is
/// code point order, so the successor of the prefix bounds every extension.
fn prefix_range(pattern: &str, escape: Option<char>) -> KeyRange {
    let Some(prefix) = like_prefix(pattern, escape).filter(|prefix| !prefix.is_empty()) else {
        return KeyRange::full();
    };
    let mut successor = prefix.clone();
    let upper = loop {
        let Some(last) = successor.pop() else {
            break Bound::Unbounded;
        };
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            successor.push(next);
            break Bound::Excluded(Value::Text(successor));
        }
    };
    KeyRange {
        lower: Bound::Included(Value::Text(prefix)),
        upper,
    }
}

fn comparison_range(op: CompareOp, value: &Value) -> KeyRange {
    if value.is_null() {
        // Comparing with NULL is never true.
        return empty_range();
    }
    let text = value.clone();
    let (lower, upper) = match op {
        CompareOp::Eq => (Bound::Included(text.clone()), Bound::Included(text)),
        CompareOp::NotEq => (Bound::Unbounded, Bound::Unbounded),
        CompareOp::Lt => (Bound::Unbounded, Bound::Excluded(text)),
        CompareOp::LtEq => (Bound::Unbounded, Bound::Included(text)),
        CompareOp::Gt => (Bound::Excluded(text), Bound::Unbounded),
        CompareOp::GtEq => (Bound::Included(text), Bound::Unbounded),
    };
    KeyRange { lower, upper }
}

/// A range holding nothing: `(x, x)` for any x.
fn empty_range() -> KeyRange {
    KeyRange {
        lower: Bound::Excluded(Value::Bool(false)),
        upper: Bound::Excluded(Value::Bool(false)),
    }
}

#[cfg(test)]
mod tests;
