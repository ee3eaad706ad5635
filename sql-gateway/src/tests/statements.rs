//! Each supported statement on kv: exact command tags, rows and SQLSTATEs.

use super::memory::{error_state, executor, ok_tag, query, rows, run};
use crate::store::{SCAN_PAGE_ROWS, SCAN_ROWS_MAX};

#[tokio::test]
async fn insert_reports_insert_0_n_and_rows_read_back_in_key_order() {
    let (executor, _) = executor();
    assert_eq!(
        ok_tag(&executor, "INSERT INTO kv VALUES ('b','2'),('a','1')").await,
        "INSERT 0 2"
    );
    assert_eq!(
        ok_tag(&executor, "INSERT INTO kv (k, v) VALUES ('c', NULL)").await,
        "INSERT 0 1"
    );
    assert_eq!(
        ok_tag(&executor, "insert into KV (v, k) values ('4', 'd')").await,
        "INSERT 0 1"
    );
    let (columns, got) = query(&executor, "SELECT * FROM kv").await;
    assert_eq!(columns, ["k", "v"]);
    assert_eq!(
        got,
        rows(&[
            &[Some("a"), Some("1")],
            &[Some("b"), Some("2")],
            &[Some("c"), None],
            &[Some("d"), Some("4")],
        ])
    );
}

#[tokio::test]
async fn insert_with_only_the_key_leaves_the_value_null_not_empty() {
    let (executor, _) = executor();
    ok_tag(&executor, "INSERT INTO kv (k) VALUES ('a')").await;
    ok_tag(&executor, "INSERT INTO kv VALUES ('b', '')").await;
    let (_, got) = query(&executor, "SELECT k FROM kv WHERE v IS NULL").await;
    assert_eq!(got, rows(&[&[Some("a")]]));
    let (_, got) = query(&executor, "SELECT k FROM kv WHERE v = ''").await;
    assert_eq!(got, rows(&[&[Some("b")]]));
}

#[tokio::test]
async fn null_key_is_a_not_null_violation() {
    let (executor, store) = executor();
    let error = run(&executor, "INSERT INTO kv VALUES (NULL, '1')")
        .await
        .expect_err("null key");
    assert_eq!(error.sqlstate(), "23502");
    assert_eq!(
        error.to_string(),
        "null value in column \"k\" of relation \"kv\" violates not-null constraint"
    );
    assert_eq!(
        error.detail().as_deref(),
        Some("Failing row contains (null, 1).")
    );
    assert_eq!(
        error_state(&executor, "INSERT INTO kv (v) VALUES ('1')").await,
        "23502"
    );
    assert_eq!(store.len(), 0);
}

#[tokio::test]
async fn duplicate_of_a_stored_key_fails_the_whole_statement() {
    let (executor, store) = executor();
    ok_tag(&executor, "INSERT INTO kv VALUES ('a','1')").await;
    let error = run(&executor, "INSERT INTO kv VALUES ('b','2'),('a','x')")
        .await
        .expect_err("duplicate");
    assert_eq!(error.sqlstate(), "23505");
    assert_eq!(
        error.to_string(),
        "duplicate key value violates unique constraint \"kv_pkey\""
    );
    assert_eq!(
        error.detail().as_deref(),
        Some("Key (k)=(a) already exists.")
    );
    assert_eq!(
        store.len(),
        1,
        "nothing of the failed statement was written"
    );
    let (_, got) = query(&executor, "SELECT * FROM kv").await;
    assert_eq!(got, rows(&[&[Some("a"), Some("1")]]));
}

#[tokio::test]
async fn duplicate_within_one_statement_fails_and_writes_nothing() {
    let (executor, store) = executor();
    let error = run(&executor, "INSERT INTO kv VALUES ('a','1'),('a','2')")
        .await
        .expect_err("duplicate");
    assert_eq!(error.sqlstate(), "23505");
    assert_eq!(
        error.detail().as_deref(),
        Some("Key (k)=(a) already exists.")
    );
    assert_eq!(store.len(), 0);
    assert!(store.writes.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn one_statement_is_one_conditional_write() {
    let (executor, store) = executor();
    ok_tag(
        &executor,
        "INSERT INTO kv VALUES ('a','1'),('b','2'),('c','3')",
    )
    .await;
    let writes = store.writes.lock().expect("lock");
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].len(), 3);
    assert!(writes[0]
        .iter()
        .all(|m| m.condition == arbor_proto::MutationCondition::MustNotExist as i32));
}

