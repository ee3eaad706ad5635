//! Binding: sqlparser expressions -> typed [`Expr`]s over a scope of columns.
//!
//! Invariant: after binding, every column is an index into the scope's row,
//! every literal has its final type, every comparison (and IN list, and
//! BETWEEN, bound as two comparisons) compares values of one type, every
//! arithmetic operator knows the type it computes in (Postgres' operator
//! resolution: `int4 + int8` is bigint, `int + double precision` double
//! precision, `int * 1.5` numeric), `||` and LIKE see text (or bytea for
//! `bytea || bytea`), and every cast left for run time is one that exists;
//! so the only evaluation errors left are the run-time ones listed in
//! [`crate::expr`]. Expressions over constants are computed here, so
//! `k = $1 + 1` is still a key lookup; `now()` and its relatives are not
//! constants but [`Expr::StatementTime`] nodes, valued when the statement
//! runs. Placeholders (`$1`) are replaced by their parameter values here, as
//! untyped text literals, the way Postgres treats parameters of unknown type.

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, UnaryOperator,
};

use crate::error::GatewayError;
use crate::expr::{ArithmeticOp, CompareOp, Expr, TIMESTAMP_PRECISION_MAX};
use crate::value::{Column, SqlType, Value};

/// Items one `IN (...)` list may hold: as many as one statement can have
/// parameters, more than any ORM sends.
pub(crate) const IN_LIST_ITEMS_MAX: usize = 65_535;

/// The version string `SELECT version()` answers; drivers parse the
/// "PostgreSQL <major>.<minor>" prefix.
pub(crate) const SERVER_VERSION_STRING: &str = "PostgreSQL 16.6 (Arbor 0.1.0)";

/// Postgres folds unquoted identifiers to lower case.
pub(crate) fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// One named relation in scope; its columns occupy
/// `offset..offset + columns.len()` of the evaluated row.
pub(crate) struct ScopeRelation {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) offset: usize,
}

/// What names mean while binding one statement. Unqualified names resolve
/// against the first relation only (as `v` in ON CONFLICT means the target,
/// not `excluded`).
pub(crate) struct Scope<'a> {
    pub(crate) relations: Vec<ScopeRelation>,
    pub(crate) params: &'a [Value],
}

/// The static type of a bound expression. Quoted literals and parameters
/// stay `UnknownText` until context gives them a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoundType {
    Known(SqlType),
    UnknownText,
    Null,
}

