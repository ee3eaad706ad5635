//! A region leader partitioned into a minority stops serving reads: with
//! every plane real (root, a coordinator, three stores with heartbeats,
//! liveness and hibernation, gRPC on loopback), region 1's leader is cut off
//! both ways from the two other stores by their transports' partition
//! filters. The majority elects a leader and takes a new value; the old
//! leader, which still believes it leads and still holds the old value,
//! must then refuse a direct read (its read barrier cannot reach a quorum)
//! within a bounded time — never answer the old value. Once the partition
//! heals, the old leader's replica steps down and catches up, and the
//! region client reads the new value.
//!
//! Without the read barrier the old leader would answer the old value it
//! holds (the test checks it holds it), so the test fails if reads skip the
//! read index.

use std::path::Path;
use std::time::Duration;

use arbor_proto::store_client::StoreClient;
use arbor_proto::*;
use tokio::time::Instant;

use super::{
    put, start_coordinator, start_full_store, start_roots, FullStore, SETTLE_DEADLINE_SECS,
};
use crate::client::RegionClient;
use crate::config::REQUEST_TIMEOUT_MS;
use crate::storage::mvcc::DbReader;
use crate::store::StoreNode;
use crate::types::StoreId;

/// The whole test: bootstrap (a few seconds), an election on the majority
/// side, at most one refused read, and the catch-up after healing.
const PARTITION_TEST_DEADLINE_SECS: u64 = 90;
/// How long the fresh cluster gets to bootstrap region 1 and take a write.
const BOOTSTRAP_DEADLINE_SECS: u64 = 60;
/// How long the write through the majority may be retried: a first attempt
/// may go to the cut-off leader and wait out its `REQUEST_TIMEOUT_MS`.
const MAJORITY_WRITE_DEADLINE_SECS: u64 = 30;
/// The cut-off leader must refuse a read within this: its read barrier gives
/// up at `REQUEST_TIMEOUT_MS` at the latest; the rest is slack for a loaded
/// machine.
const READ_REFUSAL_MAX_MS: u64 = REQUEST_TIMEOUT_MS + 2_000;
/// How long the old leader's replica gets to catch up after healing.
const CONVERGE_DEADLINE_SECS: u64 = 20;
const POLL_INTERVAL_MS: u64 = 50;
const REGION_ID: u64 = 1;
const KEY: &str = "partitioned-key";
const OLD_VALUE: &str = "old";
const NEW_VALUE: &str = "new";

/// The store among `stores` whose replica of region 1 believes it leads.
async fn leader_among<'a>(stores: &[&'a FullStore]) -> &'a FullStore {
    let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
    loop {
        let leader = stores.iter().copied().find(|store| {
            store
                .node
                .peer(REGION_ID)
                .is_some_and(|peer| peer.is_leader())
        });
        if let Some(leader) = leader {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "region {REGION_ID} elected no leader among stores {:?}",
            stores
                .iter()
                .map(|store| store.node.store_id())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// The newest value of `KEY` in `node`'s own RocksDB, whatever its role.
fn local_value(node: &StoreNode) -> Option<Vec<u8>> {
    DbReader { db: node.db() }
        .value_at(KEY.as_bytes(), u64::MAX)
        .expect("read the store's own data")
}

/// Cuts `minority` off from `majority` both ways: each side's transport
/// drops what it sends to the other.
fn partition(minority: &FullStore, majority: &[&FullStore]) {
    let majority_ids: Vec<StoreId> = majority.iter().map(|store| store.node.store_id()).collect();
    minority.node.transport().partition().block(&majority_ids);
    for store in majority {
        store
            .node
            .transport()
            .partition()
            .block(&[minority.node.store_id()]);
    }
}

/// Asks `store` directly for `KEY` at the newest timestamp and fails the test
/// unless it answers a refusal within [`READ_REFUSAL_MAX_MS`].
async fn assert_read_refused(store: &FullStore, region: &RegionDescriptor) {
    let mut client = StoreClient::connect(format!("http://{}", store.address))
        .await
        .expect("connect to the cut-off leader");
    let request = GetRequest {
        context: Some(RegionContext {
            region_id: region.region_id,
            epoch: region.epoch,
        }),
        key: KEY.as_bytes().to_vec(),
        // The newest version: exactly what a stale leader would get wrong.
        read_ts: u64::MAX,
    };
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_millis(READ_REFUSAL_MAX_MS),
        client.get(request),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("the cut-off leader neither answered nor refused a read in {READ_REFUSAL_MAX_MS} ms")
    });
    let elapsed_ms = started.elapsed().as_millis();
    match answer {
        Ok(reply) => {
            let reply = reply.into_inner();
            let Some(refusal) = reply.region_error.and_then(|error| error.kind) else {
                panic!(
                    "the cut-off leader served a stale read: found {} value {:?}",
                    reply.found,
                    String::from_utf8_lossy(&reply.value)
                );
            };
            println!("the cut-off leader refused the read in {elapsed_ms} ms: {refusal:?}");
        }
        Err(status) => {
            println!("the cut-off leader failed the read in {elapsed_ms} ms: {status}");
        }
    }
}

