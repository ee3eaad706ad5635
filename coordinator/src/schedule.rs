//! The scheduler's driver: runs [`crate::scheduler::next_steps`] on the lease
//! holder, proposing to root under the lease fence and calling stores
//! (`SplitRegion`, `ChangePeers`, `TransferLeader` at the region's leader;
//! merges through [`crate::merge`]).
//!
//! A change is committed in root only once the store answered that it is in
//! effect, and cancelled only when it provably never applied; anything in
//! between stays pending for the next tick (or the next lease holder).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arbor_proto::root_event::Kind;
use arbor_proto::store_client::StoreClient;
use arbor_proto::{
    region_error, ChangePeersRequest, LeaseFence, PeerChangeCancelled, PeerChangeCommitted,
    PeerChangePlanned, RegionContext, RegionDescriptor, RegionEpoch, RegionPeer, ScanRequest,
    SplitCommitted, SplitPlanned, SplitRegionRequest, TransferLeaderRequest,
};

use crate::error::CoordinatorError;
use crate::scheduler::{
    next_steps, peer_change_state, split_key_from_scan, Blocked, PeerChangeState, Step, Tick,
    LEADER_BALANCE_COOLDOWN_MS,
};
use crate::service::Coordinator;

/// How often the holder looks for topology work.
pub const SCHEDULE_TICK_MS: u64 = 1_000;
/// Deadline of one call to a store.
pub const STORE_CALL_TIMEOUT_MS: u64 = 10_000;
/// Deadline of one `ChangePeers` call: the store fills the new peer (by a
/// snapshot) before it answers.
pub const CHANGE_PEERS_CALL_TIMEOUT_MS: u64 = 60_000;
/// Most blocked regions remembered so each is logged once, not every tick.
pub const BLOCKED_LOGGED_MAX: usize = 4_096;

/// The scheduler's knobs, from the coordinator's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleConfig {
    pub split_keys_max: u64,
    pub split_bytes_max: u64,
    pub store_dead_after_ms: u64,
    /// Automatic merge thresholds ([`MergeConfig`]; off by default).
    pub merge: MergeConfig,
}

/// When adjacent small regions merge by themselves: both thresholds 0
/// (the default) turns automatic merge off. Off by default because manual
/// `SPLIT AT` boundaries are not sticky yet: a default-on merge would fold
/// a user's deliberate split back as soon as both halves were small. With
/// one threshold set, the other is taken as half its split threshold, so
/// a merged region never qualifies for a split at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeConfig {
    /// Merge two adjacent regions holding fewer keys than this together.
    pub region_merge_keys: u64,
    /// Merge two adjacent regions smaller on disk than this together.
    pub region_merge_bytes: u64,
}

impl MergeConfig {
    /// Refuses thresholds that are not at most half the split thresholds:
    /// a merged region must sit well below a split, or the scheduler would
    /// split and merge the same range tick after tick.
    pub fn check(&self, split_keys_max: u64, split_bytes_max: u64) -> Result<(), String> {
        if self.region_merge_keys > split_keys_max / 2 {
            return Err(format!(
                "--region-merge-keys {} must be at most half of --region-split-keys {split_keys_max}",
                self.region_merge_keys
            ));
        }
        if self.region_merge_bytes > split_bytes_max / 2 {
            return Err(format!(
                "--region-merge-bytes {} must be at most half of --region-split-bytes {split_bytes_max}",
                self.region_merge_bytes
            ));
        }
        Ok(())
    }

    /// The (keys, bytes) limits a merged region must stay under, or none
    /// when automatic merge is off.
    pub fn limits(&self, split_keys_max: u64, split_bytes_max: u64) -> Option<(u64, u64)> {
        if self.region_merge_keys == 0 && self.region_merge_bytes == 0 {
            return None;
        }
        let or_half = |limit: u64, split: u64| if limit == 0 { split / 2 } else { limit };
        Some((
            or_half(self.region_merge_keys, split_keys_max),
            or_half(self.region_merge_bytes, split_bytes_max),
        ))
    }
}