impl BoundType {
    fn sql_name(self) -> &'static str {
        match self {
            BoundType::Known(sql_type) => sql_type.sql_name(),
            BoundType::UnknownText => "unknown",
            BoundType::Null => "unknown",
        }
    }

    /// The output column type when this is selected.
    pub(crate) fn output_type(self) -> SqlType {
        match self {
            BoundType::Known(sql_type) => sql_type,
            _ => SqlType::Text,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub(crate) expr: Expr,
    pub(crate) bound_type: BoundType,
    /// A `$n` with a typed value. Its type came from the client or from
    /// `parameter_types`, which gives `$1` in `n + $1` the type of `n`; so
    /// in arithmetic it takes the other operand's type, as Postgres'
    /// inference would have, and Describe (planned with NULL parameters)
    /// reports the type execution produces.
    from_parameter: bool,
}

impl Bound {
    fn new(expr: Expr, bound_type: BoundType) -> Self {
        Bound {
            expr,
            bound_type,
            from_parameter: false,
        }
    }
}

impl<'a> Scope<'a> {
    pub(crate) fn constant(params: &'a [Value]) -> Self {
        Scope {
            relations: Vec::new(),
            params,
        }
    }

    pub(crate) fn single(name: &str, columns: Vec<Column>, params: &'a [Value]) -> Self {
        Scope {
            relations: vec![ScopeRelation {
                name: name.to_owned(),
                columns,
                offset: 0,
            }],
            params,
        }
    }

    fn column(&self, qualifier: Option<&str>, name: &str) -> Result<Bound, GatewayError> {
        let relation = match qualifier {
            None => self.relations.first(),
            Some(qualifier) => self.relations.iter().find(|r| r.name == qualifier),
        };
        let undefined = || GatewayError::UndefinedColumn {
            name: match qualifier {
                Some(qualifier) => format!("{qualifier}.{name}"),
                None => name.to_owned(),
            },
        };
        let relation = relation.ok_or_else(undefined)?;
        let index = relation
            .columns
            .iter()
            .position(|column| column.name == name)
            .ok_or_else(undefined)?;
        Ok(Bound::new(
            Expr::Column(relation.offset + index),
            BoundType::Known(relation.columns[index].sql_type),
        ))
    }

    /// Binds `expr` and requires a boolean (or NULL) result, as WHERE does.
    pub(crate) fn bind_predicate(
        &self,
        expr: &ast::Expr,
        clause: &str,
    ) -> Result<Expr, GatewayError> {
        let bound = self.bind(expr)?;
        require_boolean(bound, clause)
    }

    pub(crate) fn bind(&self, expr: &ast::Expr) -> Result<Bound, GatewayError> {
        match expr {
            ast::Expr::Identifier(ident) => self.column(None, &normalize_ident(ident)),
            ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [qualifier, name] => {
                    self.column(Some(&normalize_ident(qualifier)), &normalize_ident(name))
                }
                [_schema, qualifier, name] => {
                    self.column(Some(&normalize_ident(qualifier)), &normalize_ident(name))
                }
                _ => Err(GatewayError::UndefinedColumn {
                    name: expr.to_string(),
                }),
            },
            ast::Expr::Value(value) => self.bind_value(&value.value),
            ast::Expr::Nested(inner) => self.bind(inner),
            ast::Expr::IsNull(inner) => Ok(boolean(Expr::IsNull(Box::new(self.bind(inner)?.expr)))),
            ast::Expr::IsNotNull(inner) => {
                Ok(boolean(Expr::IsNotNull(Box::new(self.bind(inner)?.expr))))
            }
            ast::Expr::UnaryOp { op, expr: inner } => self.bind_unary(*op, inner),
            ast::Expr::BinaryOp { left, op, right } => self.bind_binary(left, op, right),
            ast::Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type,
                ..
            } => self.bind_cast(inner, data_type),
            ast::Expr::Function(function) => self.bind_function(function),
            ast::Expr::InList {
                expr: operand,
                list,
                negated,
            } => self.bind_in_list(operand, list, *negated),
            ast::Expr::InSubquery { .. } => Err(GatewayError::unsupported(
                "IN (SELECT ...) (a subquery in an IN list)",
            )),
            ast::Expr::Between {
                expr: operand,
                negated,
                low,
                high,
            } => self.bind_between(operand, *negated, low, high),
            ast::Expr::Like {
                negated,
                any: false,
                expr: operand,
                pattern,
                escape_char,
            } => self.bind_like(operand, pattern, escape_char.as_ref(), false, *negated),
            ast::Expr::ILike {
                negated,
                any: false,
                expr: operand,
                pattern,
                escape_char,
            } => self.bind_like(operand, pattern, escape_char.as_ref(), true, *negated),
            other => Err(GatewayError::unsupported(format!("expression {other}"))),
        }
    }

    /// `operand [NOT] IN (list)`. Every item is compared as `operand =
    /// item` would be (`unify`), an untyped operand first taking the type
    /// of the first typed item, as Postgres resolves one common type.
    fn bind_in_list(
        &self,
        operand: &ast::Expr,
        list: &[ast::Expr],
        negated: bool,
    ) -> Result<Bound, GatewayError> {
        if list.is_empty() {
            return Err(GatewayError::Syntax {
                message: "syntax error at or near \")\"".to_owned(),
            });
        }
        if list.len() > IN_LIST_ITEMS_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("an IN list of {} items", list.len()),
                limit: IN_LIST_ITEMS_MAX,
            });
        }
        let mut operand = self.bind(operand)?;
        let items = list
            .iter()
            .map(|item| self.bind(item))
            .collect::<Result<Vec<_>, _>>()?;
        if operand.bound_type == BoundType::UnknownText {
            let typed = items.iter().find_map(|item| match item.bound_type {
                BoundType::Known(sql_type) => Some(sql_type),
                _ => None,
            });
            if let Some(sql_type) = typed {
                let expr = coerce(operand, sql_type, CoercionContext::Implicit)?;
                operand = Bound::new(expr, BoundType::Known(sql_type));
            }
        }
        let pairs = items
            .into_iter()
            .map(|item| unify(operand.clone(), item, CompareOp::Eq))
            .collect::<Result<Vec<_>, _>>()?;
        let one_operand = pairs.iter().all(|(left, _)| *left == pairs[0].0);
        let expr = if one_operand {
            let operand = pairs[0].0.clone();
            Expr::InList {
                operand: Box::new(operand),
                list: pairs.into_iter().map(|(_, item)| item).collect(),
                negated,
            }
        } else {
            // A constant operand read differently against different items
            // (`1.5 IN (d, n)`): the OR of the comparisons, which is what
            // IN means.
            let any_equal = pairs
                .into_iter()
                .map(|(left, right)| Expr::Compare(CompareOp::Eq, Box::new(left), Box::new(right)))
                .reduce(|left, right| Expr::Or(Box::new(left), Box::new(right)))
                .ok_or_else(|| GatewayError::internal("an empty IN list was bound"))?;
            if negated {
                Expr::Not(Box::new(any_equal))
            } else {
                any_equal
            }
        };
        folded(expr, SqlType::Bool)
    }

    /// `x BETWEEN a AND b` is `x >= a AND x <= b`, and NOT BETWEEN is
    /// `x < a OR x > b`, as Postgres rewrites them; so a primary-key BETWEEN
    /// narrows the scan as the two comparisons do.
    fn bind_between(
        &self,
        operand: &ast::Expr,
        negated: bool,
        low: &ast::Expr,
        high: &ast::Expr,
    ) -> Result<Bound, GatewayError> {
        let (low_op, high_op) = if negated {
            (CompareOp::Lt, CompareOp::Gt)
        } else {
            (CompareOp::GtEq, CompareOp::LtEq)
        };
        let (low_left, low_right) = unify(self.bind(operand)?, self.bind(low)?, low_op)?;
        let (high_left, high_right) = unify(self.bind(operand)?, self.bind(high)?, high_op)?;
        let low = Box::new(Expr::Compare(
            low_op,
            Box::new(low_left),
            Box::new(low_right),
        ));
        let high = Box::new(Expr::Compare(
            high_op,
            Box::new(high_left),
            Box::new(high_right),
        ));
        let expr = if negated {
            Expr::Or(low, high)
        } else {
            Expr::And(low, high)
        };
        folded(expr, SqlType::Bool)
    }

    /// `operand [NOT] LIKE pattern [ESCAPE 'c']` and ILIKE: text on both
    /// sides (Postgres has no `integer ~~ unknown`).
    fn bind_like(
        &self,
        operand: &ast::Expr,
        pattern: &ast::Expr,
        escape: Option<&ast::ValueWithSpan>,
        case_insensitive: bool,
        negated: bool,
    ) -> Result<Bound, GatewayError> {
        let operator = match (case_insensitive, negated) {
            (false, false) => "~~",
            (false, true) => "!~~",
            (true, false) => "~~*",
            (true, true) => "!~~*",
        };
        let escape = match escape.map(|escape| &escape.value) {
            None => Some('\\'),
            Some(ast::Value::SingleQuotedString(text) | ast::Value::EscapedStringLiteral(text)) => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(escape), None) => Some(escape),
                    _ => {
                        return Err(GatewayError::unsupported(
                            "an ESCAPE string of more than one character",
                        ))
                    }
                }
            }
            Some(other) => return Err(GatewayError::unsupported(format!("ESCAPE {other}"))),
        };
        let (operand, pattern) = (self.bind(operand)?, self.bind(pattern)?);
        let texts = |bound: &Bound| match bound.bound_type {
            BoundType::Known(sql_type) => sql_type.is_text(),
            BoundType::UnknownText | BoundType::Null => true,
        };
        if !texts(&operand) || !texts(&pattern) {
            return Err(GatewayError::UndefinedOperator {
                left_type: operand.bound_type.sql_name().to_owned(),
                operator: operator.to_owned(),
                right_type: pattern.bound_type.sql_name().to_owned(),
            });
        }
        let expr = Expr::Like {
            operand: Box::new(operand.expr),
            pattern: Box::new(pattern.expr),
            escape,
            case_insensitive,
            negated,
        };
        folded(expr, SqlType::Bool)
    }

    fn bind_value(&self, value: &ast::Value) -> Result<Bound, GatewayError> {
        let text = |text: &str| {
            Bound::new(
                Expr::Literal(Value::Text(text.to_owned())),
                BoundType::UnknownText,
            )
        };
        match value {
            ast::Value::SingleQuotedString(string)
            | ast::Value::EscapedStringLiteral(string)
            | ast::Value::UnicodeStringLiteral(string)
            | ast::Value::NationalStringLiteral(string) => Ok(text(string)),
            ast::Value::DollarQuotedString(dollar) => Ok(text(&dollar.value)),
            ast::Value::Number(number, _) => Ok(number_literal(number)),
            ast::Value::Boolean(boolean) => Ok(Bound::new(
                Expr::Literal(Value::Bool(*boolean)),
                BoundType::Known(SqlType::Bool),
            )),
            ast::Value::Null => Ok(null()),
            ast::Value::Placeholder(placeholder) => self.bind_placeholder(placeholder),
            other => Err(GatewayError::unsupported(format!("literal {other}"))),
        }
    }

    fn bind_placeholder(&self, placeholder: &str) -> Result<Bound, GatewayError> {
        let missing = || GatewayError::Syntax {
            message: format!("there is no parameter {placeholder}"),
        };
        let index: usize = placeholder
            .strip_prefix('$')
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(missing)?;
        let value = index
            .checked_sub(1)
            .and_then(|index| self.params.get(index))
            .ok_or_else(missing)?;
        Ok(match value {
            Value::Null => null(),
            Value::Text(text) => Bound::new(
                Expr::Literal(Value::Text(text.clone())),
                BoundType::UnknownText,
            ),
            typed => Bound {
                expr: Expr::Literal(typed.clone()),
                bound_type: typed
                    .natural_type()
                    .map_or(BoundType::Null, BoundType::Known),
                from_parameter: true,
            },
        })
    }

    fn bind_unary(&self, op: UnaryOperator, inner: &ast::Expr) -> Result<Bound, GatewayError> {
        match op {
            UnaryOperator::Not => {
                let operand = require_boolean(self.bind(inner)?, "NOT")?;
                Ok(boolean(Expr::Not(Box::new(operand))))
            }
            UnaryOperator::Minus | UnaryOperator::Plus => {
                let operand = self.bind(inner)?;
                if op == UnaryOperator::Plus {
                    return unary_plus(operand);
                }
                // `-5` is one constant, typed by its size as Postgres' grammar
                // folds it (`-2147483648` is an integer, not a bigint).
                let number_token = matches!(inner, ast::Expr::Value(value)
                    if matches!(value.value, ast::Value::Number(..)));
                match &operand.expr {
                    Expr::Literal(Value::Int(number)) if number_token => {
                        Ok(number_literal(&format!("-{number}")))
                    }
                    Expr::Literal(Value::Numeric(text)) if number_token => {
                        Ok(number_literal(&format!("-{text}")))
                    }
                    _ => negation(operand),
                }
            }
            other => Err(GatewayError::unsupported(format!("operator {other}"))),
        }
    }

    fn bind_binary(
        &self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
    ) -> Result<Bound, GatewayError> {
        let compare_op = match op {
            BinaryOperator::And => {
                let left = require_boolean(self.bind(left)?, "AND")?;
                let right = require_boolean(self.bind(right)?, "AND")?;
                return Ok(boolean(Expr::And(Box::new(left), Box::new(right))));
            }
            BinaryOperator::Or => {
                let left = require_boolean(self.bind(left)?, "OR")?;
                let right = require_boolean(self.bind(right)?, "OR")?;
                return Ok(boolean(Expr::Or(Box::new(left), Box::new(right))));
            }
            BinaryOperator::Eq => CompareOp::Eq,
            BinaryOperator::NotEq => CompareOp::NotEq,
            BinaryOperator::Lt => CompareOp::Lt,
            BinaryOperator::LtEq => CompareOp::LtEq,
            BinaryOperator::Gt => CompareOp::Gt,
            BinaryOperator::GtEq => CompareOp::GtEq,
            BinaryOperator::StringConcat => {
                return concatenation(self.bind(left)?, self.bind(right)?)
            }
            other => match arithmetic_operator(other) {
                Some(arithmetic_op) => return self.bind_arithmetic(left, arithmetic_op, right),
                None => return Err(GatewayError::unsupported(format!("operator {other}"))),
            },
        };
        let (left, right) = unify(self.bind(left)?, self.bind(right)?, compare_op)?;
        Ok(boolean(Expr::Compare(
            compare_op,
            Box::new(left),
            Box::new(right),
        )))
    }

    fn bind_arithmetic(
        &self,
        left: &ast::Expr,
        op: ArithmeticOp,
        right: &ast::Expr,
    ) -> Result<Bound, GatewayError> {
        arithmetic(op, self.bind(left)?, self.bind(right)?)
    }

    fn bind_cast(&self, inner: &ast::Expr, data_type: &DataType) -> Result<Bound, GatewayError> {
        let target = cast_target(data_type)?;
        let bound = self.bind(inner)?;
        let expr = coerce(bound, target, CoercionContext::Explicit)?;
        Ok(Bound::new(expr, BoundType::Known(target)))
    }

    fn bind_function(&self, function: &ast::Function) -> Result<Bound, GatewayError> {
        let name = function_name(function);
        let has_arguments = match &function.args {
            FunctionArguments::None => false,
            FunctionArguments::List(list) => !list.args.is_empty(),
            FunctionArguments::Subquery(_) => true,
        };
        let constant = |value: &str| {
            Bound::new(
                Expr::Literal(Value::Text(value.to_owned())),
                BoundType::Known(SqlType::Text),
            )
        };
        let time = |sql_type: SqlType, precision: u32| {
            Bound::new(
                Expr::StatementTime {
                    sql_type,
                    precision,
                },
                BoundType::Known(sql_type),
            )
        };
        match (name.as_str(), has_arguments) {
            // Postgres gives now() the transaction's start; here it is the
            // statement's (every use within one statement agrees).
            ("now" | "transaction_timestamp" | "statement_timestamp", false) => {
                Ok(time(SqlType::Timestamptz, TIMESTAMP_PRECISION_MAX))
            }
            ("current_timestamp", _) => Ok(time(SqlType::Timestamptz, time_precision(function)?)),
            ("localtimestamp", _) => Ok(time(SqlType::Timestamp, time_precision(function)?)),
            ("current_date", false) => Ok(time(SqlType::Date, 0)),
            ("current_time" | "localtime", _) => Err(GatewayError::unsupported(
                "the time type (CURRENT_TIME, LOCALTIME)",
            )),
            ("version", false) => Ok(constant(SERVER_VERSION_STRING)),
            ("current_database", false) => Ok(constant("arbor")),
            ("current_schema", false) => Ok(constant("public")),
            // The login user is the session's, which planning does not
            // see: a FROM-less SELECT hands this to the catalog evaluator
            // (see `executor::hands_to_catalog`), which reads the session.
            ("current_user" | "session_user" | "user", false) => Err(GatewayError::unsupported(
                "current_user in a query with FROM (SELECT current_user without FROM works)",
            )),
            ("count", _) => Err(GatewayError::unsupported("count() outside the select list")),
            _ => Err(GatewayError::UndefinedFunction {
                name: format!("{name}()"),
            }),
        }
    }
}