/// Waits until the old leader's replica has stepped down and holds
/// `NEW_VALUE`.
async fn wait_converged(store: &FullStore) {
    let deadline = Instant::now() + Duration::from_secs(CONVERGE_DEADLINE_SECS);
    loop {
        let peer = store.node.peer(REGION_ID).expect("region 1 stays hosted");
        let value = local_value(&store.node);
        if !peer.is_leader() && value.as_deref() == Some(NEW_VALUE.as_bytes()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store {} did not converge after healing: leader {}, value {:?}",
            store.node.store_id(),
            peer.is_leader(),
            value.map(|value| String::from_utf8_lossy(&value).into_owned())
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

async fn minority_leader_stops_serving_reads(dir: &Path) {
    let (roots, root_addresses) = start_roots(dir).await;
    let coordinator_listen = super::free_address().await;
    let coordinator_address = coordinator_listen.to_string();
    let coordinator = start_coordinator(coordinator_listen, root_addresses);
    let mut stores = Vec::new();
    for store_id in 1..=super::STORE_COUNT {
        stores.push(start_full_store(store_id, dir, &coordinator_address).await);
    }
    let client = RegionClient::with_retry_deadline(
        vec![coordinator_address.clone()],
        Duration::from_secs(BOOTSTRAP_DEADLINE_SECS),
    );
    client
        .write(vec![put(KEY, OLD_VALUE, MutationCondition::None)])
        .await
        .expect("the cluster takes a first write");

    let all: Vec<&FullStore> = stores.iter().collect();
    let old_leader = leader_among(&all).await;
    let region = old_leader
        .node
        .peer(REGION_ID)
        .expect("region 1 on its leader")
        .descriptor();
    let majority: Vec<&FullStore> = stores
        .iter()
        .filter(|store| store.node.store_id() != old_leader.node.store_id())
        .collect();
    partition(old_leader, &majority);
    println!(
        "store {} (leader of region {REGION_ID}) cut off from stores {:?}",
        old_leader.node.store_id(),
        majority
            .iter()
            .map(|store| store.node.store_id())
            .collect::<Vec<_>>()
    );

    // The majority elects a leader of its own and takes the new value.
    let new_leader = leader_among(&majority).await;
    let writer = RegionClient::with_retry_deadline(
        vec![coordinator_address.clone()],
        Duration::from_secs(MAJORITY_WRITE_DEADLINE_SECS),
    );
    writer
        .write(vec![put(KEY, NEW_VALUE, MutationCondition::MustExist)])
        .await
        .expect("the majority takes a write");
    println!(
        "store {} leads the majority and took the new value",
        new_leader.node.store_id()
    );

    // The old leader still believes it leads and still holds the old value:
    // only the read barrier stands between a reader and that stale value.
    let old_peer = old_leader.node.peer(REGION_ID).expect("region 1 hosted");
    assert!(
        old_peer.is_leader(),
        "the cut-off leader has not heard of the new term, so it still leads"
    );
    assert_eq!(
        local_value(&old_leader.node).as_deref(),
        Some(OLD_VALUE.as_bytes()),
        "the cut-off leader holds the old value"
    );
    assert_read_refused(old_leader, &region).await;

    // Healed, the old leader's replica steps down and catches up.
    for store in &stores {
        store.node.transport().partition().heal();
    }
    wait_converged(old_leader).await;
    let reader = RegionClient::with_retry_deadline(
        vec![coordinator_address.clone()],
        Duration::from_secs(CONVERGE_DEADLINE_SECS),
    );
    assert_eq!(
        reader
            .get(KEY.as_bytes())
            .await
            .expect("read after healing"),
        Some(NEW_VALUE.as_bytes().to_vec())
    );

    for store in stores {
        store.server.stop().await;
    }
    coordinator.stop().await;
    for root in roots {
        root.stop().await.expect("root peer stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_partitioned_into_a_minority_refuses_reads_and_catches_up_after_healing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let finished = tokio::time::timeout(
        Duration::from_secs(PARTITION_TEST_DEADLINE_SECS),
        minority_leader_stops_serving_reads(dir.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "partition test exceeded {PARTITION_TEST_DEADLINE_SECS}s"
    );
    println!("partition test took {} ms", started.elapsed().as_millis());
}
