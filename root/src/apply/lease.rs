//! Lease events: grant, renew, seal, close, and the lease fence any
//! proposal may carry.

use arbor_proto::{
    CoordinatorLease, LeaseClosed, LeaseFence, LeaseGranted, LeaseRenewed, LeaseSealed, RootState,
};

use super::{malformed, Rejection, LEASE_TTL_MAX_MS};

fn check_ttl(ttl_ms: u64) -> Result<(), Rejection> {
    if ttl_ms == 0 || ttl_ms > LEASE_TTL_MAX_MS {
        return Err(malformed(format!(
            "lease ttl must be in 1..={LEASE_TTL_MAX_MS} ms, got {ttl_ms}"
        )));
    }
    Ok(())
}

pub(super) fn grant(
    state: &mut RootState,
    event: &LeaseGranted,
    stamp_ms: u64,
) -> Result<(), Rejection> {
    check_ttl(event.ttl_ms)?;
    if event.holder_id.is_empty() {
        return Err(malformed("lease grant needs a holder"));
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

pub(super) fn renew(
    state: &mut RootState,
    event: &LeaseRenewed,
    stamp_ms: u64,
) -> Result<(), Rejection> {
    check_ttl(event.ttl_ms)?;
    let lease = current_lease_of(state, &event.holder_id, event.generation)?;
    if stamp_ms >= lease.expires_at_ms {
        return Err(Rejection::LeaseExpired {
            generation: lease.generation,
            expires_at_ms: lease.expires_at_ms,
            stamp_ms,
        });
    }
    let lease = state.lease.as_mut().expect("checked by current_lease_of");
    lease.expires_at_ms = stamp_ms + event.ttl_ms;
    Ok(())
}

pub(super) fn seal(
    state: &mut RootState,
    event: &LeaseSealed,
    stamp_ms: u64,
) -> Result<(), Rejection> {
    current_lease_of(state, &event.holder_id, event.generation)?;
    end_lease(state, stamp_ms);
    Ok(())
}

/// An operator's close: like a seal, but needs only the generation.
pub(super) fn close(
    state: &mut RootState,
    event: &LeaseClosed,
    stamp_ms: u64,
) -> Result<(), Rejection> {
    let Some(lease) = state.lease.as_ref() else {
        return Err(Rejection::StaleGeneration {
            proposed: event.generation,
            current: 0,
        });
    };
    if lease.generation != event.generation {
        return Err(Rejection::StaleGeneration {
            proposed: event.generation,
            current: lease.generation,
        });
    }
    end_lease(state, stamp_ms);
    Ok(())
}

fn end_lease(state: &mut RootState, stamp_ms: u64) {
    if let Some(lease) = state.lease.as_mut() {
        lease.sealed = true;
        lease.expires_at_ms = lease.expires_at_ms.min(stamp_ms);
    }
}

/// The proposer must hold the lease, at this generation, unexpired.
pub(super) fn check_fence(
    state: &RootState,
    fence: &LeaseFence,
    stamp_ms: u64,
) -> Result<(), Rejection> {
    let failed = |hint: String| Rejection::LeaseFenceFailed { hint };
    let Some(lease) = state.lease.as_ref() else {
        return Err(failed("no lease has been granted".into()));
    };
    if lease.holder_id != fence.holder_id || lease.generation != fence.generation {
        return Err(failed(format!(
            "{} at generation {} proposed, but {} holds generation {}",
            fence.holder_id, fence.generation, lease.holder_id, lease.generation
        )));
    }
    if lease.sealed || stamp_ms >= lease.expires_at_ms {
        return Err(failed(format!(
            "generation {} ended at {} ms (entry stamped {stamp_ms} ms)",
            lease.generation, lease.expires_at_ms
        )));
    }
    Ok(())
}

/// The current, unsealed lease, if `holder_id` holds it at `generation`.
pub(super) fn current_lease_of<'a>(
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
