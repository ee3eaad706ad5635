//! End to end: a real cluster (every plane, real processes), driven through
//! real Postgres clients, restarted on the same data.

use std::process::Command;

use arbor_tests::{rows, sqlstate_of, Cluster};
use tokio_postgres::{Client, SimpleQueryMessage};

/// The row count of the command tag (`SELECT 2` -> 2).
async fn command_complete(client: &Client, sql: &str) -> u64 {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(n),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no CommandComplete"))
}

fn cell(value: &str) -> Option<String> {
    Some(value.to_string())
}

/// psql with command tags shown (no -q).
fn psql_tag(cluster: &Cluster, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1"])
        .args([
            "-p",
            &cluster.pg_port.to_string(),
            "-U",
            "arbor",
            "-d",
            "arbor",
        ])
        .args(["-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql is installed by scripts/setup.sh");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().last().unwrap_or_default().trim().to_string()
}

#[tokio::test]
async fn cluster_serves_kv_sql_and_system_tables_and_keeps_data_across_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;

    // Writes with the exact command tags psql prints.
    assert_eq!(
        psql_tag(&cluster, "INSERT INTO kv VALUES ('a','1'),('b','2')"),
        "INSERT 0 2"
    );
    assert_eq!(
        psql_tag(
            &cluster,
            "INSERT INTO kv VALUES ('b','20'),('c','3') ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        ),
        "INSERT 0 2"
    );
    assert_eq!(
        psql_tag(&cluster, "UPDATE kv SET v='x' WHERE k='a'"),
        "UPDATE 1"
    );
    assert_eq!(
        psql_tag(&cluster, "UPDATE kv SET v='x' WHERE k='zz'"),
        "UPDATE 0"
    );
    assert_eq!(psql_tag(&cluster, "DELETE FROM kv WHERE k='c'"), "DELETE 1");
    assert_eq!(psql_tag(&cluster, "DELETE FROM kv WHERE k='c'"), "DELETE 0");

    // Reads.
    assert_eq!(
        rows(&client, "SELECT v FROM kv WHERE k='b'").await,
        vec![vec![cell("20")]]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT * FROM kv WHERE k >= 'a' AND k < 'c' ORDER BY k LIMIT 10"
        )
        .await,
        vec![vec![cell("a"), cell("x")], vec![cell("b"), cell("20")]]
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM kv").await,
        vec![vec![cell("2")]]
    );
    assert_eq!(
        command_complete(&client, "SELECT * FROM kv").await,
        2,
        "tag SELECT 2"
    );

    // Errors carry the right SQLSTATE and leave the connection usable.
    assert_eq!(
        sqlstate_of(&client, "INSERT INTO kv VALUES ('a','again')").await,
        "23505"
    );
    assert_eq!(
        rows(&client, "SELECT v FROM kv WHERE k='a'").await,
        vec![vec![cell("x")]]
    );
    assert_eq!(
        sqlstate_of(&client, "SELECT * FROM no_such_table").await,
        "42P01"
    );
    assert_eq!(sqlstate_of(&client, "SELEKT 1").await, "42601");
    assert_eq!(
        rows(&client, "SELECT count(*) FROM kv").await,
        vec![vec![cell("2")]]
    );

    // System tables show the live cluster.
    let regions = rows(&client, "SELECT * FROM system.regions").await;
    assert_eq!(regions.len(), 1, "one region: {regions:?}");
    let leases = rows(&client, "SELECT * FROM system.leases").await;
    assert_eq!(leases.len(), 1, "one lease: {leases:?}");
    let stores = rows(&client, "SELECT * FROM system.stores").await;
    assert_eq!(stores.len(), 3, "three stores: {stores:?}");
    let roles = rows(
        &client,
        "SELECT role FROM system.coordinators ORDER BY role",
    )
    .await;
    assert_eq!(
        roles,
        vec![vec![cell("holder")], vec![cell("standby")]],
        "both coordinators listed"
    );
    let peers = rows(&client, "SELECT * FROM system.root_peers").await;
    assert_eq!(peers.len(), 3, "three root peers: {peers:?}");
    let events = cluster.psql("SELECT kind FROM system.root_events");
    for kind in [
        "cluster_bootstrapped",
        "store_joined",
        "region_bootstrapped",
        "lease_granted",
    ] {
        assert!(events.contains(kind), "root_events lacks {kind}: {events}");
    }

    // DDL goes through root: one session creates, another (psql) sees it
    // at once, typed values round-trip, and DROP removes name and rows.
    assert_eq!(
        psql_tag(
            &cluster,
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT NOT NULL, \
             balance NUMERIC, opened DATE, active BOOLEAN DEFAULT true)"
        ),
        "CREATE TABLE"
    );
    assert_eq!(
        command_complete(
            &client,
            "INSERT INTO accounts (id, owner, balance, opened) VALUES \
             (2, 'bo', 10.50, '2024-01-02'), (1, 'al', -3, '2023-12-31')"
        )
        .await,
        2
    );
    assert_eq!(
        cluster.psql("SELECT id, owner, balance, opened, active FROM accounts"),
        "1|al|-3|2023-12-31|t\n2|bo|10.50|2024-01-02|t"
    );
    assert_eq!(
        sqlstate_of(&client, "CREATE TABLE accounts (id INT PRIMARY KEY)").await,
        "42P07"
    );
    assert_eq!(
        sqlstate_of(&client, "INSERT INTO accounts VALUES (1, 'again')").await,
        "23505"
    );
    assert_eq!(
        psql_tag(
            &cluster,
            "CREATE TABLE scratch (a TEXT, b INT, PRIMARY KEY (a, b))"
        ),
        "CREATE TABLE"
    );
    assert_eq!(
        command_complete(&client, "INSERT INTO scratch VALUES ('x', 1), ('x', 2)").await,
        2
    );
    assert_eq!(psql_tag(&cluster, "DROP TABLE scratch"), "DROP TABLE");
    assert_eq!(sqlstate_of(&client, "SELECT * FROM scratch").await, "42P01");
    let events = cluster.psql("SELECT kind FROM system.root_events");
    assert!(
        events.contains("catalog"),
        "root_events lacks the DDL: {events}"
    );

    // Restart everything on the same data: what was written is still there.
    drop(client);
    let killed = cluster.restart();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
    let client = cluster.ready_client().await;
    assert_eq!(
        rows(&client, "SELECT * FROM kv ORDER BY k").await,
        vec![vec![cell("a"), cell("x")], vec![cell("b"), cell("20")]]
    );
    assert_eq!(
        sqlstate_of(&client, "INSERT INTO kv VALUES ('b','dup')").await,
        "23505"
    );
    assert_eq!(
        rows(&client, "SELECT owner FROM accounts WHERE id = 2").await,
        vec![vec![cell("bo")]],
        "the catalog and user rows survive a restart"
    );

    drop(client);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
    for node in &mut cluster.nodes {
        assert!(!node.is_running(), "{} still running", node.name);
    }
}
