//! Bound expressions: what the binder produces from sqlparser's AST and the
//! row evaluator runs. Columns are resolved to indexes and literals to typed
//! values before execution, so evaluation cannot fail.
//!
//! Also derives the primary-key range a predicate implies
//! ([`key_range`]), which is how WHERE clauses become bounded scans.

use std::cmp::Ordering;
use std::ops::Bound;

use crate::value::{sort_cmp, Row, Value};

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
}

impl Expr {
    pub(crate) fn eval(&self, row: &Row) -> Value {
        match self {
            Expr::Column(index) => row.get(*index).cloned().unwrap_or(Value::Null),
            Expr::Literal(value) => value.clone(),
            Expr::Compare(op, left, right) => match left.eval(row).compare(&right.eval(row)) {
                Some(ordering) => Value::Bool(op.holds(ordering)),
                None => Value::Null,
            },
            Expr::And(left, right) => match (left.eval(row), right.eval(row)) {
                (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                _ => Value::Null,
            },
            Expr::Or(left, right) => match (left.eval(row), right.eval(row)) {
                (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
                (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                _ => Value::Null,
            },
            Expr::Not(inner) => match inner.eval(row) {
                Value::Bool(value) => Value::Bool(!value),
                _ => Value::Null,
            },
            Expr::IsNull(inner) => Value::Bool(inner.eval(row).is_null()),
            Expr::IsNotNull(inner) => Value::Bool(!inner.eval(row).is_null()),
        }
    }

    /// WHERE semantics: only TRUE keeps the row (NULL does not).
    pub(crate) fn matches(&self, row: &Row) -> bool {
        self.eval(row) == Value::Bool(true)
    }

    pub(crate) fn references_columns(&self) -> bool {
        match self {
            Expr::Column(_) => true,
            Expr::Literal(_) => false,
            Expr::Compare(_, left, right) | Expr::And(left, right) | Expr::Or(left, right) => {
                left.references_columns() || right.references_columns()
            }
            Expr::Not(inner) | Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                inner.references_columns()
            }
        }
    }
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
        _ => KeyRange::full(),
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
mod tests {
    use super::*;

    fn text(value: &str) -> Box<Expr> {
        Box::new(Expr::Literal(Value::Text(value.to_owned())))
    }
    fn column(index: usize) -> Box<Expr> {
        Box::new(Expr::Column(index))
    }
    fn compare(op: CompareOp, left: Box<Expr>, right: Box<Expr>) -> Expr {
        Expr::Compare(op, left, right)
    }

    #[test]
    fn range_and_point_come_from_comparisons_on_the_key() {
        let equal = compare(CompareOp::Eq, column(0), text("b"));
        assert_eq!(
            key_range(Some(&equal), 0).point(),
            Some(&Value::Text("b".into()))
        );
        assert_eq!(
            key_point(Some(&equal), &[0]),
            Some(vec![Value::Text("b".into())])
        );
        assert!(is_exact_point(Some(&equal), &[0]));
        assert_eq!(key_point(Some(&equal), &[0, 1]), None);
        let between = Expr::And(
            Box::new(compare(CompareOp::GtEq, column(0), text("a"))),
            Box::new(compare(CompareOp::Gt, text("c"), column(0))),
        );
        assert_eq!(
            key_range(Some(&between), 0),
            KeyRange {
                lower: Bound::Included(Value::Text("a".into())),
                upper: Bound::Excluded(Value::Text("c".into()))
            }
        );
        let on_value = compare(CompareOp::Eq, column(1), text("b"));
        assert_eq!(key_range(Some(&on_value), 0), KeyRange::full());
        let contradiction = Expr::And(
            Box::new(compare(CompareOp::Eq, column(0), text("a"))),
            Box::new(compare(CompareOp::Eq, column(0), text("b"))),
        );
        assert!(key_range(Some(&contradiction), 0).is_empty());
        let either = Expr::Or(
            Box::new(compare(CompareOp::Eq, column(0), text("a"))),
            Box::new(compare(CompareOp::Eq, column(0), text("c"))),
        );
        assert_eq!(
            key_range(Some(&either), 0),
            KeyRange {
                lower: Bound::Included(Value::Text("a".into())),
                upper: Bound::Included(Value::Text("c".into()))
            }
        );
        let negated = Expr::Not(Box::new(compare(CompareOp::Eq, column(0), text("a"))));
        assert_eq!(key_range(Some(&negated), 0), KeyRange::full());
    }

    #[test]
    fn evaluation_uses_three_valued_logic() {
        let row = vec![Value::Text("a".into()), Value::Null];
        let value_is_x = compare(CompareOp::Eq, column(1), text("x"));
        assert_eq!(value_is_x.eval(&row), Value::Null);
        assert!(!value_is_x.matches(&row));
        let not_x = Expr::Not(Box::new(value_is_x.clone()));
        assert!(!not_x.matches(&row));
        let or_key = Expr::Or(
            Box::new(value_is_x),
            Box::new(compare(CompareOp::Eq, column(0), text("a"))),
        );
        assert!(or_key.matches(&row));
        assert!(Expr::IsNull(column(1)).matches(&row));
        assert!(Expr::IsNotNull(column(0)).matches(&row));
    }
}