#[tokio::test]
async fn upsert_overwrites_and_counts_every_row() {
    let (executor, _) = executor();
    ok_tag(&executor, "INSERT INTO kv VALUES ('a','1')").await;
    let sql =
        "INSERT INTO kv VALUES ('a','x'),('b','y') ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";
    assert_eq!(ok_tag(&executor, sql).await, "INSERT 0 2");
    let (_, got) = query(&executor, "SELECT * FROM kv").await;
    assert_eq!(
        got,
        rows(&[&[Some("a"), Some("x")], &[Some("b"), Some("y")]])
    );
    let twice =
        "INSERT INTO kv VALUES ('c','1'),('c','2') ON CONFLICT (k) DO UPDATE SET v = excluded.v";
    assert_eq!(error_state(&executor, twice).await, "21000");
    let wrong_target =
        "INSERT INTO kv VALUES ('a','1') ON CONFLICT (v) DO UPDATE SET v = excluded.v";
    assert_eq!(error_state(&executor, wrong_target).await, "42P10");
    // SET may read the stored row: `v = kv.v` keeps what is stored.
    let reads_existing = "INSERT INTO kv VALUES ('a','1') ON CONFLICT (k) DO UPDATE SET v = kv.v";
    assert_eq!(ok_tag(&executor, reads_existing).await, "INSERT 0 1");
    let (_, got) = query(&executor, "SELECT v FROM kv WHERE k = 'a'").await;
    assert_eq!(got, rows(&[&[Some("x")]]));
}

#[tokio::test]
async fn upsert_with_a_constant_updates_existing_rows_and_inserts_new_ones() {
    let (executor, _) = executor();
    ok_tag(&executor, "INSERT INTO kv VALUES ('a','1')").await;
    let sql = "INSERT INTO kv AS t VALUES ('a','new'),('b','new') ON CONFLICT ON CONSTRAINT kv_pkey DO UPDATE SET v = 'updated'";
    assert_eq!(ok_tag(&executor, sql).await, "INSERT 0 2");
    let (_, got) = query(&executor, "SELECT * FROM kv").await;
    assert_eq!(
        got,
        rows(&[&[Some("a"), Some("updated")], &[Some("b"), Some("new")]])
    );
}

#[tokio::test]
async fn on_conflict_do_nothing_counts_only_new_rows() {
    let (executor, _) = executor();
    ok_tag(&executor, "INSERT INTO kv VALUES ('a','1'),('c','3')").await;
    let sql =
        "INSERT INTO kv VALUES ('a','x'),('b','2'),('c','x'),('b','dup') ON CONFLICT DO NOTHING";
    assert_eq!(ok_tag(&executor, sql).await, "INSERT 0 1");
    let (_, got) = query(&executor, "SELECT * FROM kv").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("a"), Some("1")],
            &[Some("b"), Some("2")],
            &[Some("c"), Some("3")]
        ])
    );
    let none_new = "INSERT INTO kv VALUES ('a','x') ON CONFLICT (k) DO NOTHING";
    assert_eq!(ok_tag(&executor, none_new).await, "INSERT 0 0");
}

#[tokio::test]
async fn numbers_and_booleans_are_stored_as_their_text() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "INSERT INTO kv VALUES (1, 2.50), ('t', true), ('n', -3)",
    )
    .await;
    let (_, got) = query(&executor, "SELECT k, v FROM kv ORDER BY k").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("1"), Some("2.50")],
            &[Some("n"), Some("-3")],
            &[Some("t"), Some("true")],
        ])
    );
}

