//! The scheduler's driver: runs [`crate::scheduler::next_steps`] on the lease
//! holder, proposing to root under the lease fence and calling stores.

use std::time::Duration;

use arbor_proto::root_event::Kind;
use arbor_proto::store_client::StoreClient;
use arbor_proto::{
    region_error, LeaseFence, RegionContext, RegionDescriptor, RegionPeer, ScanRequest,
    SplitCommitted, SplitPlanned, SplitRegionRequest,
};

use crate::error::CoordinatorError;
use crate::scheduler::{next_steps, split_key_from_scan, Step};
use crate::service::Coordinator;

/// How often the holder looks for topology work.
pub const SCHEDULE_TICK_MS: u64 = 1_000;
/// Deadline of one call to a store.
pub const STORE_CALL_TIMEOUT_MS: u64 = 10_000;

pub async fn run(coordinator: std::sync::Arc<Coordinator>, split_keys_max: u64) {
    let mut ticker = tokio::time::interval(Duration::from_millis(SCHEDULE_TICK_MS));
    loop {
        ticker.tick().await;
        if !coordinator.is_holder() {
            continue;
        }
        let steps = next_steps(&coordinator.view(), split_keys_max);
        for step in steps {
            if !coordinator.is_holder() {
                break;
            }
            let outcome = match &step {
                Step::ExecuteSplit(split) => execute_split(&coordinator, split).await,
                Step::PlanSplit { region, scan_keys } => {
                    plan_split(&coordinator, region, *scan_keys).await
                }
            };
            if let Err(error) = outcome {
                tracing::info!(?step, "scheduling step deferred: {error}");
            }
        }
    }
}

fn lease_fence(coordinator: &Coordinator) -> Result<LeaseFence, CoordinatorError> {
    let tenure = coordinator.tenure();
    if !tenure.holds(coordinator.now_ms()) {
        return Err(CoordinatorError::InvalidArgument {
            hint: "lost the lease while scheduling".into(),
        });
    }
    Ok(LeaseFence {
        holder_id: coordinator.id.clone(),
        generation: tenure.generation,
    })
}

async fn propose(coordinator: &Coordinator, event: Kind) -> Result<(), CoordinatorError> {
    let answer = coordinator
        .root
        .propose_fenced(event, Some(lease_fence(coordinator)?))
        .await?;
    if answer.accepted {
        Ok(())
    } else {
        Err(CoordinatorError::FenceNotRaised {
            detail: answer.rejection_detail,
        })
    }
}

/// The leader store's client for `region_id`, from heartbeats.
async fn leader_client(
    coordinator: &Coordinator,
    region_id: u64,
) -> Result<StoreClient<tonic::transport::Channel>, CoordinatorError> {
    let address = {
        let view = coordinator.view();
        let leader = view.leader_of(region_id).map(|h| h.leader_store_id);
        leader.and_then(|id| {
            view.root
                .stores
                .iter()
                .find(|s| s.store_id == id)
                .map(|s| s.address.clone())
        })
    };
    let address = address.ok_or(CoordinatorError::InvalidArgument {
        hint: format!("no known leader for region {region_id} yet"),
    })?;
    let channel = arbor_root::network::lazy_channel(&address)
        .map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    Ok(StoreClient::new(channel))
}

async fn plan_split(
    coordinator: &Coordinator,
    region: &RegionDescriptor,
    scan_keys: u64,
) -> Result<(), CoordinatorError> {
    let mut store = leader_client(coordinator, region.region_id).await?;
    let mut request = tonic::Request::new(ScanRequest {
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
    });
    request.set_timeout(Duration::from_millis(STORE_CALL_TIMEOUT_MS));
    let scanned = store
        .scan(request)
        .await
        .map_err(|status| CoordinatorError::Transport(status.to_string()))?
        .into_inner();
    if let Some(error) = scanned.region_error {
        return Err(CoordinatorError::InvalidArgument {
            hint: format!("scan for a split key: {error:?}"),
        });
    }
    let keys: Vec<Vec<u8>> = scanned.pairs.into_iter().map(|p| p.key).collect();
    let Some(split_key) = split_key_from_scan(region, &keys) else {
        return Ok(()); // too few distinct keys to split
    };
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
    execute_split(coordinator, &planned).await
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

async fn execute_split(
    coordinator: &Coordinator,
    split: &SplitPlanned,
) -> Result<(), CoordinatorError> {
    let mut store = leader_client(coordinator, split.region_id).await?;
    let mut request = tonic::Request::new(SplitRegionRequest {
        context: Some(RegionContext {
            region_id: split.region_id,
            epoch: split.expected_epoch,
        }),
        split_key: split.split_key.clone(),
        new_region_id: split.new_region_id,
        new_peers: split.new_peers.clone(),
    });
    request.set_timeout(Duration::from_millis(STORE_CALL_TIMEOUT_MS));
    let answer = store
        .split_region(request)
        .await
        .map_err(|status| CoordinatorError::Transport(status.to_string()))?
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
                Err(CoordinatorError::InvalidArgument {
                    hint: format!(
                        "region {} does not match its pending split (store has {current:?}); left pending",
                        split.region_id
                    ),
                })
            }
        }
        Some(other) => Err(CoordinatorError::InvalidArgument {
            hint: format!("store could not split yet: {other:?}"),
        }),
    }
}
