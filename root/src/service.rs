//! The gRPC face of a root peer: `Root` for clients, `RootRaft` for peers.
//!
//! Any peer accepts `Propose` and `ReadState`; a follower forwards them once
//! to the leader it knows (never twice, so a confused cluster answers
//! `Unavailable` instead of looping).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;

use arbor_metrics::{Counter, Gauge, Histogram, HistogramTimer, Registry};
use arbor_proto::root_client::RootClient as GrpcRootClient;
use arbor_proto::root_raft_server::RootRaft as RootRaftService;
use arbor_proto::root_server::Root as RootService;
use arbor_proto::*;
use futures::Stream;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, LogId, RaftMetrics, ServerState};
use prost::Message;
use rocksdb::DB;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::apply::ROOT_COMMAND_FORMAT_VERSION;
use crate::error::RootError;
use crate::network::lazy_channel;
use crate::storage::state_machine::{events_between, events_complete_from, list_events};
use crate::types::{RootPeerId, RootRaft, RootRequest, RootTypeConfig};

/// Header marking a request a follower already forwarded to the leader.
const FORWARDED_HEADER: &str = "x-arbor-forwarded";
/// Fewest voters a membership change may leave: below three, root cannot
/// survive losing a peer.
pub const ROOT_VOTERS_MIN: usize = 3;
/// Most events one `ListEvents` call returns.
pub const LIST_EVENTS_MAX: u32 = 1_000;
/// Items buffered per watch stream.
pub const WATCH_QUEUE_MAX: usize = 16;
/// Events read from disk per step of a `WatchEvents` catch-up.
pub const WATCH_EVENTS_BATCH_MAX: usize = 256;

/// Milliseconds since the Unix epoch; injected so tests can drive time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// Everything a root peer's services share.
#[derive(Clone)]
pub struct RootNode {
    pub peer_id: RootPeerId,
    pub address: String,
    pub raft: RootRaft,
    pub state: watch::Receiver<RootState>,
    pub db: Arc<DB>,
    pub clock: Clock,
    pub metrics: Arc<RootMetrics>,
}

type ClientWriteResult = Result<
    openraft::raft::ClientWriteResponse<RootTypeConfig>,
    RaftError<RootPeerId, ClientWriteError<RootPeerId, BasicNode>>,
>;

/// The unary `Root` methods whose latency is measured, in the order of
/// [`RootMetrics::rpc`].
#[derive(Debug, Clone, Copy)]
pub enum RootMethod {
    Propose,
    ReadState,
    ReadCatalogVersion,
    ChangeMembership,
    ListEvents,
    Status,
}

impl RootMethod {
    pub const ALL: [RootMethod; 6] = [
        RootMethod::Propose,
        RootMethod::ReadState,
        RootMethod::ReadCatalogVersion,
        RootMethod::ChangeMembership,
        RootMethod::ListEvents,
        RootMethod::Status,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RootMethod::Propose => "propose",
            RootMethod::ReadState => "read_state",
            RootMethod::ReadCatalogVersion => "read_catalog_version",
            RootMethod::ChangeMembership => "change_membership",
            RootMethod::ListEvents => "list_events",
            RootMethod::Status => "status",
        }
    }
}

/// One root peer's Prometheus series (`arbor_root_*`). Raft numbers are
/// copied from openraft's `RaftMetrics` at scrape time; the rest is counted
/// where it happens.
pub struct RootMetrics {
    pub registry: Arc<Registry>,
    term: Gauge,
    last_log_index: Gauge,
    committed_index: Gauge,
    applied_index: Gauge,
    is_leader: Gauge,
    leader_changes: Counter,
    proposals_accepted: Counter,
    proposals_rejected: Counter,
    proposals_failed: Counter,
    /// One per [`RootMethod::ALL`], resolved once.
    rpc: Vec<Histogram>,
}

