//! Leader transfer (`Store.TransferLeader`), asked of the region's leader.
//!
//! openraft 0.9 has no transfer-leader API, so the leader does it from
//! outside: it waits until the target replica has matched its last log
//! index (so the target's log is at least as long as any voter's, and its
//! vote request passes the log check), then asks the target's store to
//! campaign (`StoreRaft.Campaign`, which wakes the replica and calls
//! `Raft::trigger().elect()`), and waits until the target leads.
//!
//! **Leader lease (openraft 0.9.25, `Engine::handle_vote_req`):** a node
//! whose vote is committed refuses any vote request until `leader_lease`
//! (= `election_timeout_max`) has passed since its vote was last updated.
//! Followers refresh that time on every append-entries from the leader, so
//! while the leader heartbeats they refuse the target. The leader itself
//! last updated its vote when it was elected, so once it has led for longer
//! than the lease it grants the target's (higher-term, up-to-date) request
//! and steps down — with the target's own vote that is a quorum of a
//! three-voter region. If the leader was elected less than a lease ago, the
//! first campaign loses; the target keeps its higher term, the leader's
//! next heartbeat is refused with that term and the leader steps down, and
//! the target's retry ([`CAMPAIGN_RETRY_MS`], past the lease) wins. Larger
//! regions converge the same way: once the old leader stepped down, the
//! other followers' leases run out. No `enable_elect` switch is involved:
//! that only stops a replica's own election timer, not its voting.
//!
//! [`next_step`] is the pure decision; [`transfer_leader`] the driver.

use std::time::Duration;

use arbor_proto::store_raft_client::StoreRaftClient;
use arbor_proto::{
    CampaignRequest, RegionDescriptor, RegionError, TransferLeaderRequest, TransferLeaderResponse,
};
use openraft::ServerState;
use tokio::time::Instant;

use super::admit;
use super::conf_change::caught_up;
use crate::config::{
    CAMPAIGN_RETRY_MS, MEMBERSHIP_POLL_MS, PEER_ADMIN_CALL_TIMEOUT_MS, TRANSFER_LEADER_WAIT_MS,
};
use crate::error::RaftstoreError;
use crate::peer::{server_busy, Peer};
use crate::store::StoreNode;
use crate::types::StoreId;

/// What the transferring leader does at one look at its raft metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStep {
    /// The target leads: answer OK.
    Done,
    /// Ask the target to campaign now.
    Campaign,
    /// Wait (target catching up, an election under way, or a campaign
    /// asked for less than `CAMPAIGN_RETRY_MS` ago).
    Wait,
}

/// What this replica observed of the region at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferObservation {
    pub leader: Option<StoreId>,
    pub leads: bool,
    pub target_caught_up: bool,
    /// Milliseconds since the last campaign asked; `None` if none yet.
    pub since_campaign_ms: Option<u64>,
}

pub fn next_step(target: StoreId, seen: &TransferObservation) -> TransferStep {
    if seen.leader == Some(target) {
        return TransferStep::Done;
    }
    let due = seen
        .since_campaign_ms
        .is_none_or(|elapsed| elapsed >= CAMPAIGN_RETRY_MS);
    // Once this replica stepped down (its lease lost to the target's
    // term), only the target's own retries matter; asking again is cheap
    // and covers a target that stopped campaigning.
    let ready = if seen.leads {
        seen.target_caught_up
    } else {
        seen.since_campaign_ms.is_some()
    };
    if ready && due {
        TransferStep::Campaign
    } else {
        TransferStep::Wait
    }
}

fn refused(region_error: RegionError) -> TransferLeaderResponse {
    TransferLeaderResponse {
        region_error: Some(region_error),
    }
}

/// Serves `Store.TransferLeader` (see module doc): answered once the
/// target leads, or `ServerBusy` after [`TRANSFER_LEADER_WAIT_MS`].
pub async fn transfer_leader(
    node: &StoreNode,
    request: TransferLeaderRequest,
) -> Result<TransferLeaderResponse, RaftstoreError> {
    let (peer, descriptor) = match admit(node, request.context.as_ref())? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    let target = request.to_store_id;
    if !peer.is_leader() {
        return Ok(refused(peer.not_leader_here()));
    }
    if target == node.store_id() {
        return Ok(TransferLeaderResponse { region_error: None });
    }
    let is_voter = peer
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .any(|voter| voter == target);
    if !is_voter {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "store {target} holds no voting replica of region {}",
                descriptor.region_id
            ),
        });
    }
    let Some(address) = node.transport().address_of(target) else {
        return Ok(refused(server_busy(format!(
            "the address of store {target} is not known yet"
        ))));
    };
    drive(node, &peer, &descriptor, target, &address).await
}

