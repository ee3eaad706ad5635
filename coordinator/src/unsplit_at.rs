//! `UnsplitAt`: merge the region that starts exactly at a key into its left
//! neighbour, on demand (the gateway's `ALTER TABLE ... UNSPLIT AT`). Served
//! by the lease holder only: it plans the merge in root like the
//! scheduler's own merges, runs it through the same driver
//! ([`crate::merge::execute_merge`]), and answers once the merged region is
//! in its view.
//!
//! Invariant: it never plans a second change for a region — a pending merge
//! of the same two regions is finished instead, and any other pending change
//! on either is waited out — so the scheduler and any number of `UnsplitAt`
//! calls can race and root still sees one change at a time. Idempotent: a
//! key no region starts at (any more) answers the region holding it.

use std::time::Duration;

use arbor_proto::pending_change::Change;
use arbor_proto::{MergePlanned, RegionDescriptor};
use tokio::time::Instant;

use crate::error::CoordinatorError;
use crate::merge::{execute_merge, plan_merge};
use crate::service::Coordinator;
use crate::split_at::SPLIT_KEY_BYTES_MAX;
use crate::view::ClusterView;

/// How long one `UnsplitAt` may take before it answers an error (the merge
/// may still complete later: the scheduler finishes any merge left pending).
pub const UNSPLIT_AT_DEADLINE_MS: u64 = 20_000;
/// Pause before looking again when the merge could not go ahead yet (a store
/// behind, another change pending, a stale view).
pub const UNSPLIT_AT_RETRY_MS: u64 = 100;

/// What an `UnsplitAt` should do next, given the view. Pure.
#[derive(Debug, Clone, PartialEq)]
pub enum UnsplitAtNext {
    /// No region starts at the key (or it starts the key space): answer
    /// the region holding it.
    Done(RegionDescriptor),
    /// This very merge is pending: run and commit it.
    Execute(MergePlanned),
    /// One of the two regions takes part in another pending change.
    Wait { region_id: u64 },
    /// Plan merging `source` (starting at the key) into `target`.
    Plan {
        source: RegionDescriptor,
        target: RegionDescriptor,
    },
    /// The two regions' replicas sit on different stores: no merge can run
    /// until they are moved (nothing moves them on its own).
    OnDifferentStores { source_id: u64, target_id: u64 },
    /// No region holds the key (the cluster is still bootstrapping).
    NoRegion,
}

pub fn unsplit_at_next(view: &ClusterView, key: &[u8]) -> UnsplitAtNext {
    let Some(source) = view.region_for_key(key) else {
        return UnsplitAtNext::NoRegion;
    };
    let left = view
        .root
        .regions
        .iter()
        .find(|r| !r.end_key.is_empty() && r.end_key == key);
    let target = match left {
        Some(target) if source.start_key == key => target,
        _ => return UnsplitAtNext::Done(source.clone()),
    };
    let involving = |region_id: u64| {
        view.root.pending_changes.iter().find(|p| {
            p.region_id == region_id
                || matches!(&p.change, Some(Change::Merge(m)) if m.target_region_id == region_id)
        })
    };
    for region_id in [source.region_id, target.region_id] {
        match involving(region_id).and_then(|p| p.change.as_ref()) {
            Some(Change::Merge(merge))
                if merge.source_region_id == source.region_id
                    && merge.target_region_id == target.region_id =>
            {
                return UnsplitAtNext::Execute(*merge)
            }
            Some(_) => return UnsplitAtNext::Wait { region_id },
            None => {}
        }
    }
    let stores = |r: &RegionDescriptor| -> std::collections::BTreeSet<u64> {
        r.peers.iter().map(|p| p.store_id).collect()
    };
    if stores(source) != stores(target) {
        return UnsplitAtNext::OnDifferentStores {
            source_id: source.region_id,
            target_id: target.region_id,
        };
    }
    UnsplitAtNext::Plan {
        source: source.clone(),
        target: target.clone(),
    }
}

