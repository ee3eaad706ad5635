//! The root peer process: opens its RocksDB, starts openraft, serves gRPC,
//! and shuts both down cleanly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arbor_metrics::{Health, MetricsServer};
use arbor_proto::root_raft_server::RootRaftServer;
use arbor_proto::root_server::RootServer;
use openraft::{BasicNode, Config, SnapshotPolicy};
use tonic::transport::server::TcpIncoming;

use crate::error::RootError;
use crate::network::{PeerFilter, RootNetworkFactory};
use crate::service::{system_clock, RootMetrics, RootNode};
use crate::storage::{open_db, RootLogStore, RootStateMachine};
use crate::types::{RootPeerId, RootRaft};

/// Leader heartbeat; election timeouts below are several of these.
/// A follower that hears nothing for an election timeout campaigns; the
/// maximum bounds how long root is without a leader after the leader dies
/// (the aim is a new leader committing within 1 s).
pub const RAFT_HEARTBEAT_INTERVAL_MS: u64 = 50;
pub const RAFT_ELECTION_TIMEOUT_MIN_MS: u64 = 200;
pub const RAFT_ELECTION_TIMEOUT_MAX_MS: u64 = 400;

const _: () = assert!(RAFT_ELECTION_TIMEOUT_MIN_MS >= 3 * RAFT_HEARTBEAT_INTERVAL_MS);
/// Entries between snapshots; root entries are small and mostly lease
/// renewals, so compaction keeps the log short.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 5_000;
/// Entries kept behind a snapshot so a briefly lagging peer catches up from
/// the log instead of a snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1_000;
/// How long `stop` waits for raft's tasks to let go of the database before
/// it returns anyway (with a warning).
pub const DB_RELEASE_WAIT_MAX_MS: u64 = 5_000;
/// How often `stop` looks whether they did.
const DB_RELEASE_POLL_MS: u64 = 10;

#[derive(Debug, Clone)]
pub struct RootConfig {
    pub peer_id: RootPeerId,
    pub listen: SocketAddr,
    /// Address other processes dial ("host:port").
    pub advertise_address: String,
    pub data_dir: PathBuf,
    /// Every initial voter, this peer included: id -> address.
    pub initial_peers: BTreeMap<RootPeerId, String>,
}

fn raft_config() -> Result<Arc<Config>, RootError> {
    let config = Config {
        cluster_name: "arbor-root".into(),
        heartbeat_interval: RAFT_HEARTBEAT_INTERVAL_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_LOGS_SINCE_LAST),
        max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
        ..Default::default()
    };
    Ok(Arc::new(config.validate().map_err(|e| {
        RootError::InvalidArgument {
            hint: e.to_string(),
        }
    })?))
}

/// Opens the peer's storage and starts its raft node (without serving).
pub async fn start_node(config: &RootConfig, filter: PeerFilter) -> Result<RootNode, RootError> {
    start_node_with_metrics(config, filter, RootMetrics::new()).await
}

async fn start_node_with_metrics(
    config: &RootConfig,
    filter: PeerFilter,
    metrics: Arc<RootMetrics>,
) -> Result<RootNode, RootError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| RootError::InvalidArgument {
        hint: format!("cannot create {}: {e}", config.data_dir.display()),
    })?;
    let db = open_db(&config.data_dir)?;
    let log_store = RootLogStore::new(db.clone());
    let (state_machine, state) = RootStateMachine::open(db.clone())?;
    let raft = RootRaft::new(
        config.peer_id,
        raft_config()?,
        RootNetworkFactory { filter },
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| RootError::Raft(e.to_string()))?;
    metrics.observe_raft(&raft)?;
    Ok(RootNode {
        peer_id: config.peer_id,
        address: config.advertise_address.clone(),
        raft,
        state,
        db,
        clock: system_clock(),
        metrics,
    })
}