/// The `p` of `CURRENT_TIMESTAMP(p)` (fractional-second digits, at most 6
/// as in Postgres, which lowers a larger one to 6 with a warning).
fn time_precision(function: &ast::Function) -> Result<u32, GatewayError> {
    let FunctionArguments::List(list) = &function.args else {
        return Ok(TIMESTAMP_PRECISION_MAX);
    };
    let precision = match list.args.as_slice() {
        [] => return Ok(TIMESTAMP_PRECISION_MAX),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(value)))] => {
            match &value.value {
                ast::Value::Number(number, _) => number.parse::<i64>().ok(),
                _ => None,
            }
        }
        _ => None,
    };
    match precision {
        Some(precision) if precision < 0 => Err(GatewayError::Syntax {
            message: format!(
                "{}({precision}) precision must not be negative",
                function_name(function).to_uppercase()
            ),
        }),
        Some(precision) => Ok(u32::try_from(precision)
            .unwrap_or(TIMESTAMP_PRECISION_MAX)
            .min(TIMESTAMP_PRECISION_MAX)),
        None => Err(GatewayError::unsupported(format!(
            "{} with this argument",
            function_name(function)
        ))),
    }
}

pub(crate) fn function_name(function: &ast::Function) -> String {
    function
        .name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .map(normalize_ident)
        .unwrap_or_default()
}

