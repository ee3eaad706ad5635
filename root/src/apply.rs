//! Root apply: the pure decision at the heart of the truth plane.
//!
//! `(state, command, cursor) -> (state', outcome)`. No IO, no clock: the time
//! a lease decision uses is the stamp inside the command, clamped so it never
//! runs backwards. A rejected command leaves every fact unchanged (only the
//! cursor and the stamp clock advance, because the entry was applied).

use arbor_proto::root_event::Kind;
use arbor_proto::{
    CoordinatorLease, RegionDescriptor, RejectionCode, RootCommand, RootEvent, RootState,
};

/// Longest lease root will grant; a longer TTL would let a dead holder stall
/// the cluster's singleton duties for too long.
pub const LEASE_TTL_MAX_MS: u64 = 60_000;

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
    match kind {
        Kind::ClusterBootstrapped(event) => {
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
        Kind::StoreJoined(event) => {
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
            state.stores.push(store.clone());
            state.stores.sort_by_key(|s| s.store_id);
            Ok(())
        }
        Kind::RegionBootstrapped(event) => {
            require_bootstrapped(state)?;
            let region = event
                .region
                .as_ref()
                .ok_or_else(|| malformed("no region"))?;
            validate_first_region(state, region)?;
            state.regions.push(region.clone());
            Ok(())
        }
        Kind::LeaseGranted(event) => {
            if event.holder_id.is_empty() || event.ttl_ms == 0 || event.ttl_ms > LEASE_TTL_MAX_MS {
                return Err(malformed(format!(
                    "lease grant needs a holder and 0 < ttl <= {LEASE_TTL_MAX_MS} ms"
                )));
            }
            let current = state.lease.as_ref();
            let current_generation = current.map_or(0, |lease| lease.generation);
            if event.generation != current_generation + 1 {
                return Err(Rejection::StaleGeneration {
                    proposed: event.generation,
                    current: current_generation,
                });
            }
            if let Some(lease) = current {
                if !lease.sealed && stamp_ms < lease.expires_at_ms {
                    return Err(Rejection::LeaseStillHeld {
                        holder: lease.holder_id.clone(),
                        current: lease.generation,
                        expires_at_ms: lease.expires_at_ms,
                        stamp_ms,
                    });
                }
            }
            state.lease = Some(CoordinatorLease {
                holder_id: event.holder_id.clone(),
                holder_address: event.holder_address.clone(),
                generation: event.generation,
                granted_at_ms: stamp_ms,
                expires_at_ms: stamp_ms + event.ttl_ms,
                sealed: false,
            });
            Ok(())
        }
        Kind::LeaseRenewed(event) => {
            if event.ttl_ms == 0 || event.ttl_ms > LEASE_TTL_MAX_MS {
                return Err(malformed(format!("0 < ttl <= {LEASE_TTL_MAX_MS} ms")));
            }
            let lease = current_lease_of(state, &event.holder_id, event.generation)?;
            if stamp_ms >= lease.expires_at_ms {
                return Err(Rejection::LeaseExpired {
                    generation: lease.generation,
                    expires_at_ms: lease.expires_at_ms,
                    stamp_ms,
                });
            }
            let lease = state.lease.as_mut().expect("checked just above");
            lease.expires_at_ms = stamp_ms + event.ttl_ms;
            Ok(())
        }
        Kind::LeaseSealed(event) => {
            current_lease_of(state, &event.holder_id, event.generation)?;
            let lease = state.lease.as_mut().expect("checked just above");
            lease.sealed = true;
            lease.expires_at_ms = lease.expires_at_ms.min(stamp_ms);
            Ok(())
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

/// The current, unsealed lease, if `holder_id` holds it at `generation`.
fn current_lease_of<'a>(
    state: &'a RootState,
    holder_id: &str,
    generation: u64,
) -> Result<&'a CoordinatorLease, Rejection> {
    let Some(lease) = state.lease.as_ref() else {
        return Err(Rejection::NotLeaseHolder {
            proposer: holder_id.to_string(),
            holder: String::new(),
            current: 0,
        });
    };
    if lease.generation != generation {
        return Err(Rejection::StaleGeneration {
            proposed: generation,
            current: lease.generation,
        });
    }
    if lease.holder_id != holder_id || lease.sealed {
        return Err(Rejection::NotLeaseHolder {
            proposer: holder_id.to_string(),
            holder: lease.holder_id.clone(),
            current: lease.generation,
        });
    }
    Ok(lease)
}

/// The first region covers the whole key space, at epoch 1/1, with peers on
/// distinct joined stores. Later regions only come from splits.
fn validate_first_region(state: &RootState, region: &RegionDescriptor) -> Result<(), Rejection> {
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

/// A short name and a readable line for an event, for `system.root_events`.
pub fn describe_event(event: &RootEvent) -> (&'static str, String) {
    match event.kind.as_ref() {
        None => ("unknown", String::new()),
        Some(Kind::ClusterBootstrapped(e)) => (
            "cluster_bootstrapped",
            format!("cluster_id={}", e.cluster_id),
        ),
        Some(Kind::StoreJoined(e)) => {
            let store = e.store.clone().unwrap_or_default();
            (
                "store_joined",
                format!("store_id={} address={}", store.store_id, store.address),
            )
        }
        Some(Kind::RegionBootstrapped(e)) => {
            let region = e.region.clone().unwrap_or_default();
            let peers: Vec<String> = region
                .peers
                .iter()
                .map(|p| format!("{}@store{}", p.peer_id, p.store_id))
                .collect();
            (
                "region_bootstrapped",
                format!("region_id={} peers=[{}]", region.region_id, peers.join(",")),
            )
        }
        Some(Kind::LeaseGranted(e)) => (
            "lease_granted",
            format!(
                "holder={} address={} generation={} ttl_ms={}",
                e.holder_id, e.holder_address, e.generation, e.ttl_ms
            ),
        ),
        Some(Kind::LeaseRenewed(e)) => (
            "lease_renewed",
            format!(
                "holder={} generation={} ttl_ms={}",
                e.holder_id, e.generation, e.ttl_ms
            ),
        ),
        Some(Kind::LeaseSealed(e)) => (
            "lease_sealed",
            format!("holder={} generation={}", e.holder_id, e.generation),
        ),
    }
}

#[cfg(test)]
mod tests;
