//! The merge driver: finishes a `MergePlanned` pending in root, on the lease
//! holder. A merge folds the source region into its adjacent target (same
//! stores) in four steps, each idempotent at the stores, so a new lease
//! holder simply starts again from the first:
//!
//! 1. `PrepareMerge` at the source's leader (planned source epoch, planned
//!    target): the source freezes at a log index, `prepare_index`.
//! 2. `WaitApplied(source, prepare_index)` at every store holding a source
//!    replica, until each has applied it (so each replica's data is final).
//! 3. `CommitMerge` at the target's leader: every target replica grows over
//!    the source's range and drops the local source replica.
//! 4. `MergeCommitted` proposed to root under the lease fence.
//!
//! Invariant: a merge is cancelled in root (`MergeCancelled`) only when
//! `PrepareMerge` is refused as invalid or at another epoch — the source was
//! never frozen. Once a `PrepareMerge` may have succeeded, the source can
//! serve nothing more, so the merge only ever goes forward (a store that is
//! down just means "try again next tick").
//!
//! The decisions (`merge_next`, `prepare_decision`, `commit_decision`) are
//! pure and tested without sockets; the async functions only do the I/O.

use arbor_proto::root_event::Kind;
use arbor_proto::{
    region_error, CommitMergeRequest, CommitMergeResponse, MergeCancelled, MergeCommitted,
    MergePlanned, PrepareMergeRequest, PrepareMergeResponse, RegionContext, RegionDescriptor,
    WaitAppliedRequest,
};

use crate::error::CoordinatorError;
use crate::schedule::{leader_client, propose, store_client, store_failed, timed};
use crate::service::Coordinator;
use crate::view::ClusterView;

/// How long one `WaitApplied` call lets a store wait for the source replica
/// to apply `prepare_index` before it answers "not yet".
pub const WAIT_APPLIED_TIMEOUT_MS: u64 = 2_000;
/// `WaitApplied` calls per store within one attempt: a replica that is still
/// behind after these is left for the next tick (bounds one tick's work
/// while a store is down).
pub const WAIT_APPLIED_ROUNDS_MAX: usize = 3;
/// Deadline of a `PrepareMerge` or `CommitMerge` call: one raft command
/// (CommitMerge may wait for the local source replica to catch up).
pub const MERGE_CALL_TIMEOUT_MS: u64 = 10_000;
/// Deadline of one `WaitApplied` call: its own wait plus a round trip.
pub const WAIT_APPLIED_CALL_TIMEOUT_MS: u64 = WAIT_APPLIED_TIMEOUT_MS + 3_000;

const _: () = assert!(WAIT_APPLIED_TIMEOUT_MS < WAIT_APPLIED_CALL_TIMEOUT_MS);

/// What a pending merge needs next, from the view alone.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeNext {
    /// The target's leader already reports the source's range inside the
    /// target: the stores merged (an earlier holder's answer was lost), so
    /// only root's commit is missing.
    Commit,
    /// Run the store steps from `PrepareMerge` on: the source as root has it.
    Execute { source: RegionDescriptor },
    /// The source is not live in root: nothing to do (root's view moved on;
    /// a fresh view settles it).
    Gone,
}

pub fn merge_next(view: &ClusterView, merge: &MergePlanned) -> MergeNext {
    let Some(source) = view
        .root
        .regions
        .iter()
        .find(|r| r.region_id == merge.source_region_id)
    else {
        return MergeNext::Gone;
    };
    let target_at_leader = view
        .leader_of(merge.target_region_id)
        .and_then(|heartbeat| heartbeat.region.as_ref());
    match target_at_leader {
        Some(target) if merged_into(target, source, merge) => MergeNext::Commit,
        _ => MergeNext::Execute {
            source: source.clone(),
        },
    }
}

/// Whether `target`, as a store reports it, is the merge's result: it
/// covers the source's range at an epoch past the planned one (a stale
/// report from before a split may cover the range at an older epoch).
pub fn merged_into(
    target: &RegionDescriptor,
    source: &RegionDescriptor,
    merge: &MergePlanned,
) -> bool {
    let version = |epoch: Option<arbor_proto::RegionEpoch>| epoch.unwrap_or_default().version;
    covers(target, source) && version(target.epoch) > version(merge.target_epoch)
}

