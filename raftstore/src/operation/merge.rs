//! Merge of two adjacent regions whose replicas sit on the same stores,
//! store side. Data is keyed by user key in column families shared by every
//! region of a store, so a merge copies nothing: it moves the range boundary
//! once each store's source replica is final.
//!
//! 1. `Store.PrepareMerge` (source leader) proposes
//!    [`PrepareMergeCommand`] in the source. Its apply ([`decide_prepare`])
//!    writes the [`MergeState`] (`StateKind::Merging`) in the batch of the
//!    applied state; from that log index on the source applies every command
//!    as a refusal that writes only the applied index, and admission answers
//!    `RegionError.region_merging`. The source's epoch does not move, so the
//!    version the target gets matches root's `commit_merge`.
//! 2. `Store.WaitApplied` (every store of the source) answers once the
//!    local replica applied the PrepareMerge index.
//! 3. `Store.CommitMerge` (target leader) proposes [`CommitMergeCommand`]
//!    in the target. Each target replica waits until the local source
//!    replica applied the PrepareMerge entry and is frozen for it, then in
//!    one write batch grows over the source's range ([`decide_commit`]:
//!    version = max(source, target) + 1, conf_ver kept), takes the larger GC
//!    safe point and the sum of key counts, and replaces the source's
//!    descriptor, log and raft state by a tombstone and a [`MergedRecord`].
//!    The store then stops the source's group and forgets it. A target
//!    replica that missed the CommitMerge and installs a snapshot of the
//!    merged target retires its local source (frozen for this target) in
//!    the snapshot's batch the same way. The coordinator asks CommitMerge
//!    only once every source replica reached the PrepareMerge (step 2),
//!    since the source's group is gone after the merge and could no longer
//!    bring a lagging replica there.
//!
//! **Invariant:** a frozen source writes nothing but its applied index, so
//! what the target takes over on each store is exactly the source's data at
//! the PrepareMerge entry, the same on every store.

use std::collections::BTreeSet;
use std::time::Duration;

use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::{
    CommitMergeRequest, CommitMergeResponse, PrepareMergeRequest, PrepareMergeResponse,
    RegionDescriptor, RegionEpoch, RegionError, RegionMerging, RegionNotFound, WaitAppliedRequest,
    WaitAppliedResponse,
};
use serde::{Deserialize, Serialize};

use super::epoch_not_match;
use super::txn::propose_within;
use crate::command::{
    CommitMergeCommand, CommitMergeOutcome, EpochRecord, PrepareMergeCommand, PrepareMergeOutcome,
    RegionCommand,
};
use crate::config::{
    COMMIT_MERGE_WAIT_MS, REQUEST_TIMEOUT_MS, WAIT_APPLIED_POLL_MS, WAIT_APPLIED_TIMEOUT_MAX_MS,
};
use crate::error::RaftstoreError;
use crate::peer::{region_error, server_busy};
use crate::storage;
use crate::store::StoreNode;

/// How often the CommitMerge driver looks whether the source's group is
/// gone from this store after the merge applied.
const SOURCE_STOP_POLL_MS: u64 = 5;

/// What a source region is frozen for, persisted under
/// `StateKind::Merging` and carried in the region's snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeState {
    pub target_region_id: u64,
    /// The target as planned.
    #[serde(with = "crate::command::descriptor_hex")]
    pub target: RegionDescriptor,
    /// Log index of the PrepareMerge entry that froze the source.
    pub prepare_index: u64,
}

/// A replica merged away on this store, persisted under
/// `StateKind::Merged` after its log and state are gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedRecord {
    pub target_region_id: u64,
    /// The source as it was when it merged.
    #[serde(with = "crate::command::descriptor_hex")]
    pub source: RegionDescriptor,
}

/// What a PrepareMerge does to the source, decided without IO.
#[derive(Debug, Clone, PartialEq)]
pub enum PrepareDecision {
    /// Freeze now, with this state.
    Freeze { state: MergeState },
    /// Frozen for this very target already: the same answer again.
    AlreadyFrozen { state: MergeState },
    /// Frozen for another target: refused like every other command.
    Merging { target_region_id: u64 },
    /// The source is not at the epoch the merge was planned against.
    EpochNotMatch { current: RegionDescriptor },
    /// The merge can never apply to this source.
    Invalid { hint: String },
}

