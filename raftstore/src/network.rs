//! Raft transport between the peers of a region: openraft messages as JSON
//! over the store-wide `StoreRaft` gRPC service, addressed by region id.
//!
//! One [`Transport`] per store holds the store address book (kept current by
//! heartbeat responses) and one lazily connected channel per address, shared
//! by every region. Transport failures become `Unreachable`, so openraft backs
//! off instead of hammering a dead store.
//!
//! Tests cut a store off with a [`PartitionFilter`]: traffic this store would
//! send to a blocked store (raft messages, liveness pings, peer changes,
//! leader transfers: everything that dials another store through the
//! transport) fails at once as unreachable, as over a broken network.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arbor_proto::store_raft_client::StoreRaftClient;
use arbor_proto::{RaftPayload, StoreDescriptor};
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::config::RAFT_MESSAGE_BYTES_MAX;
use crate::error::RaftstoreError;
use crate::types::{RegionId, RegionTypeConfig, StoreId};

/// Connect timeout of a channel to another store; short, since stores share
/// a network and openraft retries.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 500;
/// Most channels one pool keeps; past it the pool starts over.
pub const CHANNELS_MAX: usize = 1_024;
/// Most store addresses one address book keeps.
pub const STORE_ADDRESSES_MAX: usize = 10_000;