/// Whether `region`'s range contains all of `inner`'s.
pub fn covers(region: &RegionDescriptor, inner: &RegionDescriptor) -> bool {
    let starts_before = region.start_key <= inner.start_key;
    let ends_after =
        region.end_key.is_empty() || (!inner.end_key.is_empty() && inner.end_key <= region.end_key);
    starts_before && ends_after
}

/// What a `PrepareMerge` answer means for the merge.
#[derive(Debug, Clone, PartialEq)]
pub enum PrepareDecision {
    /// The source is frozen at `prepare_index`: go on to WaitApplied.
    Frozen {
        source: RegionDescriptor,
        prepare_index: u64,
    },
    /// The source was never frozen and never will be for this plan: cancel
    /// the merge in root.
    Cancel { reason: String },
    /// Not now (no leader, a store down, an answer lost): next tick.
    Retry { hint: String },
}

/// Classifies `PrepareMerge`'s outcome: an answer, or the gRPC status code
/// and message of a failed call.
pub fn prepare_decision(
    answer: Result<PrepareMergeResponse, (tonic::Code, String)>,
) -> PrepareDecision {
    let answer = match answer {
        Ok(answer) => answer,
        // The store refused the plan itself (not adjacent, other stores,
        // ...): it froze nothing.
        Err((tonic::Code::InvalidArgument, message)) => {
            return PrepareDecision::Cancel {
                reason: format!("the source's leader refused it: {message}"),
            }
        }
        Err((code, message)) => {
            return PrepareDecision::Retry {
                hint: format!("PrepareMerge failed: {code:?}: {message}"),
            }
        }
    };
    match answer.region_error.and_then(|e| e.kind) {
        None => match answer.source {
            Some(source) if answer.prepare_index > 0 => PrepareDecision::Frozen {
                source,
                prepare_index: answer.prepare_index,
            },
            _ => PrepareDecision::Retry {
                hint: "PrepareMerge answered without the frozen source or its index".into(),
            },
        },
        // A source frozen for this very merge answers success (the store's
        // PrepareMerge is idempotent), so a mismatch means the source is at
        // another epoch than planned and was never frozen for this plan.
        Some(region_error::Kind::EpochNotMatch(mismatch)) => PrepareDecision::Cancel {
            reason: format!(
                "the source is not at the planned epoch (store has {:?})",
                mismatch.current
            ),
        },
        Some(other) => PrepareDecision::Retry {
            hint: format!("PrepareMerge not done yet: {other:?}"),
        },
    }
}

/// What a `CommitMerge` answer means for the merge.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitDecision {
    /// The target covers the source at its leader: commit in root.
    Merged(RegionDescriptor),
    /// Next tick (starting again from PrepareMerge, which is idempotent).
    Retry { hint: String },
}

pub fn commit_decision(
    answer: CommitMergeResponse,
    source: &RegionDescriptor,
    merge: &MergePlanned,
) -> CommitDecision {
    let current = match answer.region_error.and_then(|e| e.kind) {
        None => answer.region,
        // An epoch past the plan's may be the merge itself, already applied.
        Some(region_error::Kind::EpochNotMatch(mismatch)) => mismatch.current,
        Some(other) => {
            return CommitDecision::Retry {
                hint: format!("CommitMerge not done yet: {other:?}"),
            }
        }
    };
    match current {
        Some(target) if merged_into(&target, source, merge) => CommitDecision::Merged(target),
        current => CommitDecision::Retry {
            hint: format!("the target's leader does not cover the source yet: {current:?}"),
        },
    }
}

