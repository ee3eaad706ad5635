//! The expressions ORMs and users reach for first, through the executor
//! over the in-memory store: `IN (...)`, `BETWEEN`, `||`, `LIKE`/`ILIKE`,
//! `now()` and its relatives (from an injected clock), exact NUMERIC
//! arithmetic, and `INSERT ... ON CONFLICT DO UPDATE` reading the stored
//! row. Postgres' three-valued logic with NULL, its result texts and its
//! SQLSTATEs are what is checked.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arbor_catalog::{
    Catalog, ColumnDefault, ColumnDescriptor, ColumnType, TableDescriptor, TableId,
};

use super::memory::{
    error_state, executor, ok_tag, query, rows, run, run_in, FixedViews, MemoryStore,
};
use crate::catalog_source::{CatalogSource, MemoryCatalog};
use crate::error::GatewayError;
use crate::executor::{parse_sql, Executor};
use crate::statement::QueryResult;
use crate::transaction::Session;
use crate::value::Value;

/// 2023-11-14 22:13:20.123456 UTC, in microseconds since the Unix epoch.
const FIXED_MICROS: i64 = 1_700_000_000_123_456;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one statement as the extended protocol does: parameters as values.
async fn run_with(
    executor: &Executor,
    sql: &str,
    params: &[Value],
) -> Result<QueryResult, GatewayError> {
    let statement = parse_sql(sql).expect("valid SQL").remove(0);
    executor
        .execute(&Session::default(), &statement, params)
        .await
}

/// The rows of a statement run with parameters, as Postgres text.
async fn query_with(executor: &Executor, sql: &str, params: &[Value]) -> Vec<Vec<Option<String>>> {
    match run_with(executor, sql, params).await {
        Ok(QueryResult::Rows { rows, .. } | QueryResult::Returning { rows, .. }) => rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|value| (!value.is_null()).then(|| value.to_text()))
                    .collect()
            })
            .collect(),
        Ok(other) => panic!("{sql}: expected rows, got {other:?}"),
        Err(error) => panic!("{sql}: {error} ({})", error.sqlstate()),
    }
}

/// One column of results, as Postgres text.
async fn column(executor: &Executor, sql: &str) -> Vec<Option<String>> {
    query(executor, sql)
        .await
        .1
        .into_iter()
        .map(|mut row| row.remove(0))
        .collect()
}

fn texts(expected: &[Option<&str>]) -> Vec<Option<String>> {
    expected
        .iter()
        .map(|value| value.map(str::to_owned))
        .collect()
}

/// `t (id BIGINT key, name TEXT, n INTEGER)`, ids 1..=6, one NULL name and n.
async fn people() -> (Executor, Arc<MemoryStore>) {
    let (executor, store) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, n INTEGER)",
    )
    .await;
    ok_tag(
        &executor,
        "INSERT INTO t VALUES (1, 'alice', 10), (2, 'Bob', 20), (3, NULL, 30), \
         (4, 'carol', NULL), (5, 'a_b', 50), (6, '50%', 60)",
    )
    .await;
    (executor, store)
}

