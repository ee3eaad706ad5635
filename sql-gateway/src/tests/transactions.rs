//! Transaction blocks, snapshot isolation and the session states, over the
//! in-memory versioned store.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use pgwire::messages::response::TransactionStatus;

use super::memory::{executor, query_in, rows, run_in, tag};
use crate::executor::Executor;
use crate::transaction::{Session, AUTOCOMMIT_ATTEMPTS_MAX};

async fn ok_in(executor: &Executor, session: &Session, sql: &str) -> String {
    match run_in(executor, session, sql).await {
        Ok(result) => tag(&result),
        Err(error) => panic!("{sql}: {error} ({})", error.sqlstate()),
    }
}

async fn error_in(executor: &Executor, session: &Session, sql: &str) -> &'static str {
    match run_in(executor, session, sql).await {
        Ok(result) => panic!("{sql}: expected an error, got {}", tag(&result)),
        Err(error) => error.sqlstate(),
    }
}

async fn kv(executor: &Executor, session: &Session) -> Vec<Vec<Option<String>>> {
    query_in(executor, session, "SELECT k, v FROM kv ORDER BY k")
        .await
        .1
}

fn row(k: &str, v: &str) -> Vec<Option<String>> {
    vec![Some(k.to_owned()), Some(v.to_owned())]
}

#[tokio::test]
async fn a_block_sees_its_own_writes_and_others_see_them_only_after_commit() {
    let (executor, store) = executor();
    let (mine, other) = (Session::default(), Session::default());
    assert_eq!(ok_in(&executor, &mine, "BEGIN").await, "BEGIN");
    assert_eq!(mine.status().await, TransactionStatus::Transaction);
    ok_in(
        &executor,
        &mine,
        "INSERT INTO kv VALUES ('a','1'),('b','2')",
    )
    .await;
    ok_in(&executor, &mine, "UPDATE kv SET v = '20' WHERE k = 'b'").await;
    assert_eq!(
        kv(&executor, &mine).await,
        vec![row("a", "1"), row("b", "20")]
    );
    assert!(
        kv(&executor, &other).await.is_empty(),
        "uncommitted writes are invisible"
    );
    assert_eq!(store.len(), 0, "nothing reaches storage before COMMIT");
    assert_eq!(ok_in(&executor, &mine, "COMMIT").await, "COMMIT");
    assert_eq!(mine.status().await, TransactionStatus::Idle);
    assert_eq!(
        kv(&executor, &other).await,
        vec![row("a", "1"), row("b", "20")]
    );
    assert_eq!(
        store.commits.lock().expect("lock").len(),
        1,
        "one commit for the block"
    );
}

