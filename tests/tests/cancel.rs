//! End to end: a CancelRequest stops a statement that waits on a row lock
//! another session holds. The client gets 57014 "canceling statement due to
//! user request" at once (not after the lock wait's deadline), its session
//! stays usable — inside a transaction block the block fails, as in
//! Postgres — the holder commits undisturbed, and no lock is left behind.
//! A COMMIT, though, is never cancelled: one waiting on a row lock when the
//! cancel arrives still commits.

use std::time::{Duration, Instant};

use arbor_tests::{rows, Cluster};
use tokio_postgres::{Client, NoTls};

/// How soon after the CancelRequest the statement must have ended: far
/// below the stores' 8 s lock wait, so only the cancel can explain it.
const CANCEL_ANSWERED_WITHIN: Duration = Duration::from_secs(2);
/// Long enough for the statement to be waiting on the lock.
const WAITING_AFTER: Duration = Duration::from_millis(700);

async fn value(client: &Client, k: &str) -> Option<String> {
    let found = rows(client, &format!("SELECT v FROM kv WHERE k = '{k}'")).await;
    found.first().and_then(|row| row[0].clone())
}

/// Which protocol a statement is sent with: the gateway cancels each on its
/// own path (its simple-query handler; pgwire's Execute).
#[derive(Clone, Copy)]
enum Protocol {
    Simple,
    Extended,
}

type Statement = tokio::task::JoinHandle<(Client, Result<(), tokio_postgres::Error>, Instant)>;

/// Runs `sql` on `client` in its own task, which hands the client back with
/// the outcome and when it ended.
fn spawn_statement(client: Client, protocol: Protocol, sql: &'static str) -> Statement {
    tokio::spawn(async move {
        let outcome = match protocol {
            Protocol::Simple => client.simple_query(sql).await.map(drop),
            Protocol::Extended => client.execute(sql, &[]).await.map(drop),
        };
        (client, outcome, Instant::now())
    })
}

/// Cancels the statement `waiting` runs once it has waited a while; its
/// client and error, checked to be a prompt 57014.
async fn cancel_waiting(waiting: Statement, token: tokio_postgres::CancelToken) -> Client {
    tokio::time::sleep(WAITING_AFTER).await;
    assert!(!waiting.is_finished(), "the statement waits on the lock");
    let cancelled_at = Instant::now();
    token
        .cancel_query(NoTls)
        .await
        .expect("cancel request sent");
    let (client, outcome, ended_at) = waiting.await.expect("statement task");
    let error = outcome.expect_err("the statement was cancelled");
    let database_error = error.as_db_error().expect("a Postgres error");
    assert_eq!(database_error.code().code(), "57014", "{database_error}");
    assert_eq!(
        database_error.message(),
        "canceling statement due to user request"
    );
    let took = ended_at.saturating_duration_since(cancelled_at);
    assert!(
        took < CANCEL_ANSWERED_WITHIN,
        "the cancel took {took:?}, as long as waiting out the lock"
    );
    client
}

