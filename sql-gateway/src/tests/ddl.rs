//! CREATE/DROP TABLE and statements over typed user tables, on the
//! in-memory store and catalog.

use std::sync::Arc;

use super::memory::{error_state, executor, ok_tag, query, rows, FixedViews, MemoryStore};
use crate::catalog_source::MemoryCatalog;
use crate::executor::Executor;

#[tokio::test]
async fn create_table_with_every_type_stores_and_returns_each_value() {
    let (executor, _) = executor();
    let create = "CREATE TABLE t (id BIGINT PRIMARY KEY, i INTEGER, s SMALLINT, \
        name VARCHAR(5), body TEXT, ok BOOLEAN, d DOUBLE PRECISION, r REAL, n NUMERIC, \
        b BYTEA, ts TIMESTAMP, tz TIMESTAMPTZ, day DATE, u UUID, j JSONB)";
    assert_eq!(ok_tag(&executor, create).await, "CREATE TABLE");
    let insert = "INSERT INTO t VALUES (1, 2, 3, 'abc', 'x', true, 1.5, 2.5, 12.50, \
        '\\x00ff', '2024-05-01 12:00:00', '2024-05-01 12:00:00+02', '2024-05-01', \
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}')";
    assert_eq!(ok_tag(&executor, insert).await, "INSERT 0 1");
    let (_, got) = query(&executor, "SELECT * FROM t WHERE id = 1").await;
    assert_eq!(
        got,
        rows(&[&[
            Some("1"),
            Some("2"),
            Some("3"),
            Some("abc"),
            Some("x"),
            Some("t"),
            Some("1.5"),
            Some("2.5"),
            Some("12.50"),
            Some("\\x00ff"),
            Some("2024-05-01 12:00:00"),
            Some("2024-05-01 10:00:00+00"),
            Some("2024-05-01"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Some("{\"a\":1}"),
        ]])
    );
}

#[tokio::test]
async fn composite_keys_order_rows_and_allow_point_reads() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE IF NOT EXISTS m (a TEXT, b INT, v TEXT NOT NULL DEFAULT 'none', PRIMARY KEY (a, b))",
    )
    .await;
    assert_eq!(
        ok_tag(
            &executor,
            "INSERT INTO m (a, b) VALUES ('x', 10), ('x', 2), ('a', 99), ('x', -1)"
        )
        .await,
        "INSERT 0 4"
    );
    let (_, got) = query(&executor, "SELECT a, b, v FROM m").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("a"), Some("99"), Some("none")],
            &[Some("x"), Some("-1"), Some("none")],
            &[Some("x"), Some("2"), Some("none")],
            &[Some("x"), Some("10"), Some("none")],
        ])
    );
    let (_, got) = query(&executor, "SELECT v FROM m WHERE a = 'x' AND b = 2").await;
    assert_eq!(got, rows(&[&[Some("none")]]));
    let (_, got) = query(
        &executor,
        "SELECT b FROM m WHERE a = 'x' AND b > 0 ORDER BY b DESC LIMIT 1",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("10")]]));
    assert_eq!(
        error_state(&executor, "INSERT INTO m VALUES ('x', 2, 'dup')").await,
        "23505"
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE m SET v = 'set' WHERE a = 'x' AND b = 2").await,
        "UPDATE 1"
    );
    assert_eq!(
        ok_tag(&executor, "DELETE FROM m WHERE a = 'x'").await,
        "DELETE 3"
    );
    assert_eq!(
        ok_tag(
            &executor,
            "CREATE TABLE IF NOT EXISTS m (a INT PRIMARY KEY)"
        )
        .await,
        "CREATE TABLE"
    );
}

#[tokio::test]
async fn returning_gives_the_written_rows_with_the_command_tag() {
    let (executor, _) = executor();
    ok_tag(&executor, "CREATE TABLE r (id INT PRIMARY KEY, v TEXT)").await;
    let (columns, got) = query(
        &executor,
        "INSERT INTO r VALUES (1, 'a'), (2, 'b') RETURNING id, v AS value",
    )
    .await;
    assert_eq!(columns, vec!["id", "value"]);
    assert_eq!(
        got,
        rows(&[&[Some("1"), Some("a")], &[Some("2"), Some("b")]])
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE r SET v = 'c' WHERE id >= 2 RETURNING *").await,
        "UPDATE 1"
    );
    let (_, got) = query(&executor, "DELETE FROM r WHERE id = 2 RETURNING v").await;
    assert_eq!(got, rows(&[&[Some("c")]]));
}

