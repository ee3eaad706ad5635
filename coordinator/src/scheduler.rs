//! The scheduler, pure: from the cluster view and the time, what topology
//! work the lease holder should do next. The driver in `schedule` turns each
//! step into root proposals and store RPCs.
//!
//! Every change goes through root in three steps — planned, executed by the
//! stores, committed (or cancelled) — so a coordinator that takes over
//! finishes whatever its predecessor left pending.
//!
//! What it plans, most urgent first: finishing pending changes; replacing
//! peers on dead stores ([`replace`]); splitting oversized regions; merging
//! adjacent small regions when turned on ([`merge`]); moving leaders off
//! overloaded stores ([`balance`]). Every kind is bounded per
//! tick, and a region takes part in at most one step of a tick.

use std::collections::BTreeSet;

use arbor_proto::pending_change::Change;
use arbor_proto::{MergePlanned, RegionDescriptor, RegionEpoch, SplitPlanned};

use crate::view::ClusterView;

mod balance;
mod health;
mod merge;
mod replace;

pub use balance::{
    leader_transfers, LEADER_BALANCE_COOLDOWN_MS, LEADER_BALANCE_TOLERANCE,
    LEADER_TRANSFERS_PER_TICK_MAX,
};
pub use health::{store_health, StoreHealth, STORE_DEAD_AFTER_DEFAULT_MS, STORE_DEAD_AFTER_MIN_MS};
pub use merge::{merges, MERGES_PER_TICK_MAX};
pub use replace::{peer_change_state, peers_after, PeerChangeState, PEER_CHANGES_PER_TICK_MAX};

/// Split a region once a store reports more keys than this (overridable per
/// coordinator, small in tests).
pub const REGION_SPLIT_KEYS_DEFAULT: u64 = 200_000;
/// Regions whose on-disk size (RocksDB's estimate of flushed data) passes
/// this split too, whatever their key count: a few large values make a
/// region heavy with few keys (TiKV splits at 96 MiB as well).
pub const REGION_SPLIT_BYTES_DEFAULT: u64 = 96 << 20;
/// Most keys read to choose a split key; a larger region splits off its
/// first keys this many at a time, which still converges.
pub const SPLIT_KEY_SCAN_MAX: u64 = 10_000;
/// Splits the scheduler plans per tick; bounds root traffic after a burst.
pub const SPLITS_PER_TICK_MAX: usize = 4;

/// The scheduler's knobs and clock readings for one tick (time is injected,
/// never read here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub now_ms: u64,
    /// When this coordinator started listening to heartbeats: silence only
    /// counts from then, because a fresh coordinator has heard from nobody.
    pub observing_since_ms: u64,
    /// Split regions holding more keys than this.
    pub split_keys_max: u64,
    /// Split regions larger on disk than this.
    pub split_bytes_max: u64,
    /// A store silent this long is dead and its peers are replaced.
    pub store_dead_after_ms: u64,
    /// No leader moves before this time: the driver sets it a cooldown after
    /// each transfer, so the next decision rests on heartbeats that already
    /// show where that leader went.
    pub balance_leaders_from_ms: u64,
    /// The (keys, bytes) two adjacent regions together stay under to merge
    /// automatically; none when automatic merge is off (the default).
    pub merge_limits: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Ask the region's leader to execute a split already planned in root,
    /// then commit it in root.
    ExecuteSplit(SplitPlanned),
    /// Run a merge already planned in root (PrepareMerge, WaitApplied,
    /// CommitMerge at the stores), then commit it in root.
    ExecuteMerge(MergePlanned),
    /// Plan in root merging `source` into its left neighbour `target`, then
    /// run it.
    PlanMerge {
        source: RegionDescriptor,
        target: RegionDescriptor,
    },
    /// Choose a split key for this region (by scanning `scan_keys` keys at
    /// its leader) and plan the split in root.
    PlanSplit {
        region: RegionDescriptor,
        scan_keys: u64,
    },
    /// Ask the region's leader to execute a peer change already planned in
    /// root (`Store.ChangePeers`, idempotent), then commit it in root.
    ExecutePeerChange(arbor_proto::PeerChangePlanned),
    /// Cancel a planned peer change in root: it cannot apply any more and
    /// the region's leader reports it not applied.
    CancelPeerChange { region_id: u64, reason: String },
    /// Plan in root replacing `remove_peer_id` (on a dead store) by a new
    /// peer on `add_store_id`, then execute it.
    ReplacePeer {
        region: RegionDescriptor,
        remove_peer_id: u64,
        add_store_id: u64,
    },
    /// Ask the leader on `from_store_id` to hand the region's leadership to
    /// its replica on `to_store_id`.
    TransferLeader {
        region_id: u64,
        epoch: Option<RegionEpoch>,
        from_store_id: u64,
        to_store_id: u64,
    },
}