pub async fn run(coordinator: Arc<Coordinator>, config: ScheduleConfig) {
    let mut ticker = tokio::time::interval(Duration::from_millis(SCHEDULE_TICK_MS));
    // Heartbeats reach every coordinator from its start, so silence counts
    // from here (see `scheduler::health`).
    let observing_since_ms = coordinator.now_ms();
    let mut balance_leaders_from_ms = 0;
    let mut logged_blocked: BTreeSet<(u64, Blocked)> = BTreeSet::new();
    loop {
        ticker.tick().await;
        if !coordinator.is_holder() {
            continue;
        }
        let tick = Tick {
            now_ms: coordinator.now_ms(),
            observing_since_ms,
            split_keys_max: config.split_keys_max,
            split_bytes_max: config.split_bytes_max,
            store_dead_after_ms: config.store_dead_after_ms,
            balance_leaders_from_ms,
            merge_limits: config
                .merge
                .limits(config.split_keys_max, config.split_bytes_max),
        };
        let plan = next_steps(&coordinator.view(), tick);
        log_blocked(&plan.blocked, &mut logged_blocked);
        for step in plan.steps {
            if !coordinator.is_holder() {
                break;
            }
            if matches!(step, Step::TransferLeader { .. }) {
                balance_leaders_from_ms = coordinator.now_ms() + LEADER_BALANCE_COOLDOWN_MS;
            }
            if let Err(error) = run_step(&coordinator, &step).await {
                tracing::info!(?step, "scheduling step deferred: {error}");
            }
        }
    }
}

async fn run_step(coordinator: &Coordinator, step: &Step) -> Result<(), CoordinatorError> {
    match step {
        Step::ExecuteSplit(split) => execute_split(coordinator, split).await,
        Step::ExecuteMerge(merge) => crate::merge::execute_merge(coordinator, merge).await,
        Step::PlanMerge { source, target } => {
            let planned = crate::merge::plan_merge(coordinator, source, target).await?;
            crate::merge::execute_merge(coordinator, &planned).await
        }
        Step::PlanSplit { region, scan_keys } => plan_split(coordinator, region, *scan_keys).await,
        Step::ExecutePeerChange(change) => execute_peer_change(coordinator, change).await,
        Step::CancelPeerChange { region_id, reason } => {
            cancel_peer_change(coordinator, *region_id, reason).await
        }
        Step::ReplacePeer {
            region,
            remove_peer_id,
            add_store_id,
        } => replace_peer(coordinator, region, *remove_peer_id, *add_store_id).await,
        Step::TransferLeader {
            region_id,
            epoch,
            from_store_id,
            to_store_id,
        } => {
            transfer_leader(
                coordinator,
                *region_id,
                *epoch,
                *from_store_id,
                *to_store_id,
            )
            .await
        }
    }
}

/// Logs each blocked region once per reason (while it stays blocked).
fn log_blocked(blocked: &[(u64, Blocked)], logged: &mut BTreeSet<(u64, Blocked)>) {
    let now: BTreeSet<(u64, Blocked)> = blocked.iter().copied().collect();
    logged.retain(|entry| now.contains(entry));
    for entry in now {
        if logged.len() < BLOCKED_LOGGED_MAX && logged.insert(entry) {
            let (region_id, reason) = entry;
            match reason {
                Blocked::NoQuorum { up_peers, peers } => tracing::warn!(
                    region_id,
                    up_peers,
                    peers,
                    "region has a peer on a dead store but too few peers up to change its membership; waiting for stores to return"
                ),
                Blocked::NoSpareStore => tracing::warn!(
                    region_id,
                    "region has a peer on a dead store but every up store already holds a replica; add a store"
                ),
            }
        }
    }
}

fn lease_fence(coordinator: &Coordinator) -> Result<LeaseFence, CoordinatorError> {
    let tenure = coordinator.tenure();
    if !tenure.holds(coordinator.now_ms()) {
        return Err(CoordinatorError::NotReady {
            hint: "lost the lease while scheduling".into(),
        });
    }
    Ok(LeaseFence {
        holder_id: coordinator.id.clone(),
        generation: tenure.generation,
    })
}

