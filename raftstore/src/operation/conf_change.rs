//! Region peer changes (`Store.ChangePeers`), asked of the region's leader.
//!
//! The leader (1) opens an uninitialized replica on every added peer's
//! store (`StoreRaft.OpenPeer`), (2) makes sure a new replica starts from a
//! snapshot (below), (3) adds each as an openraft learner and waits until
//! it reached the leader's log, (4) changes the voters in one
//! joint-consensus step (`Raft::change_membership`: joint, then uniform
//! configuration), (5) proposes a [`ChangePeersCommand`] whose apply writes
//! the new descriptor (peers, `conf_ver` + 1) with the applied state in one
//! batch on every replica, and (6) asks each removed peer's store to drop
//! its replica (`StoreRaft.DestroyPeer`, which leaves a tombstone).
//!
//! **Why an admin command after the membership change, not the membership
//! entry itself:** a raft membership names stores (node ids) and their
//! addresses only, while the descriptor names peers (`peer_id` per store);
//! the command carries the peers and is checked at apply like a split —
//! against the epoch it was planned at and against the membership the
//! region has applied (uniform, voters = exactly the new peers' stores) —
//! so every replica derives the same descriptor from its own log. Between
//! the uniform configuration and this entry, the descriptor lags raft's
//! membership; that is safe (raft alone decides quorums; the descriptor
//! routes and versions requests) and a repeated `ChangePeers` finishes it.
//!
//! **Why a new replica starts from a snapshot:** the replica is opened with
//! the leader's current descriptor, but a log replayed from its first entry
//! would apply commands admitted at older epochs (before splits), which
//! apply refuses against the current descriptor — the replica would miss
//! data. So when the leader's log still starts at index 0, the leader
//! builds a snapshot and purges the log up to it first: openraft then
//! sends the new replica that snapshot, whose header carries the matching
//! descriptor, and the log after it.
//!
//! The decisions are pure ([`decide_request`], [`decide_apply`]) and tested
//! below; [`change_peers`] is the service driver.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::store_raft_client::StoreRaftClient;
use arbor_proto::{
    ChangePeersRequest, ChangePeersResponse, DestroyPeerRequest, OpenPeerRequest, RegionDescriptor,
    RegionEpoch, RegionError, RegionNotFound, RegionPeer,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;

use super::epoch_not_match;
use super::txn::propose;
use crate::command::{
    ChangePeersCommand, ChangePeersOutcome, EpochRecord, PeerRecord, RegionCommand,
};
use crate::config::{
    LEARNER_CATCH_UP_MS, LEARNER_SNAPSHOT_WAIT_MS, MEMBERSHIP_CHANGE_WAIT_MS,
    PEER_ADMIN_CALL_TIMEOUT_MS, PEER_CHANGES_MAX, RAFT_MESSAGE_BYTES_MAX,
};
use crate::error::RaftstoreError;
use crate::peer::{region_error, server_busy, Peer};
use crate::store::StoreNode;
use crate::types::StoreId;

/// What a `ChangePeers` request asks of the region as it is now.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestDecision {
    /// Every added peer is listed and no removed one is: answer OK.
    AlreadyInEffect { region: RegionDescriptor },
    /// The request was planned against another epoch.
    EpochNotMatch { current: RegionDescriptor },
    /// The request can never apply to this region.
    Invalid { hint: String },
    /// Change the peers to `peers`.
    Change {
        peers: Vec<RegionPeer>,
        added: Vec<RegionPeer>,
        removed: Vec<RegionPeer>,
    },
}