impl PrepareDecision {
    /// The outcome apply reports (`None` for a refusal as frozen, which
    /// travels as `RegionResponse::merging`).
    pub fn outcome(self, source: &RegionDescriptor) -> Option<PrepareMergeOutcome> {
        match self {
            PrepareDecision::Freeze { state } | PrepareDecision::AlreadyFrozen { state } => {
                Some(PrepareMergeOutcome::Frozen {
                    source: source.clone(),
                    prepare_index: state.prepare_index,
                })
            }
            PrepareDecision::Merging { .. } => None,
            PrepareDecision::EpochNotMatch { current } => {
                Some(PrepareMergeOutcome::EpochNotMatch { current })
            }
            PrepareDecision::Invalid { hint } => Some(PrepareMergeOutcome::Invalid { hint }),
        }
    }
}

fn store_ids(region: &RegionDescriptor) -> BTreeSet<u64> {
    region.peers.iter().map(|peer| peer.store_id).collect()
}

/// Adjacent (one's bounded end is the other's start) and on the same
/// stores, one replica each; `None` when so, else why not.
fn merge_refusal(source: &RegionDescriptor, target: &RegionDescriptor) -> Option<String> {
    if target.region_id == 0 || target.region_id == source.region_id {
        return Some(format!(
            "region {} cannot merge into region {}",
            source.region_id, target.region_id
        ));
    }
    // Compare bounded ends only: an empty start (-inf) and an empty end
    // (+inf) are different places even though both are empty.
    let source_left = !source.end_key.is_empty() && source.end_key == target.start_key;
    let target_left = !target.end_key.is_empty() && target.end_key == source.start_key;
    if !source_left && !target_left {
        return Some(format!(
            "region {} [{:?}, {:?}) and region {} [{:?}, {:?}) are not adjacent",
            source.region_id,
            source.start_key,
            source.end_key,
            target.region_id,
            target.start_key,
            target.end_key
        ));
    }
    let stores = store_ids(source);
    if stores != store_ids(target)
        || stores.len() != source.peers.len()
        || stores.len() != target.peers.len()
    {
        return Some(format!(
            "regions {} and {} must have one replica each on the same stores",
            source.region_id, target.region_id
        ));
    }
    None
}

/// Decides a PrepareMerge at log index `index` against the source as it is
/// now and the merge it is frozen for, if any.
pub fn decide_prepare(
    source: &RegionDescriptor,
    frozen: Option<&MergeState>,
    command: &PrepareMergeCommand,
    index: u64,
) -> PrepareDecision {
    if let Some(frozen) = frozen {
        if frozen.target_region_id == command.target.region_id {
            return PrepareDecision::AlreadyFrozen {
                state: frozen.clone(),
            };
        }
        return PrepareDecision::Merging {
            target_region_id: frozen.target_region_id,
        };
    }
    if EpochRecord::of(source.epoch.as_ref()) != command.expected_epoch {
        return PrepareDecision::EpochNotMatch {
            current: source.clone(),
        };
    }
    if let Some(hint) = merge_refusal(source, &command.target) {
        return PrepareDecision::Invalid { hint };
    }
    PrepareDecision::Freeze {
        state: MergeState {
            target_region_id: command.target.region_id,
            target: command.target.clone(),
            prepare_index: index,
        },
    }
}

/// What a CommitMerge does to the target, decided without IO (the wait for
/// the local source replica comes after a `Merge` decision).
#[derive(Debug, Clone, PartialEq)]
pub enum CommitDecision {
    /// Grow into this descriptor.
    Merge { region: RegionDescriptor },
    /// The target covers the source's range already.
    AlreadyMerged { region: RegionDescriptor },
    /// The target is not at the epoch the merge was planned against.
    EpochNotMatch { current: RegionDescriptor },
    /// The merge can never apply to this target.
    Invalid { hint: String },
}