#[tokio::test]
async fn oversize_values_and_keys_are_program_limit_errors() {
    let (executor, store) = executor();
    let big = "x".repeat(crate::statement::VALUE_BYTES_MAX + 1);
    let sql = format!("INSERT INTO kv VALUES ('a', '{big}')");
    assert_eq!(error_state(&executor, &sql).await, "54000");
    let long_key = "k".repeat(crate::statement::KEY_BYTES_MAX + 1);
    let sql = format!("INSERT INTO kv VALUES ('{long_key}', '1')");
    assert_eq!(error_state(&executor, &sql).await, "54000");
    let fits = "y".repeat(crate::statement::VALUE_BYTES_MAX);
    ok_tag(&executor, &format!("INSERT INTO kv VALUES ('a', '{fits}')")).await;
    let batch = format!(
        "INSERT INTO kv VALUES ('b', '{fits}'), ('c', '{fits}'), ('d', '{fits}'), ('e', '{fits}'), ('f', '{fits}')"
    );
    assert_eq!(error_state(&executor, &batch).await, "54000");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn point_update_reports_one_or_zero() {
    let (executor, store) = executor();
    ok_tag(&executor, "INSERT INTO kv VALUES ('a','1'),('b','2')").await;
    assert_eq!(
        ok_tag(&executor, "UPDATE kv SET v='x' WHERE k='a'").await,
        "UPDATE 1"
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE kv SET v='x' WHERE k='zz'").await,
        "UPDATE 0"
    );
    assert_eq!(store.len(), 2, "a failed MUST_EXIST put creates nothing");
    let (_, got) = query(&executor, "SELECT v FROM kv WHERE k='a'").await;
    assert_eq!(got, rows(&[&[Some("x")]]));
}

#[tokio::test]
async fn update_with_other_filters_scans_and_rewrites_matching_rows() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "INSERT INTO kv VALUES ('a','1'),('b','2'),('c','1'),('d',NULL)",
    )
    .await;
    assert_eq!(
        ok_tag(&executor, "UPDATE kv SET v = 'one' WHERE v = '1'").await,
        "UPDATE 2"
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE kv SET v = k WHERE k >= 'c'").await,
        "UPDATE 2"
    );
    assert_eq!(
        ok_tag(
            &executor,
            "UPDATE kv SET v = NULL WHERE k = 'b' AND v = 'nope'"
        )
        .await,
        "UPDATE 0"
    );
    let (_, got) = query(&executor, "SELECT * FROM kv").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("a"), Some("one")],
            &[Some("b"), Some("2")],
            &[Some("c"), Some("c")],
            &[Some("d"), Some("d")],
        ])
    );
    assert_eq!(
        ok_tag(&executor, "UPDATE kv SET v = 'all'").await,
        "UPDATE 4"
    );
    assert_eq!(
        error_state(&executor, "UPDATE kv SET k = 'z' WHERE k = 'a'").await,
        "0A000"
    );
    assert_eq!(
        error_state(&executor, "UPDATE kv SET nope = 'z'").await,
        "42703"
    );
}

#[tokio::test]
async fn delete_reports_what_existed() {
    let (executor, _) = executor();
    ok_tag(
        &executor,
        "INSERT INTO kv VALUES ('a','1'),('b','2'),('c','3'),('d','4')",
    )
    .await;
    assert_eq!(
        ok_tag(&executor, "DELETE FROM kv WHERE k='a'").await,
        "DELETE 1"
    );
    assert_eq!(
        ok_tag(&executor, "DELETE FROM kv WHERE k='a'").await,
        "DELETE 0"
    );
    assert_eq!(
        ok_tag(&executor, "DELETE FROM kv WHERE k > 'b' AND v <> '4'").await,
        "DELETE 1"
    );
    let (_, got) = query(&executor, "SELECT k FROM kv").await;
    assert_eq!(got, rows(&[&[Some("b")], &[Some("d")]]));
    assert_eq!(ok_tag(&executor, "DELETE FROM kv").await, "DELETE 2");
    assert_eq!(
        ok_tag(&executor, "SELECT count(*) FROM kv").await,
        "SELECT 1"
    );
    let (_, got) = query(&executor, "SELECT count(*) FROM kv").await;
    assert_eq!(got, rows(&[&[Some("0")]]));
}

