//! The store process driver: open the store, restart its regions, serve
//! gRPC, heartbeat the coordinators, and stop it all on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::RaftstoreError;
use crate::store::StoreNode;
use crate::{heartbeat, service};

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
    let node = StoreNode::open(
        config.store_id,
        config.advertise_address.clone(),
        &config.data_dir,
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
    let (stop_sender, stop_receiver) = watch::channel(false);
    let heartbeats = tokio::spawn(heartbeat::run(
        node.clone(),
        config.coordinator_addresses.clone(),
        stop_receiver,
    ));
    let served = service::serve(node.clone(), listener, shutdown).await;
    // send fails only when the heartbeat task is gone already.
    let _ = stop_sender.send(true);
    if let Err(error) = heartbeats.await {
        tracing::warn!(%error, "store heartbeat task ended abnormally");
    }
    node.shutdown().await;
    tracing::info!(store_id = config.store_id, "store stopped");
    served
}