impl CommitDecision {
    pub fn outcome(self) -> CommitMergeOutcome {
        match self {
            CommitDecision::Merge { region } | CommitDecision::AlreadyMerged { region } => {
                CommitMergeOutcome::Merged { region }
            }
            CommitDecision::EpochNotMatch { current } => {
                CommitMergeOutcome::EpochNotMatch { current }
            }
            CommitDecision::Invalid { hint } => CommitMergeOutcome::Invalid { hint },
        }
    }
}

/// True when `outer` covers all of `inner`'s range.
fn covers(outer: &RegionDescriptor, inner: &RegionDescriptor) -> bool {
    let start_inside = outer.start_key <= inner.start_key;
    let end_inside =
        outer.end_key.is_empty() || (!inner.end_key.is_empty() && inner.end_key <= outer.end_key);
    start_inside && end_inside
}

/// Decides a CommitMerge against the target as it is now.
pub fn decide_commit(target: &RegionDescriptor, command: &CommitMergeCommand) -> CommitDecision {
    let source = &command.source;
    if covers(target, source) {
        return CommitDecision::AlreadyMerged {
            region: target.clone(),
        };
    }
    if EpochRecord::of(target.epoch.as_ref()) != command.expected_epoch {
        return CommitDecision::EpochNotMatch {
            current: target.clone(),
        };
    }
    if let Some(hint) = merge_refusal(source, target) {
        return CommitDecision::Invalid { hint };
    }
    let source_is_right_of_target =
        !target.end_key.is_empty() && target.end_key == source.start_key;
    let (start_key, end_key) = if source_is_right_of_target {
        (target.start_key.clone(), source.end_key.clone())
    } else {
        (source.start_key.clone(), target.end_key.clone())
    };
    let target_epoch = target.epoch.unwrap_or_default();
    let source_epoch = source.epoch.unwrap_or_default();
    let epoch = RegionEpoch {
        version: target_epoch.version.max(source_epoch.version) + 1,
        conf_ver: target_epoch.conf_ver,
    };
    CommitDecision::Merge {
        region: RegionDescriptor {
            start_key,
            end_key,
            epoch: Some(epoch),
            ..target.clone()
        },
    }
}

fn region_not_found(region_id: u64) -> RegionError {
    region_error(RegionErrorKind::RegionNotFound(RegionNotFound {
        region_id,
    }))
}

/// `RegionMerging` for a source frozen for `target_region_id`.
pub(crate) fn region_merging(region_id: u64, target_region_id: u64) -> RegionError {
    region_error(RegionErrorKind::RegionMerging(RegionMerging {
        region_id,
        target_region_id,
    }))
}

fn prepare_refused(region_error: RegionError) -> PrepareMergeResponse {
    PrepareMergeResponse {
        region_error: Some(region_error),
        ..Default::default()
    }
}

fn commit_refused(region_error: RegionError) -> CommitMergeResponse {
    CommitMergeResponse {
        region_error: Some(region_error),
        ..Default::default()
    }
}

/// Serves `Store.PrepareMerge` at the source's leader: answers what is
/// decided locally already (frozen for this target, stale epoch, invalid),
/// otherwise proposes the PrepareMerge and answers once it applied here.
pub async fn prepare_merge(
    node: &StoreNode,
    request: PrepareMergeRequest,
) -> Result<PrepareMergeResponse, RaftstoreError> {
    let context = request
        .context
        .ok_or_else(|| RaftstoreError::InvalidArgument {
            hint: "prepare merge request carries no region context".into(),
        })?;
    let target = request
        .target
        .ok_or_else(|| RaftstoreError::InvalidArgument {
            hint: "prepare merge request names no target".into(),
        })?;
    let Some(peer) = node.peer(context.region_id) else {
        return Ok(prepare_refused(region_not_found(context.region_id)));
    };
    // Wakes a hibernating source: its followers must apply the entry soon.
    peer.wake_now();
    let command = PrepareMergeCommand {
        expected_epoch: EpochRecord::of(context.epoch.as_ref()),
        target,
    };
    let source = peer.descriptor();
    match decide_prepare(&source, peer.merge_state().as_ref(), &command, 0) {
        PrepareDecision::Freeze { .. } => {}
        PrepareDecision::AlreadyFrozen { state } => {
            return Ok(PrepareMergeResponse {
                region_error: None,
                source: Some(source),
                prepare_index: state.prepare_index,
            })
        }
        decided => {
            let outcome = decided.outcome(&source);
            return prepare_answer(node, &source, outcome);
        }
    }
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    let response =
        match propose_within(&peer, RegionCommand::prepare_merge(command), timeout).await? {
            Ok(response) => response,
            Err(region_error) => return Ok(prepare_refused(region_error)),
        };
    prepare_answer(node, &source, response.prepare_merge)
}