/// Why a region that needs a new peer gets none this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blocked {
    /// Too few of its peers are up for any membership change to commit.
    NoQuorum { up_peers: usize, peers: usize },
    /// Every up store already holds a replica of it.
    NoSpareStore,
}

/// One tick's work, plus the regions that need work nothing can do now
/// (the driver logs those).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub blocked: Vec<(u64, Blocked)>,
}

/// Pending changes first (finishing work beats starting work), then dead
/// peers replaced, regions over the key threshold split, and leaders moved.
pub fn next_steps(view: &ClusterView, tick: Tick) -> Plan {
    let mut plan = Plan::default();
    // Regions this plan already touches, plus every region taking part in a
    // pending change: no region gets two steps.
    let mut busy: BTreeSet<u64> = BTreeSet::new();
    for pending in &view.root.pending_changes {
        busy.insert(pending.region_id);
        match &pending.change {
            Some(Change::Split(split)) => plan.steps.push(Step::ExecuteSplit(split.clone())),
            Some(Change::PeerChange(change)) => {
                plan.steps
                    .push(replace::finish_pending(view, &tick, change));
            }
            Some(Change::Merge(merge)) => {
                busy.insert(merge.target_region_id);
                plan.steps.push(Step::ExecuteMerge(*merge));
            }
            None => {}
        }
    }
    let replaced_before = plan.steps.len();
    replace::replacements(view, &tick, &mut busy, &mut plan);
    let replacing = plan.steps.len() > replaced_before;
    plan.steps.extend(splits(view, &tick, &mut busy));
    // Merges only while no store needs its peers replaced: a merge needs
    // every replica of both regions up.
    if !replacing {
        plan.steps.extend(merges(view, &tick, &mut busy));
    }
    // Leaders move only in a calm cluster: while peers are being replaced
    // the leader counts are about to change anyway.
    let calm = !replacing
        && !view
            .root
            .pending_changes
            .iter()
            .any(|p| matches!(p.change, Some(Change::PeerChange(_))));
    if calm {
        plan.steps.extend(leader_transfers(view, &tick, &busy));
    }
    plan
}

fn splits(view: &ClusterView, tick: &Tick, busy: &mut BTreeSet<u64>) -> Vec<Step> {
    let oversized: Vec<RegionDescriptor> = view
        .region_statuses()
        .into_iter()
        .filter(|status| {
            status.key_count > tick.split_keys_max
                || status.approximate_size_bytes > tick.split_bytes_max
        })
        .filter_map(|status| status.region)
        .filter(|region| !busy.contains(&region.region_id))
        .take(SPLITS_PER_TICK_MAX)
        .collect();
    oversized
        .into_iter()
        .map(|region| {
            busy.insert(region.region_id);
            let keys = view.leader_of(region.region_id).map_or(0, |h| h.key_count);
            Step::PlanSplit {
                region,
                scan_keys: (keys / 2).clamp(1, SPLIT_KEY_SCAN_MAX),
            }
        })
        .collect()
}

/// The split key from the keys a scan returned: the last one, if it lies
/// strictly inside the region.
pub fn split_key_from_scan(region: &RegionDescriptor, keys: &[Vec<u8>]) -> Option<Vec<u8>> {
    let key = keys.last()?;
    split_key_inside(region, key).then(|| key.clone())
}

