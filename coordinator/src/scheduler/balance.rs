//! Leader balancing: move leaders off a store that leads clearly more than
//! its share, to the replica store leading the fewest.
//!
//! The rule, over up stores only, with `target = ceil(leaders / up stores)`:
//! a store leading more than `target + LEADER_BALANCE_TOLERANCE` regions
//! hands one of them to the replica store with the fewest leaders, if that
//! store leads fewer than `target`.
//!
//! Invariant (no ping-pong): a receiver leads at most `target` afterwards,
//! below the trigger, so it never becomes a source through transfers; each
//! transfer lowers the excess `sum(max(0, leaders - target))` by one, so
//! balancing stops after at most that many transfers, and no leader moves
//! back. The tolerance is the hysteresis: a store one leader above its
//! share is left alone, so a split or a failover does not start a move.

use std::collections::{BTreeMap, BTreeSet};

use arbor_proto::RegionDescriptor;

use super::health::{store_health, StoreHealth};
use super::{Step, Tick};
use crate::view::ClusterView;

/// Leaders moved per tick: one, since the next decision needs heartbeats
/// that show where it went.
pub const LEADER_TRANSFERS_PER_TICK_MAX: usize = 1;
/// How many leaders above its share a store may lead before one is moved.
pub const LEADER_BALANCE_TOLERANCE: usize = 1;
/// Pause after a transfer before balancing again: a few store heartbeat
/// intervals (500 ms), so the view shows the new leader first.
pub const LEADER_BALANCE_COOLDOWN_MS: u64 = 2_000;

/// At most [`LEADER_TRANSFERS_PER_TICK_MAX`] transfers, none of a `busy`
/// region, none before `tick.balance_leaders_from_ms`.
pub fn leader_transfers(view: &ClusterView, tick: &Tick, busy: &BTreeSet<u64>) -> Vec<Step> {
    if tick.now_ms < tick.balance_leaders_from_ms {
        return Vec::new();
    }
    let up: BTreeSet<u64> = view
        .root
        .stores
        .iter()
        .map(|s| s.store_id)
        .filter(|id| store_health(view, *id, tick) == StoreHealth::Up)
        .collect();
    if up.len() < 2 {
        return Vec::new();
    }
    let mut leaders: BTreeMap<u64, Vec<&RegionDescriptor>> =
        up.iter().map(|id| (*id, Vec::new())).collect();
    for region in &view.root.regions {
        let leader = view.leader_of(region.region_id).map(|h| h.leader_store_id);
        if let Some(led) = leader.and_then(|id| leaders.get_mut(&id)) {
            led.push(region);
        }
    }
    let total: usize = leaders.values().map(Vec::len).sum();
    let target = total.div_ceil(up.len());
    let mut steps = Vec::new();
    while steps.len() < LEADER_TRANSFERS_PER_TICK_MAX {
        let Some((region, from, to)) = one_transfer(&leaders, target, busy) else {
            break;
        };
        if let Some(led) = leaders.get_mut(&from) {
            led.retain(|r| r.region_id != region.region_id);
        }
        if let Some(led) = leaders.get_mut(&to) {
            led.push(region);
        }
        steps.push(Step::TransferLeader {
            region_id: region.region_id,
            epoch: region.epoch,
            from_store_id: from,
            to_store_id: to,
        });
    }
    steps
}