fn prepare_answer(
    node: &StoreNode,
    source: &RegionDescriptor,
    outcome: Option<PrepareMergeOutcome>,
) -> Result<PrepareMergeResponse, RaftstoreError> {
    match outcome {
        Some(PrepareMergeOutcome::Frozen {
            source,
            prepare_index,
        }) => Ok(PrepareMergeResponse {
            region_error: None,
            source: Some(source),
            prepare_index,
        }),
        Some(PrepareMergeOutcome::EpochNotMatch { current }) => {
            Ok(prepare_refused(epoch_not_match(node, current)))
        }
        Some(PrepareMergeOutcome::Invalid { hint }) => {
            Err(RaftstoreError::InvalidArgument { hint })
        }
        None => Err(RaftstoreError::Raft {
            region_id: source.region_id,
            hint: "a prepare merge command applied without an outcome".into(),
        }),
    }
}

/// Serves `Store.WaitApplied`: `reached` once the local replica applied
/// `index`, or not after min(`timeout_ms`, [`WAIT_APPLIED_TIMEOUT_MAX_MS`]).
/// A replica merged away here applied everything: reached.
pub async fn wait_applied(
    node: &StoreNode,
    request: WaitAppliedRequest,
) -> Result<WaitAppliedResponse, RaftstoreError> {
    let region_id = request.region_id;
    let timeout = Duration::from_millis(request.timeout_ms.min(WAIT_APPLIED_TIMEOUT_MAX_MS));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Some(peer) = node.peer(region_id) else {
            if storage::load_merged(node.db(), region_id)?.is_some() {
                return Ok(WaitAppliedResponse {
                    region_error: None,
                    reached: true,
                    applied_index: request.index,
                });
            }
            return Ok(WaitAppliedResponse {
                region_error: Some(region_not_found(region_id)),
                ..Default::default()
            });
        };
        // Keeps the region awake while someone waits for it to catch up.
        peer.touch();
        let applied_index = peer.applied_index();
        if applied_index >= request.index {
            return Ok(WaitAppliedResponse {
                region_error: None,
                reached: true,
                applied_index,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(WaitAppliedResponse {
                region_error: None,
                reached: false,
                applied_index,
            });
        }
        tokio::time::sleep(Duration::from_millis(WAIT_APPLIED_POLL_MS)).await;
    }
}

/// Serves `Store.CommitMerge` at the target's leader: answers what is
/// decided locally already (covering the source, stale epoch, invalid),
/// otherwise proposes the CommitMerge and answers once it applied here and
/// the source's group stopped here.
pub async fn commit_merge(
    node: &StoreNode,
    request: CommitMergeRequest,
) -> Result<CommitMergeResponse, RaftstoreError> {
    let context = request
        .context
        .ok_or_else(|| RaftstoreError::InvalidArgument {
            hint: "commit merge request carries no region context".into(),
        })?;
    let source = request
        .source
        .ok_or_else(|| RaftstoreError::InvalidArgument {
            hint: "commit merge request names no source".into(),
        })?;
    let Some(peer) = node.peer(context.region_id) else {
        return Ok(commit_refused(region_not_found(context.region_id)));
    };
    peer.wake_now();
    if let Some(state) = peer.merge_state() {
        return Ok(commit_refused(region_merging(
            context.region_id,
            state.target_region_id,
        )));
    }
    let source_id = source.region_id;
    let command = CommitMergeCommand {
        expected_epoch: EpochRecord::of(context.epoch.as_ref()),
        source,
        prepare_index: request.prepare_index,
    };
    match decide_commit(&peer.descriptor(), &command) {
        CommitDecision::Merge { .. } => {}
        decided => return commit_answer(node, decided.outcome()),
    }
    let timeout = Duration::from_millis(COMMIT_MERGE_WAIT_MS);
    let response =
        match propose_within(&peer, RegionCommand::commit_merge(command), timeout).await? {
            Ok(response) => response,
            Err(region_error) => return Ok(commit_refused(region_error)),
        };
    let Some(outcome) = response.commit_merge else {
        return Err(RaftstoreError::Raft {
            region_id: context.region_id,
            hint: "a commit merge command applied without an outcome".into(),
        });
    };
    if matches!(outcome, CommitMergeOutcome::Merged { .. })
        && !wait_for_source_stop(node, source_id).await
    {
        return Ok(commit_refused(server_busy(
            "the merge applied but the source's group still runs here",
        )));
    }
    commit_answer(node, outcome)
}

fn commit_answer(
    node: &StoreNode,
    outcome: CommitMergeOutcome,
) -> Result<CommitMergeResponse, RaftstoreError> {
    match outcome {
        CommitMergeOutcome::Merged { region } => Ok(CommitMergeResponse {
            region_error: None,
            region: Some(region),
        }),
        CommitMergeOutcome::EpochNotMatch { current } => {
            Ok(commit_refused(epoch_not_match(node, current)))
        }
        CommitMergeOutcome::Invalid { hint } => Err(RaftstoreError::InvalidArgument { hint }),
    }
}

/// Waits (bounded) until the store no longer runs the source's group, so a
/// caller told "merged" finds only the target here.
async fn wait_for_source_stop(node: &StoreNode, source_id: u64) -> bool {
    let waited = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), async {
        while node.peer(source_id).is_some() {
            tokio::time::sleep(Duration::from_millis(SOURCE_STOP_POLL_MS)).await;
        }
    });
    waited.await.is_ok()
}