#[tokio::test]
async fn in_lists_match_any_item_with_postgres_null_semantics() {
    let (executor, _) = people().await;
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM t WHERE n IN (10, 30, 99) ORDER BY id"
        )
        .await,
        texts(&[Some("1"), Some("3")])
    );
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM t WHERE n NOT IN (10, 30) ORDER BY id"
        )
        .await,
        texts(&[Some("2"), Some("5"), Some("6")])
    );
    // A NULL item makes every non-match unknown: NOT IN keeps nothing.
    assert_eq!(
        column(&executor, "SELECT id FROM t WHERE n NOT IN (10, NULL)").await,
        texts(&[])
    );
    assert_eq!(
        column(&executor, "SELECT id FROM t WHERE n IN (10, NULL)").await,
        texts(&[Some("1")])
    );
    let (_, got) = query(
        &executor,
        "SELECT 1 IN (2, NULL), 1 NOT IN (2, NULL), 1 IN (1, NULL), NULL IN (1), \
         2 NOT IN (1, 3), 'a' IN ('a', 'b')",
    )
    .await;
    assert_eq!(
        got,
        rows(&[&[None, None, Some("t"), None, Some("t"), Some("t")]])
    );
    assert_eq!(
        column(&executor, "SELECT n IN (10, 20) FROM t ORDER BY id").await,
        texts(&[Some("t"), Some("t"), Some("f"), None, Some("f"), Some("f")])
    );
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM t WHERE name IN ('alice', 'carol') ORDER BY id"
        )
        .await,
        texts(&[Some("1"), Some("4")])
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE t SET n = 0 WHERE id IN (1, 2)").await,
        "UPDATE 2"
    );
    assert_eq!(
        ok_tag(&executor, "DELETE FROM t WHERE id NOT IN (1, 2, 3)").await,
        "DELETE 3"
    );
}

#[tokio::test]
async fn primary_key_in_lists_are_point_reads_in_key_order() {
    let (executor, store) = people().await;
    let scans_before = lock(&store.scan_limits).len();
    assert_eq!(
        column(&executor, "SELECT id FROM t WHERE id IN (5, 1, 99, 3, 1)").await,
        texts(&[Some("1"), Some("3"), Some("5")])
    );
    assert_eq!(
        column(&executor, "SELECT id FROM t WHERE id IN (5, 1, 3) LIMIT 2").await,
        texts(&[Some("1"), Some("3")])
    );
    // The rest of the filter still applies to the rows read.
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM t WHERE id IN (1, 2, 3) AND n > 15"
        )
        .await,
        texts(&[Some("2"), Some("3")])
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE t SET n = n + 1 WHERE id IN (1, 2, 42)").await,
        "UPDATE 2"
    );
    assert_eq!(
        lock(&store.scan_limits).len(),
        scans_before,
        "IN on the whole key reads points, it does not scan"
    );
    // A list longer than the point-read limit is a scan, with the same rows.
    let many: Vec<String> = (100..100 + crate::expr::KEY_POINTS_MAX as i64)
        .chain([2, 4])
        .map(|id| id.to_string())
        .collect();
    let sql = format!(
        "SELECT id FROM t WHERE id IN ({}) ORDER BY id",
        many.join(", ")
    );
    assert_eq!(
        column(&executor, &sql).await,
        texts(&[Some("2"), Some("4")])
    );
    assert!(lock(&store.scan_limits).len() > scans_before);
}

#[tokio::test]
async fn in_lists_refuse_subqueries_and_mismatched_types() {
    let (executor, _) = people().await;
    assert_eq!(
        error_state(&executor, "SELECT id FROM t WHERE id IN (SELECT id FROM t)").await,
        "0A000"
    );
    assert_eq!(
        error_state(&executor, "SELECT id FROM t WHERE name IN (1, 2)").await,
        "42883"
    );
    assert_eq!(
        error_state(&executor, "SELECT id FROM t WHERE id IN ('x')").await,
        "22P02"
    );
    assert_eq!(
        error_state(&executor, "SELECT * FROM kv WHERE k IN (1)").await,
        "42883"
    );
}