impl RootMetrics {
    pub fn new() -> Arc<RootMetrics> {
        let registry = Arc::new(Registry::new());
        let r = &registry;
        // Static names, checked by `root_metrics_register_every_series`.
        let valid = "static metric names are valid";
        let gauge = |name: &str, help: &str| r.gauge(name, help).expect(valid);
        let proposals = r
            .counter_vec(
                "arbor_root_proposals_total",
                "Proposals this peer committed as leader, by outcome: accepted or rejected at apply, or failed in raft.",
                &["outcome"],
            )
            .expect(valid);
        let rpc = r
            .histogram_vec(
                "arbor_root_rpc_duration_seconds",
                "Latency of Root RPCs served by this peer (forwarding to the leader included), by method.",
                &["method"],
                arbor_metrics::LATENCY_BUCKETS_SECONDS,
            )
            .expect(valid);
        Arc::new(RootMetrics {
            term: gauge("arbor_root_raft_term", "Current raft term."),
            last_log_index: gauge(
                "arbor_root_raft_last_log_index",
                "Index of the last entry in this peer's raft log.",
            ),
            committed_index: gauge(
                "arbor_root_raft_committed_index",
                "Highest index a quorum of voters holds, as the leader sees it; on a follower, its applied index (a lower bound).",
            ),
            applied_index: gauge(
                "arbor_root_raft_applied_index",
                "Index of the last entry applied to this peer's state (its cursor).",
            ),
            is_leader: gauge("arbor_root_raft_is_leader", "1 if this peer is the raft leader."),
            leader_changes: r
                .counter(
                    "arbor_root_raft_leader_changes_total",
                    "Times this peer saw a new (term, leader) pair.",
                )
                .expect(valid),
            proposals_accepted: proposals.with(&["accepted"]),
            proposals_rejected: proposals.with(&["rejected"]),
            proposals_failed: proposals.with(&["failed"]),
            rpc: RootMethod::ALL
                .iter()
                .map(|method| rpc.with(&[method.label()]))
                .collect(),
            registry,
        })
    }

    /// Measures one RPC until the returned guard drops.
    pub fn time(&self, method: RootMethod) -> HistogramTimer {
        self.rpc[method as usize].start_timer()
    }

    fn count_proposal(&self, written: &ClientWriteResult) {
        match written {
            Ok(written) if written.data.accepted => self.proposals_accepted.inc(),
            Ok(_) => self.proposals_rejected.inc(),
            // Not proposed here: the leader it is forwarded to counts it.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {}
            Err(_) => self.proposals_failed.inc(),
        }
    }

    /// Copies `raft`'s numbers into the gauges before every scrape, and
    /// counts leader changes as they happen (between scrapes too).
    pub fn observe_raft(self: &Arc<Self>, raft: &RootRaft) -> Result<(), RootError> {
        // The hook holds the metrics channel, not the raft handle, and the
        // metrics weakly: the registry is theirs.
        let raft_metrics = raft.metrics();
        let hook = arbor_metrics::weak_hook(self, move |metrics: &RootMetrics| {
            metrics.copy_raft(&raft_metrics.borrow())
        });
        self.registry
            .on_scrape(hook)
            .map_err(|e| RootError::InvalidArgument {
                hint: e.to_string(),
            })?;
        let mut receiver = raft.metrics();
        let leader_changes = self.leader_changes.clone();
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                let now = {
                    let metrics = receiver.borrow_and_update();
                    metrics
                        .current_leader
                        .map(|leader| (metrics.current_term, leader))
                };
                if now.is_some() && now != seen {
                    leader_changes.inc();
                    seen = now;
                }
                // Ends when raft shuts down and drops its sender.
                if receiver.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    fn copy_raft(&self, metrics: &RaftMetrics<RootPeerId, BasicNode>) {
        let leader = metrics.state == ServerState::Leader;
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let applied = metrics.last_applied.map_or(0, |log_id| log_id.index);
        self.term.set_u64(metrics.current_term);
        self.last_log_index.set_u64(last_log_index);
        self.applied_index.set_u64(applied);
        self.is_leader.set(i64::from(leader));
        let committed = match (&metrics.replication, leader) {
            (Some(matched), true) => {
                let voters: Vec<RootPeerId> =
                    metrics.membership_config.membership().voter_ids().collect();
                quorum_index(&voters, metrics.id, last_log_index, matched)
            }
            _ => applied,
        };
        self.committed_index.set_u64(committed);
    }
}

/// The highest log index at least a majority of `voters` hold: the leader's
/// own log counts as matched up to `own_last_index`, every other voter up to
/// what replication reports. Pure.
pub fn quorum_index(
    voters: &[RootPeerId],
    own_id: RootPeerId,
    own_last_index: u64,
    matched: &BTreeMap<RootPeerId, Option<LogId<RootPeerId>>>,
) -> u64 {
    let mut indexes: Vec<u64> = voters
        .iter()
        .map(|voter| {
            if *voter == own_id {
                own_last_index
            } else {
                matched
                    .get(voter)
                    .copied()
                    .flatten()
                    .map_or(0, |log_id| log_id.index)
            }
        })
        .collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes.get(indexes.len() / 2).copied().unwrap_or(0)
}

impl RootNode {
    fn leader_address(&self) -> Option<(RootPeerId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?;
        Some((leader, node.addr.clone()))
    }

