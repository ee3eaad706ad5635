//! The gRPC face of a store: `Store` (Get/Scan and the transaction commands
//! for the region client; SplitRegion, ChangePeers, TransferLeader and the
//! merge steps PrepareMerge, WaitApplied and CommitMerge for the
//! coordinator) and `StoreRaft` for the peers of its regions on other
//! stores (raft messages, liveness pings, replica administration).
//!
//! A gRPC status means a transport or bad-input problem only; region errors
//! travel in the response's `region_error` field.

use std::future::Future;
use std::sync::Arc;

use arbor_metrics::{Counter, CounterVec, Gauge, HistogramTimer, HistogramVec, Registry};
use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::store_raft_server::{StoreRaft, StoreRaftServer};
use arbor_proto::store_server::{Store, StoreServer};
use arbor_proto::{
    CheckTxnStatusRequest, CheckTxnStatusResponse, CommitRequest, CommitResponse, GetRequest,
    GetResponse, PessimisticLockRequest, PessimisticLockResponse, PrewriteRequest,
    PrewriteResponse, RaftPayload, RegionError, ResolveLockRequest, ResolveLockResponse,
    RollbackRequest, RollbackResponse, ScanLocksRequest, ScanLocksResponse, ScanRequest,
    ScanResponse, SplitRegionRequest, SplitRegionResponse, StorePing, TxnHeartbeatRequest,
    TxnHeartbeatResponse,
};
use openraft::error::RaftError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::config::{RAFT_MESSAGE_BYTES_MAX, STORE_MESSAGE_BYTES_MAX};
use crate::error::RaftstoreError;
use crate::operation::{conf_change, merge, read, replica, split, transfer_leader, txn};
use crate::store::StoreNode;
use crate::types::{RegionRaft, StoreId};

#[derive(Clone)]
pub struct StoreService {
    node: Arc<StoreNode>,
    metrics: Arc<StoreMetrics>,
}

