//! Dead-store replacement: for a region with a peer on a dead store, add a
//! peer on an up store that holds no replica of it and remove the dead one,
//! in one planned peer change (the store runs it as learner catch-up, then
//! one joint-consensus step). And what to do with a peer change already
//! pending in root: execute (and commit) it, or cancel it once it can no
//! longer apply.
//!
//! Invariant: a change is planned only while a majority of the region's
//! peers is up — without one no membership change can commit, and a plan
//! would only sit pending.

use std::collections::{BTreeMap, BTreeSet};

use arbor_proto::{PeerChangePlanned, RegionDescriptor, RegionPeer};

use super::health::{store_health, StoreHealth};
use super::{Blocked, Plan, Step, Tick};
use crate::view::ClusterView;

/// Replacements planned per tick: each new peer is filled by a snapshot, so
/// a burst after a store died is spread over ticks.
pub const PEER_CHANGES_PER_TICK_MAX: usize = 4;

/// How a store's replica of a region relates to a planned peer change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerChangeState {
    /// At the epoch the plan expected: the change has not applied.
    NotApplied,
    /// One conf change later, with exactly the peers the plan leads to.
    Applied,
    /// Anything else: root and the store disagree in a way this change
    /// does not explain. Left pending, never cancelled blindly.
    Diverged,
}

/// The peers root's commit of `change` gives `region` (removed ones out,
/// added ones appended) — the same rule as root's apply.
pub fn peers_after(region: &RegionDescriptor, change: &PeerChangePlanned) -> Vec<RegionPeer> {
    region
        .peers
        .iter()
        .filter(|p| !change.remove_peer_ids.contains(&p.peer_id))
        .chain(change.add_peers.iter())
        .copied()
        .collect()
}

/// Where `store_region` (a store's replica, e.g. the leader's) stands with
/// `change`, planned against root's `region`.
pub fn peer_change_state(
    region: &RegionDescriptor,
    change: &PeerChangePlanned,
    store_region: &RegionDescriptor,
) -> PeerChangeState {
    let expected = change.expected_epoch.unwrap_or_default();
    let current = store_region.epoch.unwrap_or_default();
    let peer_set = |peers: &[RegionPeer]| -> BTreeSet<(u64, u64)> {
        peers.iter().map(|p| (p.peer_id, p.store_id)).collect()
    };
    if current.version != expected.version {
        PeerChangeState::Diverged
    } else if current.conf_ver == expected.conf_ver {
        PeerChangeState::NotApplied
    } else if current.conf_ver == expected.conf_ver + 1
        && peer_set(&store_region.peers) == peer_set(&peers_after(region, change))
    {
        PeerChangeState::Applied
    } else {
        PeerChangeState::Diverged
    }
}

/// A peer change left pending (by this coordinator or a predecessor):
/// executed — the store RPC is idempotent, so one that already ran answers
/// at once — unless it adds a peer on a store that is dead or gone and the
/// region's leader reports it not applied; then it is cancelled.
pub(super) fn finish_pending(view: &ClusterView, tick: &Tick, change: &PeerChangePlanned) -> Step {
    let stuck_on = change
        .add_peers
        .iter()
        .find(|p| store_health(view, p.store_id, tick) == StoreHealth::Dead);
    let region = view
        .root
        .regions
        .iter()
        .find(|r| r.region_id == change.region_id);
    let leader_region = view
        .leader_of(change.region_id)
        .and_then(|heartbeat| heartbeat.region.as_ref());
    if let (Some(peer), Some(region), Some(leader_region)) = (stuck_on, region, leader_region) {
        if peer_change_state(region, change, leader_region) == PeerChangeState::NotApplied {
            return Step::CancelPeerChange {
                region_id: change.region_id,
                reason: format!(
                    "store {} of the added peer {} is dead",
                    peer.store_id, peer.peer_id
                ),
            };
        }
    }
    Step::ExecutePeerChange(change.clone())
}