/// If `function` is `count(*)` or `count(expr)`, the counted expression
/// (`None` for `*`).
pub(crate) fn count_argument(
    function: &ast::Function,
) -> Option<Result<Option<&ast::Expr>, GatewayError>> {
    if function_name(function) != "count" {
        return None;
    }
    if function.over.is_some() || function.filter.is_some() {
        return Some(Err(GatewayError::unsupported("window or filtered count()")));
    }
    let FunctionArguments::List(list) = &function.args else {
        return Some(Err(GatewayError::unsupported("count without arguments")));
    };
    if list.duplicate_treatment.is_some() {
        return Some(Err(GatewayError::unsupported("count(DISTINCT ...)")));
    }
    Some(match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => Ok(None),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))] => Ok(Some(expr)),
        _ => Err(GatewayError::unsupported("this form of count()")),
    })
}

fn boolean(expr: Expr) -> Bound {
    Bound::new(expr, BoundType::Known(SqlType::Bool))
}

fn null() -> Bound {
    Bound::new(Expr::Literal(Value::Null), BoundType::Null)
}

/// An integer literal is INTEGER or BIGINT by size; others are NUMERIC.
fn number_literal(number: &str) -> Bound {
    match number.parse::<i64>() {
        Ok(value) => Bound::new(
            Expr::Literal(Value::Int(value)),
            BoundType::Known(if i32::try_from(value).is_ok() {
                SqlType::Int4
            } else {
                SqlType::Int8
            }),
        ),
        Err(_) => match SqlType::Numeric.parse_text(number) {
            Ok(value) => Bound::new(Expr::Literal(value), BoundType::Known(SqlType::Numeric)),
            Err(_) => Bound::new(
                Expr::Literal(Value::Text(number.to_owned())),
                BoundType::UnknownText,
            ),
        },
    }
}

