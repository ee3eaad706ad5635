//! The store process driver: open the store, restart its regions, serve
//! gRPC, heartbeat the coordinators, and stop it all on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arbor_metrics::{Health, MetricsServer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::config::SHUTDOWN_GRACE_MS;
use crate::error::RaftstoreError;
use crate::store::StoreNode;
use crate::{heartbeat, hibernate, liveness, service};

pub struct StoreConfig {
    pub store_id: u64,
    /// Where to bind gRPC (`Store` and `StoreRaft` on one server).
    pub listen: SocketAddr,
    /// "host:port" other processes dial (no scheme).
    pub advertise_address: String,
    /// This store's own RocksDB lives here.
    pub data_dir: PathBuf,
    /// "host:port" of each coordinator.
    pub coordinator_addresses: Vec<String>,
}

/// Runs a store until `shutdown` resolves. A restart on the same `data_dir`
/// keeps every region and all of its data.
pub async fn run_store(
    config: StoreConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RaftstoreError> {
    run_store_with_metrics(config, None, shutdown).await
}

/// [`run_store`], also serving `/metrics` and `/health` on `metrics_listen`
/// when given. It is bound first: `/health` answers 503 while the store
/// opens RocksDB and restarts its regions, 200 once it serves gRPC, and 503
/// again from the start of shutdown.
pub async fn run_store_with_metrics(
    config: StoreConfig,
    metrics_listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RaftstoreError> {
    let metrics = service::StoreMetrics::new();
    let health = Health::new();
    let _metrics_server = match metrics_listen {
        Some(address) => Some(
            MetricsServer::bind(address, metrics.registry.clone(), health.clone())
                .await
                .map_err(|source| RaftstoreError::Bind {
                    address: address.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let node = StoreNode::open(
        config.store_id,
        config.advertise_address.clone(),
        &config.data_dir,
        config.coordinator_addresses.clone(),
    )?;
    let restarted = node.start_persisted_regions().await?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| RaftstoreError::Bind {
                address: config.listen.to_string(),
                source,
            })?;
    tracing::info!(
        store_id = config.store_id,
        listen = %config.listen,
        advertise = %config.advertise_address,
        regions = restarted,
        "store serving"
    );
    serve_node(
        node,
        listener,
        config.coordinator_addresses.clone(),
        metrics,
        health,
        shutdown,
    )
    .await
}

/// Serves an opened store `node` (regions restarted) on `listener`: gRPC,
/// heartbeats to `coordinators`, liveness pings and hibernation, until
/// `shutdown` resolves; then stops every region. (What [`run_store`] does
/// after opening; tests that need the node call it directly.)
pub async fn serve_node(
    node: Arc<StoreNode>,
    listener: TcpListener,
    coordinators: Vec<String>,
    metrics: Arc<service::StoreMetrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RaftstoreError> {
    let store_id = node.store_id();
    let (stop_sender, stop_receiver) = watch::channel(false);
    let heartbeats = tokio::spawn(heartbeat::run(
        node.clone(),
        coordinators,
        stop_receiver.clone(),
    ));
    let pings = tokio::spawn(liveness::run(
        node.clone(),
        node.liveness().clone(),
        stop_receiver.clone(),
    ));
    let hibernation = tokio::spawn(hibernate::run(
        node.clone(),
        node.liveness().clone(),
        stop_receiver,
    ));
    metrics.observe(&node)?;
    health.set_serving();
    let stopping = health.clone();
    let (signalled, on_signal) = oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        stopping.set_stopping();
        // Fails only when the server is gone already.
        let _ = signalled.send(());
    };
    let serve = service::serve_with_metrics(node.clone(), listener, shutdown, metrics);
    tokio::pin!(serve);
    // gRPC's graceful shutdown waits for every request in flight; give them
    // SHUTDOWN_GRACE_MS, then drop the rest.
    let served = tokio::select! {
        served = &mut serve => served,
        Ok(()) = on_signal => {
            let grace = std::time::Duration::from_millis(SHUTDOWN_GRACE_MS);
            match tokio::time::timeout(grace, &mut serve).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!(store_id, grace_ms = SHUTDOWN_GRACE_MS, "requests still in flight at shutdown are dropped");
                    Ok(())
                }
            }
        }
    };
    // send fails only when the heartbeat task is gone already.
    let _ = stop_sender.send(true);
    for (task, what) in [
        (heartbeats, "heartbeat"),
        (pings, "liveness"),
        (hibernation, "hibernation"),
    ] {
        if let Err(error) = task.await {
            tracing::warn!(%error, task = what, "store task ended abnormally");
        }
    }
    node.shutdown().await;
    tracing::info!(store_id, "store stopped");
    served
}
