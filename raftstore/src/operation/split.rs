//! Region split: a raft admin command in the parent region.
//!
//! The leader proposes a [`SplitCommand`]; every replica applies it at the
//! same log index, in one RocksDB write batch: the parent shrinks to
//! `[start, split_key)` with its epoch version bumped, the new region's
//! descriptor (`[split_key, end)`, same new epoch, `new_peers`), its initial
//! raft log and applied state are written, and then the store starts the new
//! region's raft group. Data is not copied: it already sits in the shared
//! data column family, keyed by user key.
//!
//! **Invariant:** every replica initializes the new group's log the same
//! way — one membership entry at log id `(term 0, node 0, index 0)` naming
//! the new peers with the parent's node records — exactly what
//! `Raft::initialize` would write on each of them, so the replicas agree
//! without a snapshot and without anyone calling `initialize`.
//!
//! The decision ([`decide_split`]) is pure: boundaries, epochs and
//! idempotency, tested below; [`split_region`] is the service driver.

use std::collections::BTreeSet;
use std::time::Duration;

use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::{RegionDescriptor, RegionEpoch, RegionError, RegionNotFound};
use arbor_proto::{SplitRegionRequest, SplitRegionResponse};

use super::{check_key_size, epoch_not_match, txn::propose};
use crate::command::{EpochRecord, PeerRecord, RegionCommand, SplitCommand, SplitOutcome};
use crate::config::{REGIONS_PER_STORE_MAX, REQUEST_TIMEOUT_MS, SPLIT_PEERS_MAX};
use crate::error::RaftstoreError;
use crate::peer::{region_error, server_busy};
use crate::store::StoreNode;

/// How often the split driver looks whether the new region's group runs.
const CHILD_START_POLL_MS: u64 = 5;

/// What a split command does to a region, decided without IO.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitDecision {
    /// Split now into these two descriptors.
    Split {
        left: RegionDescriptor,
        right: RegionDescriptor,
    },
    /// This very split happened already; these are the halves now.
    AlreadySplit {
        left: RegionDescriptor,
        right: RegionDescriptor,
    },
    /// The region is not at the epoch the split was planned against.
    EpochNotMatch { current: RegionDescriptor },
    /// The split can never apply to this region.
    Invalid { hint: String },
}

impl SplitDecision {
    /// The outcome apply reports for this decision.
    pub fn outcome(self) -> SplitOutcome {
        match self {
            SplitDecision::Split { left, right } | SplitDecision::AlreadySplit { left, right } => {
                SplitOutcome::Split { left, right }
            }
            SplitDecision::EpochNotMatch { current } => SplitOutcome::EpochNotMatch { current },
            SplitDecision::Invalid { hint } => SplitOutcome::Invalid { hint },
        }
    }
}

fn stores_of<'a>(store_ids: impl Iterator<Item = &'a u64>) -> BTreeSet<u64> {
    store_ids.copied().collect()
}

/// Decides `split` against `region` as it is now; `existing_new_region` is
/// the local descriptor of `split.new_region_id`, if this store has one.
pub fn decide_split(
    region: &RegionDescriptor,
    split: &SplitCommand,
    existing_new_region: Option<&RegionDescriptor>,
) -> SplitDecision {
    let key = split.split_key.as_slice();
    if let Some(existing) = existing_new_region {
        if existing.start_key == key && region.end_key == key {
            return SplitDecision::AlreadySplit {
                left: region.clone(),
                right: existing.clone(),
            };
        }
    }
    if EpochRecord::of(region.epoch.as_ref()) != split.expected_epoch {
        return SplitDecision::EpochNotMatch {
            current: region.clone(),
        };
    }
    let invalid = |hint: String| SplitDecision::Invalid { hint };
    if existing_new_region.is_some() || split.new_region_id == region.region_id {
        return invalid(format!("region id {} is already used", split.new_region_id));
    }
    if split.new_region_id == 0 {
        return invalid("the new region id is zero".into());
    }
    let inside = !key.is_empty()
        && region.start_key.as_slice() < key
        && (region.end_key.is_empty() || key < region.end_key.as_slice());
    if !inside {
        return invalid(format!(
            "split key {key:?} is not strictly inside region {} [{:?}, {:?})",
            region.region_id, region.start_key, region.end_key
        ));
    }
    let new_stores = stores_of(split.new_peers.iter().map(|peer| &peer.store_id));
    let stores = stores_of(region.peers.iter().map(|peer| &peer.store_id));
    if new_stores != stores || split.new_peers.len() != region.peers.len() {
        return invalid(format!(
            "the new region's peers must sit on the region's stores {stores:?}, one each"
        ));
    }
    let epoch = region.epoch.unwrap_or_default();
    let epoch = RegionEpoch {
        version: epoch.version + 1,
        conf_ver: epoch.conf_ver,
    };
    let left = RegionDescriptor {
        end_key: key.to_vec(),
        epoch: Some(epoch),
        ..region.clone()
    };
    let right = RegionDescriptor {
        region_id: split.new_region_id,
        start_key: key.to_vec(),
        end_key: region.end_key.clone(),
        epoch: Some(epoch),
        peers: split.new_peers_proto(),
    };
    SplitDecision::Split { left, right }
}