/// Types whose values share one runtime kind and compare with each other.
fn same_family(left: SqlType, right: SqlType) -> bool {
    left == right
        || (left.is_integer() || left.is_float()) && (right.is_integer() || right.is_float())
        || left.is_text() && right.is_text()
}

fn is_number(sql_type: SqlType) -> bool {
    sql_type.is_integer() || sql_type.is_float() || sql_type == SqlType::Numeric
}

/// The arithmetic operator `op` is, if it is one the gateway computes.
pub(crate) fn arithmetic_operator(op: &BinaryOperator) -> Option<ArithmeticOp> {
    Some(match op {
        BinaryOperator::Plus => ArithmeticOp::Add,
        BinaryOperator::Minus => ArithmeticOp::Subtract,
        BinaryOperator::Multiply => ArithmeticOp::Multiply,
        BinaryOperator::Divide => ArithmeticOp::Divide,
        BinaryOperator::Modulo => ArithmeticOp::Modulo,
        _ => return None,
    })
}

/// The type of a number literal as written: INTEGER or BIGINT by size,
/// else NUMERIC (`None`: not a number).
pub(crate) fn number_literal_type(number: &str) -> Option<SqlType> {
    match number_literal(number).bound_type {
        BoundType::Known(sql_type) => Some(sql_type),
        _ => None,
    }
}

/// Integer widths in Postgres' promotion order: `int2 + int4` is int4.
fn integer_rank(sql_type: SqlType) -> u8 {
    match sql_type {
        SqlType::Int2 => 1,
        SqlType::Int4 => 2,
        _ => 3,
    }
}

/// The type `left op right` computes in, by Postgres' operator resolution
/// over its implicit casts: integers widen to the wider operand; any float
/// makes it double precision, unless both are REAL; NUMERIC meets a float as
/// double precision, an integer or NUMERIC as (exact) NUMERIC. `None` when
/// Postgres has no such operator (text, boolean, `%` on floats...). Date
/// and time arithmetic, which Postgres has but Arbor does not compute, is
/// refused with 0A000 by [`arithmetic`], not here.
pub(crate) fn arithmetic_result_type(
    op: ArithmeticOp,
    left: SqlType,
    right: SqlType,
) -> Option<SqlType> {
    if left.is_integer() && right.is_integer() {
        return Some(if integer_rank(left) >= integer_rank(right) {
            left
        } else {
            right
        });
    }
    if (left.is_float() || right.is_float()) && is_number(left) && is_number(right) {
        if op == ArithmeticOp::Modulo {
            return None;
        }
        return Some(if left == SqlType::Float4 && right == SqlType::Float4 {
            SqlType::Float4
        } else {
            SqlType::Float8
        });
    }
    (is_number(left) && is_number(right)).then_some(SqlType::Numeric)
}

/// Whether an arithmetic operand takes the other operand's type rather
/// than imposing its own: NULL, an untyped literal or parameter, and a typed
/// parameter of the same kind (integer or float) as `target`. A parameter
/// of another kind keeps its type, so `int_col + $1` with a double $1 is
/// double precision, never a silently rounded integer.
fn adapts_to(bound: &Bound, target: SqlType) -> bool {
    match bound.bound_type {
        BoundType::Null | BoundType::UnknownText => true,
        BoundType::Known(own) => {
            bound.from_parameter
                && (own.is_integer() && target.is_integer() || own.is_float() && target.is_float())
        }
    }
}

