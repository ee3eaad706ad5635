//! The GC safe point, a singleton duty of the lease holder: every
//! [`GcConfig::interval_ms`] it proposes `GcSafePointAdvanced` at the
//! timestamp of "now minus the GC lifetime", under its lease fence. Stores
//! learn it from heartbeat answers and garbage-collect old versions below
//! it; a read below it is refused (snapshot too old).
//!
//! **Invariant:** the safe point stays below the start of every lock left
//! in the cluster. A transaction that committed its primary and died
//! before resolving its secondaries leaves locks whose fate is read from
//! the primary's commit record; collecting that record would make the
//! secondaries look rolled back and lose their writes. So before each
//! proposal the holder asks every region leader for its locks
//! (`Store.ScanLocks`) and proposes nothing when one cannot answer. Apart
//! from that the safe point is time-based: a transaction older than the
//! lifetime loses its snapshot (its reads are refused). Root keeps it
//! moving forward only.

use std::sync::Arc;
use std::time::Duration;

use arbor_proto::root_event::Kind;
use arbor_proto::{GcSafePointAdvanced, LeaseFence, RegionContext, ScanLocksRequest};

use crate::allocator::TSO_LOGICAL_BITS;
use crate::service::Coordinator;
use crate::singleton::holder_tenure;

/// How long a version stays readable after a newer one replaced it, by
/// default: the longest a transaction may read its snapshot.
pub const GC_LIFETIME_DEFAULT_MS: u64 = 10 * 60 * 1_000;
/// Shortest lifetime accepted: below it ordinary statements would lose
/// their snapshot mid-flight.
pub const GC_LIFETIME_MIN_MS: u64 = 1_000;
/// The safe point is proposed this many times per lifetime, so versions
/// live at most about `lifetime * (1 + 1/GC_PROPOSALS_PER_LIFETIME)`.
pub const GC_PROPOSALS_PER_LIFETIME: u64 = 4;
/// Bounds of the proposal interval: not more often than this (root load),
/// not less often than that (versions pile up).
pub const GC_INTERVAL_MIN_MS: u64 = 500;
pub const GC_INTERVAL_MAX_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcConfig {
    pub lifetime_ms: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            lifetime_ms: GC_LIFETIME_DEFAULT_MS,
        }
    }
}

impl GcConfig {
    /// How often the holder proposes a new safe point.
    pub fn interval_ms(&self) -> u64 {
        (self.lifetime_ms / GC_PROPOSALS_PER_LIFETIME).clamp(GC_INTERVAL_MIN_MS, GC_INTERVAL_MAX_MS)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.lifetime_ms < GC_LIFETIME_MIN_MS {
            return Err(format!(
                "the GC lifetime must be at least {GC_LIFETIME_MIN_MS} ms, not {}",
                self.lifetime_ms
            ));
        }
        Ok(())
    }
}

/// The safe point to propose at `now_ms`, if it moves `current` forward:
/// the first timestamp of the millisecond `lifetime_ms` ago. Pure.
pub fn next_safe_point(now_ms: u64, lifetime_ms: u64, current: u64) -> Option<u64> {
    let physical_ms = now_ms.checked_sub(lifetime_ms)?;
    let safe_point = physical_ms.checked_shl(TSO_LOGICAL_BITS)?;
    (safe_point > current).then_some(safe_point)
}

/// Locks asked of a region leader per `ScanLocks` call.
pub const GC_LOCK_SCAN_PAGE_MAX: u32 = 1_024;
/// How long one `ScanLocks` call may take before the round gives up.
pub const GC_LOCK_SCAN_TIMEOUT_MS: u64 = 2_000;

/// The safe point once capped below the oldest lock: versions at or below
/// it are collected, so it must stay under every lock's start_ts. Pure.
pub fn below_oldest_lock(safe_point: u64, oldest_lock_start_ts: Option<u64>) -> u64 {
    match oldest_lock_start_ts {
        Some(start_ts) => safe_point.min(start_ts.saturating_sub(1)),
        None => safe_point,
    }
}