#[cfg(test)]
mod tests {
    use arbor_proto::RegionPeer;

    use super::*;

    fn epoch(version: u64, conf_ver: u64) -> Option<RegionEpoch> {
        Some(RegionEpoch { version, conf_ver })
    }

    fn region(region_id: u64, start: &str, end: &str, version: u64) -> RegionDescriptor {
        RegionDescriptor {
            region_id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: epoch(version, 2),
            peers: (1..=3)
                .map(|store_id| RegionPeer {
                    peer_id: region_id * 10 + store_id,
                    store_id,
                })
                .collect(),
        }
    }

    fn prepare(source: &RegionDescriptor, target: &RegionDescriptor) -> PrepareMergeCommand {
        PrepareMergeCommand {
            expected_epoch: EpochRecord::of(source.epoch.as_ref()),
            target: target.clone(),
        }
    }

    fn commit(target: &RegionDescriptor, source: &RegionDescriptor) -> CommitMergeCommand {
        CommitMergeCommand {
            expected_epoch: EpochRecord::of(target.epoch.as_ref()),
            source: source.clone(),
            prepare_index: 7,
        }
    }

    /// Root's `commit_merge` version rule, restated: max + 1, conf_ver of
    /// the target.
    fn root_epoch(target: &RegionDescriptor, source: &RegionDescriptor) -> Option<RegionEpoch> {
        let (t, s) = (
            target.epoch.unwrap_or_default(),
            source.epoch.unwrap_or_default(),
        );
        epoch(t.version.max(s.version) + 1, t.conf_ver)
    }