#[tokio::test]
async fn select_point_range_order_limit_and_count() {
    let (executor, store) = executor();
    ok_tag(
        &executor,
        "INSERT INTO kv VALUES ('a','1'),('b','2'),('c','3'),('d',NULL),('e','0')",
    )
    .await;
    let (columns, got) = query(&executor, "SELECT v FROM kv WHERE k='b'").await;
    assert_eq!(columns, ["v"]);
    assert_eq!(got, rows(&[&[Some("2")]]));
    assert!(
        store.scan_limits.lock().expect("lock").is_empty(),
        "point read does not scan"
    );

    let sql = "SELECT * FROM kv WHERE k >= 'a' AND k < 'c' ORDER BY k LIMIT 10";
    let (_, got) = query(&executor, sql).await;
    assert_eq!(
        got,
        rows(&[&[Some("a"), Some("1")], &[Some("b"), Some("2")]])
    );
    assert_eq!(
        store.scan_limits.lock().expect("lock").last(),
        Some(&10),
        "limit pushed down"
    );

    let (columns, got) = query(&executor, "SELECT count(*) FROM kv").await;
    assert_eq!(columns, ["count"]);
    assert_eq!(got, rows(&[&[Some("5")]]));
    let (_, got) = query(
        &executor,
        "SELECT count(v) AS n, 'x' FROM kv WHERE k <> 'a'",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("3"), Some("x")]]));

    let (_, got) = query(
        &executor,
        "SELECT k FROM kv ORDER BY v DESC LIMIT 2 OFFSET 1",
    )
    .await;
    assert_eq!(
        got,
        rows(&[&[Some("c")], &[Some("b")]]),
        "NULLs first when descending"
    );
    let (_, got) = query(
        &executor,
        "SELECT k FROM kv ORDER BY v ASC NULLS FIRST LIMIT 1",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("d")]]));
    let (_, got) = query(&executor, "SELECT v AS value, k FROM kv WHERE NOT (k = 'a' OR k = 'b') AND v IS NOT NULL ORDER BY 2 DESC").await;
    assert_eq!(
        got,
        rows(&[&[Some("0"), Some("e")], &[Some("3"), Some("c")]])
    );
    let (_, got) = query(
        &executor,
        "SELECT k AS kk FROM kv t WHERE t.v > '0' ORDER BY kk DESC LIMIT 1 OFFSET 0",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("c")]]));
}

#[tokio::test]
async fn select_without_a_table_and_session_statements() {
    let (executor, _) = executor();
    let (columns, got) = query(&executor, "SELECT 1").await;
    assert_eq!(columns, ["?column?"]);
    assert_eq!(got, rows(&[&[Some("1")]]));
    let (columns, got) = query(&executor, "SELECT version()").await;
    assert_eq!(columns, ["version"]);
    assert!(got[0][0]
        .as_deref()
        .is_some_and(|v| v.starts_with("PostgreSQL ")));
    assert_eq!(ok_tag(&executor, "BEGIN").await, "BEGIN");
    assert_eq!(ok_tag(&executor, "START TRANSACTION").await, "BEGIN");
    assert_eq!(ok_tag(&executor, "COMMIT").await, "COMMIT");
    assert_eq!(ok_tag(&executor, "ROLLBACK").await, "ROLLBACK");
    assert_eq!(
        ok_tag(&executor, "SET application_name = 'psql'").await,
        "SET"
    );
    assert_eq!(ok_tag(&executor, "SET extra_float_digits = 3").await, "SET");
    let (columns, got) = query(&executor, "SHOW transaction_isolation").await;
    assert_eq!(columns, ["transaction_isolation"]);
    assert_eq!(got, rows(&[&[Some("repeatable read")]]));
    assert_eq!(
        error_state(&executor, "SHOW no_such_setting").await,
        "42704"
    );
}

