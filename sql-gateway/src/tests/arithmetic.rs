//! Arithmetic in SQL expressions (`+ - * / %`, unary minus) through the
//! executor over the in-memory store: the pgbench and ORM shapes
//! (`SET v = v + 1`, `balance = balance - $1`), Postgres' result types and
//! its errors (22003 overflow, 22012 division by zero) with nothing written.

use std::sync::{Arc, MutexGuard};

use super::memory::{error_state, executor, ok_tag, query, rows, run, run_in, tag};
use super::wire::TestServer;
use crate::executor::{parse_sql, Executor};
use crate::statement::QueryResult;
use crate::transaction::Session;
use crate::value::{SqlType, Value};

/// `t (k BIGINT key, n INTEGER)` holding k = 1..=4 with n = 10, -7, NULL, 3.
async fn numbers() -> (Executor, Arc<super::memory::MemoryStore>) {
    let (executor, store) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE t (k BIGINT PRIMARY KEY, n INTEGER)",
    )
    .await;
    ok_tag(
        &executor,
        "INSERT INTO t VALUES (1, 10), (2, -7), (3, NULL), (4, 3)",
    )
    .await;
    (executor, store)
}

async fn all_rows(executor: &Executor) -> Vec<Vec<Option<String>>> {
    query(executor, "SELECT k, n FROM t ORDER BY k").await.1
}

/// Runs one statement as the extended protocol does: parameters as values.
async fn run_with(
    executor: &Executor,
    sql: &str,
    params: &[Value],
) -> Result<QueryResult, crate::error::GatewayError> {
    let statement = parse_sql(sql).expect("valid SQL").remove(0);
    executor
        .execute(&Session::default(), &statement, params)
        .await
}

async fn column_types(executor: &Executor, sql: &str) -> Vec<SqlType> {
    match run(executor, sql).await {
        Ok(QueryResult::Rows { columns, .. }) => {
            columns.into_iter().map(|column| column.sql_type).collect()
        }
        Ok(other) => panic!("{sql}: expected rows, got {}", tag(&other)),
        Err(error) => panic!("{sql}: {error} ({})", error.sqlstate()),
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every batch that reached the store so far: direct writes and commits.
fn store_writes(store: &super::memory::MemoryStore) -> usize {
    lock(&store.writes).len() + lock(&store.commits).len()
}

#[tokio::test]
async fn update_adds_to_each_row_and_null_stays_null() {
    let (executor, _) = numbers().await;
    assert_eq!(
        ok_tag(&executor, "UPDATE t SET n = n + 1").await,
        "UPDATE 4"
    );
    assert_eq!(
        all_rows(&executor).await,
        rows(&[
            &[Some("1"), Some("11")],
            &[Some("2"), Some("-6")],
            &[Some("3"), None],
            &[Some("4"), Some("4")],
        ])
    );
    let (_, got) = query(
        &executor,
        "UPDATE t SET n = n * 2 - k WHERE k = 1 RETURNING n, n % 4",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("21"), Some("1")]]));
    // pgbench's simple protocol substitutes `:delta` as text: `+ -5`.
    let pgbench = "UPDATE t SET n = n + -5 WHERE k = 4";
    assert_eq!(ok_tag(&executor, pgbench).await, "UPDATE 1");
    let (_, got) = query(&executor, "SELECT n FROM t WHERE k = 4").await;
    assert_eq!(got, rows(&[&[Some("-1")]]));
}

#[tokio::test]
async fn update_with_parameters_computes_in_the_column_type() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance INTEGER)",
    )
    .await;
    ok_tag(&executor, "INSERT INTO accounts VALUES (1, 100), (2, 50)").await;
    let sql = "UPDATE accounts SET balance = balance - $1 WHERE id = $2";
    // Typed, as a driver sends them after Describe inferred int4 and int8.
    let result = run_with(&executor, sql, &[Value::Int(30), Value::Int(1)])
        .await
        .expect("typed parameters");
    assert_eq!(tag(&result), "UPDATE 1");
    // Untyped text, as psql's \bind or a driver without Describe sends them.
    let text = |value: &str| Value::Text(value.to_owned());
    let result = run_with(&executor, sql, &[text("-5"), text("2")])
        .await
        .expect("text parameters");
    assert_eq!(tag(&result), "UPDATE 1");
    let (_, got) = query(&executor, "SELECT id, balance FROM accounts ORDER BY id").await;
    assert_eq!(
        got,
        rows(&[&[Some("1"), Some("70")], &[Some("2"), Some("55")]])
    );
    // The parameter is read as the column's type: past it is 22003, as a
    // Postgres int4 parameter of that value would be.
    let too_big = run_with(&executor, sql, &[Value::Int(1 << 40), Value::Int(1)])
        .await
        .expect_err("out of integer range");
    assert_eq!(too_big.sqlstate(), "22003");
    // A NULL parameter gives NULL, not an error.
    run_with(&executor, sql, &[Value::Null, Value::Int(2)])
        .await
        .expect("null parameter");
    let (_, got) = query(&executor, "SELECT balance FROM accounts WHERE id = 2").await;
    assert_eq!(got, rows(&[&[None]]));
}