    fn forward_target(
        &self,
        request_forwarded: bool,
    ) -> Result<GrpcRootClient<tonic::transport::Channel>, Status> {
        if request_forwarded {
            return Err(RootError::NoLeader {
                peer_id: self.peer_id,
            }
            .into());
        }
        let (_, address) = self
            .leader_address()
            .filter(|(leader, _)| *leader != self.peer_id)
            .ok_or(RootError::NoLeader {
                peer_id: self.peer_id,
            })?;
        let channel = lazy_channel(&address).map_err(|e| RootError::Unreachable {
            addresses: vec![address.clone()],
            last_error: e.to_string(),
        })?;
        Ok(GrpcRootClient::new(channel))
    }

    /// Read-index on the leader: confirm leadership with a quorum and wait
    /// until the state machine applied up to the commit index seen then.
    async fn read_index(&self) -> Result<RootState, RootError> {
        self.raft
            .ensure_linearizable()
            .await
            .map_err(|error| RootError::Raft(error.to_string()))?;
        Ok(self.state.borrow().clone())
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }
}

fn forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_HEADER)
}

fn mark_forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

impl RootNode {
    fn voters(&self) -> Vec<RootMember> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        membership
            .voter_ids()
            .filter_map(|id| {
                membership.get_node(&id).map(|node| RootMember {
                    peer_id: id,
                    address: node.addr.clone(),
                })
            })
            .collect()
    }

    /// Adds new voters as learners (blocking until they caught up), then
    /// moves to the new voter set in one joint-consensus change.
    async fn change_voters(&self, request: &ChangeMembershipRequest) -> Result<u64, RootError> {
        let current: BTreeSet<RootPeerId> = self.voters().iter().map(|m| m.peer_id).collect();
        let mut voters = current.clone();
        for member in &request.add_voters {
            if member.peer_id == 0 || member.address.is_empty() {
                return Err(RootError::InvalidArgument {
                    hint: "a new voter needs a non-zero id and an address".into(),
                });
            }
            if !current.contains(&member.peer_id) {
                self.raft
                    .add_learner(member.peer_id, BasicNode::new(&member.address), true)
                    .await
                    .map_err(|e| RootError::Raft(e.to_string()))?;
            }
            voters.insert(member.peer_id);
        }
        for removed in &request.remove_peer_ids {
            voters.remove(removed);
        }
        if voters.len() < ROOT_VOTERS_MIN {
            return Err(RootError::InvalidArgument {
                hint: format!("root keeps at least {ROOT_VOTERS_MIN} voters"),
            });
        }
        let written = self
            .raft
            .change_membership(voters, false)
            .await
            .map_err(|e| RootError::Raft(e.to_string()))?;
        Ok(written.log_id.index)
    }
}