#[tokio::test]
async fn between_includes_both_ends_and_not_between_excludes_them() {
    let (executor, _) = people().await;
    assert_eq!(
        column(&executor, "SELECT id FROM t WHERE id BETWEEN 2 AND 4").await,
        texts(&[Some("2"), Some("3"), Some("4")])
    );
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM t WHERE id NOT BETWEEN 2 AND 4 ORDER BY id"
        )
        .await,
        texts(&[Some("1"), Some("5"), Some("6")])
    );
    // Low above high matches nothing (no SYMMETRIC).
    assert_eq!(
        column(&executor, "SELECT id FROM t WHERE id BETWEEN 4 AND 2").await,
        texts(&[])
    );
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM t WHERE n BETWEEN 20 AND 50 ORDER BY id"
        )
        .await,
        texts(&[Some("2"), Some("3"), Some("5")])
    );
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM t WHERE name BETWEEN 'a' AND 'b' ORDER BY id"
        )
        .await,
        texts(&[Some("1"), Some("5")])
    );
    // NULL operand or bound: unknown, unless the other bound decides.
    let (_, got) = query(
        &executor,
        "SELECT NULL BETWEEN 1 AND 2, 1 BETWEEN NULL AND 2, 3 BETWEEN NULL AND 2, \
         3 NOT BETWEEN NULL AND 2",
    )
    .await;
    assert_eq!(got, rows(&[&[None, None, Some("f"), Some("t")]]));
    assert_eq!(
        ok_tag(&executor, "DELETE FROM t WHERE id BETWEEN 5 AND 100").await,
        "DELETE 2"
    );
    assert_eq!(
        error_state(&executor, "SELECT id FROM t WHERE name BETWEEN 1 AND 2").await,
        "42883"
    );
}

#[tokio::test]
async fn concatenation_writes_text_and_null_makes_null() {
    let (executor, _) = people().await;
    let (_, got) = query(
        &executor,
        "SELECT name || '!', 'id ' || id, n || '', name || NULL FROM t WHERE id IN (1, 3)",
    )
    .await;
    assert_eq!(
        got,
        rows(&[
            &[Some("alice!"), Some("id 1"), Some("10"), None],
            &[None, Some("id 3"), Some("30"), None],
        ])
    );
    let (_, got) = query(
        &executor,
        "SELECT 'a' || 'b' || 'c', 1.50 || 'x', true || ''",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("abc"), Some("1.50x"), Some("t")]]));
    assert_eq!(
        ok_tag(
            &executor,
            "UPDATE t SET name = name || '-' || n WHERE id = 2"
        )
        .await,
        "UPDATE 1"
    );
    assert_eq!(
        column(&executor, "SELECT name FROM t WHERE id = 2").await,
        texts(&[Some("Bob-20")])
    );
    assert_eq!(
        error_state(&executor, "SELECT id || n FROM t").await,
        "42883"
    );
    assert_eq!(
        error_state(&executor, "SELECT id FROM t WHERE name || 'x'").await,
        "42804"
    );
}

#[tokio::test]
async fn like_matches_wildcards_escapes_and_case_with_ilike() {
    let (executor, _) = people().await;
    let ids = |pattern: &'static str| {
        let executor = &executor;
        async move {
            column(
                executor,
                &format!("SELECT id FROM t WHERE name {pattern} ORDER BY id"),
            )
            .await
        }
    };
    assert_eq!(ids("LIKE 'a%'").await, texts(&[Some("1"), Some("5")]));
    assert_eq!(ids("LIKE '_ob'").await, texts(&[Some("2")]));
    assert_eq!(ids("LIKE 'b%'").await, texts(&[]));
    assert_eq!(ids("ILIKE 'b%'").await, texts(&[Some("2")]));
    assert_eq!(ids("LIKE 'a\\_b'").await, texts(&[Some("5")]));
    assert_eq!(ids("LIKE 'a_b'").await, texts(&[Some("5")]));
    assert_eq!(ids("LIKE '%\\%'").await, texts(&[Some("6")]));
    assert_eq!(ids("LIKE '50!%' ESCAPE '!'").await, texts(&[Some("6")]));
    assert_eq!(ids("LIKE '%'").await.len(), 5, "NULL never matches");
    assert_eq!(ids("NOT LIKE '%a%'").await, texts(&[Some("2"), Some("6")]));
    assert_eq!(
        ids("NOT ILIKE '%B%'").await,
        texts(&[Some("1"), Some("4"), Some("6")])
    );
    let (_, got) = query(
        &executor,
        "SELECT 'abc' LIKE 'a_c', 'abc' LIKE 'A%', NULL LIKE 'a', 'a' LIKE NULL, \
         'a%' LIKE 'a\\%', 'ab' NOT LIKE 'a%'",
    )
    .await;
    assert_eq!(
        got,
        rows(&[&[Some("t"), Some("f"), None, None, Some("t"), Some("f")]])
    );
    assert_eq!(
        error_state(&executor, "SELECT id FROM t WHERE n LIKE '1%'").await,
        "42883"
    );
    // A pattern ending in the escape character is an error, as in Postgres.
    assert_eq!(
        error_state(&executor, "SELECT id FROM t WHERE name LIKE 'a\\'").await,
        "22P02"
    );
}

