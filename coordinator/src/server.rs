//! The coordinator process: three small driver loops around the pure parts.
//!
//! - tail: `ReadState`, then `Watch` root, replacing the view's root state.
//! - lease: [`crate::lease::decide`] every tick, proposing grants/renewals.
//! - duties (holder only): bootstrap the cluster, let heartbeating stores
//!   join, bootstrap the first region.
//!
//! On shutdown a holder seals its lease so a standby takes over at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arbor_metrics::{Health, MetricsServer};
use arbor_proto::coordinator_server::CoordinatorServer;
use arbor_proto::root_event::Kind;
use arbor_proto::*;
use arbor_root::RootClient;
use futures::StreamExt;
use tonic::transport::server::TcpIncoming;

use crate::error::CoordinatorError;
use crate::gc::GcConfig;
use crate::lease::{decide, LeaseAction, LocalTenure, LEASE_TTL_MS};
use crate::schedule::{MergeConfig, ScheduleConfig};
use crate::scheduler::STORE_DEAD_AFTER_MIN_MS;
use crate::service::{system_clock, Coordinator, CoordinatorHandle, CoordinatorMetrics};
use crate::view::ClusterView;

/// How often the lease loop looks at the lease.
pub const LEASE_TICK_MS: u64 = 100;
/// How often the holder looks for bootstrap work.
pub const DUTIES_TICK_MS: u64 = 300;
/// Pause before re-subscribing to root after the watch stream broke.
pub const TAIL_RETRY_MS: u64 = 300;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub coordinator_id: String,
    pub listen: SocketAddr,
    pub advertise_address: String,
    pub root_addresses: Vec<String>,
    /// Split regions with more keys than this.
    pub region_split_keys: u64,
    /// Split regions larger on disk than this.
    pub region_split_bytes: u64,
    /// Replace the replicas of a store silent this long (at least
    /// [`crate::scheduler::STORE_DEAD_AFTER_MIN_MS`]).
    pub store_dead_after_ms: u64,
}

/// Runs one coordinator until `shutdown` completes.
pub async fn run_coordinator(
    config: CoordinatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    run_coordinator_with_metrics(config, None, shutdown).await
}

/// [`run_coordinator`], also serving `/metrics` and `/health` on
/// `metrics_listen` when given (`/health`: 200 while the gRPC server runs,
/// 503 before and from the start of shutdown).
pub async fn run_coordinator_with_metrics(
    config: CoordinatorConfig,
    metrics_listen: Option<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    run_coordinator_with_gc(config, metrics_listen, GcConfig::default(), shutdown).await
}

/// [`run_coordinator_with_metrics`] with GC settings other than the
/// default (a separate argument so `CoordinatorConfig` literals elsewhere
/// keep compiling).
pub async fn run_coordinator_with_gc(
    config: CoordinatorConfig,
    metrics_listen: Option<SocketAddr>,
    gc: GcConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    run_coordinator_with_merge(config, metrics_listen, gc, MergeConfig::default(), shutdown).await
}