#[tokio::test]
async fn select_projects_arithmetic_with_postgres_integer_semantics() {
    let (executor, _) = numbers().await;
    let (names, got) = query(
        &executor,
        "SELECT k, n * 2, n / 3, n % 3, -n FROM t ORDER BY k",
    )
    .await;
    assert_eq!(
        names,
        vec!["k", "?column?", "?column?", "?column?", "?column?"]
    );
    // Division truncates toward zero; the remainder takes the dividend's sign.
    assert_eq!(
        got,
        rows(&[
            &[Some("1"), Some("20"), Some("3"), Some("1"), Some("-10")],
            &[Some("2"), Some("-14"), Some("-2"), Some("-1"), Some("7")],
            &[Some("3"), None, None, None, None],
            &[Some("4"), Some("6"), Some("1"), Some("0"), Some("-3")],
        ])
    );
    assert_eq!(
        column_types(&executor, "SELECT n * 2, k + n, n + 1::smallint, -k FROM t").await,
        vec![SqlType::Int4, SqlType::Int8, SqlType::Int4, SqlType::Int8]
    );
    let (names, got) = query(&executor, "SELECT n + 1 AS next FROM t WHERE k = 4").await;
    assert_eq!(
        (names, got),
        (vec!["next".to_owned()], rows(&[&[Some("4")]]))
    );
}

#[tokio::test]
async fn where_and_order_by_use_arithmetic() {
    let (executor, _) = numbers().await;
    let (_, got) = query(&executor, "SELECT k FROM t WHERE n + 1 > 3 ORDER BY k").await;
    assert_eq!(got, rows(&[&[Some("1")], &[Some("4")]]));
    let (_, got) = query(&executor, "SELECT k FROM t WHERE k = 1 + 1").await;
    assert_eq!(got, rows(&[&[Some("2")]]));
    // `k = k + 0` holds for every row: it must not be read as a point.
    let (_, got) = query(&executor, "SELECT k FROM t WHERE k = k + 0 ORDER BY k").await;
    assert_eq!(
        got,
        rows(&[&[Some("1")], &[Some("2")], &[Some("3")], &[Some("4")]])
    );
    // NULL sorts last ascending, as Postgres does.
    let (_, got) = query(&executor, "SELECT k, n % 3 FROM t ORDER BY n % 3, k DESC").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("2"), Some("-1")],
            &[Some("4"), Some("0")],
            &[Some("1"), Some("1")],
            &[Some("3"), None],
        ])
    );
    let (_, got) = query(&executor, "SELECT k FROM t ORDER BY -n LIMIT 2").await;
    assert_eq!(got, rows(&[&[Some("1")], &[Some("4")]]));
}

#[tokio::test]
async fn integer_overflow_is_22003_and_writes_nothing() {
    let (executor, store) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE o (k INTEGER PRIMARY KEY, n INTEGER, s SMALLINT, b BIGINT)",
    )
    .await;
    ok_tag(
        &executor,
        "INSERT INTO o VALUES (1, 2147483647, 32767, 9223372036854775807), (2, 0, 0, 0)",
    )
    .await;
    let before = store_writes(&store);
    for sql in [
        "UPDATE o SET n = n + 1",
        "UPDATE o SET b = b * 2 WHERE k = 1",
        "UPDATE o SET s = s + 1 WHERE k = 1",
        "SELECT n + 1 FROM o",
        "SELECT -b - 2 FROM o",
        "SELECT 2147483647 + 1",
        "INSERT INTO o VALUES (3, 2147483647 * 2, 0, 0)",
    ] {
        assert_eq!(error_state(&executor, sql).await, "22003", "{sql}");
    }
    assert_eq!(store_writes(&store), before);
    let error = run(&executor, "SELECT n * 2 FROM o WHERE k = 1")
        .await
        .expect_err("overflow");
    assert_eq!(error.to_string(), "integer out of range");
    // In a wider type the same values fit.
    let (_, got) = query(&executor, "SELECT n + 1::bigint, s + 1 FROM o WHERE k = 1").await;
    assert_eq!(got, rows(&[&[Some("2147483648"), Some("32768")]]));
    let (_, got) = query(&executor, "SELECT k, n FROM o ORDER BY k").await;
    assert_eq!(
        got,
        rows(&[&[Some("1"), Some("2147483647")], &[Some("2"), Some("0")]])
    );
}

