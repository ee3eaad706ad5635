//! Automatic merge of adjacent small regions (only when the coordinator's
//! `--region-merge-keys` / `--region-merge-bytes` turn it on; see
//! [`crate::schedule::MergeConfig`] for why it is off by default).
//!
//! A pair qualifies when the right region can fold into its left neighbour
//! at once: their replicas sit on the same stores, every one of those
//! stores is up, neither region takes part in a pending change or another
//! step of this tick, both leaders have reported, and their keys and bytes
//! together stay under the limits. The right region is the source, the
//! left the target, as `UnsplitAt` does.

use std::collections::BTreeSet;

use arbor_proto::RegionStatus;

use super::health::{store_health, StoreHealth};
use super::{Step, Tick};
use crate::view::ClusterView;

/// Merges planned per tick: each freezes a region until it commits, so one
/// at a time keeps the unavailable range small.
pub const MERGES_PER_TICK_MAX: usize = 1;

pub fn merges(view: &ClusterView, tick: &Tick, busy: &mut BTreeSet<u64>) -> Vec<Step> {
    let Some((keys_max, bytes_max)) = tick.merge_limits else {
        return Vec::new();
    };
    let mut statuses: Vec<RegionStatus> = view
        .region_statuses()
        .into_iter()
        .filter(|status| status.region.is_some())
        .collect();
    statuses.sort_by(|a, b| region_start(a).cmp(region_start(b)));
    let mut steps = Vec::new();
    for pair in statuses.windows(2) {
        if steps.len() >= MERGES_PER_TICK_MAX {
            break;
        }
        let (left, right) = (&pair[0], &pair[1]);
        if !mergeable(view, tick, busy, left, right, keys_max, bytes_max) {
            continue;
        }
        let (Some(target), Some(source)) = (left.region.clone(), right.region.clone()) else {
            continue;
        };
        busy.insert(target.region_id);
        busy.insert(source.region_id);
        steps.push(Step::PlanMerge { source, target });
    }
    steps
}

fn region_start(status: &RegionStatus) -> &[u8] {
    status
        .region
        .as_ref()
        .map_or(&[][..], |r| r.start_key.as_slice())
}

