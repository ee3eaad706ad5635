//! The store: one RocksDB, the transport, and the peers of every local
//! region, addressed by region id.
//!
//! **Invariant:** a region's descriptor is persisted before its raft group
//! starts, so a restart finds every region that ever took a raft message.
//!
//! **Invariant:** a replica removed by a peer change leaves a tombstone (the
//! descriptor without this store); no heartbeat naming the region at that
//! configuration or an older one, nor any raft message, starts it again.
//!
//! **Invariant:** local regions never overlap. A region a coordinator
//! assigns is started only when no local region overlaps it: a region born
//! of a split is started by the split's apply on this store, never earlier
//! from a heartbeat, because until then the parent here still owns (and may
//! still write) its keys.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use arbor_proto::RegionDescriptor;
use rocksdb::DB;

use crate::config::{raft_config, REGIONS_PER_STORE_MAX};
use crate::error::RaftstoreError;
use crate::liveness::StoreLiveness;
use crate::memory_lock::MemoryLockTable;
use crate::network::Transport;
use crate::peer::{range_of, Peer};
use crate::storage;
use crate::storage::state_machine::{MergeObserver, SplitObserver};
use crate::tso::TsoClient;
use crate::types::{RegionId, StoreId};

/// How long the store's TSO client keeps asking the coordinators for a
/// one-phase commit's timestamp (below the store's request timeout, so the
/// client hears `ServerBusy` rather than a transport timeout).
pub const STORE_TSO_DEADLINE_MS: u64 = 3_000;

const _: () = assert!(STORE_TSO_DEADLINE_MS < crate::config::REQUEST_TIMEOUT_MS);

/// What `open_peer`/`destroy_peer` did: done (now or before), or refused
/// with why (answered as `FAILED_PRECONDITION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaChange {
    Done,
    Refused { hint: String },
}

fn conf_ver_of(descriptor: &RegionDescriptor) -> u64 {
    descriptor.epoch.unwrap_or_default().conf_ver
}

/// A heartbeat (root's view, possibly stale) may start a region whose
/// replica was removed here only at a configuration newer than the removal.
pub fn heartbeat_may_reopen(tombstone: &RegionDescriptor, assigned: &RegionDescriptor) -> bool {
    conf_ver_of(assigned) > conf_ver_of(tombstone)
}

/// A leader re-adding this store opens the replica with the descriptor it
/// has now, which may be the very one the removal produced (same
/// `conf_ver`, without this store); an `OpenPeer` of an older
/// configuration is a late call from before the removal.
pub fn open_peer_may_reopen(tombstone: &RegionDescriptor, asked: &RegionDescriptor) -> bool {
    conf_ver_of(asked) >= conf_ver_of(tombstone)
}

pub struct StoreNode {
    /// This node itself, for the split observers its regions call back.
    me: Weak<StoreNode>,
    stopping: AtomicBool,
    store_id: StoreId,
    advertise_address: String,
    db: Arc<DB>,
    transport: Arc<Transport>,
    raft_config: Arc<openraft::Config>,
    peers: RwLock<HashMap<RegionId, Arc<Peer>>>,
    /// Held while a peer is created, so two callers never start two rafts
    /// over one region's log.
    creating: tokio::sync::Mutex<()>,
    /// Keys of one-phase commits in flight on regions this store leads.
    memory_locks: Arc<MemoryLockTable>,
    /// Commit timestamps of one-phase commits; `None` without coordinators
    /// (then one-phase commits are refused).
    tso: Option<Arc<TsoClient>>,
    /// Which other stores answered pings lately ([`crate::liveness`]).
    liveness: Arc<StoreLiveness>,
    /// Root's GC safe point as the last heartbeat answer told it (only
    /// rises); the regions this store leads collect below it
    /// ([`crate::storage::gc`]).
    gc_safe_point: AtomicU64,
}

