use super::*;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

fn parse_expr(sql: &str) -> ast::Expr {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .expect("test expression parses")
}

fn kv_scope(params: &[Value]) -> Scope<'_> {
    Scope::single(
        "kv",
        vec![
            Column::new("k", SqlType::Text),
            Column::new("v", SqlType::Text),
        ],
        params,
    )
}

#[test]
fn literals_take_the_type_of_the_column_they_meet() {
    let scope = kv_scope(&[]);
    let bound = scope.bind(&parse_expr("k = 'a'")).expect("binds");
    assert_eq!(bound.bound_type, BoundType::Known(SqlType::Bool));
    let error = scope
        .bind(&parse_expr("k = 1"))
        .expect_err("text = integer");
    assert_eq!(error.sqlstate(), "42883");
    let error = scope
        .bind(&parse_expr("nope = 'a'"))
        .expect_err("no column");
    assert_eq!(error.sqlstate(), "42703");
    let error = scope
        .bind_predicate(&parse_expr("k"), "WHERE")
        .expect_err("text");
    assert_eq!(error.sqlstate(), "42804");
}

#[test]
fn placeholders_become_text_literals() {
    let params = [Value::Text("a".to_owned()), Value::Null];
    let scope = kv_scope(&params);
    let bound = scope.bind(&parse_expr("k = $1")).expect("binds");
    assert!(bound
        .expr
        .matches(&vec![Value::Text("a".into()), Value::Null])
        .expect("no arithmetic"));
    let bound = scope.bind(&parse_expr("v = $2")).expect("binds");
    assert_eq!(
        bound
            .expr
            .eval(&vec![Value::Null, Value::Null])
            .expect("no arithmetic"),
        Value::Null
    );
    let error = scope.bind(&parse_expr("k = $3")).expect_err("no $3");
    assert_eq!(error.sqlstate(), "42601");
}

#[test]
fn casts_and_negative_numbers_bind_to_literals() {
    let scope = Scope::constant(&[]);
    let bound = scope.bind(&parse_expr("'12'::bigint")).expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Int(12)));
    let bound = scope.bind(&parse_expr("-5")).expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Int(-5)));
    let error = scope
        .bind(&parse_expr("'x'::int"))
        .expect_err("not a number");
    assert_eq!(error.sqlstate(), "22P02");
    let error = scope
        .bind(&parse_expr("nosuch()"))
        .expect_err("no function");
    assert_eq!(error.sqlstate(), "42883");
}

fn numbers_scope(params: &[Value]) -> Scope<'_> {
    Scope::single(
        "t",
        vec![
            Column::new("k", SqlType::Int8),
            Column::new("small", SqlType::Int2),
            Column::new("n", SqlType::Int4),
            Column::new("r", SqlType::Float4),
            Column::new("d", SqlType::Float8),
            Column::new("price", SqlType::Numeric),
            Column::new("name", SqlType::Text),
        ],
        params,
    )
}

fn type_of(scope: &Scope<'_>, sql: &str) -> SqlType {
    scope
        .bind(&parse_expr(sql))
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .bound_type
        .output_type()
}