/// Replacement plans for regions with a peer on a dead store, at most
/// [`PEER_CHANGES_PER_TICK_MAX`], skipping `busy` regions and marking the
/// ones planned busy.
pub(super) fn replacements(
    view: &ClusterView,
    tick: &Tick,
    busy: &mut BTreeSet<u64>,
    plan: &mut Plan,
) {
    let health: BTreeMap<u64, StoreHealth> = view
        .root
        .regions
        .iter()
        .flat_map(|r| r.peers.iter().map(|p| p.store_id))
        .chain(view.root.stores.iter().map(|s| s.store_id))
        .map(|id| (id, store_health(view, id, tick)))
        .collect();
    // Regions per store, counting this tick's additions, so one tick's
    // replacements spread over the spare stores.
    let mut load: BTreeMap<u64, usize> = view
        .root
        .stores
        .iter()
        .map(|s| (s.store_id, view.regions_of_store(s.store_id).len()))
        .collect();
    let mut planned = 0;
    for region in &view.root.regions {
        if planned == PEER_CHANGES_PER_TICK_MAX {
            break;
        }
        if busy.contains(&region.region_id) {
            continue;
        }
        let of = |peer: &&RegionPeer| health.get(&peer.store_id).copied();
        let Some(dead) = region
            .peers
            .iter()
            .find(|p| of(p) == Some(StoreHealth::Dead))
        else {
            continue;
        };
        let up_peers = region
            .peers
            .iter()
            .filter(|p| of(p) == Some(StoreHealth::Up))
            .count();
        if up_peers * 2 <= region.peers.len() {
            let blocked = Blocked::NoQuorum {
                up_peers,
                peers: region.peers.len(),
            };
            plan.blocked.push((region.region_id, blocked));
            continue;
        }
        let Some(target) = spare_store(region, &health, &load) else {
            plan.blocked.push((region.region_id, Blocked::NoSpareStore));
            continue;
        };
        *load.entry(target).or_default() += 1;
        busy.insert(region.region_id);
        planned += 1;
        plan.steps.push(Step::ReplacePeer {
            region: region.clone(),
            remove_peer_id: dead.peer_id,
            add_store_id: target,
        });
    }
}

