//! The store heartbeat: every [`HEARTBEAT_INTERVAL_MS`] the store reports its
//! regions to every coordinator, and learns from the answers which regions
//! root assigns to it and where the other stores are.
//!
//! **Invariant:** heartbeats only ever add regions, and only regions that
//! overlap no local one; they never change or remove a local region (its
//! descriptor moves only through its own raft log), so a coordinator whose
//! view lags root, or root lagging a split, cannot take a region away.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{StoreDescriptor, StoreHeartbeatRequest, StoreHeartbeatResponse, StoreStats};
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
    let regions: Vec<_> = node.peers().iter().map(|peer| peer.heartbeat()).collect();
    let used_bytes = regions
        .iter()
        .map(|region| region.approximate_size_bytes)
        .sum();
    let (capacity_bytes, available_bytes) = disk_space(node.db().path()).unwrap_or((0, 0));
    StoreHeartbeatRequest {
        store: Some(StoreDescriptor {
            store_id: node.store_id(),
            address: node.advertise_address().to_string(),
        }),
        regions,
        stats: Some(StoreStats {
            capacity_bytes,
            available_bytes,
            used_bytes,
        }),
    }
}

/// (capacity, available to this process) in bytes of the file system
/// holding `path`; `None` when it cannot be asked (reported as 0 = unknown:
/// a heartbeat is never held back for it).
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call and
    // `stats` is writable memory of the type statvfs fills; it is read only
    // after the call reported success.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    let fragment = stats.f_frsize as u64;
    Some((
        (stats.f_blocks as u64).saturating_mul(fragment),
        (stats.f_bavail as u64).saturating_mul(fragment),
    ))
}

/// Learns store addresses and starts every assigned region not yet local.
pub async fn handle_response(node: &StoreNode, response: StoreHeartbeatResponse) {
    if !response.joined {
        return;
    }
    node.transport().set_addresses(&response.stores);
    node.learn_gc_safe_point(response.gc_safe_point);
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
    // GC follows the safe point these heartbeats learn, and stops with them.
    let gc = tokio::spawn(crate::storage::gc::run(node.clone(), stop.clone()));
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
    // A pass cut short is safe: each GC entry is whole, and the next
    // leader redoes the pass.
    gc.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_reports_the_file_system_of_a_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (capacity, available) = disk_space(dir.path()).expect("statvfs of a temp dir");
        assert!(capacity > 0);
        assert!(available <= capacity);
    }

    #[test]
    fn disk_space_of_a_missing_path_is_unknown() {
        assert_eq!(disk_space(Path::new("/no/such/arbor/dir")), None);
    }
}
