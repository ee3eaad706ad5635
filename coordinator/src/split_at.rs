//! `SplitAt`: split the region holding a key exactly at that key, on demand
//! (the gateway's `ALTER TABLE ... SPLIT AT`). Served by the lease holder
//! only: it plans in root like the scheduler's own splits do, executes the
//! split at the region's leader through the same path, commits it, and
//! answers once the committed split is in its view.
//!
//! Invariant: it never plans a second change for a region — a pending split
//! at the same key is finished instead, and any other pending change is
//! waited out — so the scheduler and any number of `SplitAt` calls can race
//! on one region and root still sees one change at a time.

use std::time::Duration;

use arbor_proto::pending_change::Change;
use arbor_proto::{RegionDescriptor, SplitPlanned};
use tokio::time::Instant;

use crate::error::CoordinatorError;
use crate::schedule::{execute_split, plan_split_at};
use crate::service::Coordinator;
use crate::view::ClusterView;

/// How long one `SplitAt` may take before it answers an error (the split may
/// still complete later: the scheduler finishes any split left pending).
pub const SPLIT_AT_DEADLINE_MS: u64 = 20_000;
/// Pause before looking again when the split could not go ahead yet (no
/// known leader for a new region, another change pending, a stale view).
pub const SPLIT_AT_RETRY_MS: u64 = 100;
/// Longest split key accepted; the stores refuse longer keys anyway
/// (raftstore's `KEY_BYTES_MAX`).
pub const SPLIT_KEY_BYTES_MAX: usize = 8 << 10;

/// The two regions either side of the split key; `left` is none when the key
/// starts the key space.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitHalves {
    pub left: Option<RegionDescriptor>,
    pub right: RegionDescriptor,
}

/// What a `SplitAt` should do next, given the view. Pure.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitAtNext {
    /// A region starts at the key: answer.
    Done(SplitHalves),
    /// A split at exactly this key is pending: execute and commit it.
    Execute(SplitPlanned),
    /// The region takes part in another pending change: wait for it.
    Wait { region_id: u64 },
    /// Plan a split of this region at the key.
    Plan(RegionDescriptor),
    /// No region holds the key (the cluster is still bootstrapping).
    NoRegion,
}

pub fn split_at_next(view: &ClusterView, key: &[u8]) -> SplitAtNext {
    let Some(region) = view.region_for_key(key) else {
        return SplitAtNext::NoRegion;
    };
    if region.start_key == key {
        let left = view
            .root
            .regions
            .iter()
            .find(|r| !r.end_key.is_empty() && r.end_key == key)
            .cloned();
        return SplitAtNext::Done(SplitHalves {
            left,
            right: region.clone(),
        });
    }
    let pending = view.root.pending_changes.iter().find(|p| {
        p.region_id == region.region_id
            || matches!(&p.change, Some(Change::Merge(m)) if m.target_region_id == region.region_id)
    });
    match pending.and_then(|p| p.change.as_ref()) {
        Some(Change::Split(split)) if split.split_key == key => SplitAtNext::Execute(split.clone()),
        Some(_) => SplitAtNext::Wait {
            region_id: region.region_id,
        },
        None => SplitAtNext::Plan(region.clone()),
    }
}