/// Drives one pending merge as far as it goes now: committed in root,
/// cancelled in root (only if the source never froze), or an error saying
/// what it waits for (the next tick tries again).
pub async fn execute_merge(
    coordinator: &Coordinator,
    merge: &MergePlanned,
) -> Result<(), CoordinatorError> {
    // Decided before any await: the view's lock guard must not live across one.
    let next = merge_next(&coordinator.view(), merge);
    let source = match next {
        MergeNext::Commit => return commit_merge(coordinator, merge).await,
        MergeNext::Gone => {
            return Err(CoordinatorError::NotReady {
                hint: format!(
                    "source region {} of a pending merge is not in the view",
                    merge.source_region_id
                ),
            })
        }
        MergeNext::Execute { source } => source,
    };
    let target = coordinator
        .view()
        .root
        .regions
        .iter()
        .find(|r| r.region_id == merge.target_region_id)
        .cloned()
        .ok_or(CoordinatorError::NotReady {
            hint: format!(
                "target region {} of a pending merge is not in the view",
                merge.target_region_id
            ),
        })?;
    let (frozen, prepare_index) = match prepare(coordinator, merge, &target).await? {
        PrepareDecision::Frozen {
            source,
            prepare_index,
        } => (source, prepare_index),
        PrepareDecision::Cancel { reason } => {
            return cancel_merge(coordinator, merge, &reason).await
        }
        PrepareDecision::Retry { hint } => return Err(CoordinatorError::NotReady { hint }),
    };
    wait_applied_everywhere(coordinator, &frozen, prepare_index).await?;
    let mut store = leader_client(coordinator, merge.target_region_id)?;
    let request = timed(
        CommitMergeRequest {
            context: Some(RegionContext {
                region_id: merge.target_region_id,
                epoch: merge.target_epoch,
            }),
            source: Some(frozen),
            prepare_index,
        },
        MERGE_CALL_TIMEOUT_MS,
    );
    let answer = store
        .commit_merge(request)
        .await
        .map_err(store_failed)?
        .into_inner();
    match commit_decision(answer, &source, merge) {
        CommitDecision::Merged(_) => commit_merge(coordinator, merge).await,
        CommitDecision::Retry { hint } => Err(CoordinatorError::NotReady { hint }),
    }
}

async fn prepare(
    coordinator: &Coordinator,
    merge: &MergePlanned,
    target: &RegionDescriptor,
) -> Result<PrepareDecision, CoordinatorError> {
    let mut store = leader_client(coordinator, merge.source_region_id)?;
    let request = timed(
        PrepareMergeRequest {
            context: Some(RegionContext {
                region_id: merge.source_region_id,
                epoch: merge.source_epoch,
            }),
            // The target as planned: root's copy still has the planned epoch
            // (the pending merge keeps every other change off it).
            target: Some(RegionDescriptor {
                epoch: merge.target_epoch,
                ..target.clone()
            }),
        },
        MERGE_CALL_TIMEOUT_MS,
    );
    let answer = store
        .prepare_merge(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| (status.code(), status.message().to_string()));
    Ok(prepare_decision(answer))
}

/// Asks every store holding a source replica until each has applied
/// `prepare_index`; at most [`WAIT_APPLIED_ROUNDS_MAX`] calls per store.
async fn wait_applied_everywhere(
    coordinator: &Coordinator,
    source: &RegionDescriptor,
    prepare_index: u64,
) -> Result<(), CoordinatorError> {
    for peer in &source.peers {
        let mut reached = false;
        let mut last = String::new();
        for _ in 0..WAIT_APPLIED_ROUNDS_MAX {
            match wait_applied_once(coordinator, peer.store_id, source.region_id, prepare_index)
                .await
            {
                Ok(true) => {
                    reached = true;
                    break;
                }
                Ok(false) => last = "not applied yet".into(),
                // A store that does not answer is not waited for any longer
                // this tick; the merge stays pending.
                Err(error) => {
                    last = error.to_string();
                    break;
                }
            }
        }
        if !reached {
            return Err(CoordinatorError::NotReady {
                hint: format!(
                    "store {} has not applied region {}'s PrepareMerge at index {prepare_index}: {last}",
                    peer.store_id, source.region_id
                ),
            });
        }
    }
    Ok(())
}