#[tokio::test]
async fn like_prefix_on_the_key_scans_only_that_prefix() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "INSERT INTO kv VALUES ('a','1'), ('ab','2'), ('abc','3'), ('abd','4'), ('ac','5'), \
         ('b','6'), ('ab%','7')",
    )
    .await;
    assert_eq!(
        column(&executor, "SELECT k FROM kv WHERE k LIKE 'ab%'").await,
        texts(&[Some("ab"), Some("ab%"), Some("abc"), Some("abd")])
    );
    assert_eq!(
        column(&executor, "SELECT k FROM kv WHERE k LIKE 'ab\\%'").await,
        texts(&[Some("ab%")])
    );
    assert_eq!(
        column(&executor, "SELECT k FROM kv WHERE k LIKE 'ab_'").await,
        texts(&[Some("ab%"), Some("abc"), Some("abd")])
    );
    let (_, got) = query(&executor, "SELECT count(*) FROM kv WHERE k LIKE 'ab%'").await;
    assert_eq!(got, rows(&[&[Some("4")]]));
    // The scan is bounded by the prefix and its successor.
    assert_eq!(
        crate::expr::key_range(
            Some(&crate::expr::Expr::Like {
                operand: Box::new(crate::expr::Expr::Column(0)),
                pattern: Box::new(crate::expr::Expr::Literal(Value::Text("ab%".into()))),
                escape: Some('\\'),
                case_insensitive: false,
                negated: false,
            }),
            0
        ),
        crate::expr::KeyRange {
            lower: std::ops::Bound::Included(Value::Text("ab".into())),
            upper: std::ops::Bound::Excluded(Value::Text("ac".into())),
        }
    );
}

/// An executor whose clock reads `micros`.
fn executor_at(micros: i64) -> (Executor, Arc<MemoryStore>) {
    let (executor, store) = executor();
    (executor.with_clock(Arc::new(move || micros)), store)
}

#[tokio::test]
async fn now_and_its_relatives_read_the_injected_clock() {
    let (executor, _) = executor_at(FIXED_MICROS);
    let (columns, got) = query(
        &executor,
        "SELECT now(), CURRENT_TIMESTAMP, LOCALTIMESTAMP, CURRENT_DATE, \
         current_timestamp(0), localtimestamp(3), transaction_timestamp()",
    )
    .await;
    assert_eq!(
        columns,
        [
            "now",
            "current_timestamp",
            "localtimestamp",
            "current_date",
            "current_timestamp",
            "localtimestamp",
            "transaction_timestamp"
        ]
    );
    assert_eq!(
        got,
        rows(&[&[
            Some("2023-11-14 22:13:20.123456+00"),
            Some("2023-11-14 22:13:20.123456+00"),
            Some("2023-11-14 22:13:20.123456"),
            Some("2023-11-14"),
            Some("2023-11-14 22:13:20+00"),
            Some("2023-11-14 22:13:20.123"),
            Some("2023-11-14 22:13:20.123456+00"),
        ]])
    );
    let (_, got) = query(
        &executor,
        "SELECT now() > '2023-01-01'::timestamptz, CURRENT_DATE = '2023-11-14'::date, \
         now()::date, 'at ' || now()",
    )
    .await;
    assert_eq!(
        got,
        rows(&[&[
            Some("t"),
            Some("t"),
            Some("2023-11-14"),
            Some("at 2023-11-14 22:13:20.123456+00")
        ]])
    );
    assert_eq!(
        error_state(&executor, "SELECT CURRENT_TIME FROM kv").await,
        "0A000"
    );
}

