//! A store that stays down is replaced: with four stores and data over a
//! few regions, stopping a store that holds replicas for longer than the
//! (lowered) dead-after threshold makes the coordinator move each of its
//! replicas to the spare store. Every region ends with three replicas on
//! live stores, every row stays readable, writes keep working — and the new
//! replicas are real: with a second original store stopped too, each region
//! needs its new replica for a majority, and everything is still readable.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{ClusterViewRequest, Mutation, MutationCondition, MutationOp, RootState};
use arbor_raftstore::RegionClient;
use arbor_tests::{rows, Cluster, ClusterOptions};

/// The test's dead-after threshold: well above a heartbeat interval and a
/// store restart's blip, far below the production 30 s.
const STORE_DEAD_AFTER_MS: u64 = 4_000;
/// How long the replacement of every replica may take.
const REPLACEMENT_TIMEOUT_MS: u64 = 60_000;
const KEYS: usize = 90;
const REPLICAS: usize = 3;

fn key(i: usize) -> Vec<u8> {
    format!("replacement/{i:04}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// Root's state as any coordinator sees it.
async fn root_state(coordinators: &[String]) -> Option<RootState> {
    for address in coordinators {
        let Ok(mut client) = CoordinatorClient::connect(format!("http://{address}")).await else {
            continue;
        };
        if let Ok(view) = client
            .cluster_view(ClusterViewRequest { events_limit: 0 })
            .await
        {
            return view.into_inner().root;
        }
    }
    None
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

async fn assert_every_key_readable(client: &RegionClient, keys: usize, cluster: &Cluster) {
    let pairs = client
        .scan(&key(0), &key(keys), keys + 1)
        .await
        .unwrap_or_else(|e| panic!("scan: {e}\n{}", cluster.logs_tail()));
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..keys).map(|i| (key(i), value(i))).collect();
    assert_eq!(pairs, expected);
}

/// Waits until no change is pending and every region has `REPLICAS` peers,
/// none on `gone`; answers the regions' stores.
async fn wait_for_replacement(
    coordinators: &[String],
    gone: u64,
    cluster: &Cluster,
) -> Vec<BTreeSet<u64>> {
    let deadline = Instant::now() + Duration::from_millis(REPLACEMENT_TIMEOUT_MS);
    loop {
        let state = root_state(coordinators).await.unwrap_or_default();
        let placements: Vec<BTreeSet<u64>> = state
            .regions
            .iter()
            .map(|r| r.peers.iter().map(|p| p.store_id).collect())
            .collect();
        let replaced = state.pending_changes.is_empty()
            && !placements.is_empty()
            && placements
                .iter()
                .all(|stores| stores.len() == REPLICAS && !stores.contains(&gone));
        if replaced {
            return placements;
        }
        assert!(
            Instant::now() < deadline,
            "replicas of store {gone} not replaced: {:?} pending {:?}\n{}",
            state.regions,
            state.pending_changes,
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_stores_replicas_move_to_a_live_store_and_serve() {
    let data = tempfile::tempdir().expect("temp dir");
    let options = ClusterOptions {
        stores: Some(4),
        coordinator_args: vec![
            "--store-dead-after-ms".into(),
            STORE_DEAD_AFTER_MS.to_string(),
        ],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(data.path(), options);
    let sql = cluster.ready_client().await;
    let coordinators = cluster.listen_addresses("coordinator-");
    let client = RegionClient::new(coordinators.clone());

    // Rows over three regions of raw keys, plus SQL rows in the last region.
    put(&client, 0..KEYS / 2).await;
    put(&client, KEYS / 2..KEYS).await;
    for at in [KEYS / 3, 2 * KEYS / 3] {
        client
            .split_at(&key(at))
            .await
            .unwrap_or_else(|e| panic!("split at {at}: {e}\n{}", cluster.logs_tail()));
    }
    sql.simple_query("INSERT INTO kv VALUES ('a', '1'), ('b', '2'), ('c', '3')")
        .await
        .expect("SQL insert");

    let state = root_state(&coordinators).await.expect("a cluster view");
    assert!(state.regions.len() >= 3, "{:?}", state.regions);
    let original: BTreeSet<u64> = state.regions[0].peers.iter().map(|p| p.store_id).collect();
    assert_eq!(original.len(), REPLICAS);
    let mut originals = original.iter().copied();
    let victim = originals.next().expect("a store with replicas");
    let second = originals.next().expect("another store with replicas");

    cluster.node(&format!("store-{victim}")).stop();
    let placements = wait_for_replacement(&coordinators, victim, &cluster).await;
    let spare = (1..=4u64)
        .find(|id| !original.contains(id))
        .expect("one store held no replica");
    assert!(
        placements.iter().all(|stores| stores.contains(&spare)),
        "every replica went to the spare store {spare}: {placements:?}"
    );

    assert_every_key_readable(&client, KEYS, &cluster).await;
    put(&client, KEYS..KEYS + 10).await;
    sql.simple_query("INSERT INTO kv VALUES ('d', '4')")
        .await
        .expect("SQL insert after the replacement");
    let counted = rows(&sql, "SELECT count(*) FROM kv").await;
    assert_eq!(counted, vec![vec![Some("4".to_string())]]);

    // Now each region's majority needs the spare store's new replica.
    cluster.node(&format!("store-{second}")).stop();
    assert_every_key_readable(&client, KEYS + 10, &cluster).await;
    put(&client, KEYS + 10..KEYS + 20).await;
    assert_every_key_readable(&client, KEYS + 20, &cluster).await;

    drop(sql);
    drop(client);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}
