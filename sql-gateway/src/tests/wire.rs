//! The real pgwire server over the in-memory store, driven by tokio-postgres.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::memory::{FixedViews, MemoryStore};
use crate::executor::Executor;

fn command_counts(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::CommandComplete(rows) => Some(*rows),
            _ => None,
        })
        .collect()
}

fn text_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn postgres_clients_run_statements_and_survive_errors() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    let store = Arc::new(MemoryStore::default());
    let views = Arc::new(FixedViews(Some(crate::system_tables::tests::sample_view())));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(
        listener,
        Executor::new(
            store.clone(),
            views,
            Arc::new(crate::catalog_source::MemoryCatalog::default()),
        ),
        async move {
            let _ = stopped.await;
        },
    ));

    let config = format!(
        "host=127.0.0.1 port={} user=test dbname=arbor",
        address.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connects");
    let connection = tokio::spawn(connection);

    let inserted = client
        .simple_query("INSERT INTO kv VALUES ('a','1'),('b','2')")
        .await
        .expect("insert");
    assert_eq!(command_counts(&inserted), vec![2]);

    let duplicate = client
        .simple_query("INSERT INTO kv VALUES ('a','x')")
        .await
        .expect_err("duplicate key");
    let database_error = duplicate.as_db_error().expect("a Postgres error");
    assert_eq!(database_error.code().code(), "23505");
    assert_eq!(database_error.detail(), Some("Key (k)=(a) already exists."));

    let selected = client
        .simple_query("SELECT * FROM kv ORDER BY k")
        .await
        .expect("connection still usable after an error");
    assert_eq!(
        text_rows(&selected),
        vec![
            vec![Some("a".to_owned()), Some("1".to_owned())],
            vec![Some("b".to_owned()), Some("2".to_owned())],
        ]
    );
    let updated = client
        .simple_query("BEGIN; UPDATE kv SET v = 'x' WHERE k = 'a'; COMMIT")
        .await
        .expect("transaction wrapper");
    assert_eq!(command_counts(&updated), vec![0, 1, 0]);
    let syntax = client
        .simple_query("SELEC 1")
        .await
        .expect_err("bad syntax");
    assert_eq!(syntax.code().map(|code| code.code()), Some("42601"));

    // Extended protocol: Parse/Bind/Describe/Execute with parameters.
    let row = client
        .query_one("SELECT v FROM kv WHERE k = $1", &[&"a"])
        .await
        .expect("prepared select");
    assert_eq!(row.get::<_, String>("v"), "x");
    let inserted = client
        .execute("INSERT INTO kv VALUES ($1, $2)", &[&"c", &"3"])
        .await
        .expect("prepared insert");
    assert_eq!(inserted, 1);
    let count = client
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .expect("prepared count");
    assert_eq!(count.get::<_, i64>(0), 3);
    let missing = client
        .query("SELECT * FROM nope", &[])
        .await
        .expect_err("no table");
    assert_eq!(missing.code().map(|code| code.code()), Some("42P01"));
    let regions = client
        .query(
            "SELECT region_id, peers FROM system.regions ORDER BY region_id",
            &[],
        )
        .await
        .expect("system table over the extended protocol");
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0].get::<_, i64>(0), 1);

    drop(client);
    let _ = connection.await;
    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("server stops cleanly");
}

/// A pgwire server over a fresh in-memory store on a free port.
pub(super) struct TestServer {
    store: Arc<MemoryStore>,
    config: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), crate::GatewayError>>,
}

impl TestServer {
    pub(super) async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("bound address");
        let store = Arc::new(MemoryStore::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(
            listener,
            Executor::new(
                store.clone(),
                Arc::new(FixedViews(None)),
                Arc::new(crate::catalog_source::MemoryCatalog::default()),
            ),
            async move {
                let _ = stopped.await;
            },
        ));
        let config = format!(
            "host=127.0.0.1 port={} user=test dbname=arbor",
            address.port()
        );
        TestServer {
            store,
            config,
            stop,
            server,
        }
    }

    pub(super) async fn connect(&self) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
        let (client, connection) = tokio_postgres::connect(&self.config, NoTls)
            .await
            .expect("connects");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        (client, connection)
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        self.server
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}

async fn keys(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query("SELECT k FROM kv ORDER BY k", &[])
        .await
        .expect("select")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn drivers_commit_roll_back_and_recover_with_savepoints() {
    let server = TestServer::start().await;
    let (mut client, connection) = server.connect().await;

    let mut transaction = client.transaction().await.expect("begin");
    transaction
        .execute("INSERT INTO kv VALUES ($1, $2)", &[&"t1", &"1"])
        .await
        .expect("insert t1");
    {
        let savepoint = transaction.savepoint("sp").await.expect("savepoint");
        let error = savepoint
            .execute("INSERT INTO kv VALUES ($1, $2)", &[&"t1", &"dup"])
            .await
            .expect_err("duplicate key");
        assert_eq!(error.code().map(|c| c.code()), Some("23505"));
        savepoint.rollback().await.expect("rollback to savepoint");
    }
    transaction
        .execute("INSERT INTO kv VALUES ($1, $2)", &[&"t2", &"2"])
        .await
        .expect("the block is usable again after ROLLBACK TO");
    transaction.commit().await.expect("commit");
    assert_eq!(keys(&client).await, ["t1", "t2"]);

    {
        let transaction = client.transaction().await.expect("begin");
        transaction
            .execute("INSERT INTO kv VALUES ('t3', '3')", &[])
            .await
            .expect("insert t3");
        // Dropped without commit: tokio-postgres sends ROLLBACK.
    }
    assert_eq!(keys(&client).await, ["t1", "t2"], "t3 was rolled back");

    client.batch_execute("BEGIN").await.expect("begin");
    let error = client
        .simple_query("SELECT * FROM nope")
        .await
        .expect_err("undefined table");
    assert_eq!(error.code().map(|c| c.code()), Some("42P01"));
    let error = client
        .query("SELECT 1", &[])
        .await
        .expect_err("the block has failed");
    assert_eq!(error.code().map(|c| c.code()), Some("25P02"));
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(keys(&client).await, ["t1", "t2"]);
    assert_eq!(server.store.len(), 2);

    drop(client);
    let _ = connection.await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_disappears_mid_transaction_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let (client, connection) = server.connect().await;
    client
        .batch_execute("BEGIN; INSERT INTO kv VALUES ('ghost', '1');")
        .await
        .expect("begin and insert");
    drop(client);
    let _ = connection.await;
    let (client, connection) = server.connect().await;
    assert!(keys(&client).await.is_empty());
    assert!(server.store.commits.lock().expect("lock").is_empty());
    drop(client);
    let _ = connection.await;
    server.stop().await;
}