#[tokio::test]
async fn errors_carry_the_right_sqlstate() {
    let (executor, _) = executor();
    assert_eq!(error_state(&executor, "SELECT * FROM nope").await, "42P01");
    assert_eq!(
        error_state(&executor, "INSERT INTO nope VALUES ('a')").await,
        "42P01"
    );
    assert_eq!(error_state(&executor, "SELEC * FROM kv").await, "42601");
    assert_eq!(
        error_state(&executor, "SELECT * FROM kv WHERE").await,
        "42601"
    );
    assert_eq!(error_state(&executor, "SELECT x FROM kv").await, "42703");
    assert_eq!(
        error_state(&executor, "SELECT * FROM kv WHERE k = 1").await,
        "42883"
    );
    assert_eq!(
        error_state(&executor, "SELECT k, count(*) FROM kv").await,
        "42803"
    );
    assert_eq!(
        error_state(&executor, "SELECT * FROM kv LIMIT -1").await,
        "2201W"
    );
    assert_eq!(
        error_state(&executor, "CREATE TABLE t (a int)").await,
        "0A000"
    );
    assert_eq!(
        error_state(&executor, "SELECT * FROM kv a JOIN kv b ON a.k = b.k").await,
        "0A000"
    );
    assert_eq!(
        error_state(&executor, "SELECT k FROM kv GROUP BY k").await,
        "0A000"
    );
    assert_eq!(
        error_state(&executor, "INSERT INTO kv VALUES ('a','1','2')").await,
        "42601"
    );
    assert_eq!(
        error_state(&executor, "INSERT INTO kv (k, k) VALUES ('a','1')").await,
        "42701"
    );
    assert_eq!(error_state(&executor, "SELECT nosuch()").await, "42883");
}

#[tokio::test]
async fn a_failed_statement_stops_the_rest_of_a_simple_query() {
    let (executor, store) = executor();
    let results = executor
        .execute_sql(
            &crate::transaction::Session::default(),
            "INSERT INTO kv VALUES ('a','1'); SELECT * FROM nope; INSERT INTO kv VALUES ('b','2')",
        )
        .await;
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(results[1]
        .as_ref()
        .is_err_and(|error| error.sqlstate() == "42P01"));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn storage_failures_are_retryable_errors() {
    let (executor, store) = executor();
    store
        .unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(error_state(&executor, "SELECT * FROM kv").await, "57P03");
    assert_eq!(
        error_state(&executor, "INSERT INTO kv VALUES ('a','1')").await,
        "57P03"
    );
    store
        .unavailable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        ok_tag(&executor, "INSERT INTO kv VALUES ('a','1')").await,
        "INSERT 0 1"
    );
}

#[tokio::test]
async fn scans_page_and_refuse_past_the_row_limit() {
    let (executor, store) = executor();
    for index in 0..=SCAN_ROWS_MAX {
        store.put_kv(&format!("key{index:07}"), Some("v"));
    }
    assert_eq!(
        error_state(&executor, "SELECT count(*) FROM kv").await,
        "54000"
    );
    assert_eq!(
        error_state(&executor, "DELETE FROM kv WHERE v = 'v'").await,
        "54000"
    );
    store.scan_limits.lock().expect("lock").clear();
    let (_, got) = query(&executor, "SELECT k FROM kv LIMIT 3").await;
    assert_eq!(
        got,
        rows(&[
            &[Some("key0000000")],
            &[Some("key0000001")],
            &[Some("key0000002")]
        ])
    );
    assert_eq!(*store.scan_limits.lock().expect("lock"), vec![3]);
    store.scan_limits.lock().expect("lock").clear();
    let (_, got) = query(&executor, "SELECT count(*) FROM kv WHERE k < 'key0002500'").await;
    assert_eq!(got, rows(&[&[Some("2500")]]));
    let limits = store.scan_limits.lock().expect("lock").clone();
    assert_eq!(
        limits.len(),
        3,
        "2500 rows come in pages of {SCAN_PAGE_ROWS}"
    );
    assert!(limits.iter().all(|&limit| limit == SCAN_PAGE_ROWS));
}
