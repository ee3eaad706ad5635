//! Real in-process clusters on loopback ports, every plane real: three root
//! peers ([`arbor_root::RootPeer`]), a coordinator
//! ([`arbor_coordinator::run_coordinator`]) and three stores
//! ([`run_store`]). The coordinator bootstraps one region over the three
//! stores; the tests split it by calling `Store.SplitRegion` on its leader
//! (the coordinator's own scheduler is switched off, and root never hears of
//! these splits, so the region client must route through them on the
//! stores' `EpochNotMatch` answers alone). One more test starts stores
//! directly (no coordinator) to check a store that missed purged entries
//! catches up from a snapshot over `StoreRaft`. Transactions across the
//! split regions are in [`txn`]. Every test stops all it started and is
//! bounded by [`TEST_DEADLINE_SECS`].

mod membership;
mod merge;
mod partition;
mod txn;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbor_coordinator::{run_coordinator, CoordinatorConfig, CoordinatorError};
use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::store_client::StoreClient;
use arbor_proto::*;
use arbor_root::{RootConfig, RootPeer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{RegionClient, WriteOutcome};
use crate::error::RaftstoreError;
use crate::server::{run_store, StoreConfig};
use crate::service::StoreMetrics;
use crate::store::StoreNode;
use arbor_metrics::Health;

const TEST_DEADLINE_SECS: u64 = 120;
const STORE_COUNT: u64 = 3;
const ROOT_PEER_COUNT: u64 = 3;
const SPLIT_KEY: &[u8] = b"m";
/// Region ids the tests give split-off regions (root never allocates these:
/// it hears of no split here).
const FIRST_SPLIT_REGION_ID: u64 = 1_000;
/// How long a fresh cluster gets to bootstrap its first region.
const BOOTSTRAP_DEADLINE_SECS: u64 = 60;
/// How long a region gets to elect a leader or start on every store.
const SETTLE_DEADLINE_SECS: u64 = 15;

struct Running<E> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Display> Running<E> {
    async fn stop(self) {
        // The task may have ended already; then nobody listens.
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("server ended with an error: {error}"),
            Err(error) => panic!("server task failed: {error}"),
        }
    }
}

async fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

struct Cluster {
    coordinator_address: String,
    store_addresses: Vec<SocketAddr>,
    data_dirs: Vec<PathBuf>,
    roots: Vec<RootPeer>,
    coordinator: Running<CoordinatorError>,
    stores: Vec<Running<RaftstoreError>>,
}

async fn start_roots(dir: &Path) -> (Vec<RootPeer>, Vec<String>) {
    let mut addresses = Vec::new();
    for _ in 0..ROOT_PEER_COUNT {
        addresses.push(free_address().await);
    }
    let initial_peers: BTreeMap<u64, String> = addresses
        .iter()
        .enumerate()
        .map(|(index, address)| (index as u64 + 1, address.to_string()))
        .collect();
    let mut roots = Vec::new();
    for (peer_id, address) in &initial_peers {
        let config = RootConfig {
            peer_id: *peer_id,
            listen: address.parse().expect("a socket address"),
            advertise_address: address.clone(),
            data_dir: dir.join(format!("root-{peer_id}")),
            initial_peers: initial_peers.clone(),
        };
        roots.push(RootPeer::start(&config).await.expect("start a root peer"));
    }
    (roots, initial_peers.into_values().collect())
}

