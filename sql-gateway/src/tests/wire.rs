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