    #[test]
    fn prepare_freezes_an_adjacent_source_at_its_own_log_index() {
        let source = region(2, "m", "", 4);
        let target = region(1, "", "m", 3);
        let decision = decide_prepare(&source, None, &prepare(&source, &target), 42);
        assert_eq!(
            decision,
            PrepareDecision::Freeze {
                state: MergeState {
                    target_region_id: 1,
                    target: target.clone(),
                    prepare_index: 42,
                }
            }
        );
        let Some(PrepareMergeOutcome::Frozen {
            source: frozen,
            prepare_index,
        }) = decision.outcome(&source)
        else {
            panic!("a freeze reports the frozen source");
        };
        assert_eq!(
            frozen.epoch, source.epoch,
            "prepare does not bump the epoch"
        );
        assert_eq!(prepare_index, 42);
        // The source on the left of the target works the same.
        let left_source = region(2, "", "m", 4);
        let right_target = region(1, "m", "", 3);
        assert!(matches!(
            decide_prepare(&left_source, None, &prepare(&left_source, &right_target), 5),
            PrepareDecision::Freeze { .. }
        ));
    }

    #[test]
    fn prepare_refuses_a_stale_epoch() {
        let source = region(2, "m", "x", 4);
        let target = region(1, "c", "m", 3);
        for (version, conf_ver) in [(3, 2), (5, 2), (4, 1), (4, 3)] {
            let mut command = prepare(&source, &target);
            command.expected_epoch = EpochRecord { version, conf_ver };
            assert_eq!(
                decide_prepare(&source, None, &command, 9),
                PrepareDecision::EpochNotMatch {
                    current: source.clone()
                },
                "epoch ({version}, {conf_ver})"
            );
        }
    }

    #[test]
    fn prepare_for_the_same_target_again_answers_the_first_prepare_index() {
        let source = region(2, "m", "x", 4);
        let target = region(1, "c", "m", 3);
        let PrepareDecision::Freeze { state } =
            decide_prepare(&source, None, &prepare(&source, &target), 9)
        else {
            panic!("a valid prepare freezes");
        };
        assert_eq!(
            decide_prepare(&source, Some(&state), &prepare(&source, &target), 30),
            PrepareDecision::AlreadyFrozen {
                state: state.clone()
            },
            "same target: the index of the first prepare"
        );
    }

    #[test]
    fn prepare_for_another_target_is_refused_as_merging() {
        let source = region(2, "m", "x", 4);
        let target = region(1, "c", "m", 3);
        let other = region(3, "x", "z", 3);
        let PrepareDecision::Freeze { state } =
            decide_prepare(&source, None, &prepare(&source, &target), 9)
        else {
            panic!("a valid prepare freezes");
        };
        let decision = decide_prepare(&source, Some(&state), &prepare(&source, &other), 30);
        assert_eq!(
            decision,
            PrepareDecision::Merging {
                target_region_id: 1
            }
        );
        assert_eq!(decision.outcome(&source), None);
    }

    #[test]
    fn prepare_refuses_a_target_that_is_not_adjacent() {
        let source = region(2, "m", "x", 4);
        for target in [
            region(1, "c", "l", 3),
            region(1, "y", "z", 3),
            region(1, "a", "n", 3),
            region(2, "c", "m", 3),
        ] {
            assert!(
                matches!(
                    decide_prepare(&source, None, &prepare(&source, &target), 9),
                    PrepareDecision::Invalid { .. }
                ),
                "{target:?}"
            );
        }
        // Both ends open: the empty start of one and the empty end of the
        // other are not the same place.
        let whole_left = region(2, "", "m", 4);
        let wrapped = region(1, "x", "", 3);
        assert!(matches!(
            decide_prepare(&whole_left, None, &prepare(&whole_left, &wrapped), 9),
            PrepareDecision::Invalid { .. }
        ));
    }

    #[test]
    fn prepare_refuses_a_target_on_other_stores() {
        let source = region(2, "m", "x", 4);
        let mut elsewhere = region(1, "c", "m", 3);
        elsewhere.peers[0].store_id = 9;
        let mut fewer = region(1, "c", "m", 3);
        fewer.peers.pop();
        let mut doubled = region(1, "c", "m", 3);
        doubled.peers.push(RegionPeer {
            peer_id: 99,
            store_id: 1,
        });
        for target in [elsewhere, fewer, doubled] {
            assert!(
                matches!(
                    decide_prepare(&source, None, &prepare(&source, &target), 9),
                    PrepareDecision::Invalid { .. }
                ),
                "{target:?}"
            );
        }
    }

