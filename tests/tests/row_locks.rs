//! End to end: `SELECT ... FOR UPDATE` takes row locks in the stores at
//! read time. A writer of a locked row waits — longer than one lock TTL,
//! because the holder's gateway heartbeats — until the holder commits; a
//! session that vanishes gives its locks back at once; a gateway killed
//! while its session holds locks stops heartbeating, so the locks expire
//! and writers through another gateway go on. Nothing stays locked.

use std::time::{Duration, Instant};

use arbor_tests::{rows, Cluster};

/// The lock TTL of the stores (`arbor_raftstore::config::LOCK_TTL_MS`).
const LOCK_TTL_MS: u64 = arbor_raftstore::config::LOCK_TTL_MS;

async fn value(client: &tokio_postgres::Client, k: &str) -> Option<String> {
    let found = rows(client, &format!("SELECT v FROM kv WHERE k = '{k}'")).await;
    found.first().and_then(|row| row[0].clone())
}

/// An UPDATE of `k` in its own task; its outcome and when it finished.
fn spawn_update(
    client: tokio_postgres::Client,
    k: &'static str,
    v: &'static str,
) -> tokio::task::JoinHandle<(Result<u64, tokio_postgres::Error>, Instant)> {
    tokio::spawn(async move {
        let sql = format!("UPDATE kv SET v = '{v}' WHERE k = '{k}'");
        let outcome = client.execute(sql.as_str(), &[]).await;
        (outcome, Instant::now())
    })
}

async fn row_locks(cluster: &mut Cluster) {
    let admin = cluster.ready_client().await;
    admin
        .batch_execute("INSERT INTO kv VALUES ('a', '0'), ('b', '0'), ('c', '0')")
        .await
        .expect("rows");

    // 1. A writer waits for the holder, past one TTL, then goes on.
    let holder = cluster.try_connect().await.expect("holder connects");
    holder.batch_execute("BEGIN").await.expect("begin");
    let locked = holder
        .query("SELECT v FROM kv WHERE k = 'a' FOR UPDATE", &[])
        .await
        .expect("lock");
    assert_eq!(locked.len(), 1);
    let writer = spawn_update(cluster.try_connect().await.expect("writer"), "a", "writer");
    tokio::time::sleep(Duration::from_millis(LOCK_TTL_MS + 1_000)).await;
    assert!(
        !writer.is_finished(),
        "the writer waits while the holder's transaction lives"
    );
    assert_eq!(
        value(&admin, "a").await.as_deref(),
        Some("0"),
        "readers are not held off"
    );
    holder
        .batch_execute("UPDATE kv SET v = 'holder' WHERE k = 'a'; COMMIT")
        .await
        .expect("the holder commits");
    let committed_at = Instant::now();
    let (outcome, finished_at) = writer.await.expect("writer task");
    assert_eq!(outcome.expect("the writer goes on"), 1);
    assert!(finished_at >= committed_at);
    assert_eq!(value(&admin, "a").await.as_deref(), Some("writer"));

    // 2. A session that vanishes with locks gives them back at once.
    let vanishing = cluster.try_connect().await.expect("connects");
    vanishing.batch_execute("BEGIN").await.expect("begin");
    vanishing
        .query("SELECT v FROM kv WHERE k = 'b' FOR UPDATE", &[])
        .await
        .expect("lock");
    drop(vanishing);
    let started = Instant::now();
    admin
        .execute("UPDATE kv SET v = 'after' WHERE k = 'b'", &[])
        .await
        .expect("the writer goes on");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(LOCK_TTL_MS),
        "released when the session ended, not by the TTL ({waited:?})"
    );

    // 3. A gateway killed while its session holds a lock: the lock expires
    //    about one TTL after the last heartbeat.
    let doomed = cluster.try_connect().await.expect("connects");
    doomed.batch_execute("BEGIN").await.expect("begin");
    doomed
        .query("SELECT v FROM kv WHERE k = 'c' FOR UPDATE", &[])
        .await
        .expect("lock");
    drop(admin);
    cluster.node("gateway").kill();
    let log_dir = cluster.data_dir.join("logs");
    cluster.node("gateway").start_again(&log_dir);
    let admin = cluster.ready_client().await;
    admin
        .execute("UPDATE kv SET v = 'survivor' WHERE k = 'c'", &[])
        .await
        .expect("the writer goes on once the lock expired");
    assert_eq!(value(&admin, "c").await.as_deref(), Some("survivor"));
    drop(doomed);

    let locks = cluster.locks_left().await;
    assert!(locks.is_empty(), "locks left behind: {locks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_locks_hold_writers_until_commit_and_die_with_their_session_or_gateway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(dir.path());
    let finished = tokio::time::timeout(Duration::from_secs(120), row_locks(&mut cluster)).await;
    let stopped = cluster.stop();
    assert!(
        finished.is_ok(),
        "row lock test exceeded 120 s\n{}",
        cluster.logs_tail()
    );
    assert!(
        stopped.is_empty(),
        "nodes that did not stop cleanly: {stopped:?}"
    );
}