#[tokio::test]
async fn drop_table_removes_its_rows_and_its_name() {
    let (executor, store) = executor();
    ok_tag(&executor, "CREATE TABLE d (id INT PRIMARY KEY)").await;
    ok_tag(&executor, "INSERT INTO d VALUES (1), (2), (3)").await;
    assert_eq!(store.len(), 3);
    assert_eq!(ok_tag(&executor, "DROP TABLE d").await, "DROP TABLE");
    assert_eq!(store.len(), 0);
    assert_eq!(error_state(&executor, "SELECT * FROM d").await, "42P01");
    assert_eq!(error_state(&executor, "DROP TABLE d").await, "42P01");
    assert_eq!(
        ok_tag(&executor, "DROP TABLE IF EXISTS d").await,
        "DROP TABLE"
    );
    assert_eq!(error_state(&executor, "DROP TABLE kv").await, "42809");
}

#[tokio::test]
async fn user_errors_carry_postgres_sqlstates() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE e (id INT PRIMARY KEY, s SMALLINT, name VARCHAR(3) NOT NULL)",
    )
    .await;
    for (sql, state) in [
        ("CREATE TABLE e (id INT PRIMARY KEY)", "42P07"),
        ("CREATE TABLE kv (id INT PRIMARY KEY)", "42P07"),
        ("CREATE TABLE nokey (id INT)", "0A000"),
        ("CREATE TABLE bad (id INT PRIMARY KEY, id TEXT)", "42701"),
        ("CREATE TABLE bad (id INT, PRIMARY KEY (nope))", "42703"),
        ("CREATE TABLE bad (id INT PRIMARY KEY, x INTERVAL)", "0A000"),
        ("INSERT INTO e VALUES ('x', 1, 'a')", "22P02"),
        ("INSERT INTO e VALUES (1, 40000, 'a')", "22003"),
        ("INSERT INTO e VALUES (1, 1, 'abcd')", "22001"),
        ("INSERT INTO e (id) VALUES (1)", "23502"),
        ("INSERT INTO e VALUES (1, true, 'a')", "42804"),
        ("SELECT nope FROM e", "42703"),
        ("SELECT * FROM missing", "42P01"),
        ("SELEC 1", "42601"),
        ("SELECT * FROM e WHERE id = 'abc'", "22P02"),
    ] {
        assert_eq!(error_state(&executor, sql).await, state, "{sql}");
    }
    assert_eq!(
        ok_tag(&executor, "INSERT INTO e VALUES (1, 1, 'abc')").await,
        "INSERT 0 1"
    );
    assert_eq!(
        error_state(&executor, "INSERT INTO e VALUES (1, 2, 'b')").await,
        "23505"
    );
}

#[tokio::test]
async fn a_ddl_change_is_seen_by_every_executor_sharing_the_catalog() {
    // Two executors over one catalog source model two gateways over root.
    let store = Arc::new(MemoryStore::default());
    let catalog = Arc::new(MemoryCatalog::default());
    let first = Executor::new(store.clone(), Arc::new(FixedViews(None)), catalog.clone());
    let second = Executor::new(store, Arc::new(FixedViews(None)), catalog);
    ok_tag(&first, "CREATE TABLE shared (id INT PRIMARY KEY)").await;
    assert_eq!(
        ok_tag(&second, "INSERT INTO shared VALUES (7)").await,
        "INSERT 0 1"
    );
    assert_eq!(
        error_state(&second, "CREATE TABLE shared (id INT PRIMARY KEY)").await,
        "42P07"
    );
    ok_tag(&second, "DROP TABLE shared").await;
    assert_eq!(error_state(&first, "SELECT * FROM shared").await, "42P01");
}

#[tokio::test]
async fn a_default_of_now_fills_the_insert_time_and_needs_a_time_column() {
    const MICROS: i64 = 1_700_000_000_000_000;
    let (executor, _) = executor();
    let executor = executor.with_clock(Arc::new(|| MICROS));
    ok_tag(
        &executor,
        "CREATE TABLE events (id INT PRIMARY KEY, at TIMESTAMPTZ DEFAULT now(), day DATE DEFAULT CURRENT_DATE, note TEXT DEFAULT 'none')",
    )
    .await;
    ok_tag(&executor, "INSERT INTO events (id) VALUES (1)").await;
    let (_, got) = query(&executor, "SELECT at, day, note FROM events").await;
    assert_eq!(
        got,
        rows(&[&[
            Some("2023-11-14 22:13:20+00"),
            Some("2023-11-14"),
            Some("none")
        ]])
    );
    assert_eq!(
        error_state(
            &executor,
            "CREATE TABLE wrong (id INT PRIMARY KEY, n BIGINT DEFAULT now())"
        )
        .await,
        "42804"
    );
    assert_eq!(
        error_state(
            &executor,
            "CREATE TABLE other (id INT PRIMARY KEY, n BIGINT DEFAULT random())"
        )
        .await,
        "0A000"
    );
}
