//! The scheduler, pure: from the cluster view, what topology work the lease
//! holder should do next. The driver in `schedule` turns each step into root
//! proposals and store RPCs.
//!
//! Every change goes through root in three steps — planned, executed by the
//! stores, committed (or cancelled) — so a coordinator that takes over
//! finishes whatever its predecessor left pending.

use arbor_proto::pending_change::Change;
use arbor_proto::{RegionDescriptor, SplitPlanned};

use crate::view::ClusterView;

/// Split a region once a store reports more keys than this (overridable per
/// coordinator, small in tests).
pub const REGION_SPLIT_KEYS_DEFAULT: u64 = 200_000;
/// Most keys read to choose a split key; a larger region splits off its
/// first keys this many at a time, which still converges.
pub const SPLIT_KEY_SCAN_MAX: u64 = 10_000;
/// Splits the scheduler plans per tick; bounds root traffic after a burst.
pub const SPLITS_PER_TICK_MAX: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Ask the region's leader to execute a split already planned in root,
    /// then commit it in root.
    ExecuteSplit(SplitPlanned),
    /// Choose a split key for this region (by scanning `scan_keys` keys at
    /// its leader) and plan the split in root.
    PlanSplit {
        region: RegionDescriptor,
        scan_keys: u64,
    },
}

/// Pending splits first (finishing work beats starting work), then regions
/// over the key threshold with nothing pending.
pub fn next_steps(view: &ClusterView, split_keys_max: u64) -> Vec<Step> {
    let mut steps: Vec<Step> = view
        .root
        .pending_changes
        .iter()
        .filter_map(|pending| match &pending.change {
            Some(Change::Split(split)) => Some(Step::ExecuteSplit(split.clone())),
            _ => None,
        })
        .collect();
    let busy = |region_id: u64| {
        view.root.pending_changes.iter().any(|p| {
            p.region_id == region_id
                || matches!(&p.change, Some(Change::Merge(m)) if m.target_region_id == region_id)
        })
    };
    let oversized = view
        .region_statuses()
        .into_iter()
        .filter(|status| status.key_count > split_keys_max)
        .filter_map(|status| status.region)
        .filter(|region| !busy(region.region_id))
        .take(SPLITS_PER_TICK_MAX)
        .map(|region| {
            let keys = view.leader_of(region.region_id).map_or(0, |h| h.key_count);
            Step::PlanSplit {
                region,
                scan_keys: (keys / 2).clamp(1, SPLIT_KEY_SCAN_MAX),
            }
        });
    steps.extend(oversized);
    steps
}

/// The split key from the keys a scan returned: the last one, if it lies
/// strictly inside the region.
pub fn split_key_from_scan(region: &RegionDescriptor, keys: &[Vec<u8>]) -> Option<Vec<u8>> {
    let key = keys.last()?;
    let inside = region.start_key.as_slice() < key.as_slice()
        && (region.end_key.is_empty() || key.as_slice() < region.end_key.as_slice());
    inside.then(|| key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_proto::{PendingChange, RegionEpoch, RegionHeartbeat, RegionPeer, StoreDescriptor};

    fn region(id: u64, start: &[u8], end: &[u8]) -> RegionDescriptor {
        RegionDescriptor {
            region_id: id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch {
                version: 1,
                conf_ver: 1,
            }),
            peers: vec![RegionPeer {
                peer_id: 1,
                store_id: 1,
            }],
        }
    }

    fn view_with_keys(keys: u64) -> ClusterView {
        let mut view = ClusterView::default();
        view.root.regions = vec![region(1, b"", b"")];
        let store = StoreDescriptor {
            store_id: 1,
            address: "s1".into(),
        };
        view.root.stores = vec![store.clone()];
        let heartbeat = RegionHeartbeat {
            region_id: 1,
            leader_store_id: 1,
            term: 1,
            key_count: keys,
            ..Default::default()
        };
        view.record_heartbeat(&store, vec![heartbeat], 1);
        view
    }

    #[test]
    fn a_region_over_the_key_threshold_gets_a_split_planned() {
        assert!(next_steps(&view_with_keys(100), 100).is_empty());
        let steps = next_steps(&view_with_keys(101), 100);
        assert!(
            matches!(&steps[..], [Step::PlanSplit { region, scan_keys: 50 }] if region.region_id == 1)
        );
    }

    #[test]
    fn a_pending_split_is_executed_before_anything_new_is_planned() {
        let mut view = view_with_keys(1_000);
        let planned = SplitPlanned {
            region_id: 1,
            split_key: b"m".to_vec(),
            new_region_id: 2,
            ..Default::default()
        };
        view.root.pending_changes.push(PendingChange {
            region_id: 1,
            planned_at_cursor: 7,
            change: Some(Change::Split(planned.clone())),
        });
        assert_eq!(next_steps(&view, 100), vec![Step::ExecuteSplit(planned)]);
    }

    #[test]
    fn split_key_must_lie_strictly_inside_the_region() {
        let r = region(1, b"b", b"y");
        assert_eq!(
            split_key_from_scan(&r, &[b"c".to_vec(), b"k".to_vec()]),
            Some(b"k".to_vec())
        );
        assert_eq!(
            split_key_from_scan(&r, &[b"b".to_vec()]),
            None,
            "the start key is no split"
        );
        assert_eq!(split_key_from_scan(&r, &[]), None);
    }
}