/// Decides `ChangePeers(add_peers, remove_peer_ids)` asked at `asked` of
/// `region` on its leader (`leader_store_id`). "Already in effect" is
/// checked before the epoch, so a retry of a change that happened (planned
/// at the old epoch) still answers OK.
pub fn decide_request(
    region: &RegionDescriptor,
    asked: Option<&RegionEpoch>,
    add_peers: &[RegionPeer],
    remove_peer_ids: &[u64],
    leader_store_id: StoreId,
) -> RequestDecision {
    let invalid = |hint: String| RequestDecision::Invalid { hint };
    if add_peers.len() + remove_peer_ids.len() > PEER_CHANGES_MAX {
        return invalid(format!(
            "{} peer changes exceed the {PEER_CHANGES_MAX}-change limit",
            add_peers.len() + remove_peer_ids.len()
        ));
    }
    if let Some(bad) = add_peers
        .iter()
        .find(|peer| peer.peer_id == 0 || peer.store_id == 0)
    {
        return invalid(format!("peer {bad:?} needs non-zero peer and store ids"));
    }
    let added_stores: BTreeSet<u64> = add_peers.iter().map(|peer| peer.store_id).collect();
    if added_stores.len() != add_peers.len() {
        return invalid("two added peers on one store".into());
    }
    let removed: BTreeSet<u64> = remove_peer_ids.iter().copied().collect();
    if add_peers.iter().any(|peer| removed.contains(&peer.peer_id)) {
        return invalid("a peer is both added and removed".into());
    }
    let listed = |peer: &RegionPeer| region.peers.contains(peer);
    let in_effect = add_peers.iter().all(listed)
        && region
            .peers
            .iter()
            .all(|peer| !removed.contains(&peer.peer_id));
    if in_effect {
        return RequestDecision::AlreadyInEffect {
            region: region.clone(),
        };
    }
    if region.epoch.unwrap_or_default() != asked.copied().unwrap_or_default() {
        return RequestDecision::EpochNotMatch {
            current: region.clone(),
        };
    }
    if let Some(unknown) = removed
        .iter()
        .find(|id| !region.peers.iter().any(|peer| peer.peer_id == **id))
    {
        return invalid(format!(
            "peer {unknown} to remove is not a peer of the region"
        ));
    }
    let removed_peers: Vec<RegionPeer> = region
        .peers
        .iter()
        .filter(|peer| removed.contains(&peer.peer_id))
        .copied()
        .collect();
    if removed_peers
        .iter()
        .any(|peer| peer.store_id == leader_store_id)
    {
        return invalid(format!(
            "the leader (store {leader_store_id}) cannot remove itself; transfer the leadership first"
        ));
    }
    let mut peers: Vec<RegionPeer> = region
        .peers
        .iter()
        .filter(|peer| !removed.contains(&peer.peer_id))
        .copied()
        .collect();
    let mut added = Vec::new();
    for peer in add_peers {
        if peers.contains(peer) {
            continue;
        }
        if let Some(other) = peers
            .iter()
            .find(|kept| kept.store_id == peer.store_id || kept.peer_id == peer.peer_id)
        {
            return invalid(format!("added peer {peer:?} clashes with peer {other:?}"));
        }
        peers.push(*peer);
        added.push(*peer);
    }
    if peers.is_empty() {
        return invalid("a region needs at least one peer".into());
    }
    RequestDecision::Change {
        peers,
        added,
        removed: removed_peers,
    }
}

/// What a [`ChangePeersCommand`] does to a replica's descriptor at apply.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyDecision {
    /// Write this descriptor.
    Change {
        region: RegionDescriptor,
    },
    /// The descriptor lists these peers already (a repeated command).
    AlreadyChanged {
        region: RegionDescriptor,
    },
    EpochNotMatch {
        current: RegionDescriptor,
    },
    Invalid {
        hint: String,
    },
}

impl ApplyDecision {
    pub fn outcome(self) -> ChangePeersOutcome {
        match self {
            ApplyDecision::Change { region } | ApplyDecision::AlreadyChanged { region } => {
                ChangePeersOutcome::Changed { region }
            }
            ApplyDecision::EpochNotMatch { current } => {
                ChangePeersOutcome::EpochNotMatch { current }
            }
            ApplyDecision::Invalid { hint } => ChangePeersOutcome::Invalid { hint },
        }
    }
}

fn store_set(peers: &[RegionPeer]) -> BTreeSet<StoreId> {
    peers.iter().map(|peer| peer.store_id).collect()
}

