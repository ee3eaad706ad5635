//! The store: one RocksDB, the transport, and the peers of every local
//! region, addressed by region id.
//!
//! **Invariant:** a region's descriptor is persisted before its raft group
//! starts, so a restart finds every region that ever took a raft message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use arbor_proto::RegionDescriptor;
use rocksdb::DB;

use crate::config::{raft_config, REGIONS_PER_STORE_MAX};
use crate::error::RaftstoreError;
use crate::network::Transport;
use crate::peer::Peer;
use crate::storage;
use crate::types::{RegionId, StoreId};

pub struct StoreNode {
    store_id: StoreId,
    advertise_address: String,
    db: Arc<DB>,
    transport: Arc<Transport>,
    raft_config: Arc<openraft::Config>,
    peers: RwLock<HashMap<RegionId, Arc<Peer>>>,
    /// Held while a peer is created, so two callers never start two rafts
    /// over one region's log.
    creating: tokio::sync::Mutex<()>,
}

impl StoreNode {
    /// Opens (creating if missing) the store's RocksDB under `data_dir`.
    pub fn open(
        store_id: StoreId,
        advertise_address: String,
        data_dir: &Path,
    ) -> Result<Arc<Self>, RaftstoreError> {
        let db = storage::open_db(data_dir)?;
        let transport = Arc::new(Transport::new());
        transport.set_address(store_id, advertise_address.clone());
        Ok(Arc::new(Self {
            store_id,
            advertise_address,
            db,
            transport,
            raft_config: raft_config()?,
            peers: RwLock::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        }))
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

    /// Restarts the raft group of every region persisted on this store.
    pub async fn start_persisted_regions(&self) -> Result<usize, RaftstoreError> {
        let descriptors = storage::load_descriptors(&self.db)?;
        let count = descriptors.len();
        for descriptor in descriptors {
            self.ensure_region(descriptor).await?;
        }
        Ok(count)
    }

    /// Makes sure this store runs a peer of `descriptor`'s region: persists
    /// the descriptor and starts the group when it is new here, or records a
    /// newer epoch when it is not.
    pub async fn ensure_region(&self, descriptor: RegionDescriptor) -> Result<(), RaftstoreError> {
        let region_id = descriptor.region_id;
        if let Some(peer) = self.peer(region_id) {
            if peer.update_descriptor(&descriptor) {
                storage::save_descriptor(&self.db, &descriptor)?;
            }
            return Ok(());
        }
        let _creating = self.creating.lock().await;
        if self.peer(region_id).is_some() {
            return Ok(());
        }
        if self
            .peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
            >= REGIONS_PER_STORE_MAX
        {
            return Err(RaftstoreError::Raft {
                region_id,
                hint: format!("store already hosts {REGIONS_PER_STORE_MAX} regions"),
            });
        }
        storage::save_descriptor(&self.db, &descriptor)?;
        let (peer, must_initialize) = Peer::start(
            self.db.clone(),
            self.store_id,
            descriptor,
            self.transport.clone(),
            self.raft_config.clone(),
        )
        .await?;
        tracing::info!(store_id = self.store_id, region_id, "started region peer");
        self.peers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(region_id, peer.clone());
        if must_initialize {
            peer.initialize().await?;
        }
        Ok(())
    }

    /// Stops every region's raft group.
    pub async fn shutdown(&self) {
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
