//! Real in-process clusters on loopback ports. One test runs three stores
//! through [`run_store`] with a fake coordinator (assigning two regions and
//! answering `LocateRegion`) and drives them with the [`RegionClient`],
//! including a restart of every store. Another starts stores directly
//! (no coordinator) to check a store that missed purged entries catches up
//! from a snapshot over `StoreRaft`. Every test stops all it started and is
//! bounded by [`TEST_DEADLINE_SECS`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arbor_proto::coordinator_server::{Coordinator, CoordinatorServer};
use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::store_client::StoreClient;
use arbor_proto::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::client::{RegionClient, WriteOutcome};
use crate::error::RaftstoreError;
use crate::server::{run_store, StoreConfig};
use crate::store::StoreNode;

const TEST_DEADLINE_SECS: u64 = 60;
const STORE_COUNT: u64 = 3;
const SPLIT_KEY: &[u8] = b"m";

/// Answers heartbeats with a fixed assignment and locates keys in it; the
/// leader is always reported unknown so the client must follow hints.
struct FakeCoordinator {
    regions: Vec<RegionDescriptor>,
    stores: Vec<StoreDescriptor>,
}

#[tonic::async_trait]
impl Coordinator for FakeCoordinator {
    async fn get_timestamps(
        &self,
        _request: Request<arbor_proto::GetTimestampsRequest>,
    ) -> Result<Response<arbor_proto::GetTimestampsResponse>, Status> {
        Err(Status::failed_precondition("this scripted coordinator serves no timestamps"))
    }

    async fn allocate_ids(
        &self,
        _request: Request<arbor_proto::AllocateIdsRequest>,
    ) -> Result<Response<arbor_proto::AllocateIdsResponse>, Status> {
        Err(Status::failed_precondition("this scripted coordinator allocates no ids"))
    }

    async fn store_heartbeat(
        &self,
        request: Request<StoreHeartbeatRequest>,
    ) -> Result<Response<StoreHeartbeatResponse>, Status> {
        let store_id = request
            .into_inner()
            .store
            .map(|store| store.store_id)
            .unwrap_or(0);
        let regions = self
            .regions
            .iter()
            .filter(|region| region.peers.iter().any(|peer| peer.store_id == store_id))
            .cloned()
            .collect();
        Ok(Response::new(StoreHeartbeatResponse {
            regions,
            cursor: 1,
            joined: true,
            stores: self.stores.clone(),
        }))
    }

    async fn locate_region(
        &self,
        request: Request<LocateRegionRequest>,
    ) -> Result<Response<LocateRegionResponse>, Status> {
        let key = request.into_inner().key;
        let region = self.regions.iter().find(|region| {
            key >= region.start_key && (region.end_key.is_empty() || key < region.end_key)
        });
        Ok(Response::new(LocateRegionResponse {
            route: region.map(|region| RegionRoute {
                region: Some(region.clone()),
                leader_store_id: 0,
                stores: self.stores.clone(),
            }),
            cursor: 1,
        }))
    }

    async fn list_stores(
        &self,
        _: Request<ListStoresRequest>,
    ) -> Result<Response<ListStoresResponse>, Status> {
        Err(Status::unimplemented("fake coordinator"))
    }