fn state_of(scope: &Scope<'_>, sql: &str) -> &'static str {
    match scope.bind(&parse_expr(sql)) {
        Ok(bound) => panic!("{sql}: expected an error, bound {:?}", bound.expr),
        Err(error) => error.sqlstate(),
    }
}

#[test]
fn arithmetic_takes_the_type_postgres_resolves() {
    let scope = numbers_scope(&[]);
    assert_eq!(type_of(&scope, "n + k"), SqlType::Int8);
    assert_eq!(type_of(&scope, "n * 2"), SqlType::Int4);
    assert_eq!(type_of(&scope, "small + 1"), SqlType::Int4);
    assert_eq!(type_of(&scope, "small % small"), SqlType::Int2);
    assert_eq!(type_of(&scope, "n + 5000000000"), SqlType::Int8);
    assert_eq!(type_of(&scope, "r * r"), SqlType::Float4);
    assert_eq!(type_of(&scope, "r + 1"), SqlType::Float8);
    assert_eq!(type_of(&scope, "n / d"), SqlType::Float8);
    assert_eq!(type_of(&scope, "d * 1.5"), SqlType::Float8);
    assert_eq!(type_of(&scope, "price + d"), SqlType::Float8);
    assert_eq!(type_of(&scope, "n + '2'"), SqlType::Int4);
    assert_eq!(type_of(&scope, "n + NULL"), SqlType::Int4);
    assert_eq!(type_of(&scope, "-n"), SqlType::Int4);
    assert_eq!(type_of(&scope, "-price"), SqlType::Numeric);
    assert_eq!(type_of(&scope, "(n + 1) > 5"), SqlType::Bool);
    assert_eq!(type_of(&scope, "d * 2 > 0.5"), SqlType::Bool);
    assert_eq!(type_of(&scope, "0.25 < r"), SqlType::Bool);
}

#[test]
fn arithmetic_without_an_operator_is_refused_as_postgres_does() {
    let scope = numbers_scope(&[]);
    assert_eq!(state_of(&scope, "name + 1"), "42883");
    assert_eq!(state_of(&scope, "name + 'x'"), "42883");
    assert_eq!(state_of(&scope, "d % 2"), "42883");
    assert_eq!(state_of(&scope, "NULL + NULL"), "42883");
    assert_eq!(state_of(&scope, "-name"), "42883");
    assert_eq!(state_of(&scope, "n + 'x'"), "22P02");
}

#[test]
fn numeric_arithmetic_is_exact_and_typed_numeric() {
    let scope = numbers_scope(&[]);
    assert_eq!(type_of(&scope, "price + 1"), SqlType::Numeric);
    assert_eq!(type_of(&scope, "n * 1.5"), SqlType::Numeric);
    assert_eq!(type_of(&scope, "price / price"), SqlType::Numeric);
    assert_eq!(type_of(&scope, "price % 2"), SqlType::Numeric);
    assert_eq!(type_of(&scope, "price * d"), SqlType::Float8);
    let bound = scope.bind(&parse_expr("0.1 + 0.2")).expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Numeric("0.3".into())));
    let bound = scope.bind(&parse_expr("1.50 * 2")).expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Numeric("3.00".into())));
    assert_eq!(state_of(&scope, "1.5 / 0"), "22012");
    // Comparisons across number kinds meet in the wider kind.
    assert_eq!(type_of(&scope, "n = 1.5"), SqlType::Bool);
    assert_eq!(type_of(&scope, "n < price"), SqlType::Bool);
    assert_eq!(type_of(&scope, "price = d"), SqlType::Bool);
    let predicate = scope
        .bind_predicate(&parse_expr("n < 2.5"), "WHERE")
        .expect("binds");
    let row = |n: i64| vec![Value::Int(0), Value::Null, Value::Int(n)];
    assert!(predicate.matches(&row(2)).expect("evaluates"));
    assert!(!predicate.matches(&row(3)).expect("evaluates"));
}

#[test]
fn in_lists_unify_every_item_with_the_operand() {
    let scope = numbers_scope(&[]);
    assert_eq!(type_of(&scope, "k IN (1, 2, '3')"), SqlType::Bool);
    assert_eq!(type_of(&scope, "'a' IN (name, 'b')"), SqlType::Bool);
    assert_eq!(state_of(&scope, "name IN (1, 2)"), "42883");
    assert_eq!(state_of(&scope, "k IN ('x')"), "22P02");
    assert_eq!(state_of(&scope, "k IN (SELECT 1)"), "0A000");
    let bound = scope.bind(&parse_expr("k IN (3, 1, NULL)")).expect("binds");
    let Expr::InList { operand, list, .. } = &bound.expr else {
        panic!("not an IN list: {:?}", bound.expr);
    };
    assert_eq!(operand.as_ref(), &Expr::Column(0));
    assert_eq!(list.len(), 3);
    // Over constants it is folded, with Postgres' NULL semantics.
    let folded = |sql: &str| scope.bind(&parse_expr(sql)).expect("binds").expr;
    assert_eq!(folded("1 IN (2, NULL)"), Expr::Literal(Value::Null));
    assert_eq!(folded("1 NOT IN (2, NULL)"), Expr::Literal(Value::Null));
    assert_eq!(folded("1 IN (1, NULL)"), Expr::Literal(Value::Bool(true)));
    assert_eq!(folded("1 NOT IN (2, 3)"), Expr::Literal(Value::Bool(true)));
    assert_eq!(folded("NULL IN (1)"), Expr::Literal(Value::Null));
}

#[test]
fn between_on_the_key_narrows_the_key_range_like_two_comparisons() {
    let params = [Value::Text("10".to_owned())];
    let scope = numbers_scope(&params);
    let predicate = scope
        .bind_predicate(&parse_expr("k BETWEEN 3 AND $1"), "WHERE")
        .expect("binds");
    assert_eq!(
        crate::expr::key_range(Some(&predicate), 0),
        crate::expr::KeyRange {
            lower: std::ops::Bound::Included(Value::Int(3)),
            upper: std::ops::Bound::Included(Value::Int(10)),
        }
    );
    let negated = scope
        .bind_predicate(&parse_expr("k NOT BETWEEN 3 AND 10"), "WHERE")
        .expect("binds");
    assert_eq!(
        crate::expr::key_range(Some(&negated), 0),
        crate::expr::KeyRange::full()
    );
    let empty = scope
        .bind_predicate(&parse_expr("k BETWEEN 10 AND 3"), "WHERE")
        .expect("binds");
    assert!(crate::expr::key_range(Some(&empty), 0).is_empty());
    assert_eq!(state_of(&scope, "name BETWEEN 1 AND 2"), "42883");
}