async fn wait_applied_once(
    coordinator: &Coordinator,
    store_id: u64,
    region_id: u64,
    index: u64,
) -> Result<bool, CoordinatorError> {
    let mut store = store_client(coordinator, store_id)?;
    let request = timed(
        WaitAppliedRequest {
            region_id,
            index,
            timeout_ms: WAIT_APPLIED_TIMEOUT_MS,
        },
        WAIT_APPLIED_CALL_TIMEOUT_MS,
    );
    let answer = store
        .wait_applied(request)
        .await
        .map_err(store_failed)?
        .into_inner();
    if let Some(error) = answer.region_error {
        return Err(CoordinatorError::NotReady {
            hint: format!("WaitApplied at store {store_id}: {error:?}"),
        });
    }
    Ok(answer.reached)
}

async fn commit_merge(
    coordinator: &Coordinator,
    merge: &MergePlanned,
) -> Result<(), CoordinatorError> {
    propose(
        coordinator,
        Kind::MergeCommitted(MergeCommitted {
            source_region_id: merge.source_region_id,
        }),
    )
    .await?;
    tracing::info!(
        source_region_id = merge.source_region_id,
        target_region_id = merge.target_region_id,
        "merge committed"
    );
    Ok(())
}

async fn cancel_merge(
    coordinator: &Coordinator,
    merge: &MergePlanned,
    reason: &str,
) -> Result<(), CoordinatorError> {
    propose(
        coordinator,
        Kind::MergeCancelled(MergeCancelled {
            source_region_id: merge.source_region_id,
            reason: reason.to_string(),
        }),
    )
    .await?;
    tracing::warn!(
        source_region_id = merge.source_region_id,
        target_region_id = merge.target_region_id,
        reason,
        "merge cancelled"
    );
    Ok(())
}

