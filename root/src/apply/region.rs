//! Region lifecycle: bootstrap, tombstone, and planned changes (split,
//! merge, peer change) that are committed or cancelled later.
//!
//! Invariants kept here: live regions never overlap and together cover the
//! whole key space once bootstrapped; a change applies only against the
//! epoch its planner saw; a region takes part in at most one pending change;
//! region ids are never reused.

use std::collections::BTreeSet;

use arbor_proto::pending_change::Change;
use arbor_proto::{
    MergePlanned, PeerChangePlanned, PendingChange, RegionBootstrapped, RegionDescriptor,
    RegionEpoch, RegionPeer, RegionTombstoned, RootState, SplitPlanned,
};

use super::{malformed, require_bootstrapped, Rejection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PendingKind {
    Split,
    Merge,
    PeerChange,
}

impl PendingKind {
    fn of(change: &Option<Change>) -> Option<PendingKind> {
        match change {
            Some(Change::Split(_)) => Some(PendingKind::Split),
            Some(Change::Merge(_)) => Some(PendingKind::Merge),
            Some(Change::PeerChange(_)) => Some(PendingKind::PeerChange),
            None => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PendingKind::Split => "split",
            PendingKind::Merge => "merge",
            PendingKind::PeerChange => "peer change",
        }
    }
}

pub(super) fn bootstrap(
    state: &mut RootState,
    event: &RegionBootstrapped,
) -> Result<(), Rejection> {
    require_bootstrapped(state)?;
    let region = event
        .region
        .as_ref()
        .ok_or_else(|| malformed("no region"))?;
    validate_first_region(state, region)?;
    state.regions.push(region.clone());
    Ok(())
}

fn epoch_pair(epoch: &Option<RegionEpoch>) -> (u64, u64) {
    let epoch = epoch.unwrap_or_default();
    (epoch.version, epoch.conf_ver)
}

/// The live region `region_id`, checked against the epoch the proposer saw
/// and free of pending changes.
fn region_at_epoch<'a>(
    state: &'a RootState,
    region_id: u64,
    expected: &Option<RegionEpoch>,
) -> Result<&'a RegionDescriptor, Rejection> {
    let region = state
        .regions
        .iter()
        .find(|r| r.region_id == region_id)
        .ok_or(Rejection::NoSuchRegion { region_id })?;
    if epoch_pair(&region.epoch) != epoch_pair(expected) {
        return Err(Rejection::EpochMismatch {
            region_id,
            expected: epoch_pair(expected),
            current: epoch_pair(&region.epoch),
        });
    }
    if let Some(pending) = pending_involving(state, region_id) {
        return Err(Rejection::ChangePending {
            region_id,
            planned_at_cursor: pending.planned_at_cursor,
        });
    }
    Ok(region)
}

/// The pending change a region takes part in, as subject or merge target.
fn pending_involving(state: &RootState, region_id: u64) -> Option<&PendingChange> {
    state.pending_changes.iter().find(|p| {
        p.region_id == region_id
            || matches!(&p.change, Some(Change::Merge(m)) if m.target_region_id == region_id)
    })
}

fn id_ever_used(state: &RootState, region_id: u64) -> bool {
    state.regions.iter().any(|r| r.region_id == region_id)
        || state.tombstoned_region_ids.contains(&region_id)
        || state
            .pending_changes
            .iter()
            .any(|p| matches!(&p.change, Some(Change::Split(s)) if s.new_region_id == region_id))
}

fn stores_of(peers: &[RegionPeer]) -> BTreeSet<u64> {
    peers.iter().map(|p| p.store_id).collect()
}

fn take_pending(
    state: &mut RootState,
    region_id: u64,
    kind: PendingKind,
) -> Result<PendingChange, Rejection> {
    let position = state
        .pending_changes
        .iter()
        .position(|p| p.region_id == region_id && PendingKind::of(&p.change) == Some(kind))
        .ok_or(Rejection::NothingPending {
            region_id,
            what: kind.name(),
        })?;
    Ok(state.pending_changes.remove(position))
}

fn region_mut(state: &mut RootState, region_id: u64) -> &mut RegionDescriptor {
    state
        .regions
        .iter_mut()
        .find(|r| r.region_id == region_id)
        .expect("a pending change's regions stay live until it is committed or cancelled")
}

