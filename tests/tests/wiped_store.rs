//! A store wiped and re-added catches up by snapshot: in a three-store
//! cluster holding rows over two regions, one store is stopped, its data
//! directory deleted, and a store started again on that empty directory
//! under a new id (store ids are never reused). With a short dead-after
//! threshold the coordinator replaces the old id's replicas, and every
//! region ends with three replicas, one on the new store, which received
//! them by snapshot (its `InstallSnapshot` RPCs are counted). The new
//! replicas are real: with a second original store stopped, each region's
//! majority is the remaining original plus the new store, and every row —
//! raw keys and SQL rows — is still readable.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbor_proto::{Mutation, MutationCondition, MutationOp};
use arbor_raftstore::RegionClient;
use arbor_tests::{free_ports, metric_value, rows, Cluster, ClusterOptions, Node};

/// The test's dead-after threshold: well above a heartbeat interval and a
/// store restart's blip, far below the production 30 s.
const STORE_DEAD_AFTER_MS: u64 = 4_000;
/// How long the replacement of every replica on the new store may take.
const REPLACEMENT_TIMEOUT_MS: u64 = 45_000;
const POLL_INTERVAL_MS: u64 = 250;
const KEYS: usize = 60;
const REPLICAS: usize = 3;
/// The wiped store: it holds a replica of every region of a fresh
/// three-store cluster.
const WIPED_STORE_ID: u64 = 1;
/// The id the wiped store comes back under: the next one never used.
const NEW_STORE_ID: u64 = 4;
/// The original store stopped at the end, leaving the other original and
/// the new store as each region's majority.
const SECOND_STOPPED_STORE_ID: u64 = 2;
/// The SQL rows written next to the raw keys.
const SQL_ROWS: [(&str, &str); 3] = [("a", "1"), ("b", "2"), ("c", "3")];

fn key(i: usize) -> Vec<u8> {
    format!("wiped/{i:04}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

async fn put(client: &RegionClient, keys: impl Iterator<Item = usize>) {
    let mutations = keys
        .map(|i| Mutation {
            op: MutationOp::Put as i32,
            key: key(i),
            value: value(i),
            condition: MutationCondition::None as i32,
        })
        .collect();
    client.write(mutations).await.expect("write keys");
}

async fn assert_every_row_readable(
    client: &RegionClient,
    sql: &tokio_postgres::Client,
    cluster: &Cluster,
) {
    let pairs = client
        .scan(&key(0), &key(KEYS), KEYS + 1)
        .await
        .unwrap_or_else(|e| panic!("scan: {e}\n{}", cluster.logs_tail()));
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..KEYS).map(|i| (key(i), value(i))).collect();
    assert_eq!(pairs, expected);
    let sql_rows = rows(sql, "SELECT k, v FROM kv ORDER BY k").await;
    let expected_sql: Vec<Vec<Option<String>>> = SQL_ROWS
        .iter()
        .map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())])
        .collect();
    assert_eq!(sql_rows, expected_sql);
}

/// The store ids of one `system.regions` peers cell
/// (`"<peer_id>@store<store_id>,..."`).
fn peer_stores(peers: &str) -> BTreeSet<u64> {
    peers
        .split(',')
        .filter(|peer| !peer.is_empty())
        .map(|peer| {
            peer.split_once("@store")
                .and_then(|(_, store)| store.parse().ok())
                .unwrap_or_else(|| panic!("a peer is <id>@store<id>: {peers:?}"))
        })
        .collect()
}