#[tokio::test]
async fn rollback_discards_every_write_of_the_block() {
    let (executor, store) = executor();
    store.put_kv("keep", Some("x"));
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    ok_in(&executor, &session, "INSERT INTO kv VALUES ('a','1')").await;
    ok_in(&executor, &session, "DELETE FROM kv WHERE k = 'keep'").await;
    assert_eq!(ok_in(&executor, &session, "ROLLBACK").await, "ROLLBACK");
    assert_eq!(kv(&executor, &session).await, vec![row("keep", "x")]);
    assert!(store.commits.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn an_error_fails_the_block_until_it_ends_and_commit_then_rolls_back() {
    let (executor, store) = executor();
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    ok_in(&executor, &session, "INSERT INTO kv VALUES ('a','1')").await;
    assert_eq!(
        error_in(&executor, &session, "SELECT * FROM nope").await,
        "42P01"
    );
    assert_eq!(session.status().await, TransactionStatus::Error);
    for sql in [
        "SELECT 1",
        "INSERT INTO kv VALUES ('b','2')",
        "BEGIN",
        "SAVEPOINT s",
    ] {
        assert_eq!(error_in(&executor, &session, sql).await, "25P02", "{sql}");
    }
    assert_eq!(ok_in(&executor, &session, "COMMIT").await, "ROLLBACK");
    assert_eq!(session.status().await, TransactionStatus::Idle);
    assert_eq!(store.len(), 0);
    assert_eq!(ok_in(&executor, &session, "SELECT 1").await, "SELECT 1");
}

#[tokio::test]
async fn rollback_to_savepoint_recovers_from_an_error_as_drivers_do() {
    let (executor, _) = executor();
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    ok_in(&executor, &session, "INSERT INTO kv VALUES ('a','1')").await;
    ok_in(&executor, &session, "SAVEPOINT before_b").await;
    ok_in(&executor, &session, "INSERT INTO kv VALUES ('b','2')").await;
    assert_eq!(
        error_in(&executor, &session, "INSERT INTO kv VALUES ('a','again')").await,
        "23505"
    );
    assert_eq!(
        ok_in(&executor, &session, "ROLLBACK TO SAVEPOINT before_b").await,
        "ROLLBACK"
    );
    assert_eq!(session.status().await, TransactionStatus::Transaction);
    ok_in(&executor, &session, "INSERT INTO kv VALUES ('c','3')").await;
    ok_in(&executor, &session, "RELEASE SAVEPOINT before_b").await;
    ok_in(&executor, &session, "COMMIT").await;
    assert_eq!(
        kv(&executor, &Session::default()).await,
        vec![row("a", "1"), row("c", "3")],
        "b was written after the savepoint and rolled back"
    );
}

#[tokio::test]
async fn a_block_reads_one_snapshot() {
    let (executor, store) = executor();
    store.put_kv("a", Some("1"));
    let (reader, writer) = (Session::default(), Session::default());
    ok_in(&executor, &reader, "BEGIN").await;
    assert_eq!(kv(&executor, &reader).await, vec![row("a", "1")]);
    ok_in(&executor, &writer, "INSERT INTO kv VALUES ('b','2')").await;
    ok_in(&executor, &writer, "UPDATE kv SET v = '10' WHERE k = 'a'").await;
    assert_eq!(
        kv(&executor, &reader).await,
        vec![row("a", "1")],
        "no non-repeatable read, no phantom"
    );
    ok_in(&executor, &reader, "COMMIT").await;
    assert_eq!(
        kv(&executor, &reader).await,
        vec![row("a", "10"), row("b", "2")]
    );
}

#[tokio::test]
async fn the_second_writer_of_a_key_fails_at_commit_and_no_update_is_lost() {
    let (executor, store) = executor();
    store.put_kv("n", Some("0"));
    let (first, second) = (Session::default(), Session::default());
    ok_in(&executor, &first, "BEGIN").await;
    ok_in(
        &executor,
        &first,
        "UPDATE kv SET v = '1' WHERE k = 'n' AND v = '0'",
    )
    .await;
    ok_in(&executor, &second, "BEGIN").await;
    ok_in(
        &executor,
        &second,
        "UPDATE kv SET v = '1' WHERE k = 'n' AND v = '0'",
    )
    .await;
    ok_in(&executor, &first, "COMMIT").await;
    assert_eq!(error_in(&executor, &second, "COMMIT").await, "40001");
    assert_eq!(
        second.status().await,
        TransactionStatus::Idle,
        "a failed COMMIT ends the block"
    );
    assert_eq!(kv(&executor, &second).await, vec![row("n", "1")]);
}

/// The kv table's storage key of `k`.
fn kv_key(k: &str) -> Vec<u8> {
    let row = [
        arbor_catalog::Datum::Text(k.to_owned()),
        arbor_catalog::Datum::Null,
    ];
    arbor_catalog::encode_row(&arbor_catalog::TableDescriptor::kv(), &row)
        .expect("test row encodes")
        .0
}

#[tokio::test]
async fn select_for_update_locks_rows_until_the_block_commits() {
    let (executor, store) = executor();
    store.put_kv("n", Some("0"));
    store.put_kv("m", Some("0"));
    let (locker, writer) = (Session::default(), Session::default());
    ok_in(&executor, &locker, "BEGIN").await;
    let (_, locked) = query_in(
        &executor,
        &locker,
        "SELECT v FROM kv WHERE k = 'n' OR k = 'm' FOR UPDATE",
    )
    .await;
    assert_eq!(locked, rows(&[&[Some("0")], &[Some("0")]]));
    assert_eq!(
        store.row_locks.lock().expect("locks").len(),
        2,
        "locked in storage at read time"
    );
    assert_eq!(
        error_in(&executor, &writer, "UPDATE kv SET v = '5' WHERE k = 'n'").await,
        "40001",
        "another writer cannot get past the lock"
    );
    assert_eq!(
        kv(&executor, &writer).await,
        vec![row("m", "0"), row("n", "0")],
        "readers are not held off"
    );
    ok_in(&executor, &locker, "UPDATE kv SET v = '1' WHERE k = 'n'").await;
    ok_in(&executor, &locker, "COMMIT").await;
    let committed = store.commits.lock().expect("commits").last().cloned();
    let keys: Vec<Vec<u8>> = committed
        .expect("a commit")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        keys,
        vec![kv_key("m"), kv_key("n")],
        "every locked row is in the commit, the locks' primary (the first row locked) first"
    );
    assert!(store.row_locks.lock().expect("locks").is_empty());
    ok_in(&executor, &writer, "UPDATE kv SET v = '5' WHERE k = 'n'").await;
    assert_eq!(
        kv(&executor, &writer).await,
        vec![row("m", "0"), row("n", "5")]
    );
    assert_eq!(
        error_in(
            &executor,
            &locker,
            "SELECT v FROM kv FOR UPDATE SKIP LOCKED"
        )
        .await,
        "0A000"
    );
}

#[tokio::test]
async fn select_for_update_of_a_row_changed_since_the_snapshot_fails_the_block() {
    let (executor, store) = executor();
    store.put_kv("n", Some("0"));
    let (locker, writer) = (Session::default(), Session::default());
    ok_in(&executor, &locker, "BEGIN").await;
    assert_eq!(kv(&executor, &locker).await, vec![row("n", "0")]);
    ok_in(&executor, &writer, "UPDATE kv SET v = '5' WHERE k = 'n'").await;
    assert_eq!(
        error_in(
            &executor,
            &locker,
            "SELECT v FROM kv WHERE k = 'n' FOR UPDATE"
        )
        .await,
        "40001",
        "Postgres: could not serialize access due to concurrent update"
    );
    assert_eq!(locker.status().await, TransactionStatus::Error);
    assert_eq!(ok_in(&executor, &locker, "ROLLBACK").await, "ROLLBACK");
    assert!(store.row_locks.lock().expect("locks").is_empty());
}

#[tokio::test]
async fn rollback_gives_row_locks_back_and_so_does_a_vanished_session() {
    let (executor, store) = executor();
    store.put_kv("n", Some("0"));
    let writer = Session::default();
    let locker = Session::default();
    ok_in(&executor, &locker, "BEGIN").await;
    query_in(
        &executor,
        &locker,
        "SELECT v FROM kv WHERE k = 'n' FOR UPDATE",
    )
    .await;
    assert_eq!(ok_in(&executor, &locker, "ROLLBACK").await, "ROLLBACK");
    let rollbacks = store.rollbacks.lock().expect("rollbacks").clone();
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0].1, kv_key("n"), "the primary");
    ok_in(&executor, &writer, "UPDATE kv SET v = '1' WHERE k = 'n'").await;

    let vanished = Session::default();
    ok_in(&executor, &vanished, "BEGIN").await;
    query_in(
        &executor,
        &vanished,
        "SELECT v FROM kv WHERE k = 'n' FOR UPDATE",
    )
    .await;
    assert_eq!(store.row_locks.lock().expect("locks").len(), 1);
    drop(vanished);
    for _ in 0..100 {
        if store.row_locks.lock().expect("locks").is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        store.row_locks.lock().expect("locks").is_empty(),
        "the connection's end rolled its locks back"
    );
    ok_in(&executor, &writer, "UPDATE kv SET v = '2' WHERE k = 'n'").await;
}