/// Splits at `key` and answers both halves, within
/// [`SPLIT_AT_DEADLINE_MS`]; on a standby, `NotLeaseHolder` (naming the
/// holder) at once.
pub async fn split_at(
    coordinator: &Coordinator,
    key: Vec<u8>,
) -> Result<SplitHalves, CoordinatorError> {
    if key.len() > SPLIT_KEY_BYTES_MAX {
        return Err(CoordinatorError::InvalidArgument {
            hint: format!(
                "split key of {} bytes is longer than {SPLIT_KEY_BYTES_MAX}",
                key.len()
            ),
        });
    }
    let deadline = Instant::now() + Duration::from_millis(SPLIT_AT_DEADLINE_MS);
    loop {
        // Checked every round: a holder deposed mid-way answers the redirect.
        crate::singleton::holder_tenure(coordinator)?;
        let next = split_at_next(&coordinator.view(), &key);
        let outcome = match next {
            SplitAtNext::Done(halves) => return Ok(halves),
            SplitAtNext::Execute(split) => execute_split(coordinator, &split).await,
            SplitAtNext::Plan(region) => {
                match plan_split_at(coordinator, &region, key.clone()).await {
                    Ok(planned) => execute_split(coordinator, &planned).await,
                    Err(error) => Err(error),
                }
            }
            SplitAtNext::Wait { region_id } => Err(CoordinatorError::NotReady {
                hint: format!("region {region_id} has another change pending"),
            }),
            SplitAtNext::NoRegion => Err(CoordinatorError::NoRegionForKey {
                key: key.clone(),
                cursor: coordinator.view().root.cursor,
            }),
        };
        // A linearizable read, so the next round sees what root committed.
        crate::server::refresh_view(coordinator).await;
        if let Err(error) = outcome {
            if Instant::now() >= deadline {
                return Err(CoordinatorError::SplitNotDone {
                    key,
                    waited_ms: SPLIT_AT_DEADLINE_MS,
                    last_error: error.to_string(),
                });
            }
            tracing::debug!("split at {key:?} not done yet: {error}");
            tokio::time::sleep(Duration::from_millis(SPLIT_AT_RETRY_MS)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_proto::{PeerChangePlanned, PendingChange, RegionEpoch, RegionPeer};

    fn region(id: u64, start: &[u8], end: &[u8]) -> RegionDescriptor {
        RegionDescriptor {
            region_id: id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch {
                version: 2,
                conf_ver: 1,
            }),
            peers: vec![RegionPeer {
                peer_id: id,
                store_id: 1,
            }],
        }
    }

    fn view() -> ClusterView {
        let mut view = ClusterView::default();
        view.root.regions = vec![region(1, b"", b"m"), region(2, b"m", b"")];
        view
    }

    #[test]
    fn a_key_that_starts_a_region_is_answered_at_once_with_both_halves() {
        assert_eq!(
            split_at_next(&view(), b"m"),
            SplitAtNext::Done(SplitHalves {
                left: Some(region(1, b"", b"m")),
                right: region(2, b"m", b""),
            })
        );
        assert_eq!(
            split_at_next(&view(), b""),
            SplitAtNext::Done(SplitHalves {
                left: None,
                right: region(1, b"", b"m"),
            }),
            "the start of the key space has no left half"
        );
    }

    #[test]
    fn a_key_inside_a_region_plans_a_split_of_that_region() {
        assert_eq!(
            split_at_next(&view(), b"q"),
            SplitAtNext::Plan(region(2, b"m", b""))
        );
    }

    #[test]
    fn a_pending_split_at_the_key_is_finished_and_other_changes_waited_out() {
        let mut view = view();
        let split = SplitPlanned {
            region_id: 2,
            split_key: b"q".to_vec(),
            new_region_id: 3,
            ..Default::default()
        };
        view.root.pending_changes.push(PendingChange {
            region_id: 2,
            planned_at_cursor: 4,
            change: Some(Change::Split(split.clone())),
        });
        assert_eq!(split_at_next(&view, b"q"), SplitAtNext::Execute(split));
        assert_eq!(
            split_at_next(&view, b"r"),
            SplitAtNext::Wait { region_id: 2 },
            "a split elsewhere in the region comes first"
        );
        view.root.pending_changes[0].change = Some(Change::PeerChange(PeerChangePlanned {
            region_id: 2,
            ..Default::default()
        }));
        assert_eq!(
            split_at_next(&view, b"q"),
            SplitAtNext::Wait { region_id: 2 }
        );
    }

    #[test]
    fn without_regions_there_is_nothing_to_split() {
        assert_eq!(
            split_at_next(&ClusterView::default(), b"a"),
            SplitAtNext::NoRegion
        );
    }
}