/// Decides a peer change command against the region as this replica
/// applied it: `voters` is the applied raft membership's configuration
/// (one set when uniform, two while joint).
pub fn decide_apply(
    region: &RegionDescriptor,
    change: &ChangePeersCommand,
    voters: &[BTreeSet<StoreId>],
) -> ApplyDecision {
    let peers = change.peers_proto();
    let same = |a: &[RegionPeer], b: &[RegionPeer]| {
        a.len() == b.len() && a.iter().all(|peer| b.contains(peer))
    };
    if same(&region.peers, &peers) {
        return ApplyDecision::AlreadyChanged {
            region: region.clone(),
        };
    }
    if EpochRecord::of(region.epoch.as_ref()) != change.expected_epoch {
        return ApplyDecision::EpochNotMatch {
            current: region.clone(),
        };
    }
    let wanted = store_set(&peers);
    if voters.len() != 1 || voters[0] != wanted || wanted.len() != peers.len() {
        return ApplyDecision::Invalid {
            hint: format!(
                "raft voters {voters:?} are not exactly the new peers' stores {wanted:?}"
            ),
        };
    }
    let epoch = region.epoch.unwrap_or_default();
    ApplyDecision::Change {
        region: RegionDescriptor {
            peers,
            epoch: Some(RegionEpoch {
                version: epoch.version,
                conf_ver: epoch.conf_ver + 1,
            }),
            ..region.clone()
        },
    }
}

fn refused(region_error: RegionError) -> ChangePeersResponse {
    ChangePeersResponse {
        region_error: Some(region_error),
        region: None,
    }
}

fn done(region: RegionDescriptor) -> ChangePeersResponse {
    ChangePeersResponse {
        region_error: None,
        region: Some(region),
    }
}

/// A step of the driver: carry on, or answer with this region error.
type Step<T> = Result<Result<T, RegionError>, RaftstoreError>;

/// Serves `Store.ChangePeers` on the region's leader (see module doc).
pub async fn change_peers(
    node: &StoreNode,
    request: ChangePeersRequest,
) -> Result<ChangePeersResponse, RaftstoreError> {
    let context = request
        .context
        .ok_or_else(|| RaftstoreError::InvalidArgument {
            hint: "peer change request carries no region context".into(),
        })?;
    let Some(peer) = node.peer(context.region_id) else {
        return Ok(refused(region_error(RegionErrorKind::RegionNotFound(
            RegionNotFound {
                region_id: context.region_id,
            },
        ))));
    };
    peer.touch();
    if let Some(state) = peer.merge_state() {
        // Frozen for a merge: not even the raft membership may change.
        return Ok(refused(super::merge::region_merging(
            context.region_id,
            state.target_region_id,
        )));
    }
    if !peer.is_leader() {
        return Ok(refused(peer.not_leader_here()));
    }
    let descriptor = peer.descriptor();
    let decision = decide_request(
        &descriptor,
        context.epoch.as_ref(),
        &request.add_peers,
        &request.remove_peer_ids,
        node.store_id(),
    );
    let (peers, added, removed) = match decision {
        RequestDecision::AlreadyInEffect { region } => return Ok(done(region)),
        RequestDecision::EpochNotMatch { current } => {
            return Ok(refused(epoch_not_match(node, current)))
        }
        RequestDecision::Invalid { hint } => return Err(RaftstoreError::InvalidArgument { hint }),
        RequestDecision::Change {
            peers,
            added,
            removed,
        } => (peers, added, removed),
    };
    let region = match run_change(node, &peer, &descriptor, &peers, &added).await? {
        Ok(region) => region,
        Err(region_error) => return Ok(refused(region_error)),
    };
    destroy_removed(node, &region, &removed).await;
    Ok(done(region))
}