#[tokio::test]
async fn one_statement_sees_one_instant_and_the_next_a_later_one() {
    let (executor, _) = executor();
    let ticks = Arc::new(AtomicI64::new(FIXED_MICROS));
    let clock = ticks.clone();
    let executor = executor.with_clock(Arc::new(move || {
        clock.fetch_add(1_000_000, Ordering::SeqCst)
    }));
    ok_tag(
        &executor,
        "CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMPTZ, local TIMESTAMP, day DATE)",
    )
    .await;
    ok_tag(
        &executor,
        "INSERT INTO events VALUES (1, now(), now(), now()), (2, CURRENT_TIMESTAMP, LOCALTIMESTAMP, CURRENT_DATE)",
    )
    .await;
    ok_tag(&executor, "INSERT INTO events (id, at) VALUES (3, now())").await;
    let (_, got) = query(
        &executor,
        "SELECT id, at, local, day FROM events ORDER BY id",
    )
    .await;
    let first = "2023-11-14 22:13:21.123456";
    let (first_tz, second_tz) = (format!("{first}+00"), "2023-11-14 22:13:22.123456+00");
    assert_eq!(
        got,
        rows(&[
            &[
                Some("1"),
                Some(first_tz.as_str()),
                Some(first),
                Some("2023-11-14")
            ],
            &[
                Some("2"),
                Some(first_tz.as_str()),
                Some(first),
                Some("2023-11-14")
            ],
            &[Some("3"), Some(second_tz), None, None],
        ])
    );
    // Every row of one UPDATE gets the same time, and WHERE compares with it.
    assert_eq!(
        ok_tag(
            &executor,
            "UPDATE events SET local = LOCALTIMESTAMP WHERE at < now()"
        )
        .await,
        "UPDATE 3"
    );
    assert_eq!(
        column(&executor, "SELECT local FROM events").await,
        texts(&[Some("2023-11-14 22:13:24.123456"); 3])
    );
}

#[tokio::test]
async fn a_default_now_column_takes_the_statement_time() {
    // DDL only stores constant defaults so far; the insert path honours a
    // `now()` default however the catalog came to hold one.
    let store = Arc::new(MemoryStore::default());
    let catalogs = Arc::new(MemoryCatalog::default());
    let table = TableDescriptor::new(
        TableId(100),
        "audit",
        vec![
            ColumnDescriptor::new("id", ColumnType::Int8),
            ColumnDescriptor {
                default: Some(ColumnDefault::CurrentTimestamp),
                ..ColumnDescriptor::new("created", ColumnType::Timestamp)
            },
            ColumnDescriptor {
                default: Some(ColumnDefault::CurrentTimestamp),
                ..ColumnDescriptor::new("stamped", ColumnType::Timestamptz)
            },
        ],
        vec![0],
    )
    .expect("valid table");
    let catalog = Catalog::empty()
        .with_table_created(table)
        .expect("new table");
    catalogs
        .commit(0, &catalog, "test table")
        .await
        .expect("memory catalog commits");
    let executor = Executor::new(store, Arc::new(FixedViews(None)), catalogs)
        .with_clock(Arc::new(|| FIXED_MICROS));
    // CREATE TABLE stores `DEFAULT now()` as the insert's time, not as a
    // constant that would freeze the time of the CREATE (tests/ddl.rs).
    ok_tag(&executor, "INSERT INTO audit (id) VALUES (1)").await;
    ok_tag(&executor, "INSERT INTO audit VALUES (2, DEFAULT, NULL)").await;
    ok_tag(
        &executor,
        "INSERT INTO audit VALUES (3, '2000-01-01', '2000-01-01') \
         ON CONFLICT (id) DO NOTHING",
    )
    .await;
    let (_, got) = query(
        &executor,
        "SELECT id, created, stamped FROM audit ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        rows(&[
            &[
                Some("1"),
                Some("2023-11-14 22:13:20.123456"),
                Some("2023-11-14 22:13:20.123456+00")
            ],
            &[Some("2"), Some("2023-11-14 22:13:20.123456"), None],
            &[
                Some("3"),
                Some("2000-01-01 00:00:00"),
                Some("2000-01-01 00:00:00+00")
            ],
        ])
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE audit SET stamped = DEFAULT WHERE id = 2").await,
        "UPDATE 1"
    );
    assert_eq!(
        column(&executor, "SELECT stamped FROM audit WHERE id = 2").await,
        texts(&[Some("2023-11-14 22:13:20.123456+00")])
    );
}

