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

fn in_list(operand: Box<Expr>, items: &[&str], negated: bool) -> Expr {
    Expr::InList {
        operand,
        list: items.iter().map(|item| *text(item)).collect(),
        negated,
    }
}

#[test]
fn in_lists_on_the_key_give_points_and_their_hull() {
    let listed = in_list(column(0), &["c", "a", "c"], false);
    assert_eq!(
        key_range(Some(&listed), 0),
        KeyRange {
            lower: Bound::Included(Value::Text("a".into())),
            upper: Bound::Included(Value::Text("c".into()))
        }
    );
    assert_eq!(
        key_points(Some(&listed), &[0]),
        Some(vec![
            vec![Value::Text("a".into())],
            vec![Value::Text("c".into())]
        ])
    );
    assert_eq!(key_point(Some(&listed), &[0]), None);
    assert!(!is_exact_point(Some(&listed), &[0]));
    // A composite key pinned by a list and an equality: their product.
    let both = Expr::And(
        Box::new(in_list(column(1), &["x", "y"], false)),
        Box::new(compare(CompareOp::Eq, column(0), text("k"))),
    );
    assert_eq!(
        key_points(Some(&both), &[0, 1]).map(|points| points.len()),
        Some(2)
    );
    assert_eq!(key_points(Some(&both), &[0, 2]), None);
    // NOT IN, a non-literal item, or too many points: no points.
    let negated = in_list(column(0), &["a"], true);
    assert_eq!(key_points(Some(&negated), &[0]), None);
    assert_eq!(key_range(Some(&negated), 0), KeyRange::full());
    let mixed = Expr::InList {
        operand: column(0),
        list: vec![*text("a"), Expr::Column(1)],
        negated: false,
    };
    assert_eq!(key_points(Some(&mixed), &[0]), None);
    assert_eq!(key_range(Some(&mixed), 0), KeyRange::full());
    let many: Vec<String> = (0..=KEY_POINTS_MAX).map(|n| format!("{n:05}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        key_points(Some(&in_list(column(0), &many, false)), &[0]),
        None
    );
    // NULL items match nothing.
    let with_null = Expr::InList {
        operand: column(0),
        list: vec![Expr::Literal(Value::Null)],
        negated: false,
    };
    assert_eq!(key_points(Some(&with_null), &[0]), Some(Vec::new()));
    assert!(key_range(Some(&with_null), 0).is_empty());
}

#[test]
fn statement_time_is_resolved_once_into_literals() {
    let mut expr = Expr::Compare(
        CompareOp::Lt,
        column(0),
        Box::new(Expr::StatementTime {
            sql_type: SqlType::Timestamptz,
            precision: TIMESTAMP_PRECISION_MAX,
        }),
    );
    assert!(
        expr.eval(&vec![Value::Null]).is_err(),
        "unresolved is a bug"
    );
    assert!(expr.reads_statement_time() && !expr.is_constant());
    expr.resolve_statement_time(StatementTime::from_unix_micros(-1_500_000));
    assert_eq!(
        expr,
        Expr::Compare(
            CompareOp::Lt,
            column(0),
            Box::new(Expr::Literal(Value::Timestamptz(-1_500_000)))
        )
    );
    let rounded = |precision: u32, sql_type: SqlType| {
        StatementTime::from_unix_micros(-1_500_000).value(sql_type, precision)
    };
    assert_eq!(rounded(0, SqlType::Timestamp), Value::Timestamp(-2_000_000));
    assert_eq!(
        rounded(1, SqlType::Timestamptz),
        Value::Timestamptz(-1_500_000)
    );
    assert_eq!(rounded(0, SqlType::Date), Value::Date(-1));
}

#[test]
fn evaluation_uses_three_valued_logic() {
    let row = vec![Value::Text("a".into()), Value::Null];
    let matches = |expr: &Expr| expr.matches(&row).expect("no arithmetic, no error");
    let value_is_x = compare(CompareOp::Eq, column(1), text("x"));
    assert_eq!(value_is_x.eval(&row).expect("evaluates"), Value::Null);
    assert!(!matches(&value_is_x));
    let not_x = Expr::Not(Box::new(value_is_x.clone()));
    assert!(!matches(&not_x));
    let or_key = Expr::Or(
        Box::new(value_is_x),
        Box::new(compare(CompareOp::Eq, column(0), text("a"))),
    );
    assert!(matches(&or_key));
    assert!(matches(&Expr::IsNull(column(1))));
    assert!(matches(&Expr::IsNotNull(column(0))));
}

fn int(value: i64) -> Box<Expr> {
    Box::new(Expr::Literal(Value::Int(value)))
}
fn arithmetic_expr(op: ArithmeticOp, left: Box<Expr>, right: Box<Expr>, result: SqlType) -> Expr {
    Expr::Arithmetic {
        op,
        left,
        right,
        result,
    }
}
fn compute(
    op: ArithmeticOp,
    left: Value,
    right: Value,
    result: SqlType,
) -> Result<Value, &'static str> {
    arithmetic(op, &left, &right, result).map_err(|error| error.sqlstate())
}