/// Steps (1) to (5) of the module doc; the new descriptor once applied.
async fn run_change(
    node: &StoreNode,
    peer: &Peer,
    descriptor: &RegionDescriptor,
    peers: &[RegionPeer],
    added: &[RegionPeer],
) -> Step<RegionDescriptor> {
    let target: BTreeSet<StoreId> = store_set(peers);
    let membership = peer.raft().metrics().borrow().membership_config.clone();
    let membership = membership.membership();
    let in_membership: BTreeSet<StoreId> = membership.nodes().map(|(id, _)| *id).collect();
    let uniform_at_target =
        membership.get_joint_config().len() == 1 && membership.get_joint_config()[0] == target;
    if !uniform_at_target {
        let mut addresses = BTreeMap::new();
        for new in added {
            let Some(address) = node.transport().address_of(new.store_id) else {
                return Ok(Err(server_busy(format!(
                    "the address of store {} is not known yet",
                    new.store_id
                ))));
            };
            addresses.insert(new.store_id, address);
        }
        let joining: Vec<StoreId> = added
            .iter()
            .map(|new| new.store_id)
            .filter(|store_id| !in_membership.contains(store_id))
            .collect();
        if !joining.is_empty() {
            if let Err(region_error) =
                add_learners(node, peer, descriptor, &joining, &addresses).await?
            {
                return Ok(Err(region_error));
            }
        }
        let learners: Vec<StoreId> = added.iter().map(|new| new.store_id).collect();
        if let Err(region_error) = wait_caught_up(peer, &learners).await {
            return Ok(Err(region_error));
        }
        if let Err(region_error) = change_voters(peer, target).await {
            return Ok(Err(region_error));
        }
    }
    let command = RegionCommand::change_peers(ChangePeersCommand {
        expected_epoch: EpochRecord::of(descriptor.epoch.as_ref()),
        peers: peers
            .iter()
            .map(|peer| PeerRecord {
                peer_id: peer.peer_id,
                store_id: peer.store_id,
            })
            .collect(),
    });
    let response = match propose(peer, command).await? {
        Ok(response) => response,
        Err(region_error) => return Ok(Err(region_error)),
    };
    match response.change_peers {
        Some(ChangePeersOutcome::Changed { region }) => Ok(Ok(region)),
        Some(ChangePeersOutcome::EpochNotMatch { current }) => {
            Ok(Err(epoch_not_match(node, current)))
        }
        Some(ChangePeersOutcome::Invalid { hint }) => Ok(Err(server_busy(format!(
            "the peer change did not apply: {hint}"
        )))),
        None => Err(RaftstoreError::Raft {
            region_id: descriptor.region_id,
            hint: "a peer change command applied without an outcome".into(),
        }),
    }
}

fn store_raft_client(
    node: &StoreNode,
    address: &str,
) -> Result<StoreRaftClient<tonic::transport::Channel>, RaftstoreError> {
    Ok(StoreRaftClient::new(node.transport().channel(address)?)
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX))
}

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_millis(PEER_ADMIN_CALL_TIMEOUT_MS));
    request
}

/// Opens a replica on each joining store and adds it as a learner (after
/// making sure it will start from a snapshot).
async fn add_learners(
    node: &StoreNode,
    peer: &Peer,
    descriptor: &RegionDescriptor,
    joining: &[StoreId],
    addresses: &BTreeMap<StoreId, String>,
) -> Step<()> {
    for store_id in joining {
        let address = addresses.get(store_id).cloned().unwrap_or_default();
        let mut client = store_raft_client(node, &address)?;
        let opened = client
            .open_peer(timed(OpenPeerRequest {
                region: Some(descriptor.clone()),
            }))
            .await;
        if let Err(status) = opened {
            return Ok(Err(server_busy(format!(
                "store {store_id} did not open a replica: {:?}: {}",
                status.code(),
                status.message()
            ))));
        }
    }
    if let Err(region_error) = start_new_replicas_from_a_snapshot(peer).await {
        return Ok(Err(region_error));
    }
    for store_id in joining {
        let node_record = BasicNode {
            addr: addresses.get(store_id).cloned().unwrap_or_default(),
        };
        let added = peer.raft().add_learner(*store_id, node_record, false).await;
        if let Err(region_error) = membership_result(peer, added) {
            return Ok(Err(region_error));
        }
    }
    Ok(Ok(()))
}