/// `prices (id INTEGER key, price NUMERIC, qty INTEGER)`.
async fn prices() -> (Executor, Arc<MemoryStore>) {
    let (executor, store) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE prices (id INTEGER PRIMARY KEY, price NUMERIC, qty INTEGER)",
    )
    .await;
    ok_tag(
        &executor,
        "INSERT INTO prices VALUES (1, 19.99, 3), (2, 0.10, 7), (3, NULL, 1), (4, 100, 0)",
    )
    .await;
    (executor, store)
}

#[tokio::test]
async fn numeric_arithmetic_is_exact_with_postgres_scales() {
    let (executor, _) = prices().await;
    let (_, got) = query(
        &executor,
        "SELECT price * qty, price + 1, price - 0.005, price / 3, -price, price % 0.03,          price * 1.5 FROM prices ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        rows(&[
            &[
                Some("59.97"),
                Some("20.99"),
                Some("19.985"),
                Some("6.6633333333333333"),
                Some("-19.99"),
                Some("0.01"),
                Some("29.985")
            ],
            &[
                Some("0.70"),
                Some("1.10"),
                Some("0.095"),
                Some("0.03333333333333333333"),
                Some("-0.10"),
                Some("0.01"),
                Some("0.150")
            ],
            &[None, None, None, None, None, None, None],
            &[
                Some("0"),
                Some("101"),
                Some("99.995"),
                Some("33.3333333333333333"),
                Some("-100"),
                Some("0.01"),
                Some("150.0")
            ],
        ])
    );
    let (_, got) = query(&executor, "SELECT 0.1 + 0.2, 1 / 3.0, 10.0 / 4, 2 * 0.5").await;
    assert_eq!(
        got,
        rows(&[&[
            Some("0.3"),
            Some("0.33333333333333333333"),
            Some("2.5000000000000000"),
            Some("1.0")
        ]])
    );
    assert_eq!(
        ok_tag(
            &executor,
            "UPDATE prices SET price = price * 1.1 WHERE id = 2"
        )
        .await,
        "UPDATE 1"
    );
    assert_eq!(
        column(&executor, "SELECT price FROM prices WHERE id = 2").await,
        texts(&[Some("0.110")])
    );
    // An integer column takes a NUMERIC result rounded, as Postgres stores it.
    assert_eq!(
        ok_tag(&executor, "UPDATE prices SET qty = qty * 1.5 WHERE id = 1").await,
        "UPDATE 1"
    );
    assert_eq!(
        column(&executor, "SELECT qty FROM prices WHERE id = 1").await,
        texts(&[Some("5")])
    );
    // Comparisons across number kinds.
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM prices WHERE price > qty ORDER BY id"
        )
        .await,
        texts(&[Some("1"), Some("4")])
    );
    assert_eq!(
        column(
            &executor,
            "SELECT id FROM prices WHERE qty = 4.5 OR qty < 0.5"
        )
        .await,
        texts(&[Some("4")])
    );
    assert_eq!(
        error_state(&executor, "SELECT price / (qty - qty) FROM prices").await,
        "22012"
    );
    assert_eq!(
        error_state(&executor, "SELECT price % 0 FROM prices").await,
        "22012"
    );
}