#[tonic::async_trait]
impl RootService for RootNode {
    async fn change_membership(
        &self,
        request: Request<ChangeMembershipRequest>,
    ) -> Result<Response<ChangeMembershipResponse>, Status> {
        let _timer = self.metrics.time(RootMethod::ChangeMembership);
        let was_forwarded = forwarded(&request);
        let change = request.into_inner();
        if !self.is_leader() {
            let mut leader = self.forward_target(was_forwarded)?;
            return leader.change_membership(mark_forwarded(change)).await;
        }
        let cursor = self.change_voters(&change).await?;
        Ok(Response::new(ChangeMembershipResponse {
            voters: self.voters(),
            cursor,
        }))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let _timer = self.metrics.time(RootMethod::Propose);
        let was_forwarded = forwarded(&request);
        let proposal = request.into_inner();
        if proposal
            .event
            .as_ref()
            .and_then(|e| e.kind.as_ref())
            .is_none()
        {
            return Err(RootError::InvalidArgument {
                hint: "propose needs an event".into(),
            }
            .into());
        }
        if !self.is_leader() {
            let mut leader = self.forward_target(was_forwarded)?;
            return leader.propose(mark_forwarded(proposal)).await;
        }
        // The stamp never runs backwards, even if this leader's clock is
        // behind the previous leader's: apply uses it for lease expiry.
        let stamp_ms = (self.clock)().max(self.state.borrow().last_stamp_ms);
        let command = RootCommand {
            format_version: ROOT_COMMAND_FORMAT_VERSION,
            event: proposal.event.clone(),
            stamp_ms,
            lease_fence: proposal.lease_fence.clone(),
        };
        let request = RootRequest {
            command: command.encode_to_vec(),
        };
        let written = self.raft.client_write(request).await;
        self.metrics.count_proposal(&written);
        match written {
            Ok(written) => Ok(Response::new(ProposeResponse {
                accepted: written.data.accepted,
                cursor: written.log_id.index,
                rejection: written.data.rejection_code,
                rejection_detail: written.data.rejection_detail,
            })),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                let mut leader = self.forward_target(was_forwarded)?;
                leader.propose(mark_forwarded(proposal)).await
            }
            Err(error) => Err(RootError::Raft(error.to_string()).into()),
        }
    }

    async fn read_state(
        &self,
        request: Request<ReadStateRequest>,
    ) -> Result<Response<RootState>, Status> {
        let _timer = self.metrics.time(RootMethod::ReadState);
        let was_forwarded = forwarded(&request);
        if !self.is_leader() {
            let mut leader = self.forward_target(was_forwarded)?;
            return leader.read_state(mark_forwarded(ReadStateRequest {})).await;
        }
        Ok(Response::new(self.read_index().await?))
    }

    async fn read_catalog_version(
        &self,
        request: Request<ReadStateRequest>,
    ) -> Result<Response<CatalogVersion>, Status> {
        let _timer = self.metrics.time(RootMethod::ReadCatalogVersion);
        let was_forwarded = forwarded(&request);
        if !self.is_leader() {
            let mut leader = self.forward_target(was_forwarded)?;
            return leader
                .read_catalog_version(mark_forwarded(ReadStateRequest {}))
                .await;
        }
        let state = self.read_index().await?;
        Ok(Response::new(CatalogVersion {
            catalog_version: state.catalog_version,
            cursor: state.cursor,
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<RootState, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let from_cursor = request.into_inner().from_cursor;
        let mut receiver = self.state.clone();
        let (sender, queue) = tokio::sync::mpsc::channel(WATCH_QUEUE_MAX);
        tokio::spawn(async move {
            let mut sent_cursor = None;
            loop {
                let state = receiver.borrow_and_update().clone();
                let fresh =
                    state.cursor >= from_cursor && sent_cursor.is_none_or(|c| state.cursor > c);
                if fresh {
                    sent_cursor = Some(state.cursor);
                    if sender.send(Ok(state)).await.is_err() {
                        return; // the watcher went away
                    }
                }
                if receiver.changed().await.is_err() {
                    return; // this peer is shutting down
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(queue),
        )))
    }

    type WatchEventsStream =
        Pin<Box<dyn Stream<Item = Result<WatchEventsItem, Status>> + Send + 'static>>;

    async fn watch_events(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let from_cursor = request.into_inner().from_cursor.max(1);
        let (sender, queue) = tokio::sync::mpsc::channel(WATCH_QUEUE_MAX);
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(status) = stream_events(node, from_cursor, &sender).await {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(queue),
        )))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let _timer = self.metrics.time(RootMethod::ListEvents);
        let request = request.into_inner();
        let limit = request.limit.clamp(1, LIST_EVENTS_MAX) as usize;
        let events = list_events(&self.db, request.before_cursor, limit)?;
        Ok(Response::new(ListEventsResponse { events }))
    }

    async fn status(
        &self,
        _request: Request<RootStatusRequest>,
    ) -> Result<Response<RootStatusResponse>, Status> {
        let _timer = self.metrics.time(RootMethod::Status);
        let metrics = self.raft.metrics().borrow().clone();
        let role = match metrics.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let members = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node): (&RootPeerId, &BasicNode)| RootMember {
                peer_id: *id,
                address: node.addr.clone(),
            })
            .collect();
        Ok(Response::new(RootStatusResponse {
            peer_id: self.peer_id,
            address: self.address.clone(),
            role: role.to_string(),
            term: metrics.current_term,
            leader_id: metrics.current_leader.unwrap_or(0),
            applied_cursor: metrics.last_applied.map_or(0, |l| l.index),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            members,
        }))
    }
}