/// The up store without a replica of `region` holding the fewest regions
/// (the lowest id among equals, so the choice is stable).
fn spare_store(
    region: &RegionDescriptor,
    health: &BTreeMap<u64, StoreHealth>,
    load: &BTreeMap<u64, usize>,
) -> Option<u64> {
    load.iter()
        .filter(|(id, _)| health.get(id) == Some(&StoreHealth::Up))
        .filter(|(id, _)| !region.peers.iter().any(|p| p.store_id == **id))
        .min_by_key(|(id, regions)| (**regions, **id))
        .map(|(id, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{region_on, tick, view_of, NOW_MS};
    use super::super::{next_steps, STORE_DEAD_AFTER_DEFAULT_MS};
    use super::*;
    use arbor_proto::pending_change::Change;
    use arbor_proto::{PendingChange, RegionEpoch};

    /// Stores 1..=4 joined; regions on stores 1, 2, 3; everyone but
    /// `silent` heartbeats at NOW.
    fn four_stores(regions: Vec<RegionDescriptor>, silent: &[u64]) -> ClusterView {
        let leaders: Vec<u64> = regions.iter().map(|_| 2).collect();
        let heartbeating: Vec<u64> = (1..=4).filter(|id| !silent.contains(id)).collect();
        view_of(&[1, 2, 3, 4], regions, &leaders, &heartbeating, NOW_MS)
    }

    fn after_dead_threshold() -> Tick {
        tick(NOW_MS + STORE_DEAD_AFTER_DEFAULT_MS + 1)
    }

    /// A tick at which the heartbeats of NOW are recent and store 1 (silent
    /// since the coordinator started, long ago) is dead.
    fn store_1_dead() -> Tick {
        tick(NOW_MS + 1)
    }

    fn replace_steps(view: &ClusterView, tick: Tick) -> Vec<(u64, u64, u64)> {
        next_steps(view, tick)
            .steps
            .into_iter()
            .filter_map(|step| match step {
                Step::ReplacePeer {
                    region,
                    remove_peer_id,
                    add_store_id,
                } => Some((region.region_id, remove_peer_id, add_store_id)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_dead_peer_is_replaced_on_an_up_store_without_a_replica() {
        let view = four_stores(vec![region_on(1, b"", b"", &[1, 2, 3])], &[1]);
        assert_eq!(replace_steps(&view, store_1_dead()), vec![(1, 11, 4)]);
    }

    #[test]
    fn nothing_is_replaced_before_the_store_is_dead() {
        // Everyone heartbeat at NOW; just before the threshold nobody is
        // dead, just after it every store is (then nothing has quorum).
        let view = four_stores(vec![region_on(1, b"", b"", &[1, 2, 3])], &[]);
        let before = tick(NOW_MS + STORE_DEAD_AFTER_DEFAULT_MS);
        assert!(replace_steps(&view, before).is_empty());
        let plan = next_steps(&view, after_dead_threshold());
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert_eq!(
            plan.blocked,
            vec![(
                1,
                Blocked::NoQuorum {
                    up_peers: 0,
                    peers: 3
                }
            )]
        );
    }

    #[test]
    fn nothing_is_planned_without_a_majority_of_up_peers() {
        let view = four_stores(vec![region_on(1, b"", b"", &[1, 2, 3])], &[1, 2]);
        let plan = next_steps(&view, store_1_dead());
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert_eq!(
            plan.blocked,
            vec![(
                1,
                Blocked::NoQuorum {
                    up_peers: 1,
                    peers: 3
                }
            )]
        );
    }

    #[test]
    fn without_a_spare_store_nothing_is_planned() {
        let view = view_of(
            &[1, 2, 3],
            vec![region_on(1, b"", b"", &[1, 2, 3])],
            &[2],
            &[2, 3],
            NOW_MS,
        );
        let plan = next_steps(&view, store_1_dead());
        assert!(plan.steps.is_empty());
        assert_eq!(plan.blocked, vec![(1, Blocked::NoSpareStore)]);
    }

    #[test]
    fn replacements_prefer_the_store_with_fewest_regions_and_spread_out() {
        // Stores 4 and 5 are spare; 4 already holds region 3.
        let regions = vec![
            region_on(1, b"", b"g", &[1, 2, 3]),
            region_on(2, b"g", b"p", &[1, 2, 3]),
            region_on(3, b"p", b"", &[2, 3, 4]),
        ];
        let leaders = [2, 2, 2];
        let view = view_of(&[1, 2, 3, 4, 5], regions, &leaders, &[2, 3, 4, 5], NOW_MS);
        assert_eq!(
            replace_steps(&view, store_1_dead()),
            vec![(1, 11, 5), (2, 21, 4)],
            "store 5 first (no region), then both hold one: the lower id"
        );
    }

    #[test]
    fn replacements_per_tick_are_bounded() {
        let regions: Vec<RegionDescriptor> = (1..=10u8)
            .map(|i| {
                let start = if i == 1 { vec![] } else { vec![i] };
                let end = if i == 10 { vec![] } else { vec![i + 1] };
                region_on(u64::from(i), &start, &end, &[1, 2, 3])
            })
            .collect();
        let view = four_stores(regions, &[1]);
        assert_eq!(
            replace_steps(&view, store_1_dead()).len(),
            PEER_CHANGES_PER_TICK_MAX
        );
    }

    fn pending(view: &mut ClusterView, change: &PeerChangePlanned) {
        view.root.pending_changes.push(PendingChange {
            region_id: change.region_id,
            planned_at_cursor: 9,
            change: Some(Change::PeerChange(change.clone())),
        });
    }

    fn replace_1_by_4() -> PeerChangePlanned {
        PeerChangePlanned {
            region_id: 1,
            expected_epoch: Some(RegionEpoch {
                version: 1,
                conf_ver: 1,
            }),
            add_peers: vec![RegionPeer {
                peer_id: 99,
                store_id: 4,
            }],
            remove_peer_ids: vec![11],
        }
    }

    #[test]
    fn a_predecessors_pending_change_is_finished_and_nothing_else_planned_for_it() {
        let mut view = four_stores(vec![region_on(1, b"", b"", &[1, 2, 3])], &[1]);
        pending(&mut view, &replace_1_by_4());
        let plan = next_steps(&view, store_1_dead());
        assert_eq!(plan.steps, vec![Step::ExecutePeerChange(replace_1_by_4())]);
    }

    #[test]
    fn a_pending_change_onto_a_dead_store_is_cancelled_if_not_applied() {
        let mut view = four_stores(vec![region_on(1, b"", b"", &[1, 2, 3])], &[1, 4]);
        pending(&mut view, &replace_1_by_4());
        let plan = next_steps(&view, store_1_dead());
        assert!(
            matches!(
                &plan.steps[..],
                [Step::CancelPeerChange { region_id: 1, .. }]
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn a_pending_change_the_stores_applied_is_committed_even_if_its_store_died() {
        let change = replace_1_by_4();
        let root_region = region_on(1, b"", b"", &[1, 2, 3]);
        let mut applied = root_region.clone();
        applied.peers = peers_after(&root_region, &change);
        applied.epoch = Some(RegionEpoch {
            version: 1,
            conf_ver: 2,
        });
        // The replicas report the applied shape; store 4 then died.
        let mut view = four_stores(vec![root_region], &[1, 4]);
        for report in view.reports.values_mut() {
            report.regions[0].region = Some(applied.clone());
        }
        pending(&mut view, &change);
        let plan = next_steps(&view, store_1_dead());
        assert_eq!(plan.steps, vec![Step::ExecutePeerChange(change)]);
    }

    #[test]
    fn peer_change_state_tells_applied_from_not_applied_and_diverged() {
        let change = replace_1_by_4();
        let root_region = region_on(1, b"", b"", &[1, 2, 3]);
        assert_eq!(
            peer_change_state(&root_region, &change, &root_region),
            PeerChangeState::NotApplied
        );
        let mut applied = root_region.clone();
        applied.peers = peers_after(&root_region, &change);
        applied.peers.reverse(); // order does not matter
        applied.epoch = Some(RegionEpoch {
            version: 1,
            conf_ver: 2,
        });
        assert_eq!(
            peer_change_state(&root_region, &change, &applied),
            PeerChangeState::Applied
        );
        let mut other = applied.clone();
        other.peers[0].peer_id = 1234;
        assert_eq!(
            peer_change_state(&root_region, &change, &other),
            PeerChangeState::Diverged
        );
        let mut split = root_region.clone();
        split.epoch = Some(RegionEpoch {
            version: 2,
            conf_ver: 1,
        });
        assert_eq!(
            peer_change_state(&root_region, &change, &split),
            PeerChangeState::Diverged
        );
    }
}