pub(super) fn tombstone(state: &mut RootState, event: &RegionTombstoned) -> Result<(), Rejection> {
    region_at_epoch(state, event.region_id, &event.expected_epoch)?;
    // Removing a region from the middle of the key space would leave a hole.
    if state.regions.len() > 1 {
        return Err(malformed(
            "only the last live region can be tombstoned; merge the others away first",
        ));
    }
    state.regions.retain(|r| r.region_id != event.region_id);
    state.tombstoned_region_ids.push(event.region_id);
    Ok(())
}

pub(super) fn plan_split(
    state: &mut RootState,
    event: &SplitPlanned,
    cursor: u64,
) -> Result<(), Rejection> {
    let region = region_at_epoch(state, event.region_id, &event.expected_epoch)?;
    let key = event.split_key.as_slice();
    let inside = !key.is_empty()
        && region.start_key.as_slice() < key
        && (region.end_key.is_empty() || key < region.end_key.as_slice());
    if !inside {
        return Err(malformed(format!(
            "split key must lie strictly inside region {}",
            event.region_id
        )));
    }
    if event.new_region_id == 0 || id_ever_used(state, event.new_region_id) {
        return Err(malformed(format!(
            "region id {} is zero or already used",
            event.new_region_id
        )));
    }
    if stores_of(&event.new_peers) != stores_of(&region.peers)
        || event.new_peers.len() != region.peers.len()
    {
        return Err(malformed(
            "a split's new peers sit on the same stores as the region's",
        ));
    }
    state.pending_changes.push(PendingChange {
        region_id: event.region_id,
        planned_at_cursor: cursor,
        change: Some(Change::Split(event.clone())),
    });
    Ok(())
}

pub(super) fn commit_split(state: &mut RootState, region_id: u64) -> Result<(), Rejection> {
    let pending = take_pending(state, region_id, PendingKind::Split)?;
    let Some(Change::Split(split)) = pending.change else {
        unreachable!("take_pending matched the kind");
    };
    let region = region_mut(state, region_id);
    let mut epoch = region.epoch.unwrap_or_default();
    epoch.version += 1;
    let right = RegionDescriptor {
        region_id: split.new_region_id,
        start_key: split.split_key.clone(),
        end_key: std::mem::replace(&mut region.end_key, split.split_key),
        epoch: Some(epoch),
        peers: split.new_peers,
    };
    region.epoch = Some(epoch);
    state.regions.push(right);
    state.regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    Ok(())
}

pub(super) fn plan_merge(
    state: &mut RootState,
    event: &MergePlanned,
    cursor: u64,
) -> Result<(), Rejection> {
    if event.source_region_id == event.target_region_id {
        return Err(malformed("a region cannot merge into itself"));
    }
    let source = region_at_epoch(state, event.source_region_id, &event.source_epoch)?;
    let target = region_at_epoch(state, event.target_region_id, &event.target_epoch)?;
    let adjacent = (!source.end_key.is_empty() && source.end_key == target.start_key)
        || (!target.end_key.is_empty() && target.end_key == source.start_key);
    if !adjacent {
        return Err(malformed("merge needs adjacent regions"));
    }
    if stores_of(&source.peers) != stores_of(&target.peers) {
        return Err(malformed(
            "merge needs both regions' peers on the same stores",
        ));
    }
    state.pending_changes.push(PendingChange {
        region_id: event.source_region_id,
        planned_at_cursor: cursor,
        change: Some(Change::Merge(*event)),
    });
    Ok(())
}

pub(super) fn commit_merge(state: &mut RootState, source_region_id: u64) -> Result<(), Rejection> {
    let pending = take_pending(state, source_region_id, PendingKind::Merge)?;
    let Some(Change::Merge(merge)) = pending.change else {
        unreachable!("take_pending matched the kind");
    };
    let source = state
        .regions
        .iter()
        .position(|r| r.region_id == source_region_id)
        .map(|i| state.regions.remove(i))
        .expect("a pending merge's source stays live until committed");
    let target = region_mut(state, merge.target_region_id);
    // Compare the bounded ends only: an empty start (-inf) and an empty end
    // (+inf) are different places even though both are empty.
    let source_is_right_of_target =
        !target.end_key.is_empty() && target.end_key == source.start_key;
    if source_is_right_of_target {
        target.end_key = source.end_key;
    } else {
        target.start_key = source.start_key;
    }
    let mut epoch = target.epoch.unwrap_or_default();
    epoch.version = epoch.version.max(source.epoch.unwrap_or_default().version) + 1;
    target.epoch = Some(epoch);
    state.tombstoned_region_ids.push(source_region_id);
    Ok(())
}

