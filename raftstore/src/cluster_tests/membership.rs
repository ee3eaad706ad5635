//! Peer changes and leader transfer on real clusters: a region moves from
//! stores {1, 2, 3} to a fourth store through `Store.ChangePeers` (learner,
//! snapshot, joint consensus, descriptor entry, removed replica destroyed)
//! and its leadership moves there through `Store.TransferLeader`. One test
//! runs every plane (root, coordinator, heartbeats, hibernation) and reads
//! through the region client; the other drives stores in-process without a
//! coordinator and forces the new replica to catch up from a snapshot of a
//! purged log.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::store_client::StoreClient;
use arbor_proto::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{
    commit_directly, put, region, snapshot_and_purge, start_coordinator, start_full_store,
    start_in_process, start_roots, FullStore, Running, SETTLE_DEADLINE_SECS, TEST_DEADLINE_SECS,
};
use crate::client::RegionClient;
use crate::operation::{conf_change, read, transfer_leader};
use crate::storage::mvcc::{self, DbReader};
use crate::store::StoreNode;

/// How long the four-store cluster gets to bootstrap and take a write.
const BOOTSTRAP_DEADLINE_SECS: u64 = 60;
/// How long a peer change may take in the tests (the leader's own
/// deadlines are shorter; this only bounds retries of `ServerBusy`).
const CHANGE_DEADLINE_SECS: u64 = 60;
/// Keys the cluster test writes before the change: all but the last end
/// up in region 1 once it is split at [`SPLIT_KEY`].
const KEYS: [&str; 4] = ["apple", "banana", "kiwi", "zebra"];
const SPLIT_KEY: &[u8] = b"m";
const SPLIT_REGION_ID: u64 = 1_000;

fn context_of(region: &RegionDescriptor) -> Option<RegionContext> {
    Some(RegionContext {
        region_id: region.region_id,
        epoch: region.epoch,
    })
}

fn store_ids(region: &RegionDescriptor) -> Vec<u64> {
    let mut ids: Vec<u64> = region.peers.iter().map(|peer| peer.store_id).collect();
    ids.sort_unstable();
    ids
}