/// The smallest start_ts of any lock in any region, asked of each region's
/// leader; an error when a region has no known leader or does not answer
/// (then no safe point is proposed this round).
async fn oldest_lock_start_ts(coordinator: &Coordinator) -> Result<Option<u64>, String> {
    let regions = coordinator.view().root.regions.clone();
    let mut oldest: Option<u64> = None;
    for region in regions {
        let mut client = crate::schedule::leader_client(coordinator, region.region_id)
            .map_err(|error| error.to_string())?;
        let mut start_key = region.start_key.clone();
        loop {
            let request = ScanLocksRequest {
                context: Some(RegionContext {
                    region_id: region.region_id,
                    epoch: region.epoch,
                }),
                start_key: start_key.clone(),
                end_key: region.end_key.clone(),
                limit: GC_LOCK_SCAN_PAGE_MAX,
            };
            let answer = client
                .scan_locks(crate::schedule::timed(request, GC_LOCK_SCAN_TIMEOUT_MS))
                .await
                .map_err(|status| format!("region {}: {}", region.region_id, status.message()))?
                .into_inner();
            if let Some(error) = answer.region_error {
                return Err(format!("region {}: {error:?}", region.region_id));
            }
            for lock in &answer.locks {
                oldest = Some(oldest.map_or(lock.start_ts, |o| o.min(lock.start_ts)));
            }
            match (answer.more, answer.locks.last()) {
                (true, Some(last)) => {
                    start_key = last.key.clone();
                    start_key.push(0);
                }
                _ => break,
            }
        }
    }
    Ok(oldest)
}

/// Proposes the safe point every interval while this coordinator holds
/// the lease.
pub async fn run(coordinator: Arc<Coordinator>, config: GcConfig) {
    let mut ticker = tokio::time::interval(Duration::from_millis(config.interval_ms()));
    loop {
        ticker.tick().await;
        let Ok(tenure) = holder_tenure(&coordinator) else {
            continue;
        };
        let current = coordinator.view().root.gc_safe_point;
        let Some(safe_point) = next_safe_point(coordinator.now_ms(), config.lifetime_ms, current)
        else {
            continue;
        };
        let safe_point = match oldest_lock_start_ts(&coordinator).await {
            Ok(oldest) => below_oldest_lock(safe_point, oldest),
            Err(error) => {
                tracing::debug!(safe_point, "GC safe point held: locks unknown: {error}");
                continue;
            }
        };
        if safe_point <= current {
            continue;
        }
        let event = Kind::GcSafePointAdvanced(GcSafePointAdvanced { safe_point });
        let fence = LeaseFence {
            holder_id: coordinator.id.clone(),
            generation: tenure.generation,
        };
        match coordinator.root.propose_fenced(event, Some(fence)).await {
            Ok(answer) if answer.accepted => {
                tracing::debug!(safe_point, "GC safe point advanced")
            }
            Ok(answer) => tracing::debug!(
                safe_point,
                "GC safe point refused: {}",
                answer.rejection_detail
            ),
            Err(error) => tracing::debug!(safe_point, "GC safe point not proposed: {error}"),
        }
        crate::server::refresh_view(&coordinator).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safe_point_is_the_first_timestamp_of_now_minus_the_lifetime() {
        let now_ms = 1_700_000_000_000;
        let safe_point = next_safe_point(now_ms, 600_000, 0).expect("forward from 0");
        assert_eq!(safe_point >> TSO_LOGICAL_BITS, now_ms - 600_000);
        assert_eq!(safe_point & ((1 << TSO_LOGICAL_BITS) - 1), 0);
    }

    #[test]
    fn no_safe_point_is_proposed_unless_it_moves_forward() {
        let now_ms = 10_000;
        let at = next_safe_point(now_ms, 2_000, 0).expect("forward from 0");
        assert_eq!(next_safe_point(now_ms, 2_000, at), None);
        assert_eq!(
            next_safe_point(now_ms - 1, 2_000, at),
            None,
            "clock stepped back"
        );
        assert!(next_safe_point(now_ms + 1, 2_000, at).is_some_and(|next| next > at));
    }

    #[test]
    fn the_safe_point_stays_below_every_lock_left_in_the_cluster() {
        assert_eq!(below_oldest_lock(1_000, None), 1_000);
        assert_eq!(below_oldest_lock(1_000, Some(400)), 399);
        assert_eq!(below_oldest_lock(1_000, Some(1_001)), 1_000);
        assert_eq!(below_oldest_lock(1_000, Some(0)), 0);
    }

    #[test]
    fn a_clock_younger_than_the_lifetime_proposes_nothing() {
        assert_eq!(next_safe_point(1_000, 2_000, 0), None);
    }

    #[test]
    fn the_interval_follows_the_lifetime_within_its_bounds() {
        assert_eq!(GcConfig::default().interval_ms(), GC_INTERVAL_MAX_MS);
        assert_eq!(
            GcConfig { lifetime_ms: 2_000 }.interval_ms(),
            GC_INTERVAL_MIN_MS
        );
        assert_eq!(
            GcConfig {
                lifetime_ms: 40_000
            }
            .interval_ms(),
            10_000
        );
        assert!(GcConfig { lifetime_ms: 999 }.check().is_err());
        assert!(GcConfig::default().check().is_ok());
    }
}