#[tokio::test]
async fn division_by_zero_is_22012_and_the_statement_writes_nothing() {
    let (executor, store) = numbers().await;
    let before_rows = all_rows(&executor).await;
    let before = store_writes(&store);
    // Row k = 4 has n = 3: the other rows would divide fine, but the
    // statement is all or nothing.
    for sql in [
        "UPDATE t SET n = 100 / (n - 3)",
        "UPDATE t SET n = n % (n - 3) WHERE k >= 1",
        "DELETE FROM t WHERE 10 / (n - 3) > 0",
        "SELECT k / 0 FROM t",
        "SELECT k FROM t ORDER BY 1 / (n - 3)",
        "SELECT k FROM t WHERE 1 / 0 = 1",
        "INSERT INTO t VALUES (5, 1 / 0)",
        "INSERT INTO t VALUES (5, 0) RETURNING 1 / n",
        "UPDATE t SET n = 0 WHERE k = 1 RETURNING 1 / n",
    ] {
        assert_eq!(error_state(&executor, sql).await, "22012", "{sql}");
    }
    assert_eq!(store_writes(&store), before);
    assert_eq!(all_rows(&executor).await, before_rows);
    // NULL in, NULL out: dividing NULL by zero is no error.
    let (_, got) = query(&executor, "SELECT n / 0 FROM t WHERE k = 3").await;
    assert_eq!(got, rows(&[&[None]]));
    let (_, got) = query(&executor, "SELECT NULL / 0, 1 + NULL").await;
    assert_eq!(got, rows(&[&[None, None]]));
}

#[tokio::test]
async fn mixed_integer_and_float_arithmetic_is_double_precision() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE m (k INTEGER PRIMARY KEY, i INTEGER, d DOUBLE PRECISION, r REAL, p NUMERIC)",
    )
    .await;
    ok_tag(&executor, "INSERT INTO m VALUES (1, 7, 0.5, 1.5, 2.25)").await;
    let sql = "SELECT i + d, i / 2, i / 2::float8, d * 3, r * r, r + 1, i * 1.5::real FROM m";
    let (_, got) = query(&executor, sql).await;
    assert_eq!(
        got,
        rows(&[&[
            Some("7.5"),
            Some("3"),
            Some("3.5"),
            Some("1.5"),
            Some("2.25"),
            Some("2.5"),
            Some("10.5"),
        ]])
    );
    use SqlType::{Float4, Float8, Int4};
    assert_eq!(
        column_types(&executor, sql).await,
        vec![Float8, Int4, Float8, Float8, Float4, Float8, Float8]
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE m SET d = d * 1.5 + i").await,
        "UPDATE 1"
    );
    let (_, got) = query(&executor, "SELECT d, p + d FROM m WHERE d / 2 > 3.5").await;
    assert_eq!(got, rows(&[&[Some("7.75"), Some("10")]]));
    assert_eq!(error_state(&executor, "SELECT d / 0 FROM m").await, "22012");
    assert_eq!(
        error_state(&executor, "SELECT d * 1e308 * 10 FROM m").await,
        "22003"
    );
    // Postgres has no `%` on floats, nor `+` on text.
    assert_eq!(error_state(&executor, "SELECT d % 2 FROM m").await, "42883");
    assert_eq!(
        error_state(&executor, "SELECT k + 'x'::text FROM m").await,
        "42883"
    );
    // NUMERIC arithmetic is exact (integers meeting it become NUMERIC), and
    // a NUMERIC stored into an integer column rounds half away from zero.
    let (_, got) = query(&executor, "SELECT p + 1, p * i, p / 3 FROM m").await;
    assert_eq!(
        got,
        rows(&[&[Some("3.25"), Some("15.75"), Some("0.75000000000000000000")]])
    );
    assert_eq!(
        column_types(&executor, "SELECT p + 1, i * 1.5 FROM m").await,
        vec![SqlType::Numeric, SqlType::Numeric]
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE m SET i = i * 1.5").await,
        "UPDATE 1"
    );
    let (_, got) = query(&executor, "SELECT i, -p FROM m").await;
    assert_eq!(got, rows(&[&[Some("11"), Some("-2.25")]]));
}