fn observe(peer: &Peer, target: StoreId, last_campaign: Option<Instant>) -> TransferObservation {
    let metrics = peer.raft().metrics().borrow().clone();
    let leads = metrics.state == ServerState::Leader;
    TransferObservation {
        leader: metrics.current_leader,
        leads,
        target_caught_up: leads
            && caught_up(
                metrics.replication.as_ref(),
                metrics.last_log_index,
                &[target],
            ),
        since_campaign_ms: last_campaign
            .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)),
    }
}

async fn drive(
    node: &StoreNode,
    peer: &Peer,
    descriptor: &RegionDescriptor,
    target: StoreId,
    address: &str,
) -> Result<TransferLeaderResponse, RaftstoreError> {
    let deadline = Instant::now() + Duration::from_millis(TRANSFER_LEADER_WAIT_MS);
    let mut last_campaign: Option<Instant> = None;
    // The target must be awake to take the log quickly and to keep
    // campaigning; this replica's own touch keeps the region from
    // hibernating meanwhile.
    while Instant::now() < deadline {
        peer.touch();
        match next_step(target, &observe(peer, target, last_campaign)) {
            TransferStep::Done => return Ok(TransferLeaderResponse { region_error: None }),
            TransferStep::Campaign => {
                last_campaign = Some(Instant::now());
                if let Err(error) = ask_to_campaign(node, address, descriptor.region_id).await {
                    tracing::debug!(region_id = descriptor.region_id, target, %error, "campaign request failed");
                }
            }
            TransferStep::Wait => {}
        }
        tokio::time::sleep(Duration::from_millis(MEMBERSHIP_POLL_MS)).await;
    }
    Ok(refused(server_busy(format!(
        "store {target} did not take the leadership within {TRANSFER_LEADER_WAIT_MS} ms"
    ))))
}

async fn ask_to_campaign(
    node: &StoreNode,
    address: &str,
    region_id: u64,
) -> Result<(), RaftstoreError> {
    let mut client = StoreRaftClient::new(node.transport().channel(address)?);
    let mut request = tonic::Request::new(CampaignRequest { region_id });
    request.set_timeout(Duration::from_millis(PEER_ADMIN_CALL_TIMEOUT_MS));
    client
        .campaign(request)
        .await
        .map(|_| ())
        .map_err(|status| RaftstoreError::Transport {
            address: address.to_string(),
            hint: format!("Campaign: {:?}: {}", status.code(), status.message()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(caught_up: bool, since_campaign_ms: Option<u64>) -> TransferObservation {
        TransferObservation {
            leader: Some(1),
            leads: true,
            target_caught_up: caught_up,
            since_campaign_ms,
        }
    }

    #[test]
    fn the_transfer_is_done_once_the_target_leads() {
        let seen = TransferObservation {
            leader: Some(4),
            leads: false,
            ..leading(true, Some(5))
        };
        assert_eq!(next_step(4, &seen), TransferStep::Done);
    }

    #[test]
    fn the_leader_asks_for_a_campaign_only_once_the_target_caught_up() {
        assert_eq!(next_step(4, &leading(false, None)), TransferStep::Wait);
        assert_eq!(next_step(4, &leading(true, None)), TransferStep::Campaign);
    }

    #[test]
    fn a_lost_campaign_is_asked_again_only_after_the_leader_lease() {
        assert_eq!(
            next_step(4, &leading(true, Some(CAMPAIGN_RETRY_MS - 1))),
            TransferStep::Wait
        );
        assert_eq!(
            next_step(4, &leading(true, Some(CAMPAIGN_RETRY_MS))),
            TransferStep::Campaign
        );
    }

    #[test]
    fn a_leader_that_stepped_down_keeps_nudging_the_target_but_never_starts_cold() {
        let stepped_down = |since| TransferObservation {
            leader: None,
            leads: false,
            target_caught_up: false,
            since_campaign_ms: since,
        };
        assert_eq!(next_step(4, &stepped_down(None)), TransferStep::Wait);
        assert_eq!(
            next_step(4, &stepped_down(Some(CAMPAIGN_RETRY_MS))),
            TransferStep::Campaign
        );
    }
}