pub(crate) async fn propose(
    coordinator: &Coordinator,
    event: Kind,
) -> Result<(), CoordinatorError> {
    let answer = coordinator
        .root
        .propose_fenced(event, Some(lease_fence(coordinator)?))
        .await?;
    if answer.accepted {
        Ok(())
    } else {
        Err(CoordinatorError::NotReady {
            hint: format!("root rejected the proposal: {}", answer.rejection_detail),
        })
    }
}

/// A client for the store `store_id`, at the address root recorded.
pub(crate) fn store_client(
    coordinator: &Coordinator,
    store_id: u64,
) -> Result<StoreClient<tonic::transport::Channel>, CoordinatorError> {
    let address = coordinator
        .view()
        .root
        .stores
        .iter()
        .find(|s| s.store_id == store_id)
        .map(|s| s.address.clone())
        .ok_or(CoordinatorError::NotReady {
            hint: format!("store {store_id} is not a member of the cluster"),
        })?;
    let channel = arbor_root::network::lazy_channel(&address)
        .map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    Ok(StoreClient::new(channel))
}

/// The leader store's client for `region_id`, from heartbeats.
pub(crate) fn leader_client(
    coordinator: &Coordinator,
    region_id: u64,
) -> Result<StoreClient<tonic::transport::Channel>, CoordinatorError> {
    let leader = coordinator
        .view()
        .leader_of(region_id)
        .map(|h| h.leader_store_id)
        .ok_or(CoordinatorError::NotReady {
            hint: format!("no known leader for region {region_id} yet"),
        })?;
    store_client(coordinator, leader)
}

pub(crate) fn timed<T>(message: T, timeout_ms: u64) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_millis(timeout_ms));
    request
}

pub(crate) fn store_failed(status: tonic::Status) -> CoordinatorError {
    CoordinatorError::Transport(status.to_string())
}

async fn plan_split(
    coordinator: &Coordinator,
    region: &RegionDescriptor,
    scan_keys: u64,
) -> Result<(), CoordinatorError> {
    let mut store = leader_client(coordinator, region.region_id)?;
    let request = timed(
        ScanRequest {
            context: Some(RegionContext {
                region_id: region.region_id,
                epoch: region.epoch,
            }),
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            limit: scan_keys as u32,
            // Sampling: the newest keys, locks ignored (no timestamp needed).
            read_ts: 0,
            ignore_locks: true,
        },
        STORE_CALL_TIMEOUT_MS,
    );
    let scanned = store
        .scan(request)
        .await
        .map_err(store_failed)?
        .into_inner();
    if let Some(error) = scanned.region_error {
        return Err(CoordinatorError::NotReady {
            hint: format!("scan for a split key: {error:?}"),
        });
    }
    let keys: Vec<Vec<u8>> = scanned.pairs.into_iter().map(|p| p.key).collect();
    let Some(split_key) = split_key_from_scan(region, &keys) else {
        return Ok(()); // too few distinct keys to split
    };
    let planned = plan_split_at(coordinator, region, split_key).await?;
    execute_split(coordinator, &planned).await
}

/// Plans in root a split of `region` at `split_key` (which must lie
/// strictly inside it): a new region id and one new peer id per peer, from
/// the id allocator, the new peers on the same stores.
pub(crate) async fn plan_split_at(
    coordinator: &Coordinator,
    region: &RegionDescriptor,
    split_key: Vec<u8>,
) -> Result<SplitPlanned, CoordinatorError> {
    let peer_count = region.peers.len() as u32;
    let (first_id, _) = crate::singleton::ids(coordinator, 1 + peer_count).await?;
    let new_peers = region
        .peers
        .iter()
        .zip(first_id + 1..)
        .map(|(peer, peer_id)| RegionPeer {
            peer_id,
            store_id: peer.store_id,
        })
        .collect();
    let planned = SplitPlanned {
        region_id: region.region_id,
        expected_epoch: region.epoch,
        split_key,
        new_region_id: first_id,
        new_peers,
    };
    propose(coordinator, Kind::SplitPlanned(planned.clone())).await?;
    tracing::info!(
        region_id = region.region_id,
        new_region_id = first_id,
        "split planned"
    );
    Ok(planned)
}

