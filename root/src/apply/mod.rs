//! Root apply: the pure decision at the heart of the truth plane.
//!
//! `(state, command, cursor) -> (state', outcome)`. No IO, no clock: the time
//! a lease decision uses is the stamp inside the command, clamped so it never
//! runs backwards. A rejected command leaves every fact unchanged (only the
//! cursor and the stamp clock advance, because the entry was applied).

mod cluster;
mod describe;
mod lease;
mod region;

use arbor_proto::root_event::Kind;
use arbor_proto::{RejectionCode, RootCommand, RootState};

pub use describe::describe_event;

/// Longest lease root will grant; a longer TTL would let a dead holder stall
/// the cluster's singleton duties for too long.
pub const LEASE_TTL_MAX_MS: u64 = 60_000;

/// Largest catalog root keeps; the catalog is replaced whole on each change.
pub const CATALOG_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The only command encoding this build writes and reads.
pub const ROOT_COMMAND_FORMAT_VERSION: u32 = 1;

/// Why a command was refused. Each variant says what the proposer assumed
/// that was not true when the entry was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("lease generation {current} held by {holder} until {expires_at_ms} ms (command stamped {stamp_ms} ms)")]
    LeaseStillHeld {
        holder: String,
        current: u64,
        expires_at_ms: u64,
        stamp_ms: u64,
    },
    #[error("stale lease generation {proposed}: current is {current}, a grant must be current+1")]
    StaleGeneration { proposed: u64, current: u64 },
    #[error("{proposer} does not hold the lease (holder {holder}, generation {current})")]
    NotLeaseHolder {
        proposer: String,
        holder: String,
        current: u64,
    },
    #[error("lease generation {generation} expired at {expires_at_ms} ms (command stamped {stamp_ms} ms)")]
    LeaseExpired {
        generation: u64,
        expires_at_ms: u64,
        stamp_ms: u64,
    },
    #[error("cluster already bootstrapped as {cluster_id}")]
    AlreadyBootstrapped { cluster_id: String },
    #[error("cluster not bootstrapped yet")]
    NotBootstrapped,
    #[error("store id {store_id} already taken (by {address})")]
    StoreIdTaken { store_id: u64, address: String },
    #[error("region {region_id} cannot be bootstrapped: {hint}")]
    RegionExists { region_id: u64, hint: String },
    #[error("malformed command: {hint}")]
    Malformed { hint: String },
    #[error("fence is {current}, the proposal expected {expected} and must move it forward (to {proposed})")]
    FenceMismatch {
        expected: u64,
        current: u64,
        proposed: u64,
    },
    #[error("region {region_id} is at epoch {current:?}, the proposal expected {expected:?}")]
    EpochMismatch {
        region_id: u64,
        expected: (u64, u64),
        current: (u64, u64),
    },
    #[error(
        "region {region_id} already has a pending change (planned at cursor {planned_at_cursor})"
    )]
    ChangePending {
        region_id: u64,
        planned_at_cursor: u64,
    },
    #[error("no live region {region_id}")]
    NoSuchRegion { region_id: u64 },
    #[error("no joined store {store_id}")]
    NoSuchStore { store_id: u64 },
    #[error("region {region_id} has no pending {what}")]
    NothingPending { region_id: u64, what: &'static str },
    #[error("catalog is at version {current}, the change expected {expected}")]
    CatalogVersionMismatch { expected: u64, current: u64 },
    #[error("lease fence failed: {hint}")]
    LeaseFenceFailed { hint: String },
    #[error("GC safe point is {current}; {proposed} does not move it forward")]
    SafePointNotForward { current: u64, proposed: u64 },
}

impl Rejection {
    pub fn code(&self) -> RejectionCode {
        match self {
            Rejection::LeaseStillHeld { .. } => RejectionCode::LeaseStillHeld,
            Rejection::StaleGeneration { .. } => RejectionCode::StaleGeneration,
            Rejection::NotLeaseHolder { .. } => RejectionCode::NotLeaseHolder,
            Rejection::LeaseExpired { .. } => RejectionCode::LeaseExpired,
            Rejection::AlreadyBootstrapped { .. } => RejectionCode::AlreadyBootstrapped,
            Rejection::NotBootstrapped => RejectionCode::NotBootstrapped,
            Rejection::StoreIdTaken { .. } => RejectionCode::StoreIdTaken,
            Rejection::RegionExists { .. } => RejectionCode::RegionExists,
            Rejection::Malformed { .. } => RejectionCode::Malformed,
            Rejection::FenceMismatch { .. } => RejectionCode::FenceMismatch,
            Rejection::EpochMismatch { .. } => RejectionCode::EpochMismatch,
            Rejection::ChangePending { .. } => RejectionCode::ChangePending,
            Rejection::NoSuchRegion { .. } => RejectionCode::NoSuchRegion,
            Rejection::NoSuchStore { .. } => RejectionCode::NoSuchStore,
            Rejection::NothingPending { .. } => RejectionCode::NothingPending,
            Rejection::CatalogVersionMismatch { .. } => RejectionCode::CatalogVersionMismatch,
            Rejection::LeaseFenceFailed { .. } => RejectionCode::LeaseFenceFailed,
            Rejection::SafePointNotForward { .. } => RejectionCode::SafePointNotForward,
        }
    }
}

