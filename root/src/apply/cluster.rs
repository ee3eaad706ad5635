//! Cluster-wide facts: bootstrap, store membership, allocator fences, the
//! GC safe point and the SQL catalog.

use arbor_proto::{
    CatalogChanged, ClusterBootstrapped, GcSafePointAdvanced, RootState, StoreJoined, StoreLeft,
};

use super::{malformed, require_bootstrapped, Rejection, CATALOG_BYTES_MAX};

pub(super) fn bootstrap(
    state: &mut RootState,
    event: &ClusterBootstrapped,
) -> Result<(), Rejection> {
    if !state.cluster_id.is_empty() {
        return Err(Rejection::AlreadyBootstrapped {
            cluster_id: state.cluster_id.clone(),
        });
    }
    if event.cluster_id.is_empty() {
        return Err(malformed("empty cluster id"));
    }
    state.cluster_id = event.cluster_id.clone();
    Ok(())
}

pub(super) fn store_joined(state: &mut RootState, event: &StoreJoined) -> Result<(), Rejection> {
    require_bootstrapped(state)?;
    let store = event.store.as_ref().ok_or_else(|| malformed("no store"))?;
    if store.store_id == 0 || store.address.is_empty() {
        return Err(malformed("store id 0 or empty address"));
    }
    if let Some(existing) = state.stores.iter().find(|s| s.store_id == store.store_id) {
        return Err(Rejection::StoreIdTaken {
            store_id: store.store_id,
            address: existing.address.clone(),
        });
    }
    if state.left_store_ids.contains(&store.store_id) {
        return Err(Rejection::StoreIdTaken {
            store_id: store.store_id,
            address: "(a store that left; ids are never reused)".into(),
        });
    }
    state.stores.push(store.clone());
    state.stores.sort_by_key(|s| s.store_id);
    Ok(())
}

pub(super) fn store_left(state: &mut RootState, event: &StoreLeft) -> Result<(), Rejection> {
    let Some(position) = state
        .stores
        .iter()
        .position(|s| s.store_id == event.store_id)
    else {
        return Err(Rejection::NoSuchStore {
            store_id: event.store_id,
        });
    };
    state.stores.remove(position);
    state.left_store_ids.push(event.store_id);
    Ok(())
}

/// Fences only move forward, and only from the value the proposer saw: two
/// racing allocators cannot both raise from the same fence.
pub(super) fn raise_fence(fence: &mut u64, expected: u64, proposed: u64) -> Result<(), Rejection> {
    if expected != *fence || proposed <= *fence {
        return Err(Rejection::FenceMismatch {
            expected,
            current: *fence,
            proposed,
        });
    }
    *fence = proposed;
    Ok(())
}

pub(super) fn catalog_changed(
    state: &mut RootState,
    event: &CatalogChanged,
) -> Result<(), Rejection> {
    require_bootstrapped(state)?;
    if event.expected_version != state.catalog_version {
        return Err(Rejection::CatalogVersionMismatch {
            expected: event.expected_version,
            current: state.catalog_version,
        });
    }
    if event.catalog.len() > CATALOG_BYTES_MAX {
        return Err(malformed(format!(
            "catalog of {} bytes exceeds {CATALOG_BYTES_MAX}",
            event.catalog.len()
        )));
    }
    state.catalog = event.catalog.clone();
    state.catalog_version += 1;
    Ok(())
}

/// The GC safe point only moves forward: once stores may have deleted the
/// versions below it, no later event may promise them back.
pub(super) fn advance_gc_safe_point(
    state: &mut RootState,
    event: &GcSafePointAdvanced,
) -> Result<(), Rejection> {
    require_bootstrapped(state)?;
    if event.safe_point <= state.gc_safe_point {
        return Err(Rejection::SafePointNotForward {
            current: state.gc_safe_point,
            proposed: event.safe_point,
        });
    }
    state.gc_safe_point = event.safe_point;
    Ok(())
}