/// Binds `left op right`: operand types resolved as Postgres does, literal
/// operands converted at bind time, and the whole folded to a literal when
/// both operands are constants (so an error such as `1/0` in a constant is
/// reported when the statement is planned, as Postgres' constant folding
/// does).
fn arithmetic(op: ArithmeticOp, left: Bound, right: Bound) -> Result<Bound, GatewayError> {
    let undefined = |left: BoundType, right: BoundType| GatewayError::UndefinedOperator {
        left_type: left.sql_name().to_owned(),
        operator: op.symbol().to_owned(),
        right_type: right.sql_name().to_owned(),
    };
    let known = |bound: &Bound| match bound.bound_type {
        BoundType::Known(sql_type) => Some(sql_type),
        _ => None,
    };
    // The side that imposes its type: a typed non-parameter, else a typed
    // parameter; two untyped sides are ambiguous, as in Postgres.
    let imposed = match (known(&left), known(&right)) {
        (Some(_), Some(b)) if left.from_parameter && !right.from_parameter => Some(b),
        (Some(a), _) => Some(a),
        (None, Some(b)) => Some(b),
        (None, None) => None,
    };
    let Some(imposed) = imposed else {
        return Err(undefined(left.bound_type, right.bound_type));
    };
    let left = adapt_operand(left, imposed)?;
    let right = adapt_operand(right, imposed)?;
    let (left_type, right_type) = (left.bound_type, right.bound_type);
    let (BoundType::Known(a), BoundType::Known(b)) = (left_type, right_type) else {
        return Err(undefined(left_type, right_type));
    };
    if is_date_time(a) || is_date_time(b) {
        return Err(GatewayError::unsupported(format!(
            "date/time arithmetic ({} {} {})",
            a.sql_name(),
            op.symbol(),
            b.sql_name()
        )));
    }
    let result =
        arithmetic_result_type(op, a, b).ok_or_else(|| undefined(left_type, right_type))?;
    let expr = Expr::Arithmetic {
        op,
        left: Box::new(operand_in(left, result)?),
        right: Box::new(operand_in(right, result)?),
        result,
    };
    folded(expr, result)
}

/// An operand that adapts (see [`adapts_to`]) read as `target`; NULL stays a
/// NULL of that type. Others are left as they are.
fn adapt_operand(bound: Bound, target: SqlType) -> Result<Bound, GatewayError> {
    if !adapts_to(&bound, target) {
        return Ok(bound);
    }
    if bound.bound_type == BoundType::Null {
        return Ok(Bound::new(bound.expr, BoundType::Known(target)));
    }
    if !is_number(target) {
        // `text_col + 'x'`: no such operator; reported by the caller with
        // the operand as Postgres names it (unknown).
        return Ok(bound);
    }
    Ok(Bound::new(
        coerce(bound, target, CoercionContext::Implicit)?,
        BoundType::Known(target),
    ))
}

/// A constant operand converted to the kind the operation computes in (so
/// `float_col * 1.5` multiplies by a float); column operands are converted
/// when evaluated.
fn operand_in(bound: Bound, result: SqlType) -> Result<Expr, GatewayError> {
    match &bound.expr {
        Expr::Literal(value) if result.is_float() && !matches!(value, Value::Float(_)) => {
            coerce(bound, SqlType::Float8, CoercionContext::Implicit)
        }
        _ => Ok(bound.expr),
    }
}

/// `expr` of type `result`, computed now when it reads no column and not
/// the statement's time.
fn folded(expr: Expr, result: SqlType) -> Result<Bound, GatewayError> {
    let expr = if expr.is_constant() {
        Expr::Literal(expr.eval(&Vec::new())?)
    } else {
        expr
    };
    Ok(Bound::new(expr, BoundType::Known(result)))
}

/// Unary minus of anything but a number token: integers and floats keep
/// their type (and its range: `-(-32768::int2)` overflows), NUMERIC only
/// changes sign, NULL stays NULL.
fn negation(operand: Bound) -> Result<Bound, GatewayError> {
    match operand.bound_type {
        BoundType::Null => Ok(null()),
        BoundType::Known(sql_type) if is_number(sql_type) => folded(
            Expr::Negate {
                operand: Box::new(operand.expr),
                result: sql_type,
            },
            sql_type,
        ),
        other => Err(GatewayError::UndefinedOperator {
            left_type: String::new(),
            operator: "-".to_owned(),
            right_type: other.sql_name().to_owned(),
        }),
    }
}

/// Unary plus: the number itself.
fn unary_plus(operand: Bound) -> Result<Bound, GatewayError> {
    match operand.bound_type {
        BoundType::Null => Ok(null()),
        BoundType::Known(sql_type) if is_number(sql_type) => Ok(operand),
        other => Err(GatewayError::UndefinedOperator {
            left_type: String::new(),
            operator: "+".to_owned(),
            right_type: other.sql_name().to_owned(),
        }),
    }
}

fn is_date_time(sql_type: SqlType) -> bool {
    matches!(
        sql_type,
        SqlType::Date | SqlType::Timestamp | SqlType::Timestamptz
    )
}

/// `left || right`, typed as Postgres resolves it: text when either side
/// is text or untyped (`anynonarray || text` writes the other side as
/// text), bytea for two byteas; jsonb's merge is not computed here; two
/// typed non-text operands (`1 || 2`) have no operator.
fn concatenation(left: Bound, right: Bound) -> Result<Bound, GatewayError> {
    use BoundType::{Known, Null, UnknownText};
    let untyped = |bound: &Bound| matches!(bound.bound_type, UnknownText | Null);
    let texty = |bound: &Bound| {
        untyped(bound) || matches!(bound.bound_type, Known(sql_type) if sql_type.is_text())
    };
    let of = |bound: &Bound, sql_type: SqlType| bound.bound_type == Known(sql_type);
    let result = if of(&left, SqlType::Bytea) && (of(&right, SqlType::Bytea) || untyped(&right))
        || untyped(&left) && of(&right, SqlType::Bytea)
    {
        SqlType::Bytea
    } else if of(&left, SqlType::Jsonb) && (of(&right, SqlType::Jsonb) || untyped(&right))
        || untyped(&left) && of(&right, SqlType::Jsonb)
    {
        return Err(GatewayError::unsupported("jsonb || jsonb"));
    } else if texty(&left) || texty(&right) {
        SqlType::Text
    } else {
        return Err(GatewayError::UndefinedOperator {
            left_type: left.bound_type.sql_name().to_owned(),
            operator: "||".to_owned(),
            right_type: right.bound_type.sql_name().to_owned(),
        });
    };
    let operand = |bound: Bound| -> Result<Expr, GatewayError> {
        if result == SqlType::Bytea && bound.bound_type == UnknownText {
            coerce(bound, SqlType::Bytea, CoercionContext::Implicit)
        } else {
            Ok(bound.expr)
        }
    };
    let expr = Expr::Concat(Box::new(operand(left)?), Box::new(operand(right)?));
    folded(expr, result)
}