#[test]
fn like_and_concatenation_take_text_as_postgres_resolves_them() {
    let scope = numbers_scope(&[]);
    assert_eq!(type_of(&scope, "name LIKE 'a%'"), SqlType::Bool);
    assert_eq!(type_of(&scope, "name NOT ILIKE $$A%$$"), SqlType::Bool);
    assert_eq!(state_of(&scope, "n LIKE '1%'"), "42883");
    assert_eq!(state_of(&scope, "name LIKE 'a' ESCAPE 'xy'"), "0A000");
    assert_eq!(type_of(&scope, "name || 'x'"), SqlType::Text);
    assert_eq!(type_of(&scope, "n || 'x'"), SqlType::Text);
    assert_eq!(type_of(&scope, "'x' || k"), SqlType::Text);
    assert_eq!(state_of(&scope, "n || k"), "42883");
    let bound = scope.bind(&parse_expr("'a' || 1 || NULL")).expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Null));
    let bound = scope.bind(&parse_expr("'a' || 1.50")).expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Text("a1.50".into())));
}

#[test]
fn the_statement_time_is_a_node_not_a_constant() {
    let scope = numbers_scope(&[]);
    for (sql, sql_type) in [
        ("now()", SqlType::Timestamptz),
        ("CURRENT_TIMESTAMP", SqlType::Timestamptz),
        ("current_timestamp(3)", SqlType::Timestamptz),
        ("LOCALTIMESTAMP", SqlType::Timestamp),
        ("CURRENT_DATE", SqlType::Date),
    ] {
        let bound = scope.bind(&parse_expr(sql)).expect("binds");
        assert_eq!(bound.bound_type, BoundType::Known(sql_type), "{sql}");
        assert!(bound.expr.reads_statement_time(), "{sql}");
        assert!(!bound.expr.is_constant(), "{sql}");
    }
    // Not folded: the value is only known when the statement runs.
    let bound = scope.bind(&parse_expr("'at ' || now()")).expect("binds");
    assert!(bound.expr.reads_statement_time());
    assert_eq!(state_of(&scope, "CURRENT_TIME"), "0A000");
    assert_eq!(state_of(&scope, "now(1)"), "42883");
}

#[test]
fn arithmetic_over_constants_is_folded_with_its_errors() {
    let scope = numbers_scope(&[]);
    let bound = scope
        .bind(&parse_expr("1 + 2 * 3 - 10 / 4 % 3"))
        .expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Int(5)));
    let bound = scope.bind(&parse_expr("-(-5)")).expect("binds");
    assert_eq!(bound.expr, Expr::Literal(Value::Int(5)));
    let bound = scope.bind(&parse_expr("-2147483648")).expect("binds");
    assert_eq!(bound.bound_type, BoundType::Known(SqlType::Int4));
    let bound = scope
        .bind(&parse_expr("NULL / 0"))
        .expect("NULL, not an error");
    assert_eq!(bound.expr, Expr::Literal(Value::Null));
    assert_eq!(state_of(&scope, "1 / 0"), "22012");
    assert_eq!(state_of(&scope, "2147483647 + 1"), "22003");
    assert_eq!(state_of(&scope, "-(-2147483648)"), "22003");
    let bound = scope
        .bind(&parse_expr("2147483647::int8 + 1"))
        .expect("bigint");
    assert_eq!(bound.expr, Expr::Literal(Value::Int(2_147_483_648)));
}

#[test]
fn comparisons_with_constant_arithmetic_stay_key_lookups() {
    let params = [Value::Text("4".to_owned())];
    let scope = numbers_scope(&params);
    let predicate = scope
        .bind_predicate(&parse_expr("k = $1 + 1"), "WHERE")
        .expect("binds");
    assert_eq!(
        crate::expr::key_point(Some(&predicate), &[0]),
        Some(vec![Value::Int(5)])
    );
    let predicate = scope
        .bind_predicate(&parse_expr("k = k + 0"), "WHERE")
        .expect("binds");
    assert_eq!(crate::expr::key_point(Some(&predicate), &[0]), None);
    assert_eq!(
        crate::expr::key_range(Some(&predicate), 0),
        crate::expr::KeyRange::full()
    );
}

#[test]
fn typed_parameters_take_the_type_of_the_other_operand() {
    // As Describe (planned with NULL parameters) reports it.
    let described = numbers_scope(&[Value::Null]);
    assert_eq!(type_of(&described, "small + $1"), SqlType::Int2);
    let params = [Value::Int(5), Value::Float(0.5), Value::Int(40_000)];
    let scope = numbers_scope(&params);
    assert_eq!(type_of(&scope, "small + $1"), SqlType::Int2);
    assert_eq!(type_of(&scope, "$1 * n"), SqlType::Int4);
    // A float parameter is not rounded into an integer operation.
    assert_eq!(type_of(&scope, "n + $2"), SqlType::Float8);
    assert_eq!(type_of(&scope, "$1 + $2"), SqlType::Float8);
    // Out of the range of the type it takes: 22003, as Postgres reports
    // for a smallint parameter of 40000.
    assert_eq!(state_of(&scope, "small + $3"), "22003");
}