    async fn cluster_view(
        &self,
        _: Request<ClusterViewRequest>,
    ) -> Result<Response<ClusterViewResponse>, Status> {
        Err(Status::unimplemented("fake coordinator"))
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RaftstoreError>>,
}

impl Running {
    async fn stop(self) {
        // The task may have ended already; then nobody listens.
        let _ = self.stop.send(());
        match self.task.await {
            Ok(result) => result.expect("server ended cleanly"),
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

fn region(region_id: u64, start: &[u8], end: &[u8], first_store: u64) -> RegionDescriptor {
    // Peers listed from `first_store` on, so each region has its own
    // initializing store.
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

struct Cluster {
    coordinator_address: String,
    store_addresses: Vec<SocketAddr>,
    data_dirs: Vec<PathBuf>,
    regions: Vec<RegionDescriptor>,
    coordinator: Running,
    stores: Vec<Running>,
}

async fn start_coordinator(
    regions: Vec<RegionDescriptor>,
    stores: Vec<StoreDescriptor>,
) -> (String, Running) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind coordinator");
    let address = listener
        .local_addr()
        .expect("coordinator address")
        .to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = CoordinatorServer::new(FakeCoordinator { regions, stores });
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| RaftstoreError::Transport {
                address: String::new(),
                hint: e.to_string(),
            })
    });
    (address, Running { stop, task })
}

fn start_store(store_id: u64, listen: SocketAddr, data_dir: PathBuf, coordinator: &str) -> Running {
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
    async fn start(root: &std::path::Path) -> Self {
        let mut store_addresses = Vec::new();
        for _ in 0..STORE_COUNT {
            store_addresses.push(free_address().await);
        }
        let stores: Vec<StoreDescriptor> = store_addresses
            .iter()
            .enumerate()
            .map(|(index, address)| StoreDescriptor {
                store_id: index as u64 + 1,
                address: address.to_string(),
            })
            .collect();
        let regions = vec![region(1, b"", SPLIT_KEY, 1), region(2, SPLIT_KEY, b"", 2)];
        let (coordinator_address, coordinator) = start_coordinator(regions.clone(), stores).await;
        let data_dirs: Vec<PathBuf> = (1..=STORE_COUNT)
            .map(|id| root.join(format!("store-{id}")))
            .collect();
        let mut cluster = Self {
            coordinator_address,
            store_addresses,
            data_dirs,
            regions,
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
    }

    fn client(&self) -> RegionClient {
        RegionClient::new(vec![self.coordinator_address.clone()])
    }

    async fn store_client(&self, store_id: u64) -> StoreClient<tonic::transport::Channel> {
        let address = format!("http://{}", self.store_addresses[store_id as usize - 1]);
        StoreClient::connect(address)
            .await
            .expect("connect to store")
    }
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
        let mut client = cluster.store_client(store_id).await;
        let reply = client
            .get(GetRequest {
                context: Some(RegionContext {
                    region_id: region.region_id,
                    epoch: region.epoch,
                }),
                key: key.to_vec(),
            })
            .await
            .expect("store answers get")
            .into_inner();
        if let Some(RegionErrorKind::NotLeader(hint)) =
            reply.region_error.and_then(|error| error.kind)
        {
            answers.push((store_id, hint));
        }
    }
    answers
}

async fn exercise_cluster(root: &std::path::Path) {
    let mut cluster = Cluster::start(root).await;
    let client = cluster.client();

    // Inserts land in both regions; the client follows NotLeader hints.
    let first = client
        .write(vec![
            put("apple", "1", MutationCondition::MustNotExist),
            put("zebra", "2", MutationCondition::MustNotExist),
            put("banana", "3", MutationCondition::None),
        ])
        .await
        .expect("write across regions");
    assert_eq!(
        first,
        WriteOutcome::Applied {
            existed: vec![false, false, false]
        }
    );
    assert_eq!(
        client.get(b"apple").await.expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        client.get(b"zebra").await.expect("get"),
        Some(b"2".to_vec())
    );
    assert_eq!(client.get(b"missing").await.expect("get"), None);

    // A failed condition writes nothing of its region's batch.
    let duplicate = client
        .write(vec![
            put("cherry", "4", MutationCondition::None),
            put("apple", "again", MutationCondition::MustNotExist),
        ])
        .await
        .expect("conditional write");
    assert_eq!(
        duplicate,
        WriteOutcome::ConditionFailed { mutation_index: 1 }
    );
    assert_eq!(client.get(b"cherry").await.expect("get"), None);

    let update = client
        .write(vec![put("apple", "5", MutationCondition::MustExist)])
        .await
        .expect("update");
    assert_eq!(
        update,
        WriteOutcome::Applied {
            existed: vec![true]
        }
    );

    // Scans cross the region boundary in key order and honour limits.
    let all = client.scan(b"", b"", 100).await.expect("scan all");
    assert_eq!(
        all,
        pairs(&[("apple", "5"), ("banana", "3"), ("zebra", "2")])
    );
    let limited = client.scan(b"b", b"", 2).await.expect("scan limited");
    assert_eq!(limited, pairs(&[("banana", "3"), ("zebra", "2")]));
    let bounded = client.scan(b"a", b"b", 100).await.expect("scan bounded");
    assert_eq!(bounded, pairs(&[("apple", "5")]));

    // Followers refuse reads with a hint naming the leader.
    let region_one = cluster.regions[0].clone();
    let answers = not_leader_answers(&cluster, &region_one, b"apple").await;
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
    let mut leader_client = cluster.store_client(leader).await;
    let stale = leader_client
        .get(GetRequest {
            context: Some(RegionContext {
                region_id: 1,
                epoch: Some(RegionEpoch {
                    version: 0,
                    conf_ver: 1,
                }),
            }),
            key: b"apple".to_vec(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(matches!(
        stale.region_error.and_then(|e| e.kind),
        Some(RegionErrorKind::EpochNotMatch(EpochNotMatch {
            current: Some(_)
        }))
    ));
    let unknown = leader_client
        .get(GetRequest {
            context: Some(RegionContext {
                region_id: 99,
                epoch: None,
            }),
            key: b"apple".to_vec(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(matches!(
        unknown.region_error.and_then(|e| e.kind),
        Some(RegionErrorKind::RegionNotFound(RegionNotFound {
            region_id: 99
        }))
    ));
    let foreign = leader_client
        .get(GetRequest {
            context: Some(RegionContext {
                region_id: 1,
                epoch: region_one.epoch,
            }),
            key: b"zebra".to_vec(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(matches!(
        foreign.region_error.and_then(|e| e.kind),
        Some(RegionErrorKind::KeyNotInRegion(_))
    ));
    let oversized = leader_client
        .get(GetRequest {
            context: Some(RegionContext {
                region_id: 1,
                epoch: region_one.epoch,
            }),
            key: vec![b'a'; crate::config::KEY_BYTES_MAX + 1],
        })
        .await
        .expect_err("oversized key");
    assert_eq!(oversized.code(), tonic::Code::InvalidArgument);

    // A restart of every store keeps every region and all data.
    cluster.stop_stores().await;
    cluster.start_stores();
    let client = cluster.client();
    let all = client
        .scan(b"", b"", 100)
        .await
        .expect("scan after restart");
    assert_eq!(
        all,
        pairs(&[("apple", "5"), ("banana", "3"), ("zebra", "2")])
    );
    let after = client
        .write(vec![put("zebra", "6", MutationCondition::MustExist)])
        .await
        .expect("write after restart");
    assert_eq!(
        after,
        WriteOutcome::Applied {
            existed: vec![true]
        }
    );

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_serve_two_regions_through_the_region_client_and_survive_restart() {
    let root = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        exercise_cluster(root.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "cluster test exceeded {TEST_DEADLINE_SECS}s"
    );
}

/// A store started with its own listener, driven in-process (no
/// coordinator), so the test can reach its raft handles.
struct InProcessStore {
    node: Arc<StoreNode>,
    server: Running,
}

async fn start_in_process(
    store_id: u64,
    listener: TcpListener,
    data_dir: &std::path::Path,
    stores: &[StoreDescriptor],
    descriptor: &RegionDescriptor,
) -> InProcessStore {
    let address = listener.local_addr().expect("listener address").to_string();
    let node = StoreNode::open(store_id, address, data_dir).expect("open store");
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
    for index in 0..5 {
        let key = format!("key-{index}");
        let reply = crate::operation::write::write(
            leader,
            WriteRequest {
                context: Some(context),
                mutations: vec![put(&key, "v", MutationCondition::MustNotExist)],
            },
        )
        .await
        .expect("write on the leader");
        assert!(reply.applied && reply.region_error.is_none(), "{reply:?}");
    }

    // Snapshot and purge the log, so store 3 can only catch up by snapshot.
    let raft = leader.peer(1).expect("region on leader").raft().clone();
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
    let db = third.node.db();
    for index in 0..5 {
        let key = format!("key-{index}");
        let value = db
            .get_cf(crate::storage::cf(db, crate::keys::CF_DATA), key.as_bytes())
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