/// When the leader's log still starts at index 0, builds a snapshot and
/// purges the log up to it, so a new replica is sent the snapshot (see the
/// module doc for why it must not replay the whole log).
async fn start_new_replicas_from_a_snapshot(peer: &Peer) -> Result<(), RegionError> {
    let raft = peer.raft();
    if raft.metrics().borrow().purged.is_some() {
        return Ok(());
    }
    let wait = Some(Duration::from_millis(LEARNER_SNAPSHOT_WAIT_MS));
    let busy =
        |what: &str, error: String| server_busy(format!("{what} for a new replica: {error}"));
    let applied = raft.metrics().borrow().last_applied;
    raft.trigger()
        .snapshot()
        .await
        .map_err(|e| busy("building a snapshot", e.to_string()))?;
    let metrics = raft
        .wait(wait)
        .metrics(
            |m| m.snapshot.is_some() && m.snapshot >= applied,
            "a snapshot for a new replica",
        )
        .await
        .map_err(|e| busy("building a snapshot", e.to_string()))?;
    let Some(snapshot) = metrics.snapshot else {
        return Err(busy("building a snapshot", "no snapshot".into()));
    };
    raft.trigger()
        .purge_log(snapshot.index)
        .await
        .map_err(|e| busy("purging the log", e.to_string()))?;
    raft.wait(wait)
        .metrics(
            |m| {
                m.purged
                    .is_some_and(|purged| purged.index >= snapshot.index)
            },
            "log purged for a new replica",
        )
        .await
        .map_err(|e| busy("purging the log", e.to_string()))?;
    Ok(())
}

/// True when every one of `stores` has matched the leader's log up to
/// `goal_index` (pure: the leader's replication progress by store).
pub fn caught_up(
    replication: Option<&BTreeMap<StoreId, Option<openraft::LogId<StoreId>>>>,
    goal_index: Option<u64>,
    stores: &[StoreId],
) -> bool {
    let Some(progress) = replication else {
        return false;
    };
    stores.iter().all(|store_id| {
        let matched = progress
            .get(store_id)
            .and_then(|matched| matched.as_ref())
            .map(|log_id| log_id.index);
        matched.is_some() && matched >= goal_index
    })
}

/// Waits until every learner reached the leader's log as it is now (a
/// fixed goal: under steady writes the log's end keeps moving, and a
/// learner that reached the goal replicates at line rate).
async fn wait_caught_up(peer: &Peer, learners: &[StoreId]) -> Result<(), RegionError> {
    let goal = peer.raft().metrics().borrow().last_log_index;
    let waited = peer
        .raft()
        .wait(Some(Duration::from_millis(LEARNER_CATCH_UP_MS)))
        .metrics(
            |m| caught_up(m.replication.as_ref(), goal, learners),
            "new learners caught up",
        )
        .await;
    match waited {
        Ok(_) => Ok(()),
        Err(error) => Err(server_busy(format!(
            "new replicas on stores {learners:?} did not catch up: {error}"
        ))),
    }
}

/// Replaces the voters with `target` (joint consensus, then uniform).
async fn change_voters(peer: &Peer, target: BTreeSet<StoreId>) -> Result<(), RegionError> {
    let change = peer.raft().change_membership(target, false);
    match tokio::time::timeout(Duration::from_millis(MEMBERSHIP_CHANGE_WAIT_MS), change).await {
        Err(_) => Err(server_busy("the membership change did not commit in time")),
        Ok(changed) => membership_result(peer, changed),
    }
}

type MembershipResult = Result<
    openraft::raft::ClientWriteResponse<crate::types::RegionTypeConfig>,
    RaftError<StoreId, ClientWriteError<StoreId, BasicNode>>,
>;