fn malformed(hint: impl Into<String>) -> Rejection {
    Rejection::Malformed { hint: hint.into() }
}

/// Applies one command at `cursor` to `state`.
///
/// On `Ok`, the event's facts are in `state`. On `Err`, no fact changed.
/// Either way `state.cursor` becomes `cursor` and `state.last_stamp_ms` never
/// decreases.
pub fn apply_command(
    state: &mut RootState,
    command: &RootCommand,
    cursor: u64,
) -> Result<(), Rejection> {
    let stamp_ms = command.stamp_ms.max(state.last_stamp_ms);
    state.cursor = cursor;
    state.last_stamp_ms = stamp_ms;
    if command.format_version != ROOT_COMMAND_FORMAT_VERSION {
        return Err(malformed(format!(
            "format version {} (this build reads {})",
            command.format_version, ROOT_COMMAND_FORMAT_VERSION
        )));
    }
    let kind = command
        .event
        .as_ref()
        .and_then(|event| event.kind.as_ref())
        .ok_or_else(|| malformed("command carries no event"))?;
    if let Some(fence) = &command.lease_fence {
        lease::check_fence(state, fence, stamp_ms)?;
    }
    apply_event(state, kind, cursor, stamp_ms)
}

fn apply_event(
    state: &mut RootState,
    kind: &Kind,
    cursor: u64,
    stamp_ms: u64,
) -> Result<(), Rejection> {
    match kind {
        Kind::ClusterBootstrapped(e) => cluster::bootstrap(state, e),
        Kind::StoreJoined(e) => cluster::store_joined(state, e),
        Kind::StoreLeft(e) => cluster::store_left(state, e),
        Kind::IdFenceRaised(e) => {
            cluster::raise_fence(&mut state.id_fence, e.expected_fence, e.new_fence)
        }
        Kind::TsoFenceRaised(e) => {
            cluster::raise_fence(&mut state.tso_fence, e.expected_fence, e.new_fence)
        }
        Kind::CatalogChanged(e) => cluster::catalog_changed(state, e),
        Kind::GcSafePointAdvanced(e) => cluster::advance_gc_safe_point(state, e),
        Kind::LeaseGranted(e) => lease::grant(state, e, stamp_ms),
        Kind::LeaseRenewed(e) => lease::renew(state, e, stamp_ms),
        Kind::LeaseSealed(e) => lease::seal(state, e, stamp_ms),
        Kind::LeaseClosed(e) => lease::close(state, e, stamp_ms),
        Kind::RegionBootstrapped(e) => region::bootstrap(state, e),
        Kind::RegionTombstoned(e) => region::tombstone(state, e),
        Kind::SplitPlanned(e) => region::plan_split(state, e, cursor),
        Kind::SplitCommitted(e) => region::commit_split(state, e.region_id),
        Kind::SplitCancelled(e) => region::cancel(state, e.region_id, region::PendingKind::Split),
        Kind::MergePlanned(e) => region::plan_merge(state, e, cursor),
        Kind::MergeCommitted(e) => region::commit_merge(state, e.source_region_id),
        Kind::MergeCancelled(e) => {
            region::cancel(state, e.source_region_id, region::PendingKind::Merge)
        }
        Kind::PeerChangePlanned(e) => region::plan_peer_change(state, e, cursor),
        Kind::PeerChangeCommitted(e) => region::commit_peer_change(state, e.region_id),
        Kind::PeerChangeCancelled(e) => {
            region::cancel(state, e.region_id, region::PendingKind::PeerChange)
        }
    }
}

fn require_bootstrapped(state: &RootState) -> Result<(), Rejection> {
    if state.cluster_id.is_empty() {
        Err(Rejection::NotBootstrapped)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