    #[test]
    fn commit_grows_a_left_target_over_a_source_on_its_right() {
        let target = region(1, "c", "m", 3);
        let source = region(2, "m", "", 5);
        let CommitDecision::Merge { region: merged } =
            decide_commit(&target, &commit(&target, &source))
        else {
            panic!("a valid commit merges");
        };
        assert_eq!(merged.region_id, 1);
        assert_eq!(merged.start_key, b"c");
        assert_eq!(merged.end_key, b"", "the open end comes from the source");
        assert_eq!(merged.peers, target.peers, "the target's peers stay");
        assert_eq!(merged.epoch, epoch(6, 2));
        assert_eq!(merged.epoch, root_epoch(&target, &source));
    }

    #[test]
    fn commit_grows_a_right_target_over_a_source_on_its_left() {
        let target = region(1, "m", "x", 7);
        let source = region(2, "", "m", 4);
        let CommitDecision::Merge { region: merged } =
            decide_commit(&target, &commit(&target, &source))
        else {
            panic!("a valid commit merges");
        };
        assert_eq!(
            merged.start_key, b"",
            "the open start comes from the source"
        );
        assert_eq!(merged.end_key, b"x");
        assert_eq!(merged.epoch, epoch(8, 2));
        assert_eq!(merged.epoch, root_epoch(&target, &source));
    }

    #[test]
    fn commit_version_matches_root_over_generated_epochs() {
        for target_version in 1..6 {
            for source_version in 1..6 {
                let target = region(1, "c", "m", target_version);
                let mut source = region(2, "m", "x", source_version);
                source.epoch = epoch(source_version, 9);
                let CommitDecision::Merge { region: merged } =
                    decide_commit(&target, &commit(&target, &source))
                else {
                    panic!("a valid commit merges");
                };
                assert_eq!(merged.epoch, root_epoch(&target, &source));
                assert_eq!(merged.epoch.unwrap_or_default().conf_ver, 2);
            }
        }
    }

    #[test]
    fn commit_again_after_the_merge_answers_the_merged_region() {
        let target = region(1, "c", "m", 3);
        let source = region(2, "m", "x", 5);
        let command = commit(&target, &source);
        let CommitDecision::Merge { region: merged } = decide_commit(&target, &command) else {
            panic!("a valid commit merges");
        };
        assert_eq!(
            decide_commit(&merged, &command),
            CommitDecision::AlreadyMerged {
                region: merged.clone()
            },
            "the same command against the merged target (old epoch)"
        );
    }

    #[test]
    fn commit_refuses_stale_epochs_and_non_adjacent_or_foreign_sources() {
        let target = region(1, "c", "m", 3);
        let source = region(2, "m", "x", 5);
        let mut stale = commit(&target, &source);
        stale.expected_epoch = EpochRecord {
            version: 2,
            conf_ver: 2,
        };
        assert_eq!(
            decide_commit(&target, &stale),
            CommitDecision::EpochNotMatch {
                current: target.clone()
            }
        );
        let gap = region(2, "n", "x", 5);
        let mut elsewhere = source.clone();
        elsewhere.peers[2].store_id = 8;
        for source in [gap, elsewhere] {
            assert!(
                matches!(
                    decide_commit(&target, &commit(&target, &source)),
                    CommitDecision::Invalid { .. }
                ),
                "{source:?}"
            );
        }
    }

    #[test]
    fn merge_records_round_trip_through_json() {
        let state = MergeState {
            target_region_id: 1,
            target: region(1, "c", "m", 3),
            prepare_index: 12,
        };
        let json = serde_json::to_vec(&state).expect("encoding a merge state");
        assert_eq!(
            serde_json::from_slice::<MergeState>(&json).expect("decoding"),
            state
        );
        let merged = MergedRecord {
            target_region_id: 1,
            source: region(2, "m", "", 5),
        };
        let json = serde_json::to_vec(&merged).expect("encoding a merged record");
        assert_eq!(
            serde_json::from_slice::<MergedRecord>(&json).expect("decoding"),
            merged
        );
    }
}