#[tonic::async_trait]
impl Store for StoreService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let _timer = self.metrics.time("get");
        let response = read::get(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), false);
        Ok(Response::new(response))
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let _timer = self.metrics.time("scan");
        let response = read::scan(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), false);
        Ok(Response::new(response))
    }

    async fn scan_locks(
        &self,
        request: Request<ScanLocksRequest>,
    ) -> Result<Response<ScanLocksResponse>, Status> {
        let _timer = self.metrics.time("scan_locks");
        let response = read::scan_locks(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), false);
        Ok(Response::new(response))
    }

    async fn prewrite(
        &self,
        request: Request<PrewriteRequest>,
    ) -> Result<Response<PrewriteResponse>, Status> {
        let _timer = self.metrics.time("prewrite");
        let response = txn::prewrite(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let _timer = self.metrics.time("commit");
        let response = txn::commit(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<RollbackResponse>, Status> {
        let _timer = self.metrics.time("rollback");
        let response = txn::rollback(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn check_txn_status(
        &self,
        request: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        let _timer = self.metrics.time("check_txn_status");
        let response = txn::check_txn_status(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn resolve_lock(
        &self,
        request: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        let _timer = self.metrics.time("resolve_lock");
        let response = txn::resolve_lock(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn pessimistic_lock(
        &self,
        request: Request<PessimisticLockRequest>,
    ) -> Result<Response<PessimisticLockResponse>, Status> {
        let _timer = self.metrics.time("pessimistic_lock");
        let response = txn::pessimistic_lock(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn txn_heartbeat(
        &self,
        request: Request<TxnHeartbeatRequest>,
    ) -> Result<Response<TxnHeartbeatResponse>, Status> {
        let _timer = self.metrics.time("txn_heartbeat");
        let response = txn::txn_heartbeat(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn split_region(
        &self,
        request: Request<SplitRegionRequest>,
    ) -> Result<Response<SplitRegionResponse>, Status> {
        let _timer = self.metrics.time("split_region");
        let response = split::split_region(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn change_peers(
        &self,
        request: Request<arbor_proto::ChangePeersRequest>,
    ) -> Result<Response<arbor_proto::ChangePeersResponse>, Status> {
        let _timer = self.metrics.time("change_peers");
        let response = conf_change::change_peers(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn transfer_leader(
        &self,
        request: Request<arbor_proto::TransferLeaderRequest>,
    ) -> Result<Response<arbor_proto::TransferLeaderResponse>, Status> {
        let _timer = self.metrics.time("transfer_leader");
        let response = transfer_leader::transfer_leader(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), false);
        Ok(Response::new(response))
    }

    async fn prepare_merge(
        &self,
        request: Request<arbor_proto::PrepareMergeRequest>,
    ) -> Result<Response<arbor_proto::PrepareMergeResponse>, Status> {
        let _timer = self.metrics.time("prepare_merge");
        let response = merge::prepare_merge(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }

    async fn wait_applied(
        &self,
        request: Request<arbor_proto::WaitAppliedRequest>,
    ) -> Result<Response<arbor_proto::WaitAppliedResponse>, Status> {
        let _timer = self.metrics.time("wait_applied");
        let response = merge::wait_applied(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), false);
        Ok(Response::new(response))
    }

    async fn commit_merge(
        &self,
        request: Request<arbor_proto::CommitMergeRequest>,
    ) -> Result<Response<arbor_proto::CommitMergeResponse>, Status> {
        let _timer = self.metrics.time("commit_merge");
        let response = merge::commit_merge(&self.node, request.into_inner()).await?;
        self.metrics.answered(response.region_error.as_ref(), true);
        Ok(Response::new(response))
    }
}

#[derive(Clone)]
pub struct StoreRaftService {
    node: Arc<StoreNode>,
    metrics: Arc<StoreMetrics>,
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
        addressed_here(payload.target_id, self.node.store_id())?;
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
            target_id: 0,
        }))
    }
}

/// Refuses a raft message meant for another store id: a store that took
/// over a dead store's address must never vote or acknowledge as it.
/// `addressed` 0 = the sender did not say (older senders).
fn addressed_here(addressed: StoreId, store_id: StoreId) -> Result<(), RaftstoreError> {
    if addressed != 0 && addressed != store_id {
        return Err(RaftstoreError::WrongStore {
            addressed,
            actual: store_id,
        });
    }
    Ok(())
}

#[tonic::async_trait]
impl StoreRaft for StoreRaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let _timer = self.metrics.time("raft_append_entries");
        self.dispatch(request.into_inner(), |raft, rpc| async move {
            raft.append_entries(rpc).await
        })
        .await
    }

    async fn ping(&self, request: Request<StorePing>) -> Result<Response<StorePing>, Status> {
        self.node
            .liveness()
            .heard_from(request.into_inner().store_id);
        Ok(Response::new(StorePing {
            store_id: self.node.store_id(),
        }))
    }

    async fn open_peer(
        &self,
        request: Request<arbor_proto::OpenPeerRequest>,
    ) -> Result<Response<arbor_proto::OpenPeerResponse>, Status> {
        let _timer = self.metrics.time("open_peer");
        replica::open_peer(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn destroy_peer(
        &self,
        request: Request<arbor_proto::DestroyPeerRequest>,
    ) -> Result<Response<arbor_proto::DestroyPeerResponse>, Status> {
        let _timer = self.metrics.time("destroy_peer");
        replica::destroy_peer(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn campaign(
        &self,
        request: Request<arbor_proto::CampaignRequest>,
    ) -> Result<Response<arbor_proto::CampaignResponse>, Status> {
        let _timer = self.metrics.time("campaign");
        replica::campaign(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn wake_region(
        &self,
        request: Request<arbor_proto::WakeRegionRequest>,
    ) -> Result<Response<arbor_proto::WakeRegionResponse>, Status> {
        replica::wake_region(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let _timer = self.metrics.time("raft_vote");
        self.dispatch(request.into_inner(), |raft, rpc| async move {
            raft.vote(rpc).await
        })
        .await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let _timer = self.metrics.time("raft_install_snapshot");
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
    serve_with_metrics(node, listener, shutdown, StoreMetrics::new()).await
}

/// [`serve`], counting into `metrics`.
pub async fn serve_with_metrics(
    node: Arc<StoreNode>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    metrics: Arc<StoreMetrics>,
) -> Result<(), RaftstoreError> {
    let address = listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_else(|_| node.advertise_address().to_string());
    let store = StoreServer::new(StoreService {
        node: node.clone(),
        metrics: metrics.clone(),
    })
    .max_decoding_message_size(STORE_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(STORE_MESSAGE_BYTES_MAX);
    let raft = StoreRaftServer::new(StoreRaftService { node, metrics })
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    tonic::transport::Server::builder()
        .add_service(store)
        .add_service(raft)
        .serve_with_incoming_shutdown(
            // Nagle off: small RPC replies must not wait ~40 ms for an ACK
            // (tonic sets TCP_NODELAY only on listeners it binds itself).
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| RaftstoreError::Transport {
            address,
            hint: format!("gRPC server failed: {e}"),
        })
}

/// One store's Prometheus series (`arbor_store_*`), kept apart from the
/// handlers it instruments: RPC latency by method and region errors by kind
/// are counted as answers leave; region and raft numbers are summed over
/// the store's regions at scrape time ([`StoreMetrics::observe`]), never one
/// series per region.
pub struct StoreMetrics {
    pub registry: Arc<Registry>,
    rpc: HistogramVec,
    region_errors: CounterVec,
    proposals: Counter,
    regions: Gauge,
    regions_led: Gauge,
    regions_hibernating: Gauge,
    applied_entries: Gauge,
    log_entries: Gauge,
}

impl StoreMetrics {
    pub fn new() -> Arc<StoreMetrics> {
        let registry = Arc::new(Registry::new());
        let r = &registry;
        // Static names, checked by `store_metrics_register_every_series`.
        let valid = "static metric names are valid";
        let gauge = |name: &str, help: &str| r.gauge(name, help).expect(valid);
        Arc::new(StoreMetrics {
            rpc: r
                .histogram_vec(
                    "arbor_store_rpc_duration_seconds",
                    "Latency of Store and StoreRaft RPCs served, by method.",
                    &["method"],
                    arbor_metrics::LATENCY_BUCKETS_SECONDS,
                )
                .expect(valid),
            region_errors: r
                .counter_vec(
                    "arbor_store_region_errors_total",
                    "Region errors answered, by kind.",
                    &["kind"],
                )
                .expect(valid),
            proposals: r
                .counter(
                    "arbor_store_raft_proposals_total",
                    "Commands this store proposed to a region's raft as leader and saw applied.",
                )
                .expect(valid),
            regions: gauge("arbor_store_regions", "Regions hosted on this store."),
            regions_led: gauge(
                "arbor_store_regions_led",
                "Regions whose raft leader is this store.",
            ),
            regions_hibernating: gauge(
                "arbor_store_regions_hibernating",
                "Regions whose raft timers this store switched off while idle.",
            ),
            applied_entries: gauge(
                "arbor_store_raft_applied_entries",
                "Sum over hosted regions of the last applied raft log index.",
            ),
            log_entries: gauge(
                "arbor_store_raft_log_entries",
                "Sum over hosted regions of the last raft log index.",
            ),
            registry,
        })
    }

    /// Measures one RPC until the returned guard drops.
    pub fn time(&self, method: &str) -> HistogramTimer {
        self.rpc.with(&[method]).start_timer()
    }

    /// Counts an answer's region error by kind; a proposing command
    /// answered without one went through raft.
    pub fn answered(&self, region_error: Option<&RegionError>, proposes: bool) {
        let Some(error) = region_error else {
            if proposes {
                self.proposals.inc();
            }
            return;
        };
        let kind = match error.kind {
            Some(RegionErrorKind::NotLeader(_)) => "not_leader",
            Some(RegionErrorKind::EpochNotMatch(_)) => "epoch_not_match",
            Some(RegionErrorKind::KeyNotInRegion(_)) => "key_not_in_region",
            Some(RegionErrorKind::RegionNotFound(_)) => "region_not_found",
            Some(RegionErrorKind::ServerBusy(_)) => "server_busy",
            Some(RegionErrorKind::RegionMerging(_)) => "region_merging",
            None => "unknown",
        };
        self.region_errors.with(&[kind]).inc();
    }

    /// Sums region numbers over `node`'s regions before every scrape. The
    /// hook holds the node weakly, so it never keeps a stopped store's
    /// RocksDB open.
    pub fn observe(&self, node: &Arc<StoreNode>) -> Result<(), RaftstoreError> {
        let regions = self.regions.clone();
        let regions_led = self.regions_led.clone();
        let regions_hibernating = self.regions_hibernating.clone();
        let applied_entries = self.applied_entries.clone();
        let log_entries = self.log_entries.clone();
        let hook = arbor_metrics::weak_hook(node, move |node: &StoreNode| {
            let (mut count, mut led, mut applied, mut logged) = (0u64, 0u64, 0u64, 0u64);
            let mut hibernating = 0u64;
            for peer in node.peers() {
                // Asked before borrowing: is_leader reads the same channel.
                led += u64::from(peer.is_leader());
                hibernating += u64::from(peer.is_hibernating());
                count += 1;
                let receiver = peer.raft().metrics();
                let raft = receiver.borrow();
                applied += raft.last_applied.map_or(0, |log_id| log_id.index);
                logged += raft.last_log_index.unwrap_or(0);
            }
            regions.set_u64(count);
            regions_led.set_u64(led);
            regions_hibernating.set_u64(hibernating);
            applied_entries.set_u64(applied);
            log_entries.set_u64(logged);
        });
        self.registry
            .on_scrape(hook)
            .map_err(|e| RaftstoreError::InvalidArgument {
                hint: e.to_string(),
            })
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    #[test]
    fn store_metrics_register_every_series() {
        let metrics = StoreMetrics::new();
        metrics.time("get");
        metrics.answered(None, true);
        metrics.answered(
            Some(&crate::peer::region_error(RegionErrorKind::RegionNotFound(
                Default::default(),
            ))),
            false,
        );
        let text = metrics.registry.render();
        for series in [
            "arbor_store_rpc_duration_seconds_count{method=\"get\"} 1",
            "arbor_store_region_errors_total{kind=\"region_not_found\"} 1",
            "arbor_store_raft_proposals_total 1",
            "arbor_store_regions 0",
            "arbor_store_regions_led 0",
            "arbor_store_regions_hibernating 0",
            "arbor_store_raft_applied_entries 0",
            "arbor_store_raft_log_entries 0",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }
}

#[cfg(test)]
mod raft_address_tests {
    use super::*;

    #[test]
    fn a_raft_message_for_another_store_id_is_refused() {
        let refused = addressed_here(1, 4).expect_err("store 4 took store 1's message");
        assert_eq!(refused.to_status().code(), tonic::Code::FailedPrecondition);
    }

    #[test]
    fn a_raft_message_for_this_store_or_unaddressed_is_accepted() {
        assert!(addressed_here(4, 4).is_ok());
        assert!(addressed_here(0, 4).is_ok());
    }
}