fn start_coordinator(listen: SocketAddr, root_addresses: Vec<String>) -> Running<CoordinatorError> {
    let (stop, stopped) = oneshot::channel::<()>();
    let config = CoordinatorConfig {
        coordinator_id: "coordinator-1".into(),
        listen,
        advertise_address: listen.to_string(),
        root_addresses,
        // The tests split by hand; the scheduler must not.
        region_split_keys: u64::MAX,
        region_split_bytes: u64::MAX,
        store_dead_after_ms: arbor_coordinator::scheduler::STORE_DEAD_AFTER_DEFAULT_MS,
    };
    let task = tokio::spawn(run_coordinator(config, async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

fn start_store(
    store_id: u64,
    listen: SocketAddr,
    data_dir: PathBuf,
    coordinator: &str,
) -> Running<RaftstoreError> {
    let (stop, stopped) = oneshot::channel::<()>();
    let config = StoreConfig {
        store_id,
        listen,
        advertise_address: listen.to_string(),
        data_dir,
        coordinator_addresses: vec![coordinator.to_string()],
    };
    let task = tokio::spawn(run_store(config, async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Cluster {
    async fn start(dir: &Path) -> Self {
        let (roots, root_addresses) = start_roots(dir).await;
        let coordinator_listen = free_address().await;
        let coordinator = start_coordinator(coordinator_listen, root_addresses);
        let mut store_addresses = Vec::new();
        for _ in 0..STORE_COUNT {
            store_addresses.push(free_address().await);
        }
        let data_dirs: Vec<PathBuf> = (1..=STORE_COUNT)
            .map(|id| dir.join(format!("store-{id}")))
            .collect();
        let mut cluster = Self {
            coordinator_address: coordinator_listen.to_string(),
            store_addresses,
            data_dirs,
            roots,
            coordinator,
            stores: Vec::new(),
        };
        cluster.start_stores();
        cluster
    }

    fn start_stores(&mut self) {
        self.stores = (0..STORE_COUNT as usize)
            .map(|index| {
                start_store(
                    index as u64 + 1,
                    self.store_addresses[index],
                    self.data_dirs[index].clone(),
                    &self.coordinator_address,
                )
            })
            .collect();
    }

    async fn stop_stores(&mut self) {
        for store in self.stores.drain(..) {
            store.stop().await;
        }
    }

    async fn stop(mut self) {
        self.stop_stores().await;
        self.coordinator.stop().await;
        for root in self.roots {
            root.stop().await.expect("root peer stops");
        }
    }

    fn client(&self) -> RegionClient {
        RegionClient::new(vec![self.coordinator_address.clone()])
    }

    /// A client of the store; waits for it to listen (a restarted store
    /// opens its RocksDB and regions before it binds).
    async fn store_client(&self, store_id: u64) -> StoreClient<tonic::transport::Channel> {
        let address = format!("http://{}", self.store_addresses[store_id as usize - 1]);
        let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
        loop {
            match StoreClient::connect(address.clone()).await {
                Ok(client) => return client,
                Err(error) if Instant::now() >= deadline => {
                    panic!("store {store_id} at {address} does not listen: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Waits until the coordinator bootstrapped region 1 and it takes a
    /// write; returns region 1 as root describes it.
    async fn bootstrapped_region(&self) -> RegionDescriptor {
        let client = RegionClient::with_retry_deadline(
            vec![self.coordinator_address.clone()],
            Duration::from_secs(BOOTSTRAP_DEADLINE_SECS),
        );
        client
            .write(vec![put("bootstrap", "done", MutationCondition::None)])
            .await
            .expect("the cluster bootstraps and takes a first write");
        let mut coordinator =
            CoordinatorClient::connect(format!("http://{}", self.coordinator_address))
                .await
                .expect("connect to the coordinator");
        coordinator
            .locate_region(LocateRegionRequest { key: Vec::new() })
            .await
            .expect("locate region 1")
            .into_inner()
            .route
            .and_then(|route| route.region)
            .expect("region 1 is routed")
    }

    /// The store leading `region` (asked of the stores themselves).
    async fn leader_of(&self, region: &RegionDescriptor) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
        while Instant::now() < deadline {
            for store_id in 1..=STORE_COUNT {
                let reply = get_direct(self, store_id, region, &region.start_key).await;
                match reply.region_error.and_then(|error| error.kind) {
                    None => return store_id,
                    Some(RegionErrorKind::NotLeader(hint)) if hint.leader_store_id != 0 => {
                        return hint.leader_store_id
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("region {} elected no leader", region.region_id);
    }

    /// Waits until every store runs a peer of `region`.
    async fn wait_hosted_everywhere(&self, region: &RegionDescriptor) {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
        'retry: while Instant::now() < deadline {
            for store_id in 1..=STORE_COUNT {
                let reply = get_direct(self, store_id, region, &region.start_key).await;
                if let Some(RegionErrorKind::RegionNotFound(_)) =
                    reply.region_error.and_then(|error| error.kind)
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'retry;
                }
            }
            return;
        }
        panic!("region {} did not start on every store", region.region_id);
    }

    /// Splits `region` at `key` on its leader; panics unless it succeeds.
    async fn split(
        &self,
        region: &RegionDescriptor,
        key: &[u8],
        new_region_id: u64,
    ) -> (RegionDescriptor, RegionDescriptor) {
        let leader = self.leader_of(region).await;
        let reply = split_direct(self, leader, split_request(region, key, new_region_id))
            .await
            .expect("split call");
        assert!(reply.region_error.is_none(), "{reply:?}");
        (
            reply.left.expect("left half"),
            reply.right.expect("right half"),
        )
    }
}

fn split_request(region: &RegionDescriptor, key: &[u8], new_region_id: u64) -> SplitRegionRequest {
    SplitRegionRequest {
        context: Some(RegionContext {
            region_id: region.region_id,
            epoch: region.epoch,
        }),
        split_key: key.to_vec(),
        new_region_id,
        new_peers: region
            .peers
            .iter()
            .map(|peer| RegionPeer {
                peer_id: new_region_id * 100 + peer.store_id,
                store_id: peer.store_id,
            })
            .collect(),
    }
}

async fn split_direct(
    cluster: &Cluster,
    store_id: u64,
    request: SplitRegionRequest,
) -> Result<SplitRegionResponse, tonic::Status> {
    let mut client = cluster.store_client(store_id).await;
    client
        .split_region(request)
        .await
        .map(|reply| reply.into_inner())
}

async fn get_direct(
    cluster: &Cluster,
    store_id: u64,
    region: &RegionDescriptor,
    key: &[u8],
) -> GetResponse {
    let mut client = cluster.store_client(store_id).await;
    client
        .get(GetRequest {
            context: Some(RegionContext {
                region_id: region.region_id,
                epoch: region.epoch,
            }),
            key: key.to_vec(),
            // The newest versions: these reads probe routing, not data.
            read_ts: u64::MAX,
        })
        .await
        .expect("store answers get")
        .into_inner()
}

fn put(key: &str, value: &str, condition: MutationCondition) -> Mutation {
    Mutation {
        op: MutationOp::Put as i32,
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        condition: condition as i32,
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items
        .iter()
        .map(|(key, value)| (key.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

/// Asks every store for `key` directly and returns the store ids that
/// answered `NotLeader`, with the hints they gave.
async fn not_leader_answers(
    cluster: &Cluster,
    region: &RegionDescriptor,
    key: &[u8],
) -> Vec<(u64, NotLeader)> {
    let mut answers = Vec::new();
    for store_id in 1..=STORE_COUNT {
        let reply = get_direct(cluster, store_id, region, key).await;
        if let Some(RegionErrorKind::NotLeader(hint)) =
            reply.region_error.and_then(|error| error.kind)
        {
            answers.push((store_id, hint));
        }
    }
    answers
}

fn region_error_of(reply: &SplitRegionResponse) -> Option<RegionErrorKind> {
    reply.region_error.clone().and_then(|error| error.kind)
}

/// The split call's own rules, against a real leader and followers.
async fn check_split_rules(
    cluster: &Cluster,
    parent: &RegionDescriptor,
    left: &RegionDescriptor,
    right: &RegionDescriptor,
) {
    let leader = cluster.leader_of(left).await;
    // Repeating the split that happened answers the current halves.
    let again = split_direct(
        cluster,
        leader,
        split_request(parent, SPLIT_KEY, right.region_id),
    )
    .await
    .expect("repeated split");
    assert_eq!(again.region_error, None);
    assert_eq!(again.left.as_ref(), Some(left));
    assert_eq!(again.right.as_ref(), Some(right));
    // Another split planned against the old epoch is refused with the
    // current layout, both halves included.
    let stale = split_direct(cluster, leader, split_request(parent, b"f", 1_999))
        .await
        .expect("stale split");
    let Some(RegionErrorKind::EpochNotMatch(current)) = region_error_of(&stale) else {
        panic!("a stale split is refused: {stale:?}");
    };
    assert_eq!(current.current.as_ref(), Some(left));
    assert_eq!(current.regions, vec![left.clone(), right.clone()]);
    // A key outside the (current) region is bad input.
    let outside = split_direct(cluster, leader, split_request(left, b"x", 1_999))
        .await
        .expect_err("split key outside the region");
    assert_eq!(outside.code(), tonic::Code::InvalidArgument);
    // Only the leader splits.
    let follower = (1..=STORE_COUNT)
        .find(|store_id| *store_id != leader)
        .expect("three stores");
    let refused = split_direct(cluster, follower, split_request(left, b"f", 1_999))
        .await
        .expect("split on a follower");
    assert!(
        matches!(
            region_error_of(&refused),
            Some(RegionErrorKind::NotLeader(_))
        ),
        "{refused:?}"
    );
}

async fn exercise_cluster(dir: &Path) {
    let mut cluster = Cluster::start(dir).await;
    let region_one = cluster.bootstrapped_region().await;
    // This client caches region 1 before the split, so it has to route
    // through the split on EpochNotMatch answers.
    let client = cluster.client();
    let first = client
        .write(vec![
            put("apple", "1", MutationCondition::MustNotExist),
            put("zebra", "2", MutationCondition::MustNotExist),
            put("banana", "3", MutationCondition::None),
        ])
        .await
        .expect("write before the split");
    assert_eq!(
        first,
        WriteOutcome::Applied {
            existed: vec![false, false, false]
        }
    );

    let (left, right) = cluster
        .split(&region_one, SPLIT_KEY, FIRST_SPLIT_REGION_ID)
        .await;
    assert_eq!(left.region_id, region_one.region_id);
    assert_eq!(left.end_key, SPLIT_KEY);
    assert_eq!(right.start_key, SPLIT_KEY);
    assert_eq!(right.end_key, region_one.end_key);
    cluster.wait_hosted_everywhere(&right).await;
    check_split_rules(&cluster, &region_one, &left, &right).await;

    // Reads of both halves, through a client whose routes went stale and a
    // fresh one (the coordinator still routes by the unsplit region 1).
    for reader in [client.clone(), cluster.client()] {
        assert_eq!(
            reader.get(b"apple").await.expect("get"),
            Some(b"1".to_vec())
        );
        assert_eq!(
            reader.get(b"zebra").await.expect("get"),
            Some(b"2".to_vec())
        );
        assert_eq!(reader.get(b"missing").await.expect("get"), None);
    }

    // A write is one transaction: a failed condition writes nothing at all.
    let across = client
        .write(vec![
            put("cherry", "4", MutationCondition::None),
            put("apple", "again", MutationCondition::MustNotExist),
        ])
        .await
        .expect("conditional write");
    assert_eq!(across, WriteOutcome::ConditionFailed { mutation_index: 1 });
    assert_eq!(client.get(b"cherry").await.expect("get"), None);
    let update = client
        .write(vec![
            put("apple", "5", MutationCondition::MustExist),
            put("yak", "6", MutationCondition::MustNotExist),
        ])
        .await
        .expect("update");
    assert_eq!(
        update,
        WriteOutcome::Applied {
            existed: vec![true, false]
        }
    );

    // Scans cross the region boundary in key order and honour limits.
    let expected = pairs(&[
        ("apple", "5"),
        ("banana", "3"),
        ("bootstrap", "done"),
        ("yak", "6"),
        ("zebra", "2"),
    ]);
    assert_eq!(
        client.scan(b"", b"", 100).await.expect("scan all"),
        expected
    );
    let limited = client.scan(b"bp", b"", 2).await.expect("scan limited");
    assert_eq!(limited, pairs(&[("yak", "6"), ("zebra", "2")]));
    let bounded = client.scan(b"a", b"b", 100).await.expect("scan bounded");
    assert_eq!(bounded, pairs(&[("apple", "5")]));

    // Followers refuse reads with a hint naming the leader.
    let answers = not_leader_answers(&cluster, &left, b"apple").await;
    assert_eq!(
        answers.len(),
        STORE_COUNT as usize - 1,
        "exactly one leader serves reads"
    );
    let leader = answers[0].1.leader_store_id;
    assert!(leader != 0);
    for (store_id, hint) in &answers {
        assert_ne!(*store_id, leader);
        assert_eq!(hint.leader_store_id, leader);
        assert_eq!(
            hint.leader_address,
            cluster.store_addresses[leader as usize - 1].to_string()
        );
    }

    // Stale epochs, unknown regions and foreign keys are region errors.
    let stale = get_direct(&cluster, leader, &region_one, b"apple").await;
    assert!(matches!(
        stale.region_error.and_then(|e| e.kind),
        Some(RegionErrorKind::EpochNotMatch(EpochNotMatch {
            current: Some(_),
            ..
        }))
    ));
    let unknown = RegionDescriptor {
        region_id: 99,
        ..left.clone()
    };
    let unknown = get_direct(&cluster, leader, &unknown, b"apple").await;
    assert!(matches!(
        unknown.region_error.and_then(|e| e.kind),
        Some(RegionErrorKind::RegionNotFound(RegionNotFound {
            region_id: 99
        }))
    ));
    let foreign = get_direct(&cluster, leader, &left, b"zebra").await;
    assert!(matches!(
        foreign.region_error.and_then(|e| e.kind),
        Some(RegionErrorKind::KeyNotInRegion(_))
    ));
    let mut leader_client = cluster.store_client(leader).await;
    let oversized = leader_client
        .get(GetRequest {
            context: Some(RegionContext {
                region_id: left.region_id,
                epoch: left.epoch,
            }),
            key: vec![b'a'; crate::config::KEY_BYTES_MAX + 1],
            read_ts: u64::MAX,
        })
        .await
        .expect_err("oversized key");
    assert_eq!(oversized.code(), tonic::Code::InvalidArgument);

    // A restart of every store keeps both regions and all data.
    cluster.stop_stores().await;
    cluster.start_stores();
    let after_restart = cluster.client();
    assert_eq!(
        after_restart
            .scan(b"", b"", 100)
            .await
            .expect("scan after restart"),
        expected
    );
    cluster.wait_hosted_everywhere(&right).await;
    let after = after_restart
        .write(vec![
            put("zebra", "7", MutationCondition::MustExist),
            put("apple", "8", MutationCondition::MustExist),
        ])
        .await
        .expect("write after restart");
    assert_eq!(
        after,
        WriteOutcome::Applied {
            existed: vec![true, true]
        }
    );

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_region_serves_both_halves_through_the_region_client_and_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        exercise_cluster(dir.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "cluster test exceeded {TEST_DEADLINE_SECS}s"
    );
}

/// Writers put distinct keys spread over the key space until told to stop;
/// returns every key whose write was acknowledged, and the errors seen.
fn spawn_writer(
    client: RegionClient,
    writer: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let letters = b"abcdefghijklmnopqrstuvwxyz";
        let mut index = 0usize;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let letter = letters[(index * 7 + writer) % letters.len()] as char;
            let key = format!("{letter}-{writer}-{index:06}");
            match client
                .write(vec![put(&key, &key, MutationCondition::None)])
                .await
            {
                Ok(_) => {
                    acknowledged.lock().expect("ack lock").insert(key);
                }
                Err(error) => errors
                    .lock()
                    .expect("error lock")
                    .push(format!("{key}: {error}")),
            }
            index += 1;
        }
    })
}

async fn split_under_writes(dir: &Path) {
    const WRITERS: usize = 3;
    let cluster = Cluster::start(dir).await;
    let region_one = cluster.bootstrapped_region().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let client = cluster.client();
    let writers: Vec<JoinHandle<()>> = (0..WRITERS)
        .map(|writer| {
            spawn_writer(
                client.clone(),
                writer,
                stop.clone(),
                acknowledged.clone(),
                errors.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (left, right) = cluster
        .split(&region_one, SPLIT_KEY, FIRST_SPLIT_REGION_ID)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Split the new region again while the writers go on.
    let (middle, last) = cluster.split(&right, b"t", FIRST_SPLIT_REGION_ID + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("writer task");
    }
    let errors = errors.lock().expect("error lock").clone();
    assert!(
        errors.is_empty(),
        "writes failed through the splits: {errors:?}"
    );
    let acknowledged = acknowledged.lock().expect("ack lock").clone();
    println!(
        "{} writes acknowledged across two splits (regions {}, {}, {})",
        acknowledged.len(),
        left.region_id,
        middle.region_id,
        last.region_id
    );
    assert!(acknowledged.iter().any(|key| key.as_str() < "m"));
    assert!(acknowledged.iter().any(|key| key.as_str() >= "t"));

    // Every acknowledged write is readable, through a fresh client too, and
    // nothing else is there.
    let reader = cluster.client();
    let scanned = reader.scan(b"a", b"", usize::MAX).await.expect("scan all");
    let scanned_keys: BTreeSet<String> = scanned
        .iter()
        .filter(|(key, _)| key.as_slice() != b"bootstrap")
        .map(|(key, value)| {
            assert_eq!(key, value, "each key holds itself");
            String::from_utf8(key.clone()).expect("utf-8 keys")
        })
        .collect();
    assert_eq!(scanned_keys, acknowledged);
    for key in acknowledged.iter().step_by(7) {
        assert_eq!(
            reader.get(key.as_bytes()).await.expect("get"),
            Some(key.as_bytes().to_vec())
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_under_concurrent_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        split_under_writes(dir.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "split test exceeded {TEST_DEADLINE_SECS}s"
    );
}

fn region(region_id: u64, start: &[u8], end: &[u8], first_store: u64) -> RegionDescriptor {
    // Peers listed from `first_store` on, so it is the initializing store.
    let peers = (0..STORE_COUNT)
        .map(|offset| {
            let store_id = (first_store - 1 + offset) % STORE_COUNT + 1;
            RegionPeer {
                peer_id: region_id * 100 + store_id,
                store_id,
            }
        })
        .collect();
    RegionDescriptor {
        region_id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        epoch: Some(RegionEpoch {
            version: 1,
            conf_ver: 1,
        }),
        peers,
    }
}

/// A store started with its own listener, driven in-process (no
/// coordinator), so the test can reach its raft handles.
struct InProcessStore {
    node: Arc<StoreNode>,
    server: Running<RaftstoreError>,
}

async fn start_in_process(
    store_id: u64,
    listener: TcpListener,
    data_dir: &std::path::Path,
    stores: &[StoreDescriptor],
    descriptor: &RegionDescriptor,
) -> InProcessStore {
    let address = listener.local_addr().expect("listener address").to_string();
    // No coordinator: only two-phase commands with the test's timestamps.
    let node = StoreNode::open(store_id, address, data_dir, Vec::new()).expect("open store");
    node.transport().set_addresses(stores);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::service::serve(node.clone(), listener, async {
        let _ = stopped.await;
    }));
    node.ensure_region(descriptor.clone())
        .await
        .expect("start region");
    InProcessStore {
        node,
        server: Running { stop, task },
    }
}

impl InProcessStore {
    async fn stop(self) {
        self.server.stop().await;
        self.node.shutdown().await;
    }
}

async fn snapshot_catch_up(root: &std::path::Path) {
    let mut listeners = Vec::new();
    for _ in 0..STORE_COUNT {
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
    let third_listener = listeners.pop().expect("three listeners");
    let mut running = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let store_id = index as u64 + 1;
        let dir = root.join(format!("store-{store_id}"));
        running.push(start_in_process(store_id, listener, &dir, &stores, &descriptor).await);
    }

    // Stores 1 and 2 form a quorum and take writes while store 3 is down.
    let wait = Some(Duration::from_secs(10));
    let metrics = running[0]
        .node
        .peer(1)
        .expect("region on store 1")
        .raft()
        .wait(wait)
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("leader elected");
    let leader_id = metrics.current_leader.expect("waited for a leader");
    let leader = &running[leader_id as usize - 1].node;
    let context = RegionContext {
        region_id: 1,
        epoch: descriptor.epoch,
    };
    for index in 0..5u64 {
        // Timestamps of the test's own: no TSO runs here.
        commit_directly(leader, context, &format!("key-{index}"), 10 + 2 * index).await;
    }

    // Snapshot and purge the log, so store 3 can only catch up by snapshot.
    let raft = leader.peer(1).expect("region on leader").raft().clone();
    let snapshot = snapshot_and_purge(&raft, wait).await;

    let dir = root.join("store-3");
    let third = start_in_process(3, third_listener, &dir, &stores, &descriptor).await;
    third
        .node
        .peer(1)
        .expect("region on store 3")
        .raft()
        .wait(wait)
        .applied_index_at_least(Some(snapshot.index), "caught up")
        .await
        .expect("store 3 catches up from the snapshot");
    let reader = crate::storage::mvcc::DbReader {
        db: third.node.db(),
    };
    for index in 0..5 {
        let key = format!("key-{index}");
        let value = reader
            .value_at(key.as_bytes(), u64::MAX)
            .expect("read store 3");
        assert_eq!(value, Some(b"v".to_vec()), "{key} reached store 3");
    }
    assert_eq!(third.node.peer(1).expect("region").heartbeat().key_count, 5);

    third.stop().await;
    for store in running {
        store.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_missed_purged_entries_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        snapshot_catch_up(root.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "snapshot test exceeded {TEST_DEADLINE_SECS}s"
    );
}

/// Writes `key` on `leader` by a direct two-phase commit at `start_ts`
/// (committed at `start_ts + 1`), bypassing the region client: for tests
/// that run stores without a TSO.
async fn commit_directly(leader: &StoreNode, context: RegionContext, key: &str, start_ts: u64) {
    let prewrite = crate::operation::txn::prewrite(
        leader,
        PrewriteRequest {
            context: Some(context),
            start_ts,
            primary_key: key.as_bytes().to_vec(),
            lock_ttl_ms: 1_000,
            mutations: vec![put(key, "v", MutationCondition::MustNotExist)],
            one_pc: false,
        },
    )
    .await
    .expect("prewrite on the leader");
    assert!(
        prewrite.region_error.is_none() && prewrite.error.is_none(),
        "{prewrite:?}"
    );
    let commit = crate::operation::txn::commit(
        leader,
        CommitRequest {
            context: Some(context),
            start_ts,
            commit_ts: start_ts + 1,
            keys: vec![key.as_bytes().to_vec()],
        },
    )
    .await
    .expect("commit on the leader");
    assert!(
        commit.region_error.is_none() && commit.error.is_none(),
        "{commit:?}"
    );
}

/// Builds a snapshot of `raft`'s region and purges the log up to it, so a
/// replica that joins or lags from now on can only catch up by snapshot.
/// Answers the snapshot's last log id.
async fn snapshot_and_purge(
    raft: &crate::types::RegionRaft,
    wait: Option<Duration>,
) -> openraft::LogId<u64> {
    raft.trigger().snapshot().await.expect("trigger snapshot");
    let metrics = raft
        .wait(wait)
        .metrics(
            |m| m.snapshot.is_some() && m.snapshot == m.last_applied,
            "snapshot built",
        )
        .await
        .expect("snapshot built");
    let snapshot = metrics.snapshot.expect("waited for a snapshot");
    raft.trigger()
        .purge_log(snapshot.index)
        .await
        .expect("purge");
    raft.wait(wait)
        .purged(Some(snapshot), "log purged")
        .await
        .expect("log purged");
    snapshot
}

/// A store run in-process with every task of a real one (heartbeats,
/// liveness, hibernation), so a test can reach its node (and its
/// transport's partition filter).
struct FullStore {
    node: Arc<StoreNode>,
    address: String,
    server: Running<RaftstoreError>,
}

async fn start_full_store(store_id: u64, dir: &Path, coordinator: &str) -> FullStore {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a store");
    let address = listener.local_addr().expect("store address").to_string();
    let node = StoreNode::open(
        store_id,
        address.clone(),
        &dir.join(format!("store-{store_id}")),
        vec![coordinator.to_string()],
    )
    .expect("open store");
    node.start_persisted_regions()
        .await
        .expect("restart regions");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::server::serve_node(
        node.clone(),
        listener,
        vec![coordinator.to_string()],
        StoreMetrics::new(),
        Health::new(),
        async {
            let _ = stopped.await;
        },
    ));
    FullStore {
        node,
        address,
        server: Running { stop, task },
    }
}