async fn cancel(cluster: &mut Cluster) {
    let admin = cluster.ready_client().await;
    admin
        .batch_execute("INSERT INTO kv VALUES ('a', '0')")
        .await
        .expect("row");

    // 1. An implicit transaction waiting for a row lock (extended protocol).
    let holder = cluster.try_connect().await.expect("holder connects");
    holder.batch_execute("BEGIN").await.expect("begin");
    holder
        .query("SELECT v FROM kv WHERE k = 'a' FOR UPDATE", &[])
        .await
        .expect("lock");
    let writer = cluster.try_connect().await.expect("writer connects");
    let token = writer.cancel_token();
    let waiting = spawn_statement(
        writer,
        Protocol::Extended,
        "UPDATE kv SET v = 'writer' WHERE k = 'a'",
    );
    let writer = cancel_waiting(waiting, token).await;
    assert_eq!(
        value(&writer, "a").await.as_deref(),
        Some("0"),
        "the cancelled session is usable and wrote nothing"
    );
    holder
        .batch_execute("UPDATE kv SET v = 'holder' WHERE k = 'a'; COMMIT")
        .await
        .expect("the holder commits undisturbed");
    assert_eq!(value(&admin, "a").await.as_deref(), Some("holder"));

    // 2. Inside a transaction block, over either protocol: the block fails,
    //    ROLLBACK ends it, and nothing stays locked.
    let mut writer = writer;
    for (protocol, after) in [
        (Protocol::Simple, "simple"),
        (Protocol::Extended, "extended"),
    ] {
        holder.batch_execute("BEGIN").await.expect("begin");
        holder
            .query("SELECT v FROM kv WHERE k = 'a' FOR UPDATE", &[])
            .await
            .expect("lock again");
        writer.batch_execute("BEGIN").await.expect("writer begins");
        let token = writer.cancel_token();
        let waiting = spawn_statement(
            writer,
            protocol,
            "SELECT v FROM kv WHERE k = 'a' FOR UPDATE",
        );
        writer = cancel_waiting(waiting, token).await;
        let error = writer
            .simple_query("SELECT 1")
            .await
            .expect_err("the block failed");
        assert_eq!(
            error.code().map(|code| code.code()),
            Some("25P02"),
            "{after}"
        );
        writer.batch_execute("ROLLBACK").await.expect("rollback");
        holder.batch_execute("ROLLBACK").await.expect("holder ends");
        let started = Instant::now();
        let update = format!("UPDATE kv SET v = '{after}' WHERE k = 'a'");
        writer
            .execute(update.as_str(), &[])
            .await
            .expect("the writer goes on once both blocks ended");
        assert!(
            started.elapsed() < CANCEL_ANSWERED_WITHIN,
            "nothing stayed locked ({:?})",
            started.elapsed()
        );
        assert_eq!(value(&admin, "a").await.as_deref(), Some(after));
    }

    // 3. A COMMIT is not cancelled (as in Postgres): this one waits on the
    //    holder's row lock while the cancel arrives, and still commits once
    //    the holder lets go.
    for protocol in [Protocol::Simple, Protocol::Extended] {
        writer.batch_execute("BEGIN").await.expect("writer begins");
        writer
            .execute("UPDATE kv SET v = 'committed' WHERE k = 'a'", &[])
            .await
            .expect("buffered update");
        holder.batch_execute("BEGIN").await.expect("begin");
        holder
            .query("SELECT v FROM kv WHERE k = 'a' FOR UPDATE", &[])
            .await
            .expect("lock");
        let token = writer.cancel_token();
        let committing = spawn_statement(writer, protocol, "COMMIT");
        tokio::time::sleep(WAITING_AFTER).await;
        assert!(!committing.is_finished(), "the COMMIT waits on the lock");
        token
            .cancel_query(NoTls)
            .await
            .expect("cancel request sent");
        tokio::time::sleep(WAITING_AFTER).await;
        holder.batch_execute("ROLLBACK").await.expect("holder ends");
        let (client, outcome, _) = committing.await.expect("commit task");
        outcome.expect("the COMMIT ignored the cancel and committed");
        writer = client;
        assert_eq!(value(&admin, "a").await.as_deref(), Some("committed"));
        writer
            .execute("UPDATE kv SET v = 'next' WHERE k = 'a'", &[])
            .await
            .expect("the session goes on");
    }

    let locks = cluster.locks_left().await;
    assert!(locks.is_empty(), "locks left behind: {locks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_statement_waiting_on_a_row_lock_and_the_session_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(dir.path());
    let finished = tokio::time::timeout(Duration::from_secs(90), cancel(&mut cluster)).await;
    let stopped = cluster.stop();
    assert!(
        finished.is_ok(),
        "cancel test exceeded 90 s\n{}",
        cluster.logs_tail()
    );
    assert!(
        stopped.is_empty(),
        "nodes that did not stop cleanly: {stopped:?}"
    );
}