/// Waits until `system.stores` shows the new store alive and every region
/// in `system.regions` has its three replicas with one on the new store and
/// none on the wiped id; answers the regions' stores.
async fn wait_for_replacement(
    sql: &tokio_postgres::Client,
    cluster: &Cluster,
) -> Vec<BTreeSet<u64>> {
    let deadline = Instant::now() + Duration::from_millis(REPLACEMENT_TIMEOUT_MS);
    loop {
        let placements: Vec<BTreeSet<u64>> =
            rows(sql, "SELECT peers FROM system.regions ORDER BY region_id")
                .await
                .iter()
                .map(|row| peer_stores(row[0].as_deref().unwrap_or_default()))
                .collect();
        let store_rows = rows(sql, "SELECT store_id, alive FROM system.stores").await;
        let new_store_alive = store_rows.iter().any(|row| {
            row[0].as_deref() == Some(NEW_STORE_ID.to_string().as_str())
                && row[1].as_deref() == Some("t")
        });
        let replaced = new_store_alive
            && !placements.is_empty()
            && placements.iter().all(|stores| {
                stores.len() == REPLICAS
                    && stores.contains(&NEW_STORE_ID)
                    && !stores.contains(&WIPED_STORE_ID)
            });
        if replaced {
            return placements;
        }
        assert!(
            Instant::now() < deadline,
            "store {WIPED_STORE_ID}'s replicas did not move to store {NEW_STORE_ID}: \
             {placements:?}, stores (id, alive): {store_rows:?}\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Stops the store, deletes its data directory and starts a store on the
/// same (now empty) directory under [`NEW_STORE_ID`], on fresh ports.
fn wipe_and_re_add(cluster: &mut Cluster, coordinators: &[String]) -> String {
    let wiped = format!("store-{WIPED_STORE_ID}");
    assert!(cluster.node(&wiped).stop(), "{wiped} stops on SIGTERM");
    let data_dir = cluster.data_dir.join(&wiped);
    std::fs::remove_dir_all(&data_dir)
        .unwrap_or_else(|e| panic!("delete {}: {e}", data_dir.display()));
    // Fresh ports: the old id's address stays in root until it is replaced,
    // and raft messages for it must not reach the new store.
    let ports = free_ports(2);
    let metrics_address = format!("127.0.0.1:{}", ports[1]);
    let mut node = Node::new(
        format!("store-{NEW_STORE_ID}"),
        vec![
            "store".into(),
            "--id".into(),
            NEW_STORE_ID.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", ports[0]),
            "--coordinators".into(),
            coordinators.join(","),
            "--data".into(),
            data_dir.display().to_string(),
            "--metrics-listen".into(),
            metrics_address.clone(),
        ],
    );
    node.start_again(&cluster.data_dir.join("logs"));
    cluster.nodes.push(node);
    metrics_address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_re_added_under_a_new_id_catches_up_by_snapshot_and_serves() {
    let started = Instant::now();
    let data = tempfile::tempdir().expect("temp dir");
    let options = ClusterOptions {
        coordinator_args: vec![
            "--store-dead-after-ms".into(),
            STORE_DEAD_AFTER_MS.to_string(),
        ],
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(data.path(), options);
    let sql = cluster.ready_client().await;
    let coordinators = cluster.listen_addresses("coordinator-");
    let client = RegionClient::new(coordinators.clone());

    // Raw keys over two regions, plus SQL rows.
    put(&client, 0..KEYS).await;
    client
        .split_at(&key(KEYS / 2))
        .await
        .unwrap_or_else(|e| panic!("split: {e}\n{}", cluster.logs_tail()));
    let values: Vec<String> = SQL_ROWS
        .iter()
        .map(|(k, v)| format!("('{k}', '{v}')"))
        .collect();
    sql.simple_query(&format!("INSERT INTO kv VALUES {}", values.join(", ")))
        .await
        .expect("SQL insert");

    let metrics_address = wipe_and_re_add(&mut cluster, &coordinators);
    let placements = wait_for_replacement(&sql, &cluster).await;
    assert!(
        placements.len() >= 2,
        "two regions at least: {placements:?}"
    );
    let snapshots = metric_value(
        &metrics_address,
        "arbor_store_rpc_duration_seconds_count{method=\"raft_install_snapshot\"}",
    )
    .await
    .unwrap_or_default();
    assert!(
        snapshots >= placements.len() as f64,
        "each new replica starts from a snapshot: {snapshots} InstallSnapshot calls \
         for {} regions",
        placements.len()
    );
    println!(
        "replicas on {placements:?} after {} ms; {snapshots} snapshots installed",
        started.elapsed().as_millis()
    );
    assert_every_row_readable(&client, &sql, &cluster).await;

    // Each region's majority now needs the new store's replica.
    let second = format!("store-{SECOND_STOPPED_STORE_ID}");
    assert!(cluster.node(&second).stop(), "{second} stops on SIGTERM");
    assert_every_row_readable(&client, &sql, &cluster).await;

    drop(sql);
    drop(client);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
    println!("wiped store test took {} ms", started.elapsed().as_millis());
}