#[tokio::test]
async fn a_failed_commit_gives_its_row_locks_back() {
    let (executor, store) = executor();
    store.put_kv("n", Some("0"));
    let locker = Session::default();
    ok_in(&executor, &locker, "BEGIN").await;
    query_in(
        &executor,
        &locker,
        "SELECT v FROM kv WHERE k = 'n' FOR UPDATE",
    )
    .await;
    ok_in(&executor, &locker, "UPDATE kv SET v = '1' WHERE k = 'n'").await;
    store.conflicting_commits.store(1, Ordering::SeqCst);
    assert_eq!(error_in(&executor, &locker, "COMMIT").await, "40001");
    assert!(store.row_locks.lock().expect("locks").is_empty());
    assert_eq!(store.rollbacks.lock().expect("rollbacks").len(), 1);
}

#[tokio::test]
async fn scans_merge_the_blocks_writes_in_key_order() {
    let (executor, store) = executor();
    for k in ["a", "b", "c", "d", "e"] {
        store.put_kv(k, Some("old"));
    }
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    ok_in(&executor, &session, "DELETE FROM kv WHERE k <= 'c'").await;
    ok_in(
        &executor,
        &session,
        "INSERT INTO kv VALUES ('bb','new'),('z','new')",
    )
    .await;
    assert_eq!(
        kv(&executor, &session).await,
        vec![
            row("bb", "new"),
            row("d", "old"),
            row("e", "old"),
            row("z", "new")
        ]
    );
    let (_, limited) = query_in(
        &executor,
        &session,
        "SELECT k FROM kv WHERE k >= 'a' ORDER BY k LIMIT 2",
    )
    .await;
    assert_eq!(limited, rows(&[&[Some("bb")], &[Some("d")]]));
    let (_, counted) = query_in(&executor, &session, "SELECT count(*) FROM kv").await;
    assert_eq!(counted, rows(&[&[Some("4")]]));
    ok_in(&executor, &session, "ROLLBACK").await;
}

