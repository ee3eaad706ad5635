//! Raft transport between the peers of a region: openraft messages as JSON
//! over the store-wide `StoreRaft` gRPC service, addressed by region id.
//!
//! One [`Transport`] per store holds the store address book (kept current by
//! heartbeat responses) and one lazily connected channel per address, shared
//! by every region. Transport failures become `Unreachable`, so openraft backs
//! off instead of hammering a dead store.

use std::collections::HashMap;
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

/// Store addresses and channels of one store process.
#[derive(Default)]
pub struct Transport {
    addresses: RwLock<HashMap<StoreId, String>>,
    pool: ChannelPool,
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

    pub fn channel(&self, address: &str) -> Result<Channel, RaftstoreError> {
        self.pool.channel(address)
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