fn require_boolean(bound: Bound, clause: &str) -> Result<Expr, GatewayError> {
    match bound.bound_type {
        BoundType::Known(SqlType::Bool) | BoundType::Null => Ok(bound.expr),
        BoundType::UnknownText => coerce(bound, SqlType::Bool, CoercionContext::Implicit),
        other => Err(GatewayError::DatatypeMismatch {
            message: format!(
                "argument of {clause} must be type boolean, not type {}",
                other.sql_name()
            ),
        }),
    }
}

/// Gives both sides of a comparison one type, as Postgres resolves
/// `column = 'literal'` by reading the literal as the column's type.
fn unify(left: Bound, right: Bound, op: CompareOp) -> Result<(Expr, Expr), GatewayError> {
    use BoundType::{Known, Null, UnknownText};
    let mismatch = |left: BoundType, right: BoundType| GatewayError::UndefinedOperator {
        left_type: left.sql_name().to_owned(),
        operator: op.symbol().to_owned(),
        right_type: right.sql_name().to_owned(),
    };
    match (left.bound_type, right.bound_type) {
        (Null, _) | (_, Null) => Ok((left.expr, right.expr)),
        (Known(a), Known(b)) if same_family(a, b) => Ok((left.expr, right.expr)),
        // A NUMERIC literal meets a float (`d > 0.25`, `d * 2 > 0.5`):
        // Postgres compares in double precision, so read it as the float.
        (Known(a), Known(SqlType::Numeric))
            if a.is_float() && matches!(right.expr, Expr::Literal(_)) =>
        {
            Ok((left.expr, coerce(right, a, CoercionContext::Implicit)?))
        }
        (Known(SqlType::Numeric), Known(b))
            if b.is_float() && matches!(left.expr, Expr::Literal(_)) =>
        {
            Ok((coerce(left, b, CoercionContext::Implicit)?, right.expr))
        }
        // An integer or float literal meets a NUMERIC (`numeric_col = 1`):
        // read the literal as NUMERIC.
        (Known(a), Known(b))
            if is_number(a)
                && is_number(b)
                && matches!(right.expr, Expr::Literal(_))
                && b != SqlType::Numeric =>
        {
            Ok((
                left.expr,
                coerce(right, a, CoercionContext::Implicit)
                    .or_else(|_| Err(mismatch(Known(a), Known(b))))?,
            ))
        }
        (Known(a), Known(b))
            if is_number(a)
                && is_number(b)
                && matches!(left.expr, Expr::Literal(_))
                && a != SqlType::Numeric =>
        {
            Ok((coerce(left, b, CoercionContext::Implicit)?, right.expr))
        }
        // Otherwise both sides go to the type Postgres' implicit casts meet
        // in (`int_col < 2.5` and `int_col = numeric_col` compare as
        // NUMERIC, `numeric_col = float_col` as double precision), columns
        // converted per row.
        (Known(a), Known(b)) if is_number(a) && is_number(b) => {
            let common = if a.is_float() || b.is_float() {
                SqlType::Float8
            } else {
                SqlType::Numeric
            };
            let to_common = |bound: Bound, own: SqlType| {
                if own == common || own.is_float() && common.is_float() {
                    Ok(bound.expr)
                } else {
                    coerce(bound, common, CoercionContext::Implicit)
                }
            };
            Ok((to_common(left, a)?, to_common(right, b)?))
        }
        (Known(target), UnknownText) => {
            Ok((left.expr, coerce(right, target, CoercionContext::Implicit)?))
        }
        (UnknownText, Known(target)) => {
            Ok((coerce(left, target, CoercionContext::Implicit)?, right.expr))
        }
        (UnknownText, UnknownText) => Ok((left.expr, right.expr)),
        (a, b) => Err(mismatch(a, b)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoercionContext {
    /// A literal read as the type context wants (`k = '1'`).
    Implicit,
    /// Storing into a column: Postgres' assignment casts (any -> text).
    Assignment,
    /// `CAST(x AS t)` / `x::t`.
    Explicit,
}

/// Converts a bound expression to `target`, at bind time when it is a
/// literal. Column expressions only pass through when already of the type.
pub(crate) fn coerce(
    bound: Bound,
    target: SqlType,
    context: CoercionContext,
) -> Result<Expr, GatewayError> {
    let source = bound.bound_type;
    let passes = match source {
        BoundType::Null => true,
        BoundType::Known(source) => {
            same_family(source, target)
                // Storing converts numbers and anything into text columns
                // when the row is stored (`storable_row`).
                || context == CoercionContext::Assignment
                    && (is_number(source) && is_number(target) || target.is_text())
        }
        BoundType::UnknownText => false,
    };
    if passes && !matches!(bound.expr, Expr::Literal(_)) {
        return Ok(bound.expr);
    }
    let Expr::Literal(value) = &bound.expr else {
        // A column, or an expression over one: converted per row when
        // Postgres has such a cast in this context.
        return match source {
            BoundType::Known(source) if castable(source, target, context) => Ok(Expr::Cast {
                operand: Box::new(bound.expr),
                target,
            }),
            _ => Err(GatewayError::DatatypeMismatch {
                message: format!(
                    "column is of type {} but expression is of type {}",
                    target.sql_name(),
                    source.sql_name()
                ),
            }),
        };
    };
    let converts = match source {
        BoundType::Null | BoundType::UnknownText => true,
        BoundType::Known(source) => {
            passes
                || context == CoercionContext::Explicit
                || context == CoercionContext::Implicit && is_number(source) && is_number(target)
                || castable(source, target, context)
        }
    };
    if !converts {
        return Err(GatewayError::DatatypeMismatch {
            message: format!(
                "column is of type {} but expression is of type {}",
                target.sql_name(),
                source.sql_name()
            ),
        });
    }
    literal_as(value, target).map(Expr::Literal)
}

/// Whether Postgres casts `source` to `target` in `context` (pg_cast's
/// implicit, assignment and explicit casts, among the types Arbor has and
/// [`SqlType::convert`] computes).
fn castable(source: SqlType, target: SqlType, context: CoercionContext) -> bool {
    let date_time = |sql_type: SqlType| is_date_time(sql_type);
    let widening = source.is_integer() && (target.is_float() || target == SqlType::Numeric)
        || source == SqlType::Numeric && target.is_float()
        || source.is_integer()
            && target.is_integer()
            && integer_rank(source) <= integer_rank(target)
        || source == SqlType::Float4 && target == SqlType::Float8
        || source == SqlType::Date && matches!(target, SqlType::Timestamp | SqlType::Timestamptz)
        || source == SqlType::Timestamp && target == SqlType::Timestamptz;
    source == target
        || match context {
            CoercionContext::Implicit => widening,
            CoercionContext::Assignment => {
                is_number(source) && is_number(target)
                    || target.is_text()
                    || date_time(source) && date_time(target)
            }
            CoercionContext::Explicit => {
                is_number(source) && is_number(target)
                    || target.is_text()
                    || source.is_text()
                    || date_time(source) && date_time(target)
                    || source == SqlType::Bool && target.is_integer()
            }
        }
}

/// A literal value read as `target` (text input rules of Postgres).
fn literal_as(value: &Value, target: SqlType) -> Result<Value, GatewayError> {
    match crate::value::convert(value, target) {
        Some(converted) => converted,
        None => Err(GatewayError::DatatypeMismatch {
            message: format!(
                "cannot cast type {} to {}",
                value
                    .natural_type()
                    .map_or("unknown", |value_type| value_type.sql_name()),
                target.sql_name()
            ),
        }),
    }
}

/// The column type a SQL type name means, with its VARCHAR(n) length.
pub(crate) fn column_type(data_type: &DataType) -> Result<(SqlType, Option<u32>), GatewayError> {
    use sqlparser::ast::CharacterLength;
    let length = |length: &Option<CharacterLength>| match length {
        Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length).ok(),
        _ => None,
    };
    Ok(match data_type {
        DataType::Text | DataType::String(_) => (SqlType::Text, None),
        DataType::Varchar(max) | DataType::CharacterVarying(max) => (SqlType::Varchar, length(max)),
        DataType::SmallInt(_) | DataType::Int2(_) => (SqlType::Int2, None),
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => (SqlType::Int4, None),
        DataType::BigInt(_) | DataType::Int8(_) => (SqlType::Int8, None),
        DataType::Boolean | DataType::Bool => (SqlType::Bool, None),
        DataType::Real | DataType::Float4 => (SqlType::Float4, None),
        DataType::DoublePrecision | DataType::Float8 | DataType::Double(_) => {
            (SqlType::Float8, None)
        }
        DataType::Float(_) => (SqlType::Float8, None),
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => (SqlType::Numeric, None),
        DataType::Bytea => (SqlType::Bytea, None),
        DataType::Timestamp(_, tz) => match tz {
            sqlparser::ast::TimezoneInfo::WithTimeZone | sqlparser::ast::TimezoneInfo::Tz => {
                (SqlType::Timestamptz, None)
            }
            _ => (SqlType::Timestamp, None),
        },
        DataType::Date => (SqlType::Date, None),
        DataType::Uuid => (SqlType::Uuid, None),
        DataType::JSONB | DataType::JSON => (SqlType::Jsonb, None),
        DataType::Custom(name, _) => {
            let name = name.to_string().to_lowercase();
            match name.as_str() {
                "timestamptz" => (SqlType::Timestamptz, None),
                "int2" => (SqlType::Int2, None),
                "float4" => (SqlType::Float4, None),
                "float8" => (SqlType::Float8, None),
                "regclass" | "name" | "oid" => (SqlType::Text, None),
                _ => return Err(GatewayError::unsupported(format!("type {name}"))),
            }
        }
        other => return Err(GatewayError::unsupported(format!("type {other}"))),
    })
}

fn cast_target(data_type: &DataType) -> Result<SqlType, GatewayError> {
    column_type(data_type).map(|(sql_type, _)| sql_type)
}

#[cfg(test)]
mod tests;
