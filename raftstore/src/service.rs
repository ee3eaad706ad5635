//! The gRPC face of a store: `Store` (Get/Scan/Write for the region client,
//! SplitRegion for the coordinator) and `StoreRaft` for the peers of its
//! regions on other stores.
//!
//! A gRPC status means a transport or bad-input problem only; region errors
//! travel in the response's `region_error` field.

use std::future::Future;
use std::sync::Arc;

use arbor_proto::store_raft_server::{StoreRaft, StoreRaftServer};
use arbor_proto::store_server::{Store, StoreServer};
use arbor_proto::{
    GetRequest, GetResponse, RaftPayload, ScanRequest, ScanResponse, SplitRegionRequest,
    SplitRegionResponse, WriteRequest, WriteResponse,
};
use openraft::error::RaftError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::config::{RAFT_MESSAGE_BYTES_MAX, STORE_MESSAGE_BYTES_MAX};
use crate::error::RaftstoreError;
use crate::operation::{read, split, write};
use crate::store::StoreNode;
use crate::types::{RegionRaft, StoreId};

#[derive(Clone)]
pub struct StoreService {
    node: Arc<StoreNode>,
}

#[tonic::async_trait]
impl Store for StoreService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let response = read::get(&self.node, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let response = read::scan(&self.node, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn write(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let response = write::write(&self.node, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn split_region(
        &self,
        request: Request<SplitRegionRequest>,
    ) -> Result<Response<SplitRegionResponse>, Status> {
        let response = split::split_region(&self.node, request.into_inner()).await?;
        Ok(Response::new(response))
    }
}

#[derive(Clone)]
pub struct StoreRaftService {
    node: Arc<StoreNode>,
}

impl StoreRaftService {
    /// Decodes the openraft message, hands it to the region's raft and
    /// encodes the whole `Result`, so the sender can rebuild a remote error.
    async fn dispatch<Req, Resp, E, F, Fut>(
        &self,
        payload: RaftPayload,
        call: F,
    ) -> Result<Response<RaftPayload>, Status>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: Serialize + std::error::Error,
        F: FnOnce(RegionRaft, Req) -> Fut,
        Fut: Future<Output = Result<Resp, RaftError<StoreId, E>>>,
    {
        let region_id = payload.group_id;
        let Some(peer) = self.node.peer(region_id) else {
            return Err(RaftstoreError::RegionNotFound { region_id }.into());
        };
        let request: Req =
            serde_json::from_slice(&payload.json).map_err(|e| RaftstoreError::InvalidArgument {
                hint: format!("undecodable raft message for region {region_id}: {e}"),
            })?;
        let result = call(peer.raft().clone(), request).await;
        let json = serde_json::to_vec(&result).map_err(|e| RaftstoreError::Raft {
            region_id,
            hint: format!("encoding a raft reply: {e}"),
        })?;
        Ok(Response::new(RaftPayload {
            group_id: region_id,
            json,
        }))
    }
}

#[tonic::async_trait]
impl StoreRaft for StoreRaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.dispatch(request.into_inner(), |raft, rpc| async move {
            raft.append_entries(rpc).await
        })
        .await
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.dispatch(request.into_inner(), |raft, rpc| async move {
            raft.vote(rpc).await
        })
        .await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.dispatch(request.into_inner(), |raft, rpc| async move {
            raft.install_snapshot(rpc).await
        })
        .await
    }
}

/// Serves `Store` and `StoreRaft` on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<StoreNode>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RaftstoreError> {
    let address = listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_else(|_| node.advertise_address().to_string());
    let store = StoreServer::new(StoreService { node: node.clone() })
        .max_decoding_message_size(STORE_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(STORE_MESSAGE_BYTES_MAX);
    let raft = StoreRaftServer::new(StoreRaftService { node })
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    tonic::transport::Server::builder()
        .add_service(store)
        .add_service(raft)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| RaftstoreError::Transport {
            address,
            hint: format!("gRPC server failed: {e}"),
        })
}