/// Feeds one `WatchEvents` subscriber: catch up from the events column
/// family, then follow each applied state. Sending blocks on a full queue,
/// so a slow watcher slows only itself; nothing is skipped.
async fn stream_events(
    node: RootNode,
    from_cursor: u64,
    sender: &tokio::sync::mpsc::Sender<Result<WatchEventsItem, Status>>,
) -> Result<(), Status> {
    use watch_events_item::Item;
    let mut receiver = node.state.clone();
    let mut next = from_cursor;
    // Events before this peer's complete-from cursor (trimmed, or received
    // inside a snapshot) cannot be replayed: hand over the state instead and
    // continue after it.
    let complete_from = events_complete_from(&node.db)?;
    let applied = receiver.borrow_and_update().clone();
    if from_cursor < complete_from {
        next = applied.cursor + 1;
        let snapshot = WatchEventsItem {
            item: Some(Item::Snapshot(applied)),
        };
        if sender.send(Ok(snapshot)).await.is_err() {
            return Ok(());
        }
    }
    loop {
        let through = receiver.borrow_and_update().cursor;
        while next <= through {
            let events = events_between(&node.db, next, through, WATCH_EVENTS_BATCH_MAX)?;
            if events.is_empty() {
                next = through + 1;
                break;
            }
            for event in events {
                next = event.cursor + 1;
                let item = WatchEventsItem {
                    item: Some(Item::Event(event)),
                };
                if sender.send(Ok(item)).await.is_err() {
                    return Ok(()); // the watcher went away
                }
            }
        }
        if receiver.changed().await.is_err() {
            return Ok(()); // this peer is shutting down
        }
    }
}

/// Decodes a raft message sent to this peer (`peer_id`); one addressed to
/// another peer id is refused before it can reach raft.
fn decode<T: serde::de::DeserializeOwned>(
    peer_id: RootPeerId,
    payload: &RaftPayload,
) -> Result<T, Status> {
    if payload.target_id != 0 && payload.target_id != peer_id {
        return Err(RootError::WrongPeer {
            addressed: payload.target_id,
            actual: peer_id,
        }
        .into());
    }
    serde_json::from_slice(&payload.json)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let json = serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload {
        group_id: 0,
        json,
        target_id: 0,
    }))
}

#[tonic::async_trait]
impl RootRaftService for RootNode {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let message = decode(self.peer_id, request.get_ref())?;
        encode(&self.raft.append_entries(message).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let message = decode(self.peer_id, request.get_ref())?;
        encode(&self.raft.vote(message).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let message = decode(self.peer_id, request.get_ref())?;
        encode(&self.raft.install_snapshot(message).await)
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    fn log_id(index: u64) -> Option<LogId<RootPeerId>> {
        Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index))
    }

    #[test]
    fn quorum_index_is_the_highest_index_a_majority_holds() {
        let matched = BTreeMap::from([(2, log_id(7)), (3, log_id(4))]);
        assert_eq!(quorum_index(&[1, 2, 3], 1, 9, &matched), 7);
        let lagging = BTreeMap::from([(2, log_id(3)), (3, None)]);
        assert_eq!(quorum_index(&[1, 2, 3], 1, 9, &lagging), 3);
        // Five voters: the third-highest of 9, 8, 6, 2, 0.
        let five = BTreeMap::from([(2, log_id(8)), (3, log_id(6)), (4, log_id(2))]);
        assert_eq!(quorum_index(&[1, 2, 3, 4, 5], 1, 9, &five), 6);
    }

    #[test]
    fn root_metrics_register_every_series() {
        let metrics = RootMetrics::new();
        let text = metrics.registry.render();
        for series in [
            "arbor_root_raft_term 0",
            "arbor_root_raft_last_log_index 0",
            "arbor_root_raft_committed_index 0",
            "arbor_root_raft_applied_index 0",
            "arbor_root_raft_is_leader 0",
            "arbor_root_raft_leader_changes_total 0",
            "arbor_root_proposals_total{outcome=\"accepted\"} 0",
            "arbor_root_rpc_duration_seconds_count{method=\"propose\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }
}

#[cfg(test)]
mod raft_address_tests {
    use super::*;

    fn payload(target_id: u64) -> RaftPayload {
        RaftPayload {
            group_id: 0,
            json: b"{\"a\":1}".to_vec(),
            target_id,
        }
    }

    #[test]
    fn a_raft_message_for_another_peer_id_is_refused_before_raft_sees_it() {
        let refused =
            decode::<serde_json::Value>(2, &payload(1)).expect_err("peer 2 got peer 1's message");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused.message().contains("peer 1"),
            "{}",
            refused.message()
        );
    }

    #[test]
    fn a_raft_message_for_this_peer_or_for_nobody_in_particular_is_decoded() {
        assert!(decode::<serde_json::Value>(2, &payload(2)).is_ok());
        assert!(decode::<serde_json::Value>(2, &payload(0)).is_ok());
    }
}