/// Plans in root merging `source` into its adjacent `target` at their
/// current epochs (root checks adjacency, stores and pending changes).
pub(crate) async fn plan_merge(
    coordinator: &Coordinator,
    source: &RegionDescriptor,
    target: &RegionDescriptor,
) -> Result<MergePlanned, CoordinatorError> {
    let planned = MergePlanned {
        source_region_id: source.region_id,
        source_epoch: source.epoch,
        target_region_id: target.region_id,
        target_epoch: target.epoch,
    };
    propose(coordinator, Kind::MergePlanned(planned)).await?;
    tracing::info!(
        source_region_id = source.region_id,
        target_region_id = target.region_id,
        "merge planned"
    );
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::{region_on, view_of, NOW_MS};
    use arbor_proto::{EpochNotMatch, RegionEpoch, RegionError, RegionNotFound};

    fn left() -> RegionDescriptor {
        region_on(1, b"", b"m", &[1, 2, 3])
    }

    fn right() -> RegionDescriptor {
        region_on(2, b"m", b"", &[1, 2, 3])
    }

    fn planned() -> MergePlanned {
        MergePlanned {
            source_region_id: 2,
            source_epoch: right().epoch,
            target_region_id: 1,
            target_epoch: left().epoch,
        }
    }

    fn merged() -> RegionDescriptor {
        RegionDescriptor {
            end_key: Vec::new(),
            epoch: Some(RegionEpoch {
                version: 2,
                conf_ver: 1,
            }),
            ..left()
        }
    }

    fn region_error(kind: region_error::Kind) -> Option<RegionError> {
        Some(RegionError { kind: Some(kind) })
    }

    #[test]
    fn a_pending_merge_runs_the_store_steps_until_the_target_covers_the_source() {
        let view = view_of(
            &[1, 2, 3],
            vec![left(), right()],
            &[1, 1],
            &[1, 2, 3],
            NOW_MS,
        );
        assert_eq!(
            merge_next(&view, &planned()),
            MergeNext::Execute { source: right() }
        );
        // The stores merged but root has not heard: commit only.
        let mut view = view_of(
            &[1, 2, 3],
            vec![merged(), right()],
            &[1, 1],
            &[1, 2, 3],
            NOW_MS,
        );
        view.root.regions = vec![left(), right()];
        assert_eq!(merge_next(&view, &planned()), MergeNext::Commit);
        view.root.regions = vec![merged()];
        assert_eq!(merge_next(&view, &planned()), MergeNext::Gone);
        // A stale report from before the split that made the two regions
        // covers the source too, at an older epoch: no commit from that.
        let unsplit = RegionDescriptor {
            end_key: Vec::new(),
            epoch: Some(RegionEpoch {
                version: 0,
                conf_ver: 1,
            }),
            ..left()
        };
        let mut view = view_of(
            &[1, 2, 3],
            vec![unsplit, right()],
            &[1, 1],
            &[1, 2, 3],
            NOW_MS,
        );
        view.root.regions = vec![left(), right()];
        assert_eq!(
            merge_next(&view, &planned()),
            MergeNext::Execute { source: right() }
        );
    }

    #[test]
    fn covering_compares_bounded_ends_only() {
        assert!(covers(&merged(), &right()));
        assert!(covers(&merged(), &left()));
        assert!(!covers(&left(), &right()));
        assert!(
            !covers(&right(), &left()),
            "an empty start is -inf, not +inf"
        );
        let middle = region_on(3, b"c", b"f", &[1]);
        assert!(covers(&region_on(4, b"a", b"f", &[1]), &middle));
        assert!(!covers(&region_on(4, b"a", b"e", &[1]), &middle));
    }

    #[test]
    fn only_a_refused_prepare_cancels_the_merge() {
        let frozen = PrepareMergeResponse {
            region_error: None,
            source: Some(right()),
            prepare_index: 12,
        };
        assert_eq!(
            prepare_decision(Ok(frozen)),
            PrepareDecision::Frozen {
                source: right(),
                prepare_index: 12
            }
        );
        let mismatch = PrepareMergeResponse {
            region_error: region_error(region_error::Kind::EpochNotMatch(EpochNotMatch::default())),
            ..Default::default()
        };
        assert!(matches!(
            prepare_decision(Ok(mismatch)),
            PrepareDecision::Cancel { .. }
        ));
        assert!(matches!(
            prepare_decision(Err((tonic::Code::InvalidArgument, "not adjacent".into()))),
            PrepareDecision::Cancel { .. }
        ));
        // Anything that may hide a successful freeze goes forward later.
        for unsure in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Unimplemented,
            tonic::Code::Internal,
        ] {
            assert!(
                matches!(
                    prepare_decision(Err((unsure, "x".into()))),
                    PrepareDecision::Retry { .. }
                ),
                "{unsure:?}"
            );
        }
        let not_found = PrepareMergeResponse {
            region_error: region_error(region_error::Kind::RegionNotFound(RegionNotFound {
                region_id: 2,
            })),
            ..Default::default()
        };
        assert!(matches!(
            prepare_decision(Ok(not_found)),
            PrepareDecision::Retry { .. }
        ));
        assert!(
            matches!(
                prepare_decision(Ok(PrepareMergeResponse::default())),
                PrepareDecision::Retry { .. }
            ),
            "an answer without an index is not a freeze"
        );
    }

    #[test]
    fn a_commit_counts_once_the_target_covers_the_source() {
        let done = CommitMergeResponse {
            region_error: None,
            region: Some(merged()),
        };
        assert_eq!(
            commit_decision(done, &right(), &planned()),
            CommitDecision::Merged(merged())
        );
        let already = CommitMergeResponse {
            region_error: region_error(region_error::Kind::EpochNotMatch(EpochNotMatch {
                current: Some(merged()),
                regions: vec![merged()],
            })),
            region: None,
        };
        assert_eq!(
            commit_decision(already, &right(), &planned()),
            CommitDecision::Merged(merged()),
            "a commit that already applied answers a newer epoch"
        );
        let unmerged = CommitMergeResponse {
            region_error: None,
            region: Some(left()),
        };
        assert!(matches!(
            commit_decision(unmerged, &right(), &planned()),
            CommitDecision::Retry { .. }
        ));
        let other = CommitMergeResponse {
            region_error: region_error(region_error::Kind::EpochNotMatch(EpochNotMatch {
                current: Some(left()),
                regions: vec![],
            })),
            region: None,
        };
        assert!(matches!(
            commit_decision(other, &right(), &planned()),
            CommitDecision::Retry { .. }
        ));
    }
}