pub(super) fn plan_peer_change(
    state: &mut RootState,
    event: &PeerChangePlanned,
    cursor: u64,
) -> Result<(), Rejection> {
    let region = region_at_epoch(state, event.region_id, &event.expected_epoch)?;
    if event.add_peers.is_empty() && event.remove_peer_ids.is_empty() {
        return Err(malformed("a peer change must add or remove a peer"));
    }
    for peer in &event.add_peers {
        if !state.stores.iter().any(|s| s.store_id == peer.store_id) {
            return Err(Rejection::NoSuchStore {
                store_id: peer.store_id,
            });
        }
        if peer.peer_id == 0 || region.peers.iter().any(|p| p.peer_id == peer.peer_id) {
            return Err(malformed(format!(
                "peer id {} is zero or taken",
                peer.peer_id
            )));
        }
    }
    for removed in &event.remove_peer_ids {
        if !region.peers.iter().any(|p| p.peer_id == *removed) {
            return Err(malformed(format!(
                "peer {removed} is not in region {}",
                event.region_id
            )));
        }
    }
    let after = peers_after(region, event);
    let stores = stores_of(&after);
    if after.is_empty() || stores.len() != after.len() {
        return Err(malformed(
            "a region keeps at least one peer and one peer per store",
        ));
    }
    state.pending_changes.push(PendingChange {
        region_id: event.region_id,
        planned_at_cursor: cursor,
        change: Some(Change::PeerChange(event.clone())),
    });
    Ok(())
}

fn peers_after(region: &RegionDescriptor, change: &PeerChangePlanned) -> Vec<RegionPeer> {
    region
        .peers
        .iter()
        .filter(|p| !change.remove_peer_ids.contains(&p.peer_id))
        .chain(change.add_peers.iter())
        .copied()
        .collect()
}

pub(super) fn commit_peer_change(state: &mut RootState, region_id: u64) -> Result<(), Rejection> {
    let pending = take_pending(state, region_id, PendingKind::PeerChange)?;
    let Some(Change::PeerChange(change)) = pending.change else {
        unreachable!("take_pending matched the kind");
    };
    let region = region_mut(state, region_id);
    region.peers = peers_after(region, &change);
    let mut epoch = region.epoch.unwrap_or_default();
    epoch.conf_ver += 1;
    region.epoch = Some(epoch);
    Ok(())
}

pub(super) fn cancel(
    state: &mut RootState,
    region_id: u64,
    kind: PendingKind,
) -> Result<(), Rejection> {
    take_pending(state, region_id, kind).map(|_| ())
}

/// The first region covers the whole key space, at epoch 1/1, with peers on
/// distinct joined stores. Later regions only come from splits.
pub(super) fn validate_first_region(
    state: &RootState,
    region: &RegionDescriptor,
) -> Result<(), Rejection> {
    if let Some(existing) = state.regions.first() {
        return Err(Rejection::RegionExists {
            region_id: existing.region_id,
            hint: "the first region was already bootstrapped".into(),
        });
    }
    if region.region_id == 0 || !region.start_key.is_empty() || !region.end_key.is_empty() {
        return Err(malformed(
            "the first region needs a non-zero id and must cover the whole key space",
        ));
    }
    let epoch = region.epoch.unwrap_or_default();
    if epoch.version != 1 || epoch.conf_ver != 1 {
        return Err(malformed("the first region starts at epoch 1/1"));
    }
    if region.peers.is_empty() {
        return Err(malformed("the first region needs peers"));
    }
    let mut stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
    stores.sort_unstable();
    stores.dedup();
    if stores.len() != region.peers.len() {
        return Err(malformed("two peers on one store"));
    }
    if let Some(unknown) = stores
        .iter()
        .find(|id| !state.stores.iter().any(|s| s.store_id == **id))
    {
        return Err(malformed(format!(
            "peer on store {unknown}, which has not joined"
        )));
    }
    Ok(())
}
