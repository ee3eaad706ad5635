//! Heartbeats carry each region's traffic and each store's disk, and the
//! system tables show them live: under writes `system.regions` shows a
//! write rate, under reads a read rate, both fall back to zero once the
//! load stops (rates, not totals), and `system.stores` shows the disk of
//! every store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbor_tests::{rows, Cluster};
use tokio::time::Instant;

/// How long the view gets to show what the load does (heartbeats come
/// every 500 ms; a rate needs two).
const RATE_DEADLINE_MS: u64 = 15_000;

/// Sum over every region of one `system.regions` column.
async fn total(client: &tokio_postgres::Client, column: &str) -> f64 {
    rows(client, &format!("SELECT {column} FROM system.regions"))
        .await
        .iter()
        .map(|row| {
            row[0]
                .as_deref()
                .expect("rates are never NULL")
                .parse::<f64>()
                .expect("a rate is a number")
        })
        .sum()
}

/// Polls until `check` holds for the column's total, or fails naming it.
async fn wait_for_total(
    client: &tokio_postgres::Client,
    column: &str,
    what: &str,
    check: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + Duration::from_millis(RATE_DEADLINE_MS);
    loop {
        let value = total(client, column).await;
        if check(value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{column} never showed {what}: last {value}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `sql_of(i)` in a loop on its own connection until `stop`.
fn load(
    client: tokio_postgres::Client,
    stop: Arc<AtomicBool>,
    sql_of: impl Fn(u64) -> String + Send + 'static,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut done = 0;
        while !stop.load(Ordering::Relaxed) {
            client
                .simple_query(&sql_of(done))
                .await
                .expect("load statement");
            done += 1;
        }
        done
    })
}

#[tokio::test]
async fn system_tables_show_region_traffic_rates_and_store_disks() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;
    assert_eq!(total(&client, "written_keys_per_sec").await, 0.0);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(cluster.ready_client().await, stop.clone(), |i| {
        format!(
            "INSERT INTO kv VALUES ('k{i}', 'v{i}') ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        )
    });
    let written = wait_for_total(&client, "written_keys_per_sec", "writes", |v| v > 0.0).await;
    let bytes = wait_for_total(&client, "written_bytes_per_sec", "bytes", |v| v > 0.0).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer task");
    assert!(writes > 0);
    println!("write rate seen: {written:.1} keys/s, {bytes:.1} bytes/s ({writes} writes)");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = load(cluster.ready_client().await, stop.clone(), |i| {
        format!("SELECT v FROM kv WHERE k = 'k{}'", i % 10)
    });
    let read = wait_for_total(&client, "read_keys_per_sec", "reads", |v| v > 0.0).await;
    // The writer stopped: its rate decays to nothing.
    wait_for_total(
        &client,
        "written_keys_per_sec",
        "zero after writes stopped",
        |v| v == 0.0,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("reader task");
    wait_for_total(
        &client,
        "read_keys_per_sec",
        "zero after reads stopped",
        |v| v == 0.0,
    )
    .await;
    println!("read rate seen: {read:.1} keys/s");

    let regions = rows(&client, "SELECT observed_at FROM system.regions").await;
    assert!(
        regions.iter().all(|row| row[0].is_some()),
        "every region observed: {regions:?}"
    );
    let stores = rows(
        &client,
        "SELECT store_id, capacity_bytes, available_bytes, used_bytes FROM system.stores",
    )
    .await;
    assert_eq!(stores.len(), 3, "{stores:?}");
    for store in &stores {
        let number = |i: usize| -> u64 {
            store[i]
                .as_deref()
                .unwrap_or_else(|| panic!("store {store:?} reported no disk"))
                .parse()
                .expect("bytes are integers")
        };
        assert!(number(1) > 0, "capacity of {store:?}");
        assert!(
            number(2) <= number(1),
            "available within capacity: {store:?}"
        );
        let _used = number(3);
    }
}