#[tokio::test]
async fn an_implicit_transaction_is_retried_after_a_conflict() {
    let (executor, store) = executor();
    store.put_kv("n", Some("0"));
    let session = Session::default();
    store
        .conflicting_commits
        .store(AUTOCOMMIT_ATTEMPTS_MAX - 1, Ordering::SeqCst);
    assert_eq!(
        ok_in(&executor, &session, "UPDATE kv SET v = '1' WHERE k >= 'a'").await,
        "UPDATE 1"
    );
    store
        .conflicting_commits
        .store(AUTOCOMMIT_ATTEMPTS_MAX, Ordering::SeqCst);
    assert_eq!(
        error_in(&executor, &session, "UPDATE kv SET v = '2' WHERE k >= 'a'").await,
        "40001"
    );
    assert_eq!(kv(&executor, &session).await, vec![row("n", "1")]);
}

#[tokio::test]
async fn savepoint_statements_outside_a_block_are_refused() {
    let (executor, _) = executor();
    let session = Session::default();
    assert_eq!(error_in(&executor, &session, "SAVEPOINT s").await, "25P01");
    assert_eq!(
        error_in(&executor, &session, "ROLLBACK TO SAVEPOINT s").await,
        "25P01"
    );
    assert_eq!(session.status().await, TransactionStatus::Idle);
    assert_eq!(ok_in(&executor, &session, "COMMIT").await, "COMMIT");
}

#[tokio::test]
async fn a_transaction_past_its_byte_limit_fails_with_54000_and_writes_nothing() {
    let (executor, store) = executor();
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    let value = "x".repeat(crate::statement::VALUE_BYTES_MAX);
    let per_row = value.len();
    let rows_max = crate::transaction::TXN_BYTES_MAX / per_row;
    let mut failed = None;
    for index in 0..=rows_max + 1 {
        let sql = format!("INSERT INTO kv VALUES ('k{index}', '{value}')");
        if let Err(error) = run_in(&executor, &session, &sql).await {
            failed = Some(error.sqlstate());
            break;
        }
    }
    assert_eq!(failed, Some("54000"));
    assert_eq!(ok_in(&executor, &session, "COMMIT").await, "ROLLBACK");
    assert_eq!(store.len(), 0);
}

#[tokio::test]
async fn now_is_the_transactions_start_inside_a_block_and_per_statement_outside() {
    let ticks = Arc::new(AtomicI64::new(1_700_000_000_000_000));
    let (executor, _) = executor();
    let executor = executor.with_clock(Arc::new(move || {
        ticks.fetch_add(1_000_000, Ordering::SeqCst)
    }));
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    let (_, first) = query_in(&executor, &session, "SELECT now()").await;
    let (_, second) = query_in(&executor, &session, "SELECT now()").await;
    assert_eq!(first, second, "one transaction, one now()");
    ok_in(&executor, &session, "COMMIT").await;
    let (_, third) = query_in(&executor, &session, "SELECT now()").await;
    let (_, fourth) = query_in(&executor, &session, "SELECT now()").await;
    assert_ne!(first, third);
    assert_ne!(
        third, fourth,
        "outside a block each statement is its own transaction"
    );
}