fn validate_request(request: &SplitRegionRequest) -> Result<(), RaftstoreError> {
    check_key_size(&request.split_key)?;
    if request.new_peers.len() > SPLIT_PEERS_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "{} new peers exceed the {SPLIT_PEERS_MAX}-peer limit",
                request.new_peers.len()
            ),
        });
    }
    Ok(())
}

fn refused(region_error: RegionError) -> SplitRegionResponse {
    SplitRegionResponse {
        region_error: Some(region_error),
        ..Default::default()
    }
}

fn done(left: RegionDescriptor, right: RegionDescriptor) -> SplitRegionResponse {
    SplitRegionResponse {
        region_error: None,
        left: Some(left),
        right: Some(right),
    }
}

/// Serves `Store.SplitRegion`: answers what is already decided locally
/// (done before, stale epoch, invalid), otherwise proposes the split and
/// answers once it applied here and the new region's group runs here.
pub async fn split_region(
    node: &StoreNode,
    request: SplitRegionRequest,
) -> Result<SplitRegionResponse, RaftstoreError> {
    validate_request(&request)?;
    let context = request
        .context
        .ok_or_else(|| RaftstoreError::InvalidArgument {
            hint: "split request carries no region context".into(),
        })?;
    let Some(peer) = node.peer(context.region_id) else {
        return Ok(refused(region_error(RegionErrorKind::RegionNotFound(
            RegionNotFound {
                region_id: context.region_id,
            },
        ))));
    };
    if let Some(state) = peer.merge_state() {
        return Ok(refused(super::merge::region_merging(
            context.region_id,
            state.target_region_id,
        )));
    }
    let split = SplitCommand {
        expected_epoch: EpochRecord::of(context.epoch.as_ref()),
        split_key: request.split_key,
        new_region_id: request.new_region_id,
        new_peers: request
            .new_peers
            .iter()
            .map(|peer| PeerRecord {
                peer_id: peer.peer_id,
                store_id: peer.store_id,
            })
            .collect(),
    };
    let existing = node.peer(split.new_region_id).map(|p| p.descriptor());
    match decide_split(&peer.descriptor(), &split, existing.as_ref()) {
        SplitDecision::Split { .. } => {}
        decided => return answer(node, decided.outcome()),
    }
    if node.region_count() >= REGIONS_PER_STORE_MAX {
        return Ok(refused(server_busy(format!(
            "store already hosts {REGIONS_PER_STORE_MAX} regions"
        ))));
    }
    let new_region_id = split.new_region_id;
    let response = match propose(&peer, RegionCommand::split(split)).await? {
        Ok(response) => response,
        Err(region_error) => return Ok(refused(region_error)),
    };
    let Some(outcome) = response.split else {
        return Err(RaftstoreError::Raft {
            region_id: context.region_id,
            hint: "a split command applied without a split outcome".into(),
        });
    };
    if matches!(outcome, SplitOutcome::Split { .. }) && !wait_for_region(node, new_region_id).await
    {
        return Ok(refused(server_busy(
            "the split applied but the new region has not started here yet",
        )));
    }
    answer(node, outcome)
}

fn answer(node: &StoreNode, outcome: SplitOutcome) -> Result<SplitRegionResponse, RaftstoreError> {
    match outcome {
        SplitOutcome::Split { left, right } => Ok(done(left, right)),
        SplitOutcome::EpochNotMatch { current } => Ok(refused(epoch_not_match(node, current))),
        SplitOutcome::Invalid { hint } => Err(RaftstoreError::InvalidArgument { hint }),
    }
}