/// The store among `stores` whose replica of `region_id` leads.
async fn leader_among(stores: &[&Arc<StoreNode>], region_id: u64) -> Arc<StoreNode> {
    let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
    while Instant::now() < deadline {
        let leader = stores
            .iter()
            .find(|node| node.peer(region_id).is_some_and(|peer| peer.is_leader()));
        if let Some(leader) = leader {
            return (*leader).clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("region {region_id} has no leader among the stores");
}

/// Asks the leader (found afresh on `NotLeader` or `ServerBusy`) to change
/// the peers until it answers something else.
async fn change_peers_on_leader(
    stores: &[&FullStore],
    request: ChangePeersRequest,
) -> ChangePeersResponse {
    let region_id = request
        .context
        .as_ref()
        .map(|context| context.region_id)
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(CHANGE_DEADLINE_SECS);
    loop {
        let nodes: Vec<&Arc<StoreNode>> = stores.iter().map(|store| &store.node).collect();
        let leader = leader_among(&nodes, region_id).await;
        let address = stores
            .iter()
            .find(|store| store.node.store_id() == leader.store_id())
            .map(|store| store.address.clone())
            .expect("the leader is one of the stores");
        let mut client = StoreClient::connect(format!("http://{address}"))
            .await
            .expect("connect to the leader");
        let reply = client
            .change_peers(request.clone())
            .await
            .expect("ChangePeers answers")
            .into_inner();
        let retry = matches!(
            reply.region_error.as_ref().and_then(|e| e.kind.as_ref()),
            Some(RegionErrorKind::NotLeader(_) | RegionErrorKind::ServerBusy(_))
        );
        if !retry || Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every one of `nodes` knows the address of `store_id` (from
/// the coordinators' heartbeat answers).
async fn wait_address_known(nodes: &[&Arc<StoreNode>], store_id: u64) {
    let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
    while Instant::now() < deadline {
        if nodes
            .iter()
            .all(|node| node.transport().address_of(store_id).is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("store {store_id}'s address never reached the other stores");
}

fn live_keys(node: &StoreNode, region: &RegionDescriptor) -> u64 {
    mvcc::count_live_keys(node.db(), &crate::peer::range_of(region)).expect("count keys")
}

async fn move_region_to_a_new_store(dir: &Path) {
    let (roots, root_addresses) = start_roots(dir).await;
    let coordinator_listen = super::free_address().await;
    let coordinator_address = coordinator_listen.to_string();
    let coordinator = start_coordinator(coordinator_listen, root_addresses);
    let mut stores = Vec::new();
    for store_id in 1..=3 {
        stores.push(start_full_store(store_id, dir, &coordinator_address).await);
    }
    // Region 1 is bootstrapped over the three stores that joined first.
    let client = RegionClient::with_retry_deadline(
        vec![coordinator_address.clone()],
        Duration::from_secs(BOOTSTRAP_DEADLINE_SECS),
    );
    let writes: Vec<Mutation> = KEYS
        .iter()
        .map(|key| put(key, key, MutationCondition::None))
        .collect();
    client
        .write(writes)
        .await
        .expect("the cluster takes writes");
    let nodes: Vec<&Arc<StoreNode>> = stores.iter().map(|store| &store.node).collect();
    let leader = leader_among(&nodes, 1).await;
    let bootstrapped = leader.peer(1).expect("region 1 on its leader").descriptor();
    assert_eq!(store_ids(&bootstrapped), vec![1, 2, 3]);
    // Split after the writes: the new replica must not replay the log
    // (its entries were admitted at the older epoch), and destroying the
    // removed replica must spare the other half's data on its store.
    let split = crate::operation::split::split_region(
        &leader,
        super::split_request(&bootstrapped, SPLIT_KEY, SPLIT_REGION_ID),
    )
    .await
    .expect("split region 1");
    assert_eq!(split.region_error, None, "{split:?}");
    let before = split.left.expect("left half");
    let right = split.right.expect("right half");
    let left_keys = KEYS.iter().filter(|key| key.as_bytes() < SPLIT_KEY).count() as u64;

    stores.push(start_full_store(4, dir, &coordinator_address).await);
    let nodes: Vec<&Arc<StoreNode>> = stores.iter().map(|store| &store.node).collect();
    wait_address_known(&nodes, 4).await;

    // Remove a follower's replica (a leader may not remove itself).
    let removed_store = (1..=3)
        .rev()
        .find(|store_id| *store_id != leader.store_id())
        .expect("two followers");
    let removed_peer = before
        .peers
        .iter()
        .find(|peer| peer.store_id == removed_store)
        .copied()
        .expect("the removed store holds a peer");
    let added = RegionPeer {
        peer_id: 104,
        store_id: 4,
    };
    let request = ChangePeersRequest {
        context: context_of(&before),
        add_peers: vec![added],
        remove_peer_ids: vec![removed_peer.peer_id],
    };
    let all: Vec<&FullStore> = stores.iter().collect();
    let reply = change_peers_on_leader(&all, request.clone()).await;
    assert_eq!(reply.region_error, None, "{reply:?}");
    let after = reply.region.expect("the changed region");
    let mut expected_stores: Vec<u64> = vec![1, 2, 3, 4]
        .into_iter()
        .filter(|store_id| *store_id != removed_store)
        .collect();
    expected_stores.sort_unstable();
    assert_eq!(store_ids(&after), expected_stores);
    let (old_epoch, new_epoch) = (
        before.epoch.unwrap_or_default(),
        after.epoch.unwrap_or_default(),
    );
    assert_eq!(new_epoch.conf_ver, old_epoch.conf_ver + 1);
    assert_eq!(new_epoch.version, old_epoch.version);
    let leader = leader_among(&nodes, 1).await;
    assert_eq!(leader.peer(1).expect("region 1").descriptor(), after);

    // The removed replica is gone with its data, and stays gone although
    // root (never told of this change) still assigns it in heartbeats.
    let removed = &stores[removed_store as usize - 1].node;
    assert!(
        removed.peer(1).is_none(),
        "the removed replica is destroyed"
    );
    assert_eq!(live_keys(removed, &before), 0, "its data range is empty");
    assert!(removed.peer(SPLIT_REGION_ID).is_some());
    assert_eq!(
        live_keys(removed, &right),
        KEYS.len() as u64 - left_keys,
        "the other region's data on that store is untouched"
    );
    tokio::time::sleep(Duration::from_millis(
        3 * crate::heartbeat::HEARTBEAT_INTERVAL_MS,
    ))
    .await;
    assert!(
        removed.peer(1).is_none(),
        "a stale heartbeat assignment does not bring it back"
    );

    // Repeating the change answers OK with the current region; another
    // change planned at the old epoch is refused with the current one.
    let again = change_peers_on_leader(&all, request).await;
    assert_eq!(again.region_error, None, "{again:?}");
    assert_eq!(again.region.as_ref(), Some(&after));
    let stale = change_peers_on_leader(
        &all,
        ChangePeersRequest {
            context: context_of(&before),
            add_peers: vec![],
            remove_peer_ids: vec![added.peer_id],
        },
    )
    .await;
    let Some(RegionErrorKind::EpochNotMatch(mismatch)) =
        stale.region_error.and_then(|error| error.kind)
    else {
        panic!("a change at a stale epoch is refused");
    };
    assert_eq!(mismatch.current.as_ref(), Some(&after));

    // Leadership moves to the new store, which then serves the data.
    let new_store = &stores[3];
    let deadline = Instant::now() + Duration::from_secs(CHANGE_DEADLINE_SECS);
    loop {
        let leader = leader_among(&nodes, 1).await;
        let address = &stores[leader.store_id() as usize - 1].address;
        let mut leader_client = StoreClient::connect(format!("http://{address}"))
            .await
            .expect("connect to the leader");
        let moved = leader_client
            .transfer_leader(TransferLeaderRequest {
                context: context_of(&after),
                to_store_id: 4,
            })
            .await
            .expect("TransferLeader answers")
            .into_inner();
        if moved.region_error.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leadership did not move: {moved:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(new_store
        .node
        .peer(1)
        .expect("region 1 on store 4")
        .is_leader());
    assert_eq!(live_keys(&new_store.node, &after), left_keys);
    let direct = read::get(
        &new_store.node,
        GetRequest {
            context: context_of(&after),
            key: b"kiwi".to_vec(),
            read_ts: u64::MAX,
        },
    )
    .await
    .expect("read on store 4");
    assert_eq!(direct.region_error, None, "{direct:?}");
    assert_eq!(direct.value, b"kiwi".to_vec());
    let reader = RegionClient::new(vec![coordinator_address.clone()]);
    for key in KEYS {
        assert_eq!(
            reader
                .get(key.as_bytes())
                .await
                .expect("read after the move"),
            Some(key.as_bytes().to_vec()),
            "{key}"
        );
    }

    for store in stores {
        store.server.stop().await;
    }
    coordinator.stop().await;
    for root in roots {
        root.stop().await.expect("root peer stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_moves_to_a_new_store_by_peer_change_and_leader_transfer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        move_region_to_a_new_store(dir.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "membership test exceeded {TEST_DEADLINE_SECS}s"
    );
}

/// Entries the snapshot test writes (two each) before purging the log.
const SNAPSHOT_TEST_KEYS: u64 = 150;

async fn commit_key(leader: &StoreNode, descriptor: &RegionDescriptor, index: u64) {
    // Timestamps of the test's own: no TSO runs here.
    let context = RegionContext {
        region_id: descriptor.region_id,
        epoch: descriptor.epoch,
    };
    commit_directly(leader, context, &format!("key-{index:04}"), 10 + 2 * index).await;
}

async fn snapshot_for_a_new_replica(root: &Path) {
    let mut listeners = Vec::new();
    for _ in 0..4 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let stores: Vec<StoreDescriptor> = listeners
        .iter()
        .enumerate()
        .map(|(index, listener)| StoreDescriptor {
            store_id: index as u64 + 1,
            address: listener.local_addr().expect("address").to_string(),
        })
        .collect();
    let descriptor = region(1, b"", b"", 1);
    let fourth_listener = listeners.pop().expect("four listeners");
    let mut running = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let store_id = index as u64 + 1;
        let dir = root.join(format!("store-{store_id}"));
        running.push(start_in_process(store_id, listener, &dir, &stores, &descriptor).await);
    }
    // Store 4 runs no region yet.
    let fourth = {
        let address = stores[3].address.clone();
        let node =
            StoreNode::open(4, address, &root.join("store-4"), Vec::new()).expect("open store 4");
        node.transport().set_addresses(&stores);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::service::serve(
            node.clone(),
            fourth_listener,
            async {
                let _ = stopped.await;
            },
        ));
        super::InProcessStore {
            node,
            server: Running { stop, task },
        }
    };

    let nodes: Vec<&Arc<StoreNode>> = running.iter().map(|store| &store.node).collect();
    let leader = leader_among(&nodes, 1).await;
    for index in 0..SNAPSHOT_TEST_KEYS {
        commit_key(&leader, &descriptor, index).await;
    }
    // Snapshot and purge, so the new replica can only catch up by snapshot.
    let raft = leader.peer(1).expect("region on the leader").raft().clone();
    let wait = Some(Duration::from_secs(10));
    let snapshot = snapshot_and_purge(&raft, wait).await;

    let removed_store = (1..=3)
        .rev()
        .find(|store_id| *store_id != leader.store_id())
        .expect("two followers");
    let request = ChangePeersRequest {
        context: context_of(&descriptor),
        add_peers: vec![RegionPeer {
            peer_id: 104,
            store_id: 4,
        }],
        remove_peer_ids: vec![100 + removed_store],
    };
    let reply = conf_change::change_peers(&leader, request)
        .await
        .expect("ChangePeers on the leader");
    assert_eq!(reply.region_error, None, "{reply:?}");
    let after = reply.region.expect("the changed region");
    assert!(store_ids(&after).contains(&4));

    let new_peer = fourth.node.peer(1).expect("region 1 on store 4");
    let metrics = new_peer.raft().metrics().borrow().clone();
    assert!(
        metrics
            .snapshot
            .is_some_and(|log_id| log_id.index >= snapshot.index),
        "store 4 installed the leader's snapshot: {:?}",
        metrics.snapshot
    );
    assert_eq!(new_peer.heartbeat().key_count, SNAPSHOT_TEST_KEYS);
    let reader = DbReader {
        db: fourth.node.db(),
    };
    for index in (0..SNAPSHOT_TEST_KEYS).step_by(13) {
        let key = format!("key-{index:04}");
        let value = reader
            .value_at(key.as_bytes(), u64::MAX)
            .expect("read store 4");
        assert_eq!(value, Some(b"v".to_vec()), "{key} reached store 4");
    }
    let removed = &running[removed_store as usize - 1].node;
    assert!(removed.peer(1).is_none());
    assert_eq!(live_keys(removed, &descriptor), 0);
    // A heartbeat naming the region as it was before the change (what root
    // still says) does not bring the removed replica back.
    removed
        .ensure_region(descriptor.clone())
        .await
        .expect("ensure_region answers");
    assert!(removed.peer(1).is_none(), "the tombstone keeps it away");

    // Leadership moves to the new replica, which serves reads.
    let moved = transfer_leader::transfer_leader(
        &leader,
        TransferLeaderRequest {
            context: context_of(&after),
            to_store_id: 4,
        },
    )
    .await
    .expect("TransferLeader on the leader");
    assert_eq!(moved.region_error, None, "{moved:?}");
    assert!(new_peer.is_leader());
    let read = read::get(
        &fourth.node,
        GetRequest {
            context: context_of(&after),
            key: b"key-0007".to_vec(),
            read_ts: u64::MAX,
        },
    )
    .await
    .expect("read on store 4");
    assert_eq!(read.region_error, None, "{read:?}");
    assert_eq!(read.value, b"v".to_vec());

    fourth.stop().await;
    for store in running {
        store.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_added_after_the_log_was_purged_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        snapshot_for_a_new_replica(root.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "snapshot membership test exceeded {TEST_DEADLINE_SECS}s"
    );
}