/// Whether `key` lies strictly inside `region` (a split there leaves two
/// non-empty halves).
pub fn split_key_inside(region: &RegionDescriptor, key: &[u8]) -> bool {
    region.start_key.as_slice() < key
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arbor_proto::{PendingChange, RegionHeartbeat, RegionPeer, StoreDescriptor};

    pub(crate) const NOW_MS: u64 = 1_000_000;

    /// A tick long after the coordinator started, with the default knobs
    /// and balancing allowed.
    pub(crate) fn tick(now_ms: u64) -> Tick {
        Tick {
            now_ms,
            observing_since_ms: 0,
            split_keys_max: REGION_SPLIT_KEYS_DEFAULT,
            split_bytes_max: REGION_SPLIT_BYTES_DEFAULT,
            store_dead_after_ms: STORE_DEAD_AFTER_DEFAULT_MS,
            balance_leaders_from_ms: 0,
            merge_limits: None,
        }
    }

    pub(crate) fn store(id: u64) -> StoreDescriptor {
        StoreDescriptor {
            store_id: id,
            address: format!("s{id}"),
        }
    }

    /// A region at epoch 1/1 with one peer per store, peer id = 10 * region
    /// id + store id.
    pub(crate) fn region_on(id: u64, start: &[u8], end: &[u8], stores: &[u64]) -> RegionDescriptor {
        RegionDescriptor {
            region_id: id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch {
                version: 1,
                conf_ver: 1,
            }),
            peers: stores
                .iter()
                .map(|&store_id| RegionPeer {
                    peer_id: 10 * id + store_id,
                    store_id,
                })
                .collect(),
        }
    }

    /// Root knows `stores` and `regions`; every store in `heartbeating`
    /// reported at `at_ms`, each region's leader being `leaders[i]`.
    pub(crate) fn view_of(
        stores: &[u64],
        regions: Vec<RegionDescriptor>,
        leaders: &[u64],
        heartbeating: &[u64],
        at_ms: u64,
    ) -> ClusterView {
        let mut view = ClusterView::default();
        view.root.stores = stores.iter().map(|&id| store(id)).collect();
        for &store_id in heartbeating {
            let reports = regions
                .iter()
                .zip(leaders)
                .filter(|(region, _)| region.peers.iter().any(|p| p.store_id == store_id))
                .map(|(region, &leader)| RegionHeartbeat {
                    region_id: region.region_id,
                    leader_store_id: leader,
                    term: 1,
                    region: Some(region.clone()),
                    ..Default::default()
                })
                .collect();
            view.record_heartbeat(&store(store_id), reports, at_ms);
        }
        view.root.regions = regions;
        view
    }

    fn view_with_keys(keys: u64) -> ClusterView {
        let mut view = ClusterView::default();
        view.root.regions = vec![region_on(1, b"", b"", &[1])];
        view.root.stores = vec![store(1)];
        let heartbeat = RegionHeartbeat {
            region_id: 1,
            leader_store_id: 1,
            term: 1,
            key_count: keys,
            ..Default::default()
        };
        view.record_heartbeat(&store(1), vec![heartbeat], NOW_MS);
        view
    }

    fn split_tick(split_keys_max: u64) -> Tick {
        Tick {
            split_keys_max,
            ..tick(NOW_MS)
        }
    }

    #[test]
    fn a_region_over_the_key_threshold_gets_a_split_planned() {
        assert!(next_steps(&view_with_keys(100), split_tick(100))
            .steps
            .is_empty());
        let steps = next_steps(&view_with_keys(101), split_tick(100)).steps;
        assert!(
            matches!(&steps[..], [Step::PlanSplit { region, scan_keys: 50 }] if region.region_id == 1)
        );
    }

    #[test]
    fn a_region_over_the_size_threshold_splits_with_few_keys() {
        let mut view = view_with_keys(10);
        let report = view.reports.get_mut(&1).expect("store 1 reported");
        report.regions[0].approximate_size_bytes = 2_000;
        let by_size = |split_bytes_max| Tick {
            split_bytes_max,
            ..split_tick(100)
        };
        assert!(next_steps(&view, by_size(2_000)).steps.is_empty());
        let steps = next_steps(&view, by_size(1_999)).steps;
        assert!(
            matches!(&steps[..], [Step::PlanSplit { region, scan_keys: 5 }] if region.region_id == 1),
            "{steps:?}"
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
        assert_eq!(
            next_steps(&view, split_tick(100)).steps,
            vec![Step::ExecuteSplit(planned)]
        );
    }

    #[test]
    fn split_key_must_lie_strictly_inside_the_region() {
        let r = region_on(1, b"b", b"y", &[1]);
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
        assert!(!split_key_inside(&r, b"y"), "the end key is no split");
        assert!(split_key_inside(&region_on(1, b"", b"", &[1]), b"a"));
    }
}