#[test]
fn integer_arithmetic_truncates_and_checks_the_result_type_range() {
    use ArithmeticOp::*;
    let int4 = SqlType::Int4;
    assert_eq!(
        compute(Divide, Value::Int(-7), Value::Int(2), int4),
        Ok(Value::Int(-3))
    );
    assert_eq!(
        compute(Modulo, Value::Int(-7), Value::Int(2), int4),
        Ok(Value::Int(-1))
    );
    assert_eq!(
        compute(Modulo, Value::Int(i64::MIN), Value::Int(-1), SqlType::Int8),
        Ok(Value::Int(0))
    );
    assert_eq!(
        compute(Add, Value::Int(i64::from(i32::MAX)), Value::Int(1), int4),
        Err("22003")
    );
    assert_eq!(
        compute(
            Add,
            Value::Int(i64::from(i32::MAX)),
            Value::Int(1),
            SqlType::Int8
        ),
        Ok(Value::Int(2_147_483_648))
    );
    assert_eq!(
        compute(Multiply, Value::Int(i64::MAX), Value::Int(2), SqlType::Int8),
        Err("22003")
    );
    assert_eq!(
        compute(Divide, Value::Int(i64::MIN), Value::Int(-1), SqlType::Int8),
        Err("22003")
    );
    assert_eq!(
        compute(Multiply, Value::Int(200), Value::Int(200), SqlType::Int2),
        Err("22003")
    );
    assert_eq!(
        compute(Divide, Value::Int(1), Value::Int(0), int4),
        Err("22012")
    );
    assert_eq!(
        compute(Modulo, Value::Int(1), Value::Int(0), int4),
        Err("22012")
    );
    let overflow = arithmetic(Add, &Value::Int(i64::from(i32::MAX)), &Value::Int(1), int4)
        .expect_err("overflow");
    assert_eq!(overflow.to_string(), "integer out of range");
}

#[test]
fn float_arithmetic_checks_division_by_zero_and_overflow() {
    use ArithmeticOp::*;
    let float8 = SqlType::Float8;
    assert_eq!(
        compute(Divide, Value::Int(7), Value::Float(2.0), float8),
        Ok(Value::Float(3.5))
    );
    assert_eq!(
        compute(Divide, Value::Float(1.0), Value::Float(0.0), float8),
        Err("22012")
    );
    assert_eq!(
        compute(Multiply, Value::Float(1e300), Value::Float(1e300), float8),
        Err("22003")
    );
    assert_eq!(
        compute(
            Multiply,
            Value::Float(1e30),
            Value::Float(1e30),
            SqlType::Float4
        ),
        Err("22003")
    );
    assert_eq!(
        compute(Multiply, Value::Float(1e-300), Value::Float(1e-300), float8),
        Err("22003")
    );
    assert_eq!(
        compute(Add, Value::Float(f64::INFINITY), Value::Float(1.0), float8),
        Ok(Value::Float(f64::INFINITY))
    );
    assert_eq!(
        compute(Add, Value::Numeric("1.5".into()), Value::Int(1), float8),
        Ok(Value::Float(2.5))
    );
}

#[test]
fn null_operands_give_null_without_errors() {
    use ArithmeticOp::*;
    assert_eq!(
        compute(Divide, Value::Null, Value::Int(0), SqlType::Int4),
        Ok(Value::Null)
    );
    assert_eq!(
        compute(Divide, Value::Int(1), Value::Null, SqlType::Int4),
        Ok(Value::Null)
    );
    assert_eq!(
        negate(&Value::Null, SqlType::Int4).expect("null"),
        Value::Null
    );
    let row = vec![Value::Null];
    let plus_one = arithmetic_expr(Add, column(0), int(1), SqlType::Int4);
    assert_eq!(plus_one.eval(&row).expect("null in, null out"), Value::Null);
}

#[test]
fn negation_checks_the_range_of_its_type() {
    assert_eq!(
        negate(&Value::Int(5), SqlType::Int4).expect("fits"),
        Value::Int(-5)
    );
    let error = negate(&Value::Int(-32_768), SqlType::Int2).expect_err("overflow");
    assert_eq!(error.sqlstate(), "22003");
    assert_eq!(error.to_string(), "smallint out of range");
    assert_eq!(
        negate(&Value::Float(2.5), SqlType::Float8).expect("float"),
        Value::Float(-2.5)
    );
}

#[test]
fn errors_propagate_through_predicates_but_false_and_short_circuits() {
    let row = vec![Value::Int(1)];
    let divide_by_zero = Box::new(arithmetic_expr(
        ArithmeticOp::Divide,
        column(0),
        int(0),
        SqlType::Int4,
    ));
    let failing = compare(CompareOp::Eq, divide_by_zero, int(1));
    assert_eq!(
        failing.matches(&row).map_err(|error| error.sqlstate()),
        Err("22012")
    );
    let guarded = Expr::And(
        Box::new(Expr::Literal(Value::Bool(false))),
        Box::new(failing.clone()),
    );
    assert_eq!(guarded.matches(&row).expect("not evaluated"), false);
    let unguarded = Expr::Or(
        Box::new(Expr::Literal(Value::Bool(false))),
        Box::new(failing),
    );
    assert!(unguarded.matches(&row).is_err());
}

#[test]
fn comparisons_with_arithmetic_over_columns_do_not_narrow_the_key_range() {
    // `k = k + 0` holds for every row: it must not become a point read
    // of whatever `k + 0` would be.
    let plus_zero = Box::new(arithmetic_expr(
        ArithmeticOp::Add,
        column(0),
        int(0),
        SqlType::Int8,
    ));
    let predicate = compare(CompareOp::Eq, column(0), plus_zero);
    assert_eq!(key_range(Some(&predicate), 0), KeyRange::full());
    assert_eq!(key_point(Some(&predicate), &[0]), None);
    assert!(!is_exact_point(Some(&predicate), &[0]));
    let negated = Box::new(Expr::Negate {
        operand: column(1),
        result: SqlType::Int8,
    });
    let predicate = compare(CompareOp::Lt, column(0), negated);
    assert_eq!(key_range(Some(&predicate), 0), KeyRange::full());
    assert!(predicate.references_columns());
}