fn mergeable(
    view: &ClusterView,
    tick: &Tick,
    busy: &BTreeSet<u64>,
    left: &RegionStatus,
    right: &RegionStatus,
    keys_max: u64,
    bytes_max: u64,
) -> bool {
    let (Some(l), Some(r)) = (&left.region, &right.region) else {
        return false;
    };
    let adjacent = !l.end_key.is_empty() && l.end_key == r.start_key;
    let stores = |peers: &[arbor_proto::RegionPeer]| -> BTreeSet<u64> {
        peers.iter().map(|p| p.store_id).collect()
    };
    let same_stores = stores(&l.peers) == stores(&r.peers);
    let all_up = l
        .peers
        .iter()
        .all(|p| store_health(view, p.store_id, tick) == StoreHealth::Up);
    // Sizes are only known from a leader's report; an unreported region
    // might be anything.
    let reported = left.leader_store_id != 0 && right.leader_store_id != 0;
    let small = left.key_count.saturating_add(right.key_count) < keys_max
        && left
            .approximate_size_bytes
            .saturating_add(right.approximate_size_bytes)
            < bytes_max;
    adjacent
        && same_stores
        && all_up
        && reported
        && small
        && !busy.contains(&l.region_id)
        && !busy.contains(&r.region_id)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{region_on, tick, view_of, NOW_MS};
    use super::super::{next_steps, Tick};
    use super::*;
    use arbor_proto::pending_change::Change;
    use arbor_proto::{MergePlanned, PendingChange, RegionDescriptor};

    fn three_regions(stores_of_last: &[u64]) -> Vec<RegionDescriptor> {
        vec![
            region_on(1, b"", b"g", &[1, 2, 3]),
            region_on(2, b"g", b"p", &[1, 2, 3]),
            region_on(3, b"p", b"", stores_of_last),
        ]
    }

    fn merging(keys_max: u64) -> Tick {
        Tick {
            merge_limits: Some((keys_max, u64::MAX)),
            ..tick(NOW_MS)
        }
    }

    fn with_keys(mut view: ClusterView, keys: &[u64]) -> ClusterView {
        for report in view.reports.values_mut() {
            for heartbeat in &mut report.regions {
                heartbeat.key_count = keys[heartbeat.region_id as usize - 1];
            }
        }
        view
    }

    fn planned(view: &ClusterView, tick: Tick) -> Vec<(u64, u64)> {
        next_steps(view, tick)
            .steps
            .into_iter()
            .filter_map(|step| match step {
                Step::PlanMerge { source, target } => Some((source.region_id, target.region_id)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn small_adjacent_regions_merge_right_into_left_one_pair_per_tick() {
        let view = view_of(
            &[1, 2, 3],
            three_regions(&[1, 2, 3]),
            &[1, 1, 1],
            &[1, 2, 3],
            NOW_MS,
        );
        let view = with_keys(view, &[10, 10, 10]);
        assert_eq!(planned(&view, merging(100)), vec![(2, 1)]);
        assert_eq!(MERGES_PER_TICK_MAX, 1);
    }

    #[test]
    fn automatic_merge_is_off_without_limits() {
        let view = view_of(
            &[1, 2, 3],
            three_regions(&[1, 2, 3]),
            &[1, 1, 1],
            &[1, 2, 3],
            NOW_MS,
        );
        assert!(planned(&with_keys(view, &[0, 0, 0]), tick(NOW_MS)).is_empty());
    }

    #[test]
    fn regions_merge_only_below_the_combined_limits() {
        let view = view_of(
            &[1, 2, 3],
            three_regions(&[1, 2, 3]),
            &[1, 1, 1],
            &[1, 2, 3],
            NOW_MS,
        );
        let view = with_keys(view, &[60, 50, 40]);
        assert_eq!(
            planned(&view, merging(100)),
            vec![(3, 2)],
            "60 + 50 is too many, 50 + 40 is not"
        );
        assert!(planned(&view, merging(90)).is_empty(), "below, not at");
        let mut heavy = view.clone();
        for report in heavy.reports.values_mut() {
            for heartbeat in &mut report.regions {
                heartbeat.approximate_size_bytes = 600;
            }
        }
        let by_bytes = Tick {
            merge_limits: Some((1_000, 1_000)),
            ..tick(NOW_MS)
        };
        assert!(planned(&heavy, by_bytes).is_empty(), "1200 bytes together");
    }

    #[test]
    fn regions_on_other_stores_or_with_a_store_down_do_not_merge() {
        let view = view_of(
            &[1, 2, 3, 4],
            three_regions(&[1, 2, 4]),
            &[1, 1, 1],
            &[1, 2, 3, 4],
            NOW_MS,
        );
        let view = with_keys(view, &[100, 10, 10]);
        assert!(
            planned(&view, merging(100)).is_empty(),
            "region 3 is on store 4"
        );
        // Store 3 silent for a few seconds: down, not yet dead (so no
        // replacement is planned either).
        let quiet_since_ms = NOW_MS - crate::view::STORE_DOWN_AFTER_MS - 1;
        let view = view_of(
            &[1, 2, 3],
            three_regions(&[1, 2, 3]),
            &[1, 1, 1],
            &[1, 2],
            NOW_MS,
        );
        let mut view = with_keys(view, &[10, 10, 10]);
        view.record_heartbeat(&super::super::tests::store(3), Vec::new(), quiet_since_ms);
        assert_eq!(store_health(&view, 3, &merging(100)), StoreHealth::Down);
        assert!(planned(&view, merging(100)).is_empty(), "store 3 is down");
    }

    #[test]
    fn a_pending_merge_is_executed_and_blocks_new_ones_on_its_regions() {
        let view = view_of(
            &[1, 2, 3],
            three_regions(&[1, 2, 3]),
            &[1, 1, 1],
            &[1, 2, 3],
            NOW_MS,
        );
        let mut view = with_keys(view, &[10, 10, 10]);
        let merge = MergePlanned {
            source_region_id: 2,
            source_epoch: None,
            target_region_id: 1,
            target_epoch: None,
        };
        view.root.pending_changes.push(PendingChange {
            region_id: 2,
            planned_at_cursor: 9,
            change: Some(Change::Merge(merge)),
        });
        let steps = next_steps(&view, merging(100)).steps;
        assert_eq!(steps.first(), Some(&Step::ExecuteMerge(merge)));
        assert_eq!(
            planned(&view, merging(100)),
            Vec::<(u64, u64)>::new(),
            "2 and 1 are busy; 3 has no free neighbour"
        );
    }

    #[test]
    fn a_region_without_a_leader_report_does_not_merge() {
        let view = view_of(
            &[1, 2, 3],
            three_regions(&[1, 2, 3]),
            &[1, 0, 0],
            &[1, 2, 3],
            NOW_MS,
        );
        assert!(planned(&with_keys(view, &[1, 1, 1]), merging(100)).is_empty());
    }
}
