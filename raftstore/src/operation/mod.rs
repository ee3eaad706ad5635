//! One module per behaviour of a region: the pure apply check, reads,
//! transaction commands, splits, merges, peer changes (`conf_change`), leader
//! transfer and replica administration (`replica`) as the store service
//! performs them.
//!
//! Every request is admitted the same way, cheapest check first: the region
//! must be on this store, the request's epoch must be current, its keys must
//! be inside the region; leadership is then settled by raft itself (a read
//! barrier or a proposal), whose refusal carries the leader hint.

pub mod apply;
pub mod conf_change;
pub mod merge;
pub mod read;
pub mod replica;
pub mod split;
pub mod transfer_leader;
pub mod txn;

use std::sync::Arc;

use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::{EpochNotMatch, RegionContext, RegionDescriptor, RegionError, RegionNotFound};

use crate::config::{EPOCH_NOT_MATCH_REGIONS_MAX, KEY_BYTES_MAX};
use crate::error::RaftstoreError;
use crate::peer::{region_error, Peer};
use crate::store::StoreNode;

/// A request the region accepted, or the region error to answer with.
pub(crate) type Admission = Result<(Arc<Peer>, RegionDescriptor), RegionError>;

pub(crate) fn admit(
    node: &StoreNode,
    context: Option<&RegionContext>,
) -> Result<Admission, RaftstoreError> {
    let context = context.ok_or_else(|| RaftstoreError::InvalidArgument {
        hint: "request carries no region context".into(),
    })?;
    let Some(peer) = node.peer(context.region_id) else {
        return Ok(Err(region_error(RegionErrorKind::RegionNotFound(
            RegionNotFound {
                region_id: context.region_id,
            },
        ))));
    };
    // A client request wakes a hibernating region (see `hibernate`).
    peer.touch();
    if let Some(state) = peer.merge_state() {
        // Frozen: once the merge commits the target serves the range, so a
        // read here could be stale and a write would be refused at apply.
        return Ok(Err(merge::region_merging(
            context.region_id,
            state.target_region_id,
        )));
    }
    Ok(peer
        .check_epoch(context.epoch.as_ref())
        .map(|descriptor| (peer, descriptor))
        .map_err(|current| epoch_not_match(node, current)))
}

/// `EpochNotMatch` naming the region as it is now and the local regions
/// that continue it to the right (the halves a split made), so a client can
/// route to both without asking a coordinator that may not know them yet.
pub(crate) fn epoch_not_match(node: &StoreNode, current: RegionDescriptor) -> RegionError {
    let mut regions = vec![current.clone()];
    let mut end = current.end_key.clone();
    while regions.len() < EPOCH_NOT_MATCH_REGIONS_MAX && !end.is_empty() {
        let Some(next) = node.region_starting_at(&end) else {
            break;
        };
        end = next.end_key.clone();
        regions.push(next);
    }
    region_error(RegionErrorKind::EpochNotMatch(EpochNotMatch {
        current: Some(current),
        regions,
    }))
}

pub(crate) fn check_key_size(key: &[u8]) -> Result<(), RaftstoreError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "key of {} bytes exceeds the {KEY_BYTES_MAX}-byte limit",
                key.len()
            ),
        });
    }
    Ok(())
}