async fn commit_split(
    coordinator: &Coordinator,
    split: &SplitPlanned,
) -> Result<(), CoordinatorError> {
    let commit = Kind::SplitCommitted(SplitCommitted {
        region_id: split.region_id,
    });
    propose(coordinator, commit).await?;
    tracing::info!(
        region_id = split.region_id,
        new_region_id = split.new_region_id,
        "split committed"
    );
    Ok(())
}

/// Asks the region's leader to execute a split planned in root, then
/// commits it in root.
pub(crate) async fn execute_split(
    coordinator: &Coordinator,
    split: &SplitPlanned,
) -> Result<(), CoordinatorError> {
    let mut store = leader_client(coordinator, split.region_id)?;
    let request = timed(
        SplitRegionRequest {
            context: Some(RegionContext {
                region_id: split.region_id,
                epoch: split.expected_epoch,
            }),
            split_key: split.split_key.clone(),
            new_region_id: split.new_region_id,
            new_peers: split.new_peers.clone(),
        },
        STORE_CALL_TIMEOUT_MS,
    );
    let answer = store
        .split_region(request)
        .await
        .map_err(store_failed)?
        .into_inner();
    match answer.region_error.and_then(|e| e.kind) {
        None => commit_split(coordinator, split).await,
        // A repeated SplitRegion for a split that already ran answers
        // success, so an epoch mismatch means the store's region differs
        // from the plan. If its current shape is the plan's left half, the
        // split ran (its answer was lost): commit. Anything else is left
        // pending, never cancelled blindly: cancelling a split the stores
        // did execute would make root and the stores disagree.
        Some(region_error::Kind::EpochNotMatch(mismatch)) => {
            let current = mismatch.current.unwrap_or_default();
            let expected_version = split.expected_epoch.unwrap_or_default().version;
            let split_ran = current.end_key == split.split_key
                && current.epoch.unwrap_or_default().version > expected_version;
            if split_ran {
                commit_split(coordinator, split).await
            } else {
                Err(CoordinatorError::NotReady {
                    hint: format!(
                        "region {} does not match its pending split (store has {current:?}); left pending",
                        split.region_id
                    ),
                })
            }
        }
        Some(other) => Err(CoordinatorError::NotReady {
            hint: format!("store could not split yet: {other:?}"),
        }),
    }
}

/// Plans in root replacing the dead peer `remove_peer_id` of `region` by a
/// new peer (id from the allocator) on `add_store_id`, then executes it.
async fn replace_peer(
    coordinator: &Coordinator,
    region: &RegionDescriptor,
    remove_peer_id: u64,
    add_store_id: u64,
) -> Result<(), CoordinatorError> {
    let (peer_id, _) = crate::singleton::ids(coordinator, 1).await?;
    let change = PeerChangePlanned {
        region_id: region.region_id,
        expected_epoch: region.epoch,
        add_peers: vec![RegionPeer {
            peer_id,
            store_id: add_store_id,
        }],
        remove_peer_ids: vec![remove_peer_id],
    };
    propose(coordinator, Kind::PeerChangePlanned(change.clone())).await?;
    tracing::info!(
        region_id = region.region_id,
        remove_peer_id,
        add_peer_id = peer_id,
        add_store_id,
        "peer replacement planned"
    );
    execute_peer_change(coordinator, &change).await
}