/// The most loaded store over the trigger (lowest id among equals) hands
/// its lowest-id region that has a replica on an under-target store to the
/// least loaded such store.
fn one_transfer<'a>(
    leaders: &BTreeMap<u64, Vec<&'a RegionDescriptor>>,
    target: usize,
    busy: &BTreeSet<u64>,
) -> Option<(&'a RegionDescriptor, u64, u64)> {
    let count = |id: &u64| leaders.get(id).map(Vec::len);
    let mut sources: Vec<(u64, usize)> = leaders
        .iter()
        .map(|(id, led)| (*id, led.len()))
        .filter(|(_, led)| *led > target + LEADER_BALANCE_TOLERANCE)
        .collect();
    sources.sort_by_key(|(id, led)| (std::cmp::Reverse(*led), *id));
    for (source, _) in sources {
        let mut led = leaders.get(&source)?.clone();
        led.sort_by_key(|r| r.region_id);
        for region in led.into_iter().filter(|r| !busy.contains(&r.region_id)) {
            let receiver = region
                .peers
                .iter()
                .map(|p| p.store_id)
                .filter(|id| *id != source)
                .filter_map(|id| count(&id).map(|led| (led, id)))
                .filter(|(led, _)| *led < target)
                .min();
            if let Some((_, to)) = receiver {
                return Some((region, source, to));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::{region_on, tick, view_of, NOW_MS};
    use super::*;
    use arbor_proto::RegionDescriptor;

    fn regions(count: u8, stores: &[u64]) -> Vec<RegionDescriptor> {
        (1..=count)
            .map(|i| {
                let start = if i == 1 { vec![] } else { vec![i] };
                let end = if i == count { vec![] } else { vec![i + 1] };
                region_on(u64::from(i), &start, &end, stores)
            })
            .collect()
    }

    fn transfers(view: &ClusterView, tick: &Tick) -> Vec<(u64, u64, u64)> {
        leader_transfers(view, tick, &BTreeSet::new())
            .into_iter()
            .filter_map(|step| match step {
                Step::TransferLeader {
                    region_id,
                    from_store_id,
                    to_store_id,
                    ..
                } => Some((region_id, from_store_id, to_store_id)),
                _ => None,
            })
            .collect()
    }

    /// Runs the balancer to a fixed point, applying each transfer to the
    /// leaders as the stores would; returns every transfer made.
    fn balance(
        stores: &[u64],
        regions: Vec<RegionDescriptor>,
        leaders: &mut [u64],
    ) -> Vec<(u64, u64, u64)> {
        let mut made = Vec::new();
        for round in 0..100 {
            let view = view_of(stores, regions.clone(), leaders, stores, NOW_MS);
            let step = transfers(&view, &tick(NOW_MS + 1));
            if step.is_empty() {
                return made;
            }
            for (region_id, from, to) in step {
                let index = regions
                    .iter()
                    .position(|r| r.region_id == region_id)
                    .expect("a transfer names a known region");
                assert_eq!(leaders[index], from, "round {round}: moved from its leader");
                leaders[index] = to;
                made.push((region_id, from, to));
            }
        }
        panic!("balancing did not converge: {made:?}");
    }

    fn counts(stores: &[u64], leaders: &[u64]) -> Vec<usize> {
        stores
            .iter()
            .map(|s| leaders.iter().filter(|l| *l == s).count())
            .collect()
    }

    #[test]
    fn balancing_converges_without_moving_any_leader_twice() {
        // Twelve regions on every store of four, all led by store 1 (as after
        // a run of splits).
        let stores = [1, 2, 3, 4];
        let mut leaders = vec![1; 12];
        let made = balance(&stores, regions(12, &stores), &mut leaders);
        let final_counts = counts(&stores, &leaders);
        let target = 3;
        assert!(
            final_counts
                .iter()
                .all(|c| *c <= target + LEADER_BALANCE_TOLERANCE),
            "{final_counts:?}"
        );
        assert_eq!(made.len(), 12 - (target + LEADER_BALANCE_TOLERANCE));
        let moved: BTreeSet<u64> = made.iter().map(|(region, _, _)| *region).collect();
        assert_eq!(moved.len(), made.len(), "a region moved twice: {made:?}");
        assert!(
            made.iter().all(|(_, from, _)| *from == 1),
            "only the overloaded store gives leaders away: {made:?}"
        );
    }

    #[test]
    fn balancing_never_moves_a_leader_back_from_uneven_starts() {
        let stores = [1, 2, 3];
        for start in [
            vec![1, 1, 1, 1, 1, 2, 2],
            vec![3, 3, 3, 3, 3, 3, 1, 2],
            vec![2, 2, 2, 2, 2, 2, 2, 2, 2],
        ] {
            let mut leaders = start.clone();
            let made = balance(&stores, regions(start.len() as u8, &stores), &mut leaders);
            let target = start.len().div_ceil(stores.len());
            for (i, (region, from, to)) in made.iter().enumerate() {
                assert!(
                    !made[i + 1..].contains(&(*region, *to, *from)),
                    "{start:?}: region {region} went back: {made:?}"
                );
            }
            let final_counts = counts(&stores, &leaders);
            assert!(
                final_counts
                    .iter()
                    .all(|c| *c <= target + LEADER_BALANCE_TOLERANCE),
                "{start:?} ended at {final_counts:?}"
            );
        }
    }

    #[test]
    fn a_store_one_leader_over_its_share_is_left_alone() {
        // Six regions on three stores: target 2; 3/2/1 is within tolerance.
        let stores = [1, 2, 3];
        let leaders = [1, 1, 1, 2, 2, 3];
        let view = view_of(&stores, regions(6, &stores), &leaders, &stores, NOW_MS);
        assert!(transfers(&view, &tick(NOW_MS + 1)).is_empty());
    }

    #[test]
    fn leaders_move_only_to_stores_holding_a_replica() {
        // Store 4 leads nothing but holds no replica: it cannot take one.
        let mut leaders = vec![1; 6];
        let made = balance(&[1, 2, 3, 4], regions(6, &[1, 2, 3]), &mut leaders);
        assert!(made.iter().all(|(_, _, to)| *to != 4), "{made:?}");
    }

    #[test]
    fn no_leader_moves_during_the_cooldown_or_of_a_busy_region() {
        let stores = [1, 2, 3];
        let leaders = [1, 1, 1, 1];
        let view = view_of(&stores, regions(4, &stores), &leaders, &stores, NOW_MS);
        let cooling = Tick {
            balance_leaders_from_ms: NOW_MS + 2,
            ..tick(NOW_MS + 1)
        };
        assert!(transfers(&view, &cooling).is_empty());
        assert_eq!(transfers(&view, &tick(NOW_MS + 1)), vec![(1, 1, 2)]);
        let busy: BTreeSet<u64> = [1].into();
        let steps = leader_transfers(&view, &tick(NOW_MS + 1), &busy);
        assert!(
            matches!(&steps[..], [Step::TransferLeader { region_id: 2, .. }]),
            "{steps:?}"
        );
    }

    #[test]
    fn leaders_on_stores_that_are_not_up_stay_put() {
        // Store 1 leads all but stopped heartbeating: it is down, not a source.
        let stores = [1, 2, 3];
        let leaders = [1, 1, 1, 1];
        let view = view_of(&stores, regions(4, &stores), &leaders, &[2, 3], NOW_MS);
        assert!(transfers(&view, &tick(NOW_MS + 1)).is_empty());
    }
}