#[tokio::test]
async fn upsert_updates_from_the_stored_row_and_excluded() {
    let (executor, _) = executor();
    ok_tag(&executor, "INSERT INTO kv VALUES ('a', '1'), ('n', NULL)").await;
    let sql = "INSERT INTO kv VALUES ('a', 'x'), ('b', 'y'), ('n', 'z') \
               ON CONFLICT (k) DO UPDATE SET v = kv.v || excluded.v";
    assert_eq!(ok_tag(&executor, sql).await, "INSERT 0 3");
    let (_, got) = query(&executor, "SELECT k, v FROM kv").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("a"), Some("1x")],
            &[Some("b"), Some("y")],
            &[Some("n"), None],
        ])
    );
    // The alias names the stored row; unqualified names do too.
    let sql = "INSERT INTO kv AS t VALUES ('a', '!') \
               ON CONFLICT (k) DO UPDATE SET v = v || t.v || excluded.v RETURNING k, v";
    let (_, got) = query(&executor, sql).await;
    assert_eq!(got, rows(&[&[Some("a"), Some("1x1x!")]]));
}

#[tokio::test]
async fn upsert_keeps_stored_columns_it_does_not_set() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE wide (k INTEGER PRIMARY KEY, a TEXT, b TEXT)",
    )
    .await;
    ok_tag(&executor, "INSERT INTO wide VALUES (1, 'a1', 'b1')").await;
    let sql = "INSERT INTO wide VALUES (1, 'new a', 'new b'), (2, 'a2', 'b2') \
               ON CONFLICT (k) DO UPDATE SET a = excluded.a";
    assert_eq!(ok_tag(&executor, sql).await, "INSERT 0 2");
    let (_, got) = query(&executor, "SELECT k, a, b FROM wide ORDER BY k").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("1"), Some("new a"), Some("b1")],
            &[Some("2"), Some("a2"), Some("b2")],
        ])
    );
}

#[tokio::test]
async fn upsert_where_decides_per_stored_row() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "CREATE TABLE counters (k TEXT PRIMARY KEY, n INTEGER, frozen BOOLEAN)",
    )
    .await;
    ok_tag(
        &executor,
        "INSERT INTO counters VALUES ('a', 1, false), ('b', 5, true)",
    )
    .await;
    let sql = "INSERT INTO counters VALUES ('a', 10, false), ('b', 10, false), ('c', 10, false) \
               ON CONFLICT (k) DO UPDATE SET n = counters.n + excluded.n \
               WHERE NOT counters.frozen RETURNING k, n";
    let (_, got) = query(&executor, sql).await;
    assert_eq!(
        got,
        rows(&[&[Some("a"), Some("11")], &[Some("c"), Some("10")]])
    );
    let (_, got) = query(&executor, "SELECT k, n FROM counters ORDER BY k").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("a"), Some("11")],
            &[Some("b"), Some("5")],
            &[Some("c"), Some("10")],
        ])
    );
    let none = "INSERT INTO counters VALUES ('b', 1, false) \
                ON CONFLICT (k) DO UPDATE SET n = 0 WHERE counters.n < 0";
    assert_eq!(ok_tag(&executor, none).await, "INSERT 0 0");
    let twice = "INSERT INTO counters VALUES ('a', 1, false), ('a', 2, false) \
                 ON CONFLICT (k) DO UPDATE SET n = counters.n + 1";
    assert_eq!(error_state(&executor, twice).await, "21000");
    let overflow = "INSERT INTO counters VALUES ('a', 2147483647, false) \
                    ON CONFLICT (k) DO UPDATE SET n = counters.n + excluded.n";
    assert_eq!(error_state(&executor, overflow).await, "22003");
    let not_boolean = "INSERT INTO counters VALUES ('a', 1, false) \
                       ON CONFLICT (k) DO UPDATE SET n = 1 WHERE counters.n";
    assert_eq!(error_state(&executor, not_boolean).await, "42804");
    assert_eq!(
        column(&executor, "SELECT n FROM counters WHERE k = 'a'").await,
        texts(&[Some("11")])
    );
}

