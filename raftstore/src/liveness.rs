//! Store liveness: every store pings every other store it knows each
//! [`STORE_PING_INTERVAL_MS`]; a store neither heard from nor answering
//! for [`STORE_DEAD_AFTER_MS`] is dead. Any ping in either direction counts.
//! [`crate::hibernate`] uses it to wake the regions a dead store led.
//!
//! A store just started gives every other store [`STORE_DEAD_AFTER_MS`] of
//! grace before calling it dead, so a restart does not wake every region.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbor_proto::store_raft_client::StoreRaftClient;
use arbor_proto::StorePing;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::periodic::Periodic;
use crate::store::StoreNode;
use crate::types::StoreId;

/// How often a store pings each other store.
pub const STORE_PING_INTERVAL_MS: u64 = 250;
/// A store silent this long is dead. Its last ping may have come up to one
/// interval before it died, so this is longer than that interval plus the
/// region leader lease (`RAFT_ELECTION_TIMEOUT_MAX_MS`): the survivors'
/// votes are then not refused for a lease the dead leader still held.
pub const STORE_DEAD_AFTER_MS: u64 = 1_300;
/// Stores one store tracks (and pings).
pub const STORES_TRACKED_MAX: usize = 1_024;

const _: () = assert!(STORE_DEAD_AFTER_MS >= 4 * STORE_PING_INTERVAL_MS);
const _: () = assert!(
    STORE_DEAD_AFTER_MS > STORE_PING_INTERVAL_MS + crate::config::RAFT_ELECTION_TIMEOUT_MAX_MS
);

/// Whether a store last heard from at `last_heard_ms` (`None`: never) is
/// alive at `now_ms`, for a tracker started at `started_ms`.
pub fn is_alive(last_heard_ms: Option<u64>, started_ms: u64, now_ms: u64) -> bool {
    let since = last_heard_ms.unwrap_or(started_ms).max(started_ms);
    now_ms.saturating_sub(since) < STORE_DEAD_AFTER_MS
}

/// When each other store was last heard from.
pub struct StoreLiveness {
    store_id: StoreId,
    epoch: Instant,
    heard_ms: Mutex<HashMap<StoreId, u64>>,
}

impl StoreLiveness {
    pub fn new(store_id: StoreId) -> Self {
        Self {
            store_id,
            epoch: Instant::now(),
            heard_ms: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn heard_from(&self, store_id: StoreId) {
        if store_id == self.store_id || store_id == 0 {
            return;
        }
        let now_ms = self.now_ms();
        let mut heard = self
            .heard_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if heard.len() >= STORES_TRACKED_MAX && !heard.contains_key(&store_id) {
            return;
        }
        heard.insert(store_id, now_ms);
    }

    /// This store is always alive to itself.
    pub fn is_alive(&self, store_id: StoreId) -> bool {
        if store_id == self.store_id {
            return true;
        }
        let last = self
            .heard_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&store_id)
            .copied();
        is_alive(last, 0, self.now_ms())
    }
}

/// Pings every known store each [`STORE_PING_INTERVAL_MS`] until `stop`.
pub async fn run(node: Arc<StoreNode>, liveness: Arc<StoreLiveness>, stop: watch::Receiver<bool>) {
    let mut periodic = Periodic::new(Duration::from_millis(STORE_PING_INTERVAL_MS), stop);
    let timeout = Duration::from_millis(STORE_DEAD_AFTER_MS / 2);
    while periodic.tick().await {
        let me = node.store_id();
        let targets: Vec<(StoreId, String)> = node
            .transport()
            .addresses()
            .into_iter()
            .filter(|(store_id, _)| *store_id != me)
            .take(STORES_TRACKED_MAX)
            .collect();
        let pings = targets.into_iter().map(|(store_id, address)| {
            let node = node.clone();
            let liveness = liveness.clone();
            async move {
                let Ok(channel) = node.transport().channel(&address) else {
                    return;
                };
                let mut request = tonic::Request::new(StorePing { store_id: me });
                request.set_timeout(timeout);
                if let Ok(reply) = StoreRaftClient::new(channel).ping(request).await {
                    if reply.into_inner().store_id == store_id {
                        liveness.heard_from(store_id);
                    }
                }
            }
        });
        futures::future::join_all(pings).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_dead_once_silent_for_the_threshold_after_a_grace_period() {
        assert!(
            is_alive(None, 0, STORE_DEAD_AFTER_MS - 1),
            "grace after start"
        );
        assert!(!is_alive(None, 0, STORE_DEAD_AFTER_MS));
        assert!(is_alive(Some(5_000), 0, 5_000 + STORE_DEAD_AFTER_MS - 1));
        assert!(!is_alive(Some(5_000), 0, 5_000 + STORE_DEAD_AFTER_MS));
        assert!(
            is_alive(Some(10), 9_000, 9_500),
            "heard before a restart of the tracker: grace from the restart"
        );
    }

    #[test]
    fn a_store_is_alive_to_itself_and_heard_stores_stay_alive() {
        let liveness = StoreLiveness::new(1);
        assert!(liveness.is_alive(1));
        liveness.heard_from(2);
        assert!(liveness.is_alive(2));
        liveness.heard_from(1);
        assert!(liveness.heard_ms.lock().expect("lock").get(&1).is_none());
    }
}