/// Merges the region starting at `key` into its left neighbour and answers
/// the merged region, within [`UNSPLIT_AT_DEADLINE_MS`]; on a standby,
/// `NotLeaseHolder` (naming the holder) at once.
pub async fn unsplit_at(
    coordinator: &Coordinator,
    key: Vec<u8>,
) -> Result<RegionDescriptor, CoordinatorError> {
    if key.len() > SPLIT_KEY_BYTES_MAX {
        return Err(CoordinatorError::InvalidArgument {
            hint: format!(
                "unsplit key of {} bytes is longer than {SPLIT_KEY_BYTES_MAX}",
                key.len()
            ),
        });
    }
    let deadline = Instant::now() + Duration::from_millis(UNSPLIT_AT_DEADLINE_MS);
    loop {
        // Checked every round: a holder deposed mid-way answers the redirect.
        crate::singleton::holder_tenure(coordinator)?;
        let next = unsplit_at_next(&coordinator.view(), &key);
        let outcome = match next {
            UnsplitAtNext::Done(region) => return Ok(region),
            UnsplitAtNext::Execute(merge) => execute_merge(coordinator, &merge).await,
            UnsplitAtNext::Plan { source, target } => {
                match plan_merge(coordinator, &source, &target).await {
                    Ok(planned) => execute_merge(coordinator, &planned).await,
                    Err(error) => Err(error),
                }
            }
            UnsplitAtNext::Wait { region_id } => Err(CoordinatorError::NotReady {
                hint: format!("region {region_id} has another change pending"),
            }),
            UnsplitAtNext::OnDifferentStores {
                source_id,
                target_id,
            } => {
                return Err(CoordinatorError::InvalidArgument {
                    hint: format!(
                        "regions {target_id} and {source_id} have replicas on different stores and cannot merge"
                    ),
                })
            }
            UnsplitAtNext::NoRegion => Err(CoordinatorError::NoRegionForKey {
                key: key.clone(),
                cursor: coordinator.view().root.cursor,
            }),
        };
        // A linearizable read, so the next round sees what root committed.
        crate::server::refresh_view(coordinator).await;
        if let Err(error) = outcome {
            if Instant::now() >= deadline {
                return Err(CoordinatorError::MergeNotDone {
                    key,
                    waited_ms: UNSPLIT_AT_DEADLINE_MS,
                    last_error: error.to_string(),
                });
            }
            tracing::debug!("unsplit at {key:?} not done yet: {error}");
            tokio::time::sleep(Duration::from_millis(UNSPLIT_AT_RETRY_MS)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::region_on;
    use arbor_proto::{PeerChangePlanned, PendingChange, SplitPlanned};

    fn view() -> ClusterView {
        let mut view = ClusterView::default();
        view.root.regions = vec![
            region_on(1, b"", b"g", &[1, 2, 3]),
            region_on(2, b"g", b"p", &[1, 2, 3]),
            region_on(3, b"p", b"", &[1, 2, 4]),
        ];
        view
    }

    fn pending(view: &mut ClusterView, region_id: u64, change: Change) {
        view.root.pending_changes.push(PendingChange {
            region_id,
            planned_at_cursor: 5,
            change: Some(change),
        });
    }

    #[test]
    fn a_region_starting_at_the_key_is_planned_into_its_left_neighbour() {
        assert_eq!(
            unsplit_at_next(&view(), b"g"),
            UnsplitAtNext::Plan {
                source: region_on(2, b"g", b"p", &[1, 2, 3]),
                target: region_on(1, b"", b"g", &[1, 2, 3]),
            }
        );
    }

    #[test]
    fn a_key_no_region_starts_at_answers_the_region_holding_it() {
        assert_eq!(
            unsplit_at_next(&view(), b"h"),
            UnsplitAtNext::Done(region_on(2, b"g", b"p", &[1, 2, 3]))
        );
        assert_eq!(
            unsplit_at_next(&view(), b""),
            UnsplitAtNext::Done(region_on(1, b"", b"g", &[1, 2, 3])),
            "the start of the key space has no left neighbour"
        );
        assert_eq!(
            unsplit_at_next(&ClusterView::default(), b"a"),
            UnsplitAtNext::NoRegion
        );
    }

    #[test]
    fn the_same_pending_merge_is_finished_and_other_changes_waited_out() {
        let merge = MergePlanned {
            source_region_id: 2,
            source_epoch: None,
            target_region_id: 1,
            target_epoch: None,
        };
        let mut same = view();
        pending(&mut same, 2, Change::Merge(merge));
        assert_eq!(unsplit_at_next(&same, b"g"), UnsplitAtNext::Execute(merge));

        let mut split_left = view();
        pending(
            &mut split_left,
            1,
            Change::Split(SplitPlanned {
                region_id: 1,
                split_key: b"c".to_vec(),
                ..Default::default()
            }),
        );
        assert_eq!(
            unsplit_at_next(&split_left, b"g"),
            UnsplitAtNext::Wait { region_id: 1 }
        );

        let mut source_as_target = view();
        pending(
            &mut source_as_target,
            3,
            Change::Merge(MergePlanned {
                source_region_id: 3,
                target_region_id: 2,
                ..merge
            }),
        );
        assert_eq!(
            unsplit_at_next(&source_as_target, b"g"),
            UnsplitAtNext::Wait { region_id: 2 }
        );

        let mut peers = view();
        pending(
            &mut peers,
            2,
            Change::PeerChange(PeerChangePlanned {
                region_id: 2,
                ..Default::default()
            }),
        );
        assert_eq!(
            unsplit_at_next(&peers, b"g"),
            UnsplitAtNext::Wait { region_id: 2 }
        );
    }

    #[test]
    fn regions_on_different_stores_are_refused() {
        assert_eq!(
            unsplit_at_next(&view(), b"p"),
            UnsplitAtNext::OnDifferentStores {
                source_id: 3,
                target_id: 2
            }
        );
    }
}