/// [`run_coordinator_with_gc`] with automatic region merge configured
/// (`--region-merge-keys` / `--region-merge-bytes`; off by default, see
/// [`MergeConfig`]). A separate argument, like `gc`, so `CoordinatorConfig`
/// literals elsewhere keep compiling.
pub async fn run_coordinator_with_merge(
    config: CoordinatorConfig,
    metrics_listen: Option<SocketAddr>,
    gc: GcConfig,
    merge: MergeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    gc.check()
        .map_err(|hint| CoordinatorError::InvalidArgument { hint })?;
    merge
        .check(config.region_split_keys, config.region_split_bytes)
        .map_err(|hint| CoordinatorError::InvalidArgument { hint })?;
    if config.root_addresses.is_empty() {
        return Err(CoordinatorError::InvalidArgument {
            hint: "no root addresses given".into(),
        });
    }
    if config.store_dead_after_ms < STORE_DEAD_AFTER_MIN_MS {
        return Err(CoordinatorError::InvalidArgument {
            hint: format!(
                "the store dead-after time must be at least {STORE_DEAD_AFTER_MIN_MS} ms, not {}",
                config.store_dead_after_ms
            ),
        });
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| CoordinatorError::Bind {
            address: config.listen.to_string(),
            source,
        })?;
    let metrics = CoordinatorMetrics::new();
    let health = Health::new();
    let _metrics_server = match metrics_listen {
        Some(address) => Some(
            MetricsServer::bind(address, metrics.registry.clone(), health.clone())
                .await
                .map_err(|source| CoordinatorError::Bind {
                    address: address.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let coordinator = Arc::new(Coordinator {
        id: config.coordinator_id.clone(),
        address: config.advertise_address.clone(),
        root: RootClient::new(config.root_addresses.clone()),
        clock: system_clock(),
        view: RwLock::new(ClusterView::default()),
        tenure: Mutex::new(LocalTenure::default()),
        allocators: tokio::sync::Mutex::default(),
        metrics: metrics.clone(),
    });
    metrics.observe(&coordinator)?;
    let loops = [
        tokio::spawn(tail_root(coordinator.clone())),
        tokio::spawn(lease_loop(coordinator.clone())),
        tokio::spawn(duties_loop(coordinator.clone())),
        tokio::spawn(crate::gc::run(coordinator.clone(), gc)),
        tokio::spawn(crate::schedule::run(
            coordinator.clone(),
            ScheduleConfig {
                split_keys_max: config.region_split_keys,
                split_bytes_max: config.region_split_bytes,
                store_dead_after_ms: config.store_dead_after_ms,
                merge,
            },
        )),
    ];
    tracing::info!(id = %config.coordinator_id, listen = %config.listen, "coordinator serving");
    health.set_serving();
    let stopping = health.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.set_stopping();
    };
    let served = tonic::transport::Server::builder()
        .add_service(CoordinatorServer::new(CoordinatorHandle(
            coordinator.clone(),
        )))
        .serve_with_incoming_shutdown(
            // Nagle off: small RPC replies must not wait ~40 ms for an ACK
            // (tonic sets TCP_NODELAY only on listeners it binds itself).
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    for task in loops {
        task.abort();
    }
    seal_if_holder(&coordinator).await;
    served.map_err(|e| CoordinatorError::Transport(e.to_string()))
}

async fn tail_root(coordinator: Arc<Coordinator>) {
    loop {
        if let Err(error) = tail_once(&coordinator).await {
            tracing::debug!("root tail interrupted: {error}");
        }
        tokio::time::sleep(Duration::from_millis(TAIL_RETRY_MS)).await;
    }
}

async fn tail_once(coordinator: &Coordinator) -> Result<(), CoordinatorError> {
    let state = coordinator.root.read_state().await?;
    let from = state.cursor + 1;
    install_state(coordinator, state);
    let mut stream = coordinator.root.watch(from).await?;
    while let Some(item) = stream.next().await {
        let state = item.map_err(|status| arbor_root::RootError::Unreachable {
            addresses: coordinator.root.addresses(),
            last_error: status.to_string(),
        })?;
        install_state(coordinator, state);
    }
    Ok(())
}

/// Replaces the view's root state unless it would move the cursor backwards
/// (a watch from a lagging peer must not undo what a fresher read showed).
fn install_state(coordinator: &Coordinator, state: RootState) {
    let mut view = coordinator.view_mut();
    if state.cursor >= view.root.cursor {
        view.root = state;
    }
}

async fn lease_loop(coordinator: Arc<Coordinator>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(LEASE_TICK_MS));
    loop {
        ticker.tick().await;
        let lease = coordinator.view().root.lease.clone();
        let tenure = coordinator.tenure();
        let sent_ms = coordinator.now_ms();
        let (kind, generation) = match decide(lease.as_ref(), &coordinator.id, tenure, sent_ms) {
            LeaseAction::Wait => continue,
            LeaseAction::Campaign { generation } => (
                Kind::LeaseGranted(LeaseGranted {
                    holder_id: coordinator.id.clone(),
                    holder_address: coordinator.address.clone(),
                    generation,
                    ttl_ms: LEASE_TTL_MS,
                }),
                generation,
            ),
            LeaseAction::Renew { generation } => (
                Kind::LeaseRenewed(LeaseRenewed {
                    holder_id: coordinator.id.clone(),
                    generation,
                    ttl_ms: LEASE_TTL_MS,
                }),
                generation,
            ),
        };
        match coordinator.root.propose(kind).await {
            Ok(answer) if answer.accepted => {
                if tenure.generation != generation {
                    tracing::info!(id = %coordinator.id, generation, "lease acquired");
                }
                coordinator.set_tenure(LocalTenure::confirmed(generation, sent_ms));
                refresh_view(&coordinator).await;
            }
            Ok(answer) => {
                tracing::debug!(
                    generation,
                    "lease proposal rejected: {}",
                    answer.rejection_detail
                );
                // Whatever we held is gone: only a root-accepted renewal
                // extends a tenure.
                if tenure.generation == generation {
                    coordinator.set_tenure(LocalTenure::default());
                }
                refresh_view(&coordinator).await;
            }
            Err(error) => tracing::debug!("lease proposal failed: {error}"),
        }
    }
}

/// A linearizable read so the next decision does not rest on a stale watch.
pub(crate) async fn refresh_view(coordinator: &Coordinator) {
    if let Ok(state) = coordinator.root.read_state().await {
        install_state(coordinator, state);
    }
}

async fn duties_loop(coordinator: Arc<Coordinator>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(DUTIES_TICK_MS));
    loop {
        ticker.tick().await;
        if !coordinator.is_holder() {
            continue;
        }
        let work = bootstrap_work(&coordinator.view(), &coordinator.id, coordinator.now_ms());
        for event in work {
            // Re-check before each proposal: the tenure may lapse mid-way.
            if !coordinator.is_holder() {
                break;
            }
            match coordinator.root.propose(event).await {
                Ok(answer) if !answer.accepted => {
                    tracing::debug!("bootstrap step rejected: {}", answer.rejection_detail)
                }
                Ok(_) => {}
                Err(error) => tracing::debug!("bootstrap step failed: {error}"),
            }
        }
        refresh_view(&coordinator).await;
    }
}

/// What the holder still has to propose to bring the cluster up. Pure.
pub fn bootstrap_work(view: &ClusterView, coordinator_id: &str, now_ms: u64) -> Vec<Kind> {
    if view.root.cluster_id.is_empty() {
        return vec![Kind::ClusterBootstrapped(ClusterBootstrapped {
            cluster_id: format!("arbor-{now_ms:x}-{coordinator_id}"),
        })];
    }
    let mut work: Vec<Kind> = view
        .stores_waiting_to_join()
        .into_iter()
        .map(|store| Kind::StoreJoined(StoreJoined { store: Some(store) }))
        .collect();
    if let Some(region) = view.first_region_to_bootstrap() {
        work.push(Kind::RegionBootstrapped(RegionBootstrapped {
            region: Some(region),
        }));
    }
    work
}

async fn seal_if_holder(coordinator: &Coordinator) {
    let tenure = coordinator.tenure();
    if !tenure.holds(coordinator.now_ms()) {
        return;
    }
    coordinator.set_tenure(LocalTenure::default());
    let seal = Kind::LeaseSealed(LeaseSealed {
        holder_id: coordinator.id.clone(),
        generation: tenure.generation,
    });
    match coordinator.root.propose(seal).await {
        Ok(answer) if answer.accepted => {
            tracing::info!(generation = tenure.generation, "lease sealed for hand-off")
        }
        Ok(answer) => tracing::warn!("lease seal rejected: {}", answer.rejection_detail),
        Err(error) => tracing::warn!("lease seal failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_starts_with_the_cluster_id_then_stores_then_the_first_region() {
        let mut view = ClusterView::default();
        let work = bootstrap_work(&view, "c1", 5);
        assert!(matches!(work.as_slice(), [Kind::ClusterBootstrapped(_)]));

        view.root.cluster_id = "x".into();
        for id in 1..=3 {
            let store = StoreDescriptor {
                store_id: id,
                address: format!("s{id}"),
            };
            view.record_heartbeat(&store, vec![], 1);
        }
        let work = bootstrap_work(&view, "c1", 5);
        assert_eq!(work.len(), 3);
        assert!(work.iter().all(|k| matches!(k, Kind::StoreJoined(_))));

        view.root.stores = (1..=3)
            .map(|id| StoreDescriptor {
                store_id: id,
                address: format!("s{id}"),
            })
            .collect();
        let work = bootstrap_work(&view, "c1", 5);
        assert!(matches!(work.as_slice(), [Kind::RegionBootstrapped(_)]));
    }
}