/// A lazily connected channel to `address` ("host:port").
pub fn lazy_channel(address: &str) -> Result<Channel, RaftstoreError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
        RaftstoreError::Transport {
            address: address.to_string(),
            hint: e.to_string(),
        }
    })?;
    Ok(endpoint
        .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Channels by address, shared by every caller of one process.
#[derive(Default)]
pub struct ChannelPool {
    channels: Mutex<HashMap<String, Channel>>,
}

impl ChannelPool {
    pub fn channel(&self, address: &str) -> Result<Channel, RaftstoreError> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        if channels.len() >= CHANNELS_MAX {
            channels.clear();
        }
        let channel = lazy_channel(address)?;
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}

/// The stores this store's outgoing traffic is dropped to, for tests that
/// partition a cluster (like root's `PeerFilter`). Empty in production, and
/// then one relaxed atomic load per call.
#[derive(Default)]
pub struct PartitionFilter {
    /// Whether `blocked` may hold anything: the fast path for the usual
    /// empty filter, so no lock is taken per raft message.
    active: AtomicBool,
    blocked: RwLock<BTreeSet<StoreId>>,
}

impl PartitionFilter {
    /// Drops everything this store sends to `stores` from now on.
    pub fn block(&self, stores: &[StoreId]) {
        let mut blocked = self
            .blocked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        blocked.extend(stores);
        self.active.store(!blocked.is_empty(), Ordering::SeqCst);
    }

    /// Lets everything through again.
    pub fn heal(&self) {
        let mut blocked = self
            .blocked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        blocked.clear();
        self.active.store(false, Ordering::SeqCst);
    }

    pub fn blocks(&self, store_id: StoreId) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        self.blocked
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&store_id)
    }

    fn blocked(&self) -> Vec<StoreId> {
        if !self.active.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.blocked
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// Store addresses and channels of one store process.
#[derive(Default)]
pub struct Transport {
    addresses: RwLock<HashMap<StoreId, String>>,
    pool: ChannelPool,
    partition: PartitionFilter,
}

impl Transport {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_address(&self, store_id: StoreId, address: String) {
        if address.is_empty() {
            return;
        }
        let mut addresses = self
            .addresses
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if addresses.len() >= STORE_ADDRESSES_MAX && !addresses.contains_key(&store_id) {
            tracing::warn!(store_id, "store address book full; ignoring a new store");
            return;
        }
        addresses.insert(store_id, address);
    }

    pub fn set_addresses(&self, stores: &[StoreDescriptor]) {
        for store in stores {
            self.set_address(store.store_id, store.address.clone());
        }
    }

    pub fn address_of(&self, store_id: StoreId) -> Option<String> {
        let addresses = self
            .addresses
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        addresses.get(&store_id).cloned()
    }

    /// A channel to another store at `address`; refused while the
    /// partition filter blocks the store there, so every caller that dials
    /// a store (liveness pings, peer changes, leader transfers) is cut off
    /// as raft messages are.
    pub fn channel(&self, address: &str) -> Result<Channel, RaftstoreError> {
        if let Some(store_id) = self.blocked_store_at(address) {
            return Err(RaftstoreError::Transport {
                address: address.to_string(),
                hint: format!("store {store_id} is partitioned away"),
            });
        }
        self.pool.channel(address)
    }

    /// The partition filter of this store's outgoing traffic.
    pub fn partition(&self) -> &PartitionFilter {
        &self.partition
    }

    /// A blocked store whose address is `address`, if any.
    fn blocked_store_at(&self, address: &str) -> Option<StoreId> {
        self.partition
            .blocked()
            .into_iter()
            .find(|store_id| self.address_of(*store_id).as_deref() == Some(address))
    }

    /// Every store address known, by store id.
    pub fn addresses(&self) -> Vec<(StoreId, String)> {
        let addresses = self
            .addresses
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        addresses
            .iter()
            .map(|(store_id, address)| (*store_id, address.clone()))
            .collect()
    }
}

/// Builds the connections of one region group.
#[derive(Clone)]
pub struct RegionNetworkFactory {
    region_id: RegionId,
    transport: Arc<Transport>,
}

impl RegionNetworkFactory {
    pub fn new(region_id: RegionId, transport: Arc<Transport>) -> Self {
        Self {
            region_id,
            transport,
        }
    }
}

impl RaftNetworkFactory<RegionTypeConfig> for RegionNetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: StoreId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            region_id: self.region_id,
            target,
            member_address: node.addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// The connection of one region's peer to the peer on store `target`. The
/// address is resolved per call, so an address learnt later is used at once.
pub struct PeerConnection {
    region_id: RegionId,
    target: StoreId,
    /// The address recorded in the raft membership, used when the address
    /// book does not know the store.
    member_address: String,
    transport: Arc<Transport>,
}

#[derive(Debug, thiserror::Error)]
#[error("region {region_id} peer on store {target} at {address:?}: {message}")]
struct TransportFailure {
    region_id: RegionId,
    target: StoreId,
    address: String,
    message: String,
}

#[derive(Debug, Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

type RpcResult<Resp, E> = Result<Resp, RPCError<StoreId, BasicNode, RaftError<StoreId, E>>>;

impl PeerConnection {
    fn address(&self) -> Option<String> {
        self.transport
            .address_of(self.target)
            .or_else(|| Some(self.member_address.clone()).filter(|address| !address.is_empty()))
    }

    fn unreachable<E>(
        &self,
        address: &str,
        message: String,
    ) -> RPCError<StoreId, BasicNode, RaftError<StoreId, E>>
    where
        E: std::error::Error,
    {
        let failure = TransportFailure {
            region_id: self.region_id,
            target: self.target,
            address: address.to_string(),
            message,
        };
        RPCError::Unreachable(Unreachable::new(&failure))
    }

    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        option: RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned + std::error::Error,
    {
        let Some(address) = self.address() else {
            return Err(self.unreachable("", "address unknown".into()));
        };
        // By store id too: the membership's address may not be in the book.
        if self.transport.partition().blocks(self.target) {
            return Err(self.unreachable(&address, "partitioned away".into()));
        }
        let channel = match self.transport.channel(&address) {
            Ok(channel) => channel,
            Err(error) => return Err(self.unreachable(&address, error.to_string())),
        };
        let mut client = StoreRaftClient::new(channel)
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut grpc_request = tonic::Request::new(RaftPayload {
            group_id: self.region_id,
            json,
            target_id: self.target,
        });
        grpc_request.set_timeout(option.hard_ttl());
        let reply = match method {
            Method::AppendEntries => client.append_entries(grpc_request).await,
            Method::Vote => client.vote(grpc_request).await,
            Method::InstallSnapshot => client.install_snapshot(grpc_request).await,
        };
        // Every status (down, region not there yet, timeout) is a reason to
        // back off and retry, never to give up on the peer.
        let payload = reply
            .map_err(|status| self.unreachable(&address, format!("{method:?}: {status}")))?
            .into_inner();
        let result: Result<Resp, RaftError<StoreId, E>> = serde_json::from_slice(&payload.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<RegionTypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<RegionTypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<StoreId>, Infallible> {
        self.call(Method::AppendEntries, &request, option).await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<RegionTypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<StoreId>, InstallSnapshotError> {
        self.call(Method::InstallSnapshot, &request, option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<StoreId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<StoreId>, Infallible> {
        self.call(Method::Vote, &request, option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A runtime: a lazy channel spawns its connection worker.
    #[tokio::test]
    async fn a_partitioned_store_is_refused_a_channel_until_healed() {
        let transport = Transport::new();
        transport.set_address(2, "127.0.0.1:1".into());
        transport.set_address(3, "127.0.0.1:2".into());
        assert!(!transport.partition().blocks(2));
        assert!(transport.channel("127.0.0.1:1").is_ok());

        transport.partition().block(&[2]);
        assert!(transport.partition().blocks(2));
        assert!(!transport.partition().blocks(3));
        assert!(matches!(
            transport.channel("127.0.0.1:1"),
            Err(RaftstoreError::Transport { .. })
        ));
        assert!(
            transport.channel("127.0.0.1:2").is_ok(),
            "others still reachable"
        );

        transport.partition().heal();
        assert!(!transport.partition().blocks(2));
        assert!(transport.channel("127.0.0.1:1").is_ok());
    }
}