/// The lowest-numbered initial peer forms the cluster the first time it
/// starts; everyone else waits to be contacted by the elected leader.
async fn initialize_if_first(node: &RootNode, config: &RootConfig) -> Result<(), RootError> {
    let first = config.initial_peers.keys().next().copied();
    if first != Some(config.peer_id) {
        return Ok(());
    }
    let initialized = node
        .raft
        .is_initialized()
        .await
        .map_err(|e| RootError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    let members: BTreeMap<RootPeerId, BasicNode> = config
        .initial_peers
        .iter()
        .map(|(id, address)| (*id, BasicNode::new(address)))
        .collect();
    tracing::info!(
        peer_id = config.peer_id,
        ?members,
        "initializing root cluster"
    );
    match node.raft.initialize(members).await {
        Ok(()) => Ok(()),
        // Another path already initialized it (e.g. a restart raced a vote).
        Err(openraft::error::RaftError::APIError(e)) => {
            tracing::info!("root already initialized: {e}");
            Ok(())
        }
        Err(e) => Err(RootError::Raft(e.to_string())),
    }
}

/// A running root peer: its raft node and its gRPC server.
pub struct RootPeer {
    pub node: RootNode,
    pub filter: PeerFilter,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RootPeer {
    /// Opens storage, starts raft, binds and serves. Returns once serving.
    pub async fn start(config: &RootConfig) -> Result<RootPeer, RootError> {
        RootPeer::start_with_metrics(config, RootMetrics::new()).await
    }

    /// [`RootPeer::start`], counting into `metrics` (whose registry the
    /// caller may already serve).
    pub async fn start_with_metrics(
        config: &RootConfig,
        metrics: Arc<RootMetrics>,
    ) -> Result<RootPeer, RootError> {
        if !config.initial_peers.contains_key(&config.peer_id) {
            return Err(RootError::InvalidArgument {
                hint: format!("peer {} is not among --peers", config.peer_id),
            });
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| RootError::Bind {
                address: config.listen.to_string(),
                source,
            })?;
        let filter = PeerFilter::default();
        let node = start_node_with_metrics(config, filter.clone(), metrics).await?;
        initialize_if_first(&node, config).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RootServer::new(node.clone()))
                .add_service(RootRaftServer::new(node.clone()))
                .serve_with_incoming_shutdown(
                    // Nagle off: small RPC replies must not wait ~40 ms for an ACK
                    // (tonic sets TCP_NODELAY only on listeners it binds itself).
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async move {
                        let _ = stopped.await;
                    },
                ),
        );
        tracing::info!(peer_id = config.peer_id, listen = %config.listen, "root peer serving");
        Ok(RootPeer {
            node,
            filter,
            stop: Some(stop),
            server,
        })
    }

    /// Stops raft, then the server, so RocksDB is closed on return. Raft goes
    /// first: a proposal in flight then fails at once instead of holding the
    /// server's graceful shutdown open while it waits for a quorum.
    pub async fn stop(mut self) -> Result<(), RootError> {
        if tokio::time::timeout(Duration::from_secs(5), self.node.raft.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("root raft did not stop within 5 s");
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match (&mut self.server).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RootError::Transport(e.to_string())),
            Err(e) => Err(RootError::Transport(e.to_string())),
        };
        // openraft's storage tasks may drop their handles of the database a
        // moment after shutdown returns; RocksDB closes (syncing its log)
        // when the last one goes, so wait for ours to be the last: a caller
        // may reopen or delete the directory right after `stop`.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(DB_RELEASE_WAIT_MAX_MS);
        while Arc::strong_count(&self.node.db) > 1 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "root storage still in use {DB_RELEASE_WAIT_MAX_MS} ms after stop; returning anyway"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(DB_RELEASE_POLL_MS)).await;
        }
        served
    }
}

/// Runs one root peer until `shutdown` completes.
pub async fn run_root(
    config: RootConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RootError> {
    run_root_with_metrics(config, None, shutdown).await
}

/// [`run_root`], also serving `/metrics` and `/health` on `metrics_listen`
/// when given. The listener is bound first, so `/health` answers 503 while
/// storage opens and raft starts, 200 once the peer serves gRPC, and 503
/// again from the start of shutdown.
pub async fn run_root_with_metrics(
    config: RootConfig,
    metrics_listen: Option<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RootError> {
    let metrics = RootMetrics::new();
    let health = Health::new();
    let _metrics_server = match metrics_listen {
        Some(address) => Some(
            MetricsServer::bind(address, metrics.registry.clone(), health.clone())
                .await
                .map_err(|source| RootError::Bind {
                    address: address.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let peer = RootPeer::start_with_metrics(&config, metrics).await?;
    health.set_serving();
    shutdown.await;
    health.set_stopping();
    peer.stop().await
}
