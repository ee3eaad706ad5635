//! Raft transport between root peers: openraft messages as JSON over the
//! `RootRaft` gRPC service. Transport failures become `Unreachable`, so
//! openraft backs off instead of hammering a dead peer.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arbor_proto::root_raft_client::RootRaftClient;
use arbor_proto::RaftPayload;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
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

use crate::types::{RootPeerId, RootTypeConfig};

/// Connect timeout for peer channels; short, since peers are on one network.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 500;

/// Lazily connected channel to `address` ("host:port").
pub fn lazy_channel(address: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Peers this peer must not send raft messages to. Empty in production;
/// tests fill it on both sides to partition the network deterministically
/// (every raft RPC is initiated by its sender, so blocking outgoing traffic
/// on both ends cuts the link).
#[derive(Clone, Default)]
pub struct PeerFilter(Arc<RwLock<BTreeSet<RootPeerId>>>);

impl PeerFilter {
    pub fn block(&self, peers: &[RootPeerId]) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(peers);
    }

    pub fn heal(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn blocks(&self, peer: RootPeerId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&peer)
    }
}

#[derive(Clone, Default)]
pub struct RootNetworkFactory {
    pub filter: PeerFilter,
}

impl RaftNetworkFactory<RootTypeConfig> for RootNetworkFactory {
    type Network = RootPeerConnection;

    async fn new_client(&mut self, target: RootPeerId, node: &BasicNode) -> Self::Network {
        RootPeerConnection {
            target,
            client: lazy_channel(&node.addr).ok().map(RootRaftClient::new),
            address: node.addr.clone(),
            filter: self.filter.clone(),
        }
    }
}

pub struct RootPeerConnection {
    target: RootPeerId,
    address: String,
    client: Option<RootRaftClient<Channel>>,
    filter: PeerFilter,
}

#[derive(Debug, thiserror::Error)]
#[error("root peer {target} at {address}: {message}")]
struct TransportFailure {
    target: RootPeerId,
    address: String,
    message: String,
}

enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RootPeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        option: RPCOption,
    ) -> Result<Resp, RPCError<RootPeerId, BasicNode, RaftError<RootPeerId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned + std::error::Error,
    {
        let failure = |message: String| TransportFailure {
            target: self.target,
            address: self.address.clone(),
            message,
        };
        if self.filter.blocks(self.target) {
            let error = failure("blocked by the peer filter (partitioned)".into());
            return Err(RPCError::Unreachable(Unreachable::new(&error)));
        }
        let Some(client) = self.client.as_mut() else {
            let error = failure("invalid address".into());
            return Err(RPCError::Unreachable(Unreachable::new(&error)));
        };
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut grpc_request = tonic::Request::new(RaftPayload {
            group_id: 0,
            json,
            target_id: self.target,
        });
        grpc_request.set_timeout(option.hard_ttl());
        let reply = match method {
            Method::AppendEntries => client.append_entries(grpc_request).await,
            Method::Vote => client.vote(grpc_request).await,
            Method::InstallSnapshot => client.install_snapshot(grpc_request).await,
        };
        let payload = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                let error = failure(status.to_string());
                return Err(RPCError::Unreachable(Unreachable::new(&error)));
            }
        };
        let result: Result<Resp, RaftError<RootPeerId, E>> = serde_json::from_slice(&payload.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<RootTypeConfig> for RootPeerConnection {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<RootTypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RootPeerId>,
        RPCError<RootPeerId, BasicNode, RaftError<RootPeerId>>,
    > {
        self.call(Method::AppendEntries, &request, option).await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<RootTypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RootPeerId>,
        RPCError<RootPeerId, BasicNode, RaftError<RootPeerId, InstallSnapshotError>>,
    > {
        self.call(Method::InstallSnapshot, &request, option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<RootPeerId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RootPeerId>, RPCError<RootPeerId, BasicNode, RaftError<RootPeerId>>>
    {
        self.call(Method::Vote, &request, option).await
    }
}