impl StoreNode {
    /// Opens (creating if missing) the store's RocksDB under `data_dir`;
    /// `coordinators` serve the timestamps of one-phase commits.
    pub fn open(
        store_id: StoreId,
        advertise_address: String,
        data_dir: &Path,
        coordinators: Vec<String>,
    ) -> Result<Arc<Self>, RaftstoreError> {
        let db = storage::open_db(data_dir)?;
        let transport = Arc::new(Transport::new());
        transport.set_address(store_id, advertise_address.clone());
        let raft_config = raft_config()?;
        let tso = (!coordinators.is_empty()).then(|| {
            let deadline = std::time::Duration::from_millis(STORE_TSO_DEADLINE_MS);
            Arc::new(TsoClient::new(coordinators, deadline))
        });
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            stopping: AtomicBool::new(false),
            store_id,
            advertise_address,
            db,
            transport,
            raft_config,
            peers: RwLock::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            memory_locks: Arc::new(MemoryLockTable::default()),
            tso,
            liveness: Arc::new(StoreLiveness::new(store_id)),
            gc_safe_point: AtomicU64::new(0),
        }))
    }

    /// The GC safe point this store knows (0 = none yet).
    pub fn gc_safe_point(&self) -> u64 {
        self.gc_safe_point.load(Ordering::Relaxed)
    }

    /// Learns root's GC safe point; an older answer (a lagging coordinator)
    /// never lowers it.
    pub fn learn_gc_safe_point(&self, safe_point: u64) {
        self.gc_safe_point.fetch_max(safe_point, Ordering::Relaxed);
    }

    pub fn liveness(&self) -> &Arc<StoreLiveness> {
        &self.liveness
    }

    pub fn memory_locks(&self) -> &Arc<MemoryLockTable> {
        &self.memory_locks
    }

    pub fn tso(&self) -> Option<&Arc<TsoClient>> {
        self.tso.as_ref()
    }

    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    pub fn advertise_address(&self) -> &str {
        &self.advertise_address
    }

    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    pub fn peer(&self, region_id: RegionId) -> Option<Arc<Peer>> {
        let peers = self
            .peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.get(&region_id).cloned()
    }

    /// Every local peer, in region id order.
    pub fn peers(&self) -> Vec<Arc<Peer>> {
        let peers = self
            .peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut list: Vec<Arc<Peer>> = peers.values().cloned().collect();
        list.sort_by_key(|peer| peer.region_id());
        list
    }

    pub fn region_count(&self) -> usize {
        self.peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// The local region whose range starts at `start_key`, if any.
    pub fn region_starting_at(&self, start_key: &[u8]) -> Option<RegionDescriptor> {
        self.peers()
            .iter()
            .map(|peer| peer.descriptor())
            .find(|descriptor| descriptor.start_key == start_key)
    }

    /// A local region other than `region_id` whose range overlaps `descriptor`'s.
    fn overlapping_region(&self, descriptor: &RegionDescriptor) -> Option<RegionId> {
        let range = range_of(descriptor);
        self.peers().iter().find_map(|peer| {
            let local = peer.descriptor();
            let local_range = range_of(&local);
            let disjoint = (!local_range.end.is_empty() && local_range.end <= range.start)
                || (!range.end.is_empty() && range.end <= local_range.start);
            (local.region_id != descriptor.region_id && !disjoint).then_some(local.region_id)
        })
    }

    /// Restarts the raft group of every region persisted on this store
    /// (their descriptors are as apply left them; no overlap check).
    pub async fn start_persisted_regions(&self) -> Result<usize, RaftstoreError> {
        let descriptors = storage::load_descriptors(&self.db)?;
        let count = descriptors.len();
        for descriptor in descriptors {
            let _creating = self.creating.lock().await;
            self.start_peer(descriptor, true).await?;
        }
        Ok(count)
    }

    /// Makes sure this store runs a peer of the region a coordinator
    /// assigned: persists the descriptor and starts the group when the region
    /// is new here and overlaps no local region. A region already here is left
    /// alone: its descriptor changes only through its own raft log.
    pub async fn ensure_region(&self, descriptor: RegionDescriptor) -> Result<(), RaftstoreError> {
        let region_id = descriptor.region_id;
        if self.peer(region_id).is_some() {
            return Ok(());
        }
        let _creating = self.creating.lock().await;
        if self.peer(region_id).is_some() {
            return Ok(());
        }
        if let Some(local) = self.overlapping_region(&descriptor) {
            tracing::debug!(
                store_id = self.store_id,
                region_id,
                overlapping_region_id = local,
                "not starting an assigned region that overlaps a local one (split not applied here yet)"
            );
            return Ok(());
        }
        if let Some(tombstone) = storage::load_tombstone(&self.db, region_id)? {
            if !heartbeat_may_reopen(&tombstone, &descriptor) {
                tracing::debug!(
                    store_id = self.store_id,
                    region_id,
                    "not starting an assigned region whose replica was removed here"
                );
                return Ok(());
            }
        }
        if self.region_count() >= REGIONS_PER_STORE_MAX {
            return Err(RaftstoreError::Raft {
                region_id,
                hint: format!("store already hosts {REGIONS_PER_STORE_MAX} regions"),
            });
        }
        storage::save_reopened_descriptor(&self.db, &descriptor)?;
        self.start_peer(descriptor, true).await
    }

    /// `StoreRaft.OpenPeer`: starts an uninitialized replica of `descriptor`
    /// (the region as its leader has it now) that gets its state only from
    /// raft — never `initialize`d here. Idempotent.
    pub async fn open_peer(
        &self,
        descriptor: RegionDescriptor,
    ) -> Result<ReplicaChange, RaftstoreError> {
        let region_id = descriptor.region_id;
        let _creating = self.creating.lock().await;
        if self.peer(region_id).is_some() {
            return Ok(ReplicaChange::Done);
        }
        if let Some(local) = self.overlapping_region(&descriptor) {
            return Ok(ReplicaChange::Refused {
                hint: format!("region {region_id} overlaps local region {local}"),
            });
        }
        if let Some(tombstone) = storage::load_tombstone(&self.db, region_id)? {
            if !open_peer_may_reopen(&tombstone, &descriptor) {
                return Ok(ReplicaChange::Refused {
                    hint: format!(
                        "this store's replica of region {region_id} was removed at conf_ver {}",
                        conf_ver_of(&tombstone)
                    ),
                });
            }
        }
        if self.region_count() >= REGIONS_PER_STORE_MAX {
            return Ok(ReplicaChange::Refused {
                hint: format!("store already hosts {REGIONS_PER_STORE_MAX} regions"),
            });
        }
        storage::save_reopened_descriptor(&self.db, &descriptor)?;
        self.start_peer(descriptor, false).await?;
        Ok(ReplicaChange::Done)
    }

    /// `StoreRaft.DestroyPeer`: stops this store's replica of the region
    /// and deletes its log, state, descriptor and data, leaving a tombstone
    /// at `after` (the descriptor that no longer lists this store). Done
    /// when the replica is gone or was never here.
    pub async fn destroy_peer(
        &self,
        after: RegionDescriptor,
    ) -> Result<ReplicaChange, RaftstoreError> {
        let region_id = after.region_id;
        if after
            .peers
            .iter()
            .any(|peer| peer.store_id == self.store_id)
        {
            return Err(RaftstoreError::InvalidArgument {
                hint: format!(
                    "the descriptor of region {region_id} to destroy still lists store {}",
                    self.store_id
                ),
            });
        }
        let _creating = self.creating.lock().await;
        let Some(peer) = self.peer(region_id) else {
            // Never here or gone already: only make sure a late heartbeat
            // cannot bring it back. No data is touched: the range may
            // belong to another local region now.
            let newer = storage::load_tombstone(&self.db, region_id)?
                .is_some_and(|tombstone| conf_ver_of(&tombstone) >= conf_ver_of(&after));
            if !newer {
                storage::save_tombstone(&self.db, &after)?;
            }
            return Ok(ReplicaChange::Done);
        };
        let local = peer.descriptor();
        if conf_ver_of(&local) > conf_ver_of(&after) {
            return Ok(ReplicaChange::Refused {
                hint: format!(
                    "the replica here is at conf_ver {}, newer than the change at {}",
                    conf_ver_of(&local),
                    conf_ver_of(&after)
                ),
            });
        }
        self.peers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&region_id);
        peer.shutdown().await;
        storage::destroy_region(&self.db, region_id, &range_of(&local), &after)?;
        tracing::info!(
            store_id = self.store_id,
            region_id,
            conf_ver = conf_ver_of(&after),
            "destroyed a removed region replica"
        );
        Ok(ReplicaChange::Done)
    }

    /// Starts the group of a persisted descriptor; the caller holds
    /// `creating`. `may_initialize` false: never `Raft::initialize` it,
    /// whatever the first-peer rule says (a replica opened for a peer
    /// change).
    async fn start_peer(
        &self,
        descriptor: RegionDescriptor,
        may_initialize: bool,
    ) -> Result<(), RaftstoreError> {
        let region_id = descriptor.region_id;
        if self.stopping.load(Ordering::SeqCst) {
            return Err(RaftstoreError::Raft {
                region_id,
                hint: "the store is shutting down".into(),
            });
        }
        let (peer, must_initialize) = Peer::start(
            self.db.clone(),
            self.store_id,
            descriptor,
            self.transport.clone(),
            self.raft_config.clone(),
            self.split_observer(),
            self.merge_observer(),
        )
        .await?;
        tracing::info!(store_id = self.store_id, region_id, "started region peer");
        self.peers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(region_id, peer.clone());
        if must_initialize && may_initialize {
            peer.initialize().await?;
        }
        Ok(())
    }

    /// What a region's apply calls after a split is on disk: start the new
    /// region's group here (in a task: apply must not wait for it).
    fn split_observer(&self) -> SplitObserver {
        let me = self.me.clone();
        Arc::new(move |left: &RegionDescriptor, right: &RegionDescriptor| {
            let Some(node) = me.upgrade() else {
                return;
            };
            let (parent_id, right) = (left.region_id, right.clone());
            tokio::spawn(async move { node.start_split_region(parent_id, right).await });
        })
    }

    /// Starts the region a split of `parent_id` created (its state is on
    /// disk already). The parent's leader makes the new group campaign at
    /// once, so it has a leader without waiting for an election timeout.
    async fn start_split_region(&self, parent_id: RegionId, descriptor: RegionDescriptor) {
        let region_id = descriptor.region_id;
        {
            let _creating = self.creating.lock().await;
            if self.peer(region_id).is_some() {
                return;
            }
            if let Err(error) = self.start_peer(descriptor, true).await {
                tracing::warn!(store_id = self.store_id, region_id, %error, "could not start a region born of a split");
                return;
            }
        }
        let parent_leads = self
            .peer(parent_id)
            .is_some_and(|parent| parent.is_leader());
        if let (true, Some(peer)) = (parent_leads, self.peer(region_id)) {
            if let Err(error) = peer.raft().trigger().elect().await {
                tracing::debug!(region_id, %error, "new region did not campaign");
            }
        }
    }

    /// What a region's apply calls after a merge is on disk: forget the
    /// source here at once (so no request, heartbeat or metric sees it
    /// again), then stop its group and clear what it may have written
    /// since (in a task: apply must not wait for it).
    fn merge_observer(&self) -> MergeObserver {
        let me = self.me.clone();
        Arc::new(
            move |_merged: &RegionDescriptor, source: &RegionDescriptor| {
                let Some(node) = me.upgrade() else {
                    return;
                };
                let source_id = source.region_id;
                let removed = node
                    .peers
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(&source_id);
                tokio::spawn(async move { node.stop_merged_source(source_id, removed).await });
            },
        )
    }

    /// Stops the group of a source region merged away here and clears its
    /// raft state (keeping its tombstone and merged record).
    async fn stop_merged_source(&self, source_id: RegionId, peer: Option<Arc<Peer>>) {
        let _creating = self.creating.lock().await;
        if let Some(peer) = peer {
            peer.shutdown().await;
        }
        match storage::clear_merged_source(&self.db, source_id) {
            Ok(()) => tracing::info!(
                store_id = self.store_id,
                region_id = source_id,
                "stopped a region merged away"
            ),
            Err(error) => tracing::warn!(
                store_id = self.store_id,
                region_id = source_id,
                %error,
                "could not clear the state of a region merged away"
            ),
        }
    }

    /// Stops every region's raft group.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _creating = self.creating.lock().await;
        let peers: Vec<Arc<Peer>> = {
            let mut peers = self
                .peers
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            peers.drain().map(|(_, peer)| peer).collect()
        };
        for peer in peers {
            peer.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use arbor_proto::RegionEpoch;

    use super::*;

    fn at_conf_ver(conf_ver: u64) -> RegionDescriptor {
        RegionDescriptor {
            region_id: 1,
            epoch: Some(RegionEpoch {
                version: 1,
                conf_ver,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_removed_replica_is_not_brought_back_by_a_stale_heartbeat() {
        let tombstone = at_conf_ver(2);
        assert!(!heartbeat_may_reopen(&tombstone, &at_conf_ver(1)));
        assert!(!heartbeat_may_reopen(&tombstone, &at_conf_ver(2)));
        assert!(heartbeat_may_reopen(&tombstone, &at_conf_ver(3)));
    }

    #[test]
    fn a_removed_replica_reopens_only_for_a_re_add_at_or_after_its_removal() {
        let tombstone = at_conf_ver(2);
        assert!(
            !open_peer_may_reopen(&tombstone, &at_conf_ver(1)),
            "a late OpenPeer from before the removal"
        );
        assert!(open_peer_may_reopen(&tombstone, &at_conf_ver(2)));
        assert!(open_peer_may_reopen(&tombstone, &at_conf_ver(3)));
    }
}