#[tokio::test]
async fn upsert_sets_arithmetic_over_excluded_values() {
    let (executor, _) = numbers().await;
    let sql = "INSERT INTO t AS x VALUES (1, 5), (9, 1) \
        ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n * 2 + EXCLUDED.k";
    assert_eq!(ok_tag(&executor, sql).await, "INSERT 0 2");
    let (_, got) = query(
        &executor,
        "SELECT k, n FROM t WHERE k = 1 OR k = 9 ORDER BY k",
    )
    .await;
    assert_eq!(
        got,
        rows(&[&[Some("1"), Some("11")], &[Some("9"), Some("1")]])
    );
    // DO UPDATE may read the stored row (under the alias).
    let reads_stored = "INSERT INTO t AS x VALUES (1, 5) \
        ON CONFLICT (k) DO UPDATE SET n = x.n + EXCLUDED.n";
    assert_eq!(ok_tag(&executor, reads_stored).await, "INSERT 0 1");
    let overflow = "INSERT INTO t VALUES (1, 2147483647) \
        ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n + 1";
    assert_eq!(error_state(&executor, overflow).await, "22003");
    let overflow_stored = "INSERT INTO t VALUES (1, 2147483647) \
        ON CONFLICT (k) DO UPDATE SET n = t.n + EXCLUDED.n";
    assert_eq!(error_state(&executor, overflow_stored).await, "22003");
    let (_, got) = query(&executor, "SELECT n FROM t WHERE k = 1").await;
    assert_eq!(got, rows(&[&[Some("16")]]));
}

#[tokio::test]
async fn concurrent_increments_are_not_lost() {
    let (executor, _) = numbers().await;
    let (mine, other) = (Session::default(), Session::default());
    run_in(&executor, &mine, "BEGIN").await.expect("begin");
    run_in(&executor, &mine, "UPDATE t SET n = n + 1 WHERE k = 1")
        .await
        .expect("update in the block");
    // Another session increments the same row and commits first.
    run_in(&executor, &other, "UPDATE t SET n = n + 10 WHERE k = 1")
        .await
        .expect("autocommit update");
    let commit = run_in(&executor, &mine, "COMMIT")
        .await
        .expect_err("first committer wins");
    assert_eq!(commit.sqlstate(), "40001");
    let (_, got) = query(&executor, "SELECT n FROM t WHERE k = 1").await;
    assert_eq!(got, rows(&[&[Some("20")]]));
}

#[tokio::test]
async fn drivers_see_the_described_types_over_the_wire() {
    let server = TestServer::start().await;
    let (client, connection) = server.connect().await;

    client
        .batch_execute(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance INTEGER, small SMALLINT); \
             INSERT INTO accounts VALUES (1, 100, 1), (2, 50, 2)",
        )
        .await
        .expect("setup");
    // tokio-postgres encodes each parameter by the type Describe reports, in
    // binary: an i32 for balance's $1 and an i64 for id's $2.
    let updated = client
        .execute(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            &[&-30i32, &1i64],
        )
        .await
        .expect("pgbench's update");
    assert_eq!(updated, 1);
    // Results come back in binary typed by Describe, which was planned with
    // NULL parameters: execution must produce the same types.
    let row = client
        .query_one(
            "SELECT balance * 2, balance + $1, small + $2, id / 2 FROM accounts WHERE id = $3",
            &[&5i32, &3i16, &1i64],
        )
        .await
        .expect("arithmetic projections");
    assert_eq!(row.get::<_, i32>(0), 140);
    assert_eq!(row.get::<_, i32>(1), 75);
    assert_eq!(row.get::<_, i16>(2), 4);
    assert_eq!(row.get::<_, i64>(3), 0);
    let overflow = client
        .execute(
            "UPDATE accounts SET balance = balance * $1 WHERE id = $2",
            &[&i32::MAX, &2i64],
        )
        .await
        .expect_err("integer overflow");
    assert_eq!(overflow.code().map(|code| code.code()), Some("22003"));
    let zero = client
        .query("SELECT balance / $1 FROM accounts", &[&0i32])
        .await
        .expect_err("division by zero");
    assert_eq!(zero.code().map(|code| code.code()), Some("22012"));
    let balances = client
        .query("SELECT balance FROM accounts ORDER BY id", &[])
        .await
        .expect("connection usable after errors");
    let balances: Vec<i32> = balances.iter().map(|row| row.get(0)).collect();
    assert_eq!(balances, vec![70, 50]);

    drop(client);
    let _ = connection.await;
    server.stop().await;
}