#[tokio::test]
async fn concurrent_upserts_reading_the_stored_row_lose_no_increment() {
    let (executor, store) = executor();
    ok_tag(&executor, "CREATE TABLE c (k TEXT PRIMARY KEY, n INTEGER)").await;
    ok_tag(&executor, "INSERT INTO c VALUES ('x', 0)").await;
    let increment =
        "INSERT INTO c VALUES ('x', 1) ON CONFLICT (k) DO UPDATE SET n = c.n + excluded.n";
    let (mine, other) = (Session::default(), Session::default());
    run_in(&executor, &mine, "BEGIN").await.expect("begin");
    run_in(&executor, &mine, increment)
        .await
        .expect("upsert in the block");
    // Another session increments the same row and commits first.
    run_in(&executor, &other, increment)
        .await
        .expect("autocommit upsert");
    let commit = run_in(&executor, &mine, "COMMIT")
        .await
        .expect_err("first committer wins");
    assert_eq!(commit.sqlstate(), "40001");
    assert_eq!(
        column(&executor, "SELECT n FROM c").await,
        texts(&[Some("1")])
    );
    // An implicit upsert that meets a conflict at commit runs again from
    // scratch, reading the newer row: no increment is lost either.
    store.conflicting_commits.store(2, Ordering::SeqCst);
    assert_eq!(ok_tag(&executor, increment).await, "INSERT 0 1");
    assert_eq!(
        column(&executor, "SELECT n FROM c").await,
        texts(&[Some("2")])
    );
}

#[tokio::test]
async fn expressions_take_parameters_from_the_extended_protocol() {
    let (executor, _) = people().await;
    let text = |s: &str| Value::Text(s.to_owned());
    assert_eq!(
        query_with(
            &executor,
            "SELECT id FROM t WHERE id IN ($1, $2) ORDER BY id",
            &[Value::Int(4), Value::Int(2)]
        )
        .await,
        rows(&[&[Some("2")], &[Some("4")]])
    );
    assert_eq!(
        query_with(
            &executor,
            "SELECT id FROM t WHERE id BETWEEN $1 AND $2",
            &[text("2"), text("3")]
        )
        .await,
        rows(&[&[Some("2")], &[Some("3")]])
    );
    assert_eq!(
        query_with(
            &executor,
            "SELECT name || $1 FROM t WHERE name ILIKE $2",
            &[text("?"), text("CAR%")]
        )
        .await,
        rows(&[&[Some("carol?")]])
    );
    assert_eq!(
        query_with(
            &executor,
            "SELECT id FROM t WHERE n IN ($1, $2)",
            &[Value::Int(10), Value::Null]
        )
        .await,
        rows(&[&[Some("1")]])
    );
    // Described with NULL parameters, an INSERT's RETURNING plans fine.
    let statement = parse_sql("INSERT INTO t VALUES ($1, $2, $3) RETURNING id || name")
        .expect("valid SQL")
        .remove(0);
    let catalog = query_catalog(&executor).await;
    let columns = crate::executor::describe(&statement, 3, &catalog).expect("described");
    assert_eq!(columns.len(), 1);
    let error = run(&executor, "SELECT id FROM t WHERE id IN ($1)")
        .await
        .expect_err("no parameter");
    assert_eq!(error.sqlstate(), "42601");
}

async fn query_catalog(executor: &Executor) -> Catalog {
    let statement = parse_sql("SELECT * FROM t").expect("valid SQL").remove(0);
    executor
        .catalog_for(&statement)
        .await
        .expect("catalog")
        .as_ref()
        .clone()
}