/// Waits (bounded) until the store runs a peer of `region_id`, so a client
/// told "split done" finds the new region on this store.
async fn wait_for_region(node: &StoreNode, region_id: u64) -> bool {
    let waited = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), async {
        while node.peer(region_id).is_none() {
            tokio::time::sleep(Duration::from_millis(CHILD_START_POLL_MS)).await;
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

    fn region(start: &str, end: &str) -> RegionDescriptor {
        RegionDescriptor {
            region_id: 1,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: epoch(3, 2),
            peers: (1..=3)
                .map(|store_id| RegionPeer {
                    peer_id: 10 + store_id,
                    store_id,
                })
                .collect(),
        }
    }

    fn split_at(key: &str) -> SplitCommand {
        SplitCommand {
            expected_epoch: EpochRecord {
                version: 3,
                conf_ver: 2,
            },
            split_key: key.as_bytes().to_vec(),
            new_region_id: 2,
            new_peers: [3, 1, 2]
                .into_iter()
                .map(|store_id| PeerRecord {
                    peer_id: 20 + store_id,
                    store_id,
                })
                .collect(),
        }
    }

    #[test]
    fn split_shrinks_the_parent_and_hands_the_rest_to_the_new_region() {
        let parent = region("b", "x");
        let SplitDecision::Split { left, right } = decide_split(&parent, &split_at("m"), None)
        else {
            panic!("a valid split splits");
        };
        assert_eq!(
            (left.start_key.as_slice(), left.end_key.as_slice()),
            (&b"b"[..], &b"m"[..])
        );
        assert_eq!(left.region_id, 1);
        assert_eq!(left.peers, parent.peers);
        assert_eq!(right.region_id, 2);
        assert_eq!(
            (right.start_key.as_slice(), right.end_key.as_slice()),
            (&b"m"[..], &b"x"[..])
        );
        assert_eq!(right.peers, split_at("m").new_peers_proto());
        assert_eq!(left.epoch, epoch(4, 2), "version bumps, conf_ver stays");
        assert_eq!(right.epoch, left.epoch);
    }

    #[test]
    fn split_of_the_whole_key_space_keeps_the_open_end_on_the_right() {
        let SplitDecision::Split { left, right } =
            decide_split(&region("", ""), &split_at("m"), None)
        else {
            panic!("a valid split splits");
        };
        assert_eq!(left.start_key, b"");
        assert_eq!(left.end_key, b"m");
        assert_eq!(right.start_key, b"m");
        assert_eq!(right.end_key, b"", "the right half keeps the open end");
    }

    #[test]
    fn split_rejects_stale_epoch() {
        let parent = region("b", "x");
        for (version, conf_ver) in [(2, 2), (4, 2), (3, 1), (3, 3)] {
            let mut split = split_at("m");
            split.expected_epoch = EpochRecord { version, conf_ver };
            assert_eq!(
                decide_split(&parent, &split, None),
                SplitDecision::EpochNotMatch {
                    current: parent.clone()
                },
                "epoch ({version}, {conf_ver})"
            );
        }
    }

    #[test]
    fn split_rejects_keys_not_strictly_inside_the_region() {
        let parent = region("b", "x");
        for key in ["", "a", "b", "x", "z"] {
            assert!(
                matches!(
                    decide_split(&parent, &split_at(key), None),
                    SplitDecision::Invalid { .. }
                ),
                "split key {key:?}"
            );
        }
        for key in ["b\0", "c", "wzzz"] {
            assert!(
                matches!(
                    decide_split(&parent, &split_at(key), None),
                    SplitDecision::Split { .. }
                ),
                "split key {key:?}"
            );
        }
        let open = region("", "");
        assert!(matches!(
            decide_split(&open, &split_at(""), None),
            SplitDecision::Invalid { .. }
        ));
    }

    #[test]
    fn split_rejects_used_ids_and_peers_on_other_stores() {
        let parent = region("b", "x");
        let mut own_id = split_at("m");
        own_id.new_region_id = 1;
        let mut zero_id = split_at("m");
        zero_id.new_region_id = 0;
        let mut other_store = split_at("m");
        other_store.new_peers[0].store_id = 9;
        let mut too_few = split_at("m");
        too_few.new_peers.pop();
        let mut twice_on_one_store = split_at("m");
        twice_on_one_store.new_peers.push(PeerRecord {
            peer_id: 99,
            store_id: 1,
        });
        for split in [own_id, zero_id, other_store, too_few, twice_on_one_store] {
            assert!(
                matches!(
                    decide_split(&parent, &split, None),
                    SplitDecision::Invalid { .. }
                ),
                "{split:?}"
            );
        }
        let elsewhere = region("y", "z");
        let taken = RegionDescriptor {
            region_id: 2,
            ..elsewhere
        };
        assert!(matches!(
            decide_split(&parent, &split_at("m"), Some(&taken)),
            SplitDecision::Invalid { .. }
        ));
    }

    #[test]
    fn repeating_a_split_that_happened_answers_the_current_halves() {
        let parent = region("b", "x");
        let split = split_at("m");
        let SplitDecision::Split { left, right } = decide_split(&parent, &split, None) else {
            panic!("a valid split splits");
        };
        // The same command again (old epoch) against the split state.
        assert_eq!(
            decide_split(&left, &split, Some(&right)),
            SplitDecision::AlreadySplit {
                left: left.clone(),
                right: right.clone()
            }
        );
        // A different key against the split state is just a stale epoch.
        assert_eq!(
            decide_split(&left, &split_at("f"), Some(&right)),
            SplitDecision::EpochNotMatch {
                current: left.clone()
            }
        );
    }

    #[test]
    fn generated_splits_partition_the_range_exactly() {
        // Every split key over a small alphabet: the halves are adjacent,
        // cover the parent, and only valid keys split.
        let parent = region("c", "t");
        let letters: Vec<String> = ('a'..='v').map(|c| c.to_string()).collect();
        for key in &letters {
            let decision = decide_split(&parent, &split_at(key), None);
            let inside = key.as_str() > "c" && key.as_str() < "t";
            match decision {
                SplitDecision::Split { left, right } => {
                    assert!(inside, "{key} split");
                    assert_eq!(left.start_key, parent.start_key);
                    assert_eq!(left.end_key, right.start_key);
                    assert_eq!(right.end_key, parent.end_key);
                    assert!(left.start_key < left.end_key && right.start_key < right.end_key);
                }
                SplitDecision::Invalid { .. } => assert!(!inside, "{key} refused"),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