/// Asks the region's leader to execute a peer change planned in root
/// (idempotent), then commits it in root once the store's answer shows it
/// in effect. A store that refuses the plan as invalid never applied it:
/// the plan is cancelled. Anything else stays pending for the next tick.
async fn execute_peer_change(
    coordinator: &Coordinator,
    change: &PeerChangePlanned,
) -> Result<(), CoordinatorError> {
    let region = coordinator
        .view()
        .root
        .regions
        .iter()
        .find(|r| r.region_id == change.region_id)
        .cloned()
        .ok_or(CoordinatorError::NotReady {
            hint: format!(
                "region {} of a pending peer change is gone",
                change.region_id
            ),
        })?;
    let mut store = leader_client(coordinator, change.region_id)?;
    let request = timed(
        ChangePeersRequest {
            context: Some(RegionContext {
                region_id: change.region_id,
                epoch: change.expected_epoch,
            }),
            add_peers: change.add_peers.clone(),
            remove_peer_ids: change.remove_peer_ids.clone(),
        },
        CHANGE_PEERS_CALL_TIMEOUT_MS,
    );
    let answer = match store.change_peers(request).await {
        Ok(answer) => answer.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let reason = format!("the region's leader refused it: {}", status.message());
            return cancel_peer_change(coordinator, change.region_id, &reason).await;
        }
        Err(status) => return Err(store_failed(status)),
    };
    let store_region = match answer.region_error.and_then(|e| e.kind) {
        None => answer.region,
        Some(region_error::Kind::EpochNotMatch(mismatch)) => mismatch.current,
        Some(other) => {
            return Err(CoordinatorError::NotReady {
                hint: format!("store could not change peers yet: {other:?}"),
            })
        }
    };
    let state = store_region
        .as_ref()
        .map(|current| peer_change_state(&region, change, current));
    if state != Some(PeerChangeState::Applied) {
        return Err(CoordinatorError::NotReady {
            hint: format!(
                "region {} at its leader ({store_region:?}) does not show the pending peer change; left pending",
                change.region_id
            ),
        });
    }
    propose(
        coordinator,
        Kind::PeerChangeCommitted(PeerChangeCommitted {
            region_id: change.region_id,
        }),
    )
    .await?;
    tracing::info!(region_id = change.region_id, "peer change committed");
    Ok(())
}

async fn cancel_peer_change(
    coordinator: &Coordinator,
    region_id: u64,
    reason: &str,
) -> Result<(), CoordinatorError> {
    let cancel = Kind::PeerChangeCancelled(PeerChangeCancelled {
        region_id,
        reason: reason.to_string(),
    });
    propose(coordinator, cancel).await?;
    tracing::warn!(region_id, reason, "peer change cancelled");
    Ok(())
}

async fn transfer_leader(
    coordinator: &Coordinator,
    region_id: u64,
    epoch: Option<RegionEpoch>,
    from_store_id: u64,
    to_store_id: u64,
) -> Result<(), CoordinatorError> {
    let mut store = store_client(coordinator, from_store_id)?;
    let request = timed(
        TransferLeaderRequest {
            context: Some(RegionContext { region_id, epoch }),
            to_store_id,
        },
        STORE_CALL_TIMEOUT_MS,
    );
    let answer = store
        .transfer_leader(request)
        .await
        .map_err(store_failed)?
        .into_inner();
    if let Some(error) = answer.region_error {
        return Err(CoordinatorError::NotReady {
            hint: format!("store could not transfer the leader: {error:?}"),
        });
    }
    tracing::info!(
        region_id,
        from_store_id,
        to_store_id,
        "leader moved to balance leaders"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_thresholds_above_half_the_split_thresholds_are_refused() {
        let at_half = MergeConfig {
            region_merge_keys: 50,
            region_merge_bytes: 500,
        };
        assert_eq!(at_half.check(100, 1_000), Ok(()));
        let keys_over = MergeConfig {
            region_merge_keys: 51,
            ..at_half
        };
        assert!(keys_over.check(100, 1_000).is_err());
        let bytes_over = MergeConfig {
            region_merge_bytes: 501,
            ..at_half
        };
        assert!(bytes_over.check(100, 1_000).is_err());
        assert_eq!(MergeConfig::default().check(0, 0), Ok(()), "off is fine");
    }

    #[test]
    fn merge_is_off_by_default_and_an_unset_threshold_is_half_the_split_one() {
        assert_eq!(MergeConfig::default().limits(100, 1_000), None);
        let keys_only = MergeConfig {
            region_merge_keys: 20,
            region_merge_bytes: 0,
        };
        assert_eq!(keys_only.limits(100, 1_000), Some((20, 500)));
        let bytes_only = MergeConfig {
            region_merge_keys: 0,
            region_merge_bytes: 300,
        };
        assert_eq!(bytes_only.limits(100, 1_000), Some((50, 300)));
    }
}
