//! Regions split as they grow: the coordinator plans the split in root, the
//! region's leader executes it as a raft command, root commits it, and SQL
//! keeps seeing every row throughout.

use std::time::{Duration, Instant};

use arbor_tests::{Cluster, ClusterOptions};
use tokio_postgres::SimpleQueryMessage;

async fn single_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

#[tokio::test]
async fn a_growing_region_splits_and_no_row_is_lost() {
    let data = tempfile::tempdir().expect("temp dir");
    let options = ClusterOptions {
        region_split_keys: Some(40),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(data.path(), options);
    let client = cluster.ready_client().await;

    let mut inserted = 0;
    for batch in 0..10 {
        let values: Vec<String> = (0..20)
            .map(|i| format!("('key-{:04}', 'value-{batch}-{i}')", batch * 20 + i))
            .collect();
        client
            .simple_query(&format!("INSERT INTO kv VALUES {}", values.join(",")))
            .await
            .unwrap_or_else(|e| panic!("insert batch {batch}: {e}\n{}", cluster.logs_tail()));
        inserted += 20;
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let regions: usize = single_value(&client, "SELECT count(*) FROM system.regions")
            .await
            .parse()
            .expect("a count");
        if regions >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no split after 60 s\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = client
        .simple_query("SELECT kind FROM system.root_events WHERE kind = 'split_committed'")
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(_))),
        "the split must be committed in root"
    );

    // Every row, across both halves, in order; point reads on either side.
    assert_eq!(
        single_value(&client, "SELECT count(*) FROM kv").await,
        inserted.to_string()
    );
    assert_eq!(
        single_value(&client, "SELECT v FROM kv WHERE k = 'key-0000'").await,
        "value-0-0"
    );
    assert_eq!(
        single_value(&client, "SELECT v FROM kv WHERE k = 'key-0199'").await,
        "value-9-19"
    );
    client
        .simple_query("INSERT INTO kv VALUES ('key-9999', 'after the split')")
        .await
        .expect("writes keep working after the split");
    assert_eq!(
        single_value(&client, "SELECT count(*) FROM kv").await,
        (inserted + 1).to_string()
    );

    drop(client);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}
