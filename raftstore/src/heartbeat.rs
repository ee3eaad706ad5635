//! The store heartbeat: every [`HEARTBEAT_INTERVAL_MS`] the store reports its
//! regions to every coordinator, and learns from the answers which regions
//! root assigns to it and where the other stores are.
//!
//! **Invariant:** heartbeats only ever add regions, and only regions that
//! overlap no local one; they never change or remove a local region (its
//! descriptor moves only through its own raft log), so a coordinator whose
//! view lags root, or root lagging a split, cannot take a region away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{StoreDescriptor, StoreHeartbeatRequest, StoreHeartbeatResponse};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::network::ChannelPool;
use crate::periodic::Periodic;
use crate::store::StoreNode;

pub const HEARTBEAT_INTERVAL_MS: u64 = 500;
/// A heartbeat to one coordinator gives up after this long.
pub const HEARTBEAT_TIMEOUT_MS: u64 = 1_000;
/// A failing coordinator is reported at warn level at most this often (at
/// debug level in between).
pub const HEARTBEAT_WARN_INTERVAL_MS: u64 = 10_000;

pub fn build_request(node: &StoreNode) -> StoreHeartbeatRequest {
    StoreHeartbeatRequest {
        store: Some(StoreDescriptor {
            store_id: node.store_id(),
            address: node.advertise_address().to_string(),
        }),
        regions: node.peers().iter().map(|peer| peer.heartbeat()).collect(),
    }
}

/// Learns store addresses and starts every assigned region not yet local.
pub async fn handle_response(node: &StoreNode, response: StoreHeartbeatResponse) {
    if !response.joined {
        return;
    }
    node.transport().set_addresses(&response.stores);
    for region in response.regions {
        let hosted_here = region
            .peers
            .iter()
            .any(|peer| peer.store_id == node.store_id());
        if !hosted_here {
            continue;
        }
        let region_id = region.region_id;
        if let Err(error) = node.ensure_region(region).await {
            tracing::warn!(store_id = node.store_id(), region_id, %error, "could not start an assigned region");
        }
    }
}

/// Warn at most once per [`HEARTBEAT_WARN_INTERVAL_MS`] per coordinator.
struct FailureLog {
    last_warned: HashMap<String, Instant>,
}

impl FailureLog {
    fn report(&mut self, address: &str, error: &str, now: Instant) {
        let due = self.last_warned.get(address).is_none_or(|last| {
            now.duration_since(*last) >= Duration::from_millis(HEARTBEAT_WARN_INTERVAL_MS)
        });
        if due {
            self.last_warned.insert(address.to_string(), now);
            tracing::warn!(coordinator = address, error, "store heartbeat failed");
        } else {
            tracing::debug!(coordinator = address, error, "store heartbeat failed");
        }
    }
}

async fn send_one(
    pool: &ChannelPool,
    address: &str,
    request: StoreHeartbeatRequest,
) -> Result<StoreHeartbeatResponse, String> {
    let channel = pool.channel(address).map_err(|e| e.to_string())?;
    let mut client = CoordinatorClient::new(channel);
    let mut grpc_request = tonic::Request::new(request);
    grpc_request.set_timeout(Duration::from_millis(HEARTBEAT_TIMEOUT_MS));
    client
        .store_heartbeat(grpc_request)
        .await
        .map(|response| response.into_inner())
        .map_err(|status| status.to_string())
}

/// Heartbeats every coordinator until `stop` turns true.
pub async fn run(node: Arc<StoreNode>, coordinators: Vec<String>, stop: watch::Receiver<bool>) {
    let pool = ChannelPool::default();
    let mut failures = FailureLog {
        last_warned: HashMap::new(),
    };
    let mut periodic = Periodic::new(Duration::from_millis(HEARTBEAT_INTERVAL_MS), stop);
    while periodic.tick().await {
        let request = build_request(&node);
        let sends = coordinators
            .iter()
            .map(|address| send_one(&pool, address, request.clone()));
        let replies = futures::future::join_all(sends).await;
        for (address, reply) in coordinators.iter().zip(replies) {
            match reply {
                Ok(response) => handle_response(&node, response).await,
                Err(error) => failures.report(address, &error, Instant::now()),
            }
        }
    }
}