fn membership_result(peer: &Peer, result: MembershipResult) -> Result<(), RegionError> {
    match result {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(peer.not_leader(&forward))
        }
        // InProgress (another change not committed yet), a learner lost:
        // all pass with time; the caller retries.
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error))) => {
            Err(server_busy(format!("membership change refused: {error}")))
        }
        Err(RaftError::Fatal(fatal)) => Err(server_busy(format!("region raft stopped: {fatal}"))),
    }
}

/// Step (6): asks each removed peer's store to drop its replica. Best
/// effort: the change is done either way. A store that misses the call
/// (down, unreachable) keeps a replica raft no longer talks to until a
/// repeated `ChangePeers` (already in effect: answered without this step)
/// or an operator destroys it; it cannot take part in the region's quorum.
async fn destroy_removed(node: &StoreNode, region: &RegionDescriptor, removed: &[RegionPeer]) {
    for gone in removed {
        let Some(address) = node.transport().address_of(gone.store_id) else {
            tracing::warn!(
                region_id = region.region_id,
                store_id = gone.store_id,
                "no address to destroy a removed replica"
            );
            continue;
        };
        let destroyed = match store_raft_client(node, &address) {
            Ok(mut client) => client
                .destroy_peer(timed(DestroyPeerRequest {
                    region: Some(region.clone()),
                }))
                .await
                .map(|_| ())
                .map_err(|status| format!("{:?}: {}", status.code(), status.message())),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = destroyed {
            tracing::warn!(
                region_id = region.region_id,
                store_id = gone.store_id,
                error,
                "a removed replica was not destroyed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(version: u64, conf_ver: u64) -> Option<RegionEpoch> {
        Some(RegionEpoch { version, conf_ver })
    }

    fn peer_on(store_id: u64) -> RegionPeer {
        RegionPeer {
            peer_id: 10 + store_id,
            store_id,
        }
    }

    fn region_on(stores: &[u64]) -> RegionDescriptor {
        RegionDescriptor {
            region_id: 1,
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            epoch: epoch(3, 2),
            peers: stores.iter().map(|store_id| peer_on(*store_id)).collect(),
        }
    }

    #[test]
    fn adding_and_removing_peers_lists_the_new_peers() {
        let region = region_on(&[1, 2, 3]);
        let decision = decide_request(&region, region.epoch.as_ref(), &[peer_on(4)], &[13], 1);
        assert_eq!(
            decision,
            RequestDecision::Change {
                peers: vec![peer_on(1), peer_on(2), peer_on(4)],
                added: vec![peer_on(4)],
                removed: vec![peer_on(3)],
            }
        );
    }

    #[test]
    fn a_change_already_in_effect_answers_the_current_region_even_at_an_old_epoch() {
        let region = region_on(&[1, 2, 4]);
        for asked in [epoch(3, 1), epoch(3, 2)] {
            assert_eq!(
                decide_request(&region, asked.as_ref(), &[peer_on(4)], &[13], 1),
                RequestDecision::AlreadyInEffect {
                    region: region.clone()
                }
            );
        }
    }

    #[test]
    fn removing_a_peer_that_is_not_there_is_in_effect() {
        let region = region_on(&[1, 2, 3]);
        assert_eq!(
            decide_request(&region, epoch(1, 1).as_ref(), &[], &[99], 1),
            RequestDecision::AlreadyInEffect {
                region: region.clone()
            }
        );
    }

    #[test]
    fn a_change_planned_at_another_epoch_is_refused_with_the_current_region() {
        let region = region_on(&[1, 2, 3]);
        for asked in [epoch(3, 1), epoch(2, 2), epoch(3, 3), None] {
            assert_eq!(
                decide_request(&region, asked.as_ref(), &[peer_on(4)], &[], 1),
                RequestDecision::EpochNotMatch {
                    current: region.clone()
                },
                "{asked:?}"
            );
        }
    }

    #[test]
    fn impossible_changes_are_invalid() {
        let region = region_on(&[1, 2, 3]);
        let at = region.epoch;
        let clash_store = RegionPeer {
            peer_id: 99,
            store_id: 2,
        };
        let clash_id = RegionPeer {
            peer_id: 12,
            store_id: 7,
        };
        let zero = RegionPeer {
            peer_id: 0,
            store_id: 7,
        };
        let cases: Vec<(Vec<RegionPeer>, Vec<u64>)> = vec![
            (vec![clash_store], vec![]),
            (vec![clash_id], vec![]),
            (vec![zero], vec![]),
            (vec![peer_on(4), peer_on(4)], vec![]),
            (vec![peer_on(4)], vec![99]),
            (vec![], vec![11]),
            (vec![peer_on(4)], vec![14]),
            ((4..30).map(peer_on).collect(), vec![]),
        ];
        for (add, remove) in cases {
            assert!(
                matches!(
                    decide_request(&region, at.as_ref(), &add, &remove, 1),
                    RequestDecision::Invalid { .. }
                ),
                "add {add:?} remove {remove:?}"
            );
        }
    }

    fn command(stores: &[u64], conf_ver: u64) -> ChangePeersCommand {
        ChangePeersCommand {
            expected_epoch: EpochRecord {
                version: 3,
                conf_ver,
            },
            peers: stores
                .iter()
                .map(|store_id| PeerRecord {
                    peer_id: 10 + store_id,
                    store_id: *store_id,
                })
                .collect(),
        }
    }

    fn voters(stores: &[u64]) -> BTreeSet<u64> {
        stores.iter().copied().collect()
    }

    #[test]
    fn applying_a_peer_change_lists_the_peers_and_bumps_conf_ver_only() {
        let region = region_on(&[1, 2, 3]);
        let ApplyDecision::Change { region: after } =
            decide_apply(&region, &command(&[1, 2, 4], 2), &[voters(&[1, 2, 4])])
        else {
            panic!("the change applies");
        };
        assert_eq!(after.peers, vec![peer_on(1), peer_on(2), peer_on(4)]);
        assert_eq!(after.epoch, epoch(3, 3));
        assert_eq!(
            (after.start_key, after.end_key, after.region_id),
            (region.start_key, region.end_key, 1)
        );
    }

    #[test]
    fn a_peer_change_applies_only_once_the_membership_names_exactly_its_stores() {
        let region = region_on(&[1, 2, 3]);
        let change = command(&[1, 2, 4], 2);
        for configuration in [
            vec![voters(&[1, 2, 3])],
            vec![voters(&[1, 2, 3]), voters(&[1, 2, 4])],
            vec![voters(&[1, 2, 4, 5])],
        ] {
            assert!(
                matches!(
                    decide_apply(&region, &change, &configuration),
                    ApplyDecision::Invalid { .. }
                ),
                "{configuration:?}"
            );
        }
    }

    #[test]
    fn a_repeated_or_stale_peer_change_command_writes_nothing() {
        let region = region_on(&[1, 2, 4]);
        assert_eq!(
            decide_apply(&region, &command(&[1, 2, 4], 1), &[voters(&[1, 2, 4])]),
            ApplyDecision::AlreadyChanged {
                region: region.clone()
            }
        );
        assert_eq!(
            decide_apply(&region, &command(&[1, 4], 1), &[voters(&[1, 4])]),
            ApplyDecision::EpochNotMatch {
                current: region.clone()
            }
        );
    }

    #[test]
    fn a_learner_is_caught_up_only_once_it_matched_the_last_log_index() {
        let log_id = |index| {
            Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            ))
        };
        let progress: BTreeMap<u64, Option<openraft::LogId<u64>>> =
            [(2, log_id(9)), (4, log_id(7)), (5, None)]
                .into_iter()
                .collect();
        assert!(caught_up(Some(&progress), Some(9), &[2]));
        assert!(!caught_up(Some(&progress), Some(9), &[2, 4]));
        assert!(caught_up(Some(&progress), Some(7), &[4]));
        assert!(
            !caught_up(Some(&progress), Some(0), &[5]),
            "nothing matched yet"
        );
        assert!(
            !caught_up(Some(&progress), Some(9), &[6]),
            "not replicated to"
        );
        assert!(!caught_up(None, Some(9), &[2]), "not a leader");
    }
}
