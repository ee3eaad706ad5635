//! Lease logic, pure: given what root says about the lease, what this
//! coordinator holds locally and the time, decide what to do next.

use arbor_proto::CoordinatorLease;

/// Lease TTL: a crashed holder's duties resume within about this long.
pub const LEASE_TTL_MS: u64 = 1_500;
/// A holder renews every third of the TTL.
pub const LEASE_RENEW_INTERVAL_MS: u64 = LEASE_TTL_MS / 3;
/// Allowance for clock skew between this process and the root leader: the
/// holder stops its duties this much before its lease could have expired.
pub const CLOCK_SKEW_MARGIN_MS: u64 = 300;

const _: () = assert!(CLOCK_SKEW_MARGIN_MS + LEASE_RENEW_INTERVAL_MS < LEASE_TTL_MS);

/// What this coordinator knows locally about its own tenure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalTenure {
    /// Generation this coordinator was granted (0 = none).
    pub generation: u64,
    /// Local time until which singleton duties may run (exclusive).
    pub deadline_ms: u64,
    /// Local time the last successful grant/renewal was sent.
    pub last_renewal_sent_ms: u64,
}

impl LocalTenure {
    /// The tenure after root accepted a grant or renewal sent at `sent_ms`.
    pub fn confirmed(generation: u64, sent_ms: u64) -> Self {
        Self {
            generation,
            deadline_ms: sent_ms + LEASE_TTL_MS - CLOCK_SKEW_MARGIN_MS,
            last_renewal_sent_ms: sent_ms,
        }
    }

    pub fn holds(&self, now_ms: u64) -> bool {
        self.generation > 0 && now_ms < self.deadline_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Propose a grant of this generation.
    Campaign { generation: u64 },
    /// Propose a renewal of this generation.
    Renew { generation: u64 },
    /// Nothing to do now.
    Wait,
}

/// Decides the next lease step for coordinator `me`.
pub fn decide(
    lease: Option<&CoordinatorLease>,
    me: &str,
    tenure: LocalTenure,
    now_ms: u64,
) -> LeaseAction {
    let Some(lease) = lease else {
        return LeaseAction::Campaign { generation: 1 };
    };
    let mine = lease.holder_id == me && lease.generation == tenure.generation && !lease.sealed;
    if mine && tenure.holds(now_ms) {
        if now_ms >= tenure.last_renewal_sent_ms + LEASE_RENEW_INTERVAL_MS {
            return LeaseAction::Renew {
                generation: lease.generation,
            };
        }
        return LeaseAction::Wait;
    }
    // Root decides expiry by its own stamps; proposing a little early is
    // harmless (apply rejects it), proposing late only delays failover.
    if lease.sealed || now_ms >= lease.expires_at_ms {
        return LeaseAction::Campaign {
            generation: lease.generation + 1,
        };
    }
    LeaseAction::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, generation: u64, expires_at_ms: u64, sealed: bool) -> CoordinatorLease {
        CoordinatorLease {
            holder_id: holder.into(),
            holder_address: String::new(),
            generation,
            granted_at_ms: 0,
            expires_at_ms,
            sealed,
        }
    }

    #[test]
    fn campaigns_for_generation_one_when_no_lease_exists() {
        assert_eq!(
            decide(None, "a", LocalTenure::default(), 0),
            LeaseAction::Campaign { generation: 1 }
        );
    }

    #[test]
    fn standby_waits_while_lease_unexpired_then_campaigns_for_next_generation() {
        let current = lease("a", 4, 10_000, false);
        assert_eq!(
            decide(Some(&current), "b", LocalTenure::default(), 9_999),
            LeaseAction::Wait
        );
        assert_eq!(
            decide(Some(&current), "b", LocalTenure::default(), 10_000),
            LeaseAction::Campaign { generation: 5 }
        );
    }

    #[test]
    fn sealed_lease_is_taken_over_at_once() {
        let current = lease("a", 4, 10_000, true);
        assert_eq!(
            decide(Some(&current), "b", LocalTenure::default(), 1),
            LeaseAction::Campaign { generation: 5 }
        );
    }

    #[test]
    fn holder_renews_every_third_of_the_ttl() {
        let tenure = LocalTenure::confirmed(2, 1_000);
        let current = lease("a", 2, 2_500, false);
        assert_eq!(
            decide(Some(&current), "a", tenure, 1_100),
            LeaseAction::Wait
        );
        assert_eq!(
            decide(Some(&current), "a", tenure, 1_000 + LEASE_RENEW_INTERVAL_MS),
            LeaseAction::Renew { generation: 2 }
        );
    }

    #[test]
    fn holder_stops_duties_before_the_lease_can_expire_at_root() {
        let tenure = LocalTenure::confirmed(2, 1_000);
        // Root's lease runs until 1_000 + TTL at the earliest (stamped after
        // sending); the local deadline ends a skew margin before that.
        assert!(tenure.holds(1_000 + LEASE_TTL_MS - CLOCK_SKEW_MARGIN_MS - 1));
        assert!(!tenure.holds(1_000 + LEASE_TTL_MS - CLOCK_SKEW_MARGIN_MS));
    }

    #[test]
    fn holder_whose_tenure_lapsed_campaigns_anew_after_expiry() {
        let stale = LocalTenure::confirmed(2, 0);
        let current = lease("a", 2, LEASE_TTL_MS, false);
        let now = LEASE_TTL_MS;
        assert_eq!(
            decide(Some(&current), "a", stale, now),
            LeaseAction::Campaign { generation: 3 }
        );
    }
}
