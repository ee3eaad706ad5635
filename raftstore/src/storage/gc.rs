//! Garbage collection of old versions below the GC safe point root holds.
//!
//! What goes: for each key, every version committed at or below the safe
//! point except the newest data version (Put/Delete) at or below it — and
//! that one too when it is a Delete; Rollback and Lock records at or below
//! it always go. Versions above the safe point stay. So a read at any
//! `read_ts >= safe_point` sees exactly what it saw before, and a read below
//! it is refused (`SnapshotTooOld`), never answered from half the history.
//! Locks are never touched.
//!
//! How: the region leader learns the safe point from heartbeat answers
//! ([`crate::store::StoreNode::gc_safe_point`]) and walks its region in
//! batches of at most [`GC_KEYS_MAX`] keys / [`GC_DELETES_MAX`] versions,
//! proposing one `Gc` raft command per batch that deletes something (a
//! batch with nothing to delete proposes nothing, so an idle region stays
//! idle). Apply recomputes the deletions from its own data (the same on
//! every replica at the same index) and raises the region's applied safe
//! point in the same write batch, before any reader can miss a version.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rocksdb::{IteratorMode, WriteBatch, DB};
use tokio::sync::watch;

use super::cf;
use super::state_machine::KeyRange;
use crate::command::{GcCommand, RegionCommand};
use crate::error::RaftstoreError;
use crate::keys::{self, CF_WRITE};
use crate::operation::read::clip_to_region;
use crate::peer::{range_of, Peer};
use crate::periodic::Periodic;
use crate::store::StoreNode;
use crate::txn::{record, AbortReason, TxnCommand, TxnError, TxnOutcome, WriteKind};
use crate::types::RegionId;

/// Keys one GC raft entry covers at most.
pub const GC_KEYS_MAX: usize = 1_024;
/// Versions one GC raft entry deletes at most (a batch ends at the first
/// key boundary past it, so a single key's versions are never split).
pub const GC_DELETES_MAX: usize = 4_096;
/// How often a store looks for regions it leads whose GC is behind.
pub const GC_TICK_MS: u64 = 500;

/// Commit timestamps of the versions to delete, given one key's versions
/// newest first as `(commit_ts, kind)`. Pure.
pub fn versions_to_delete(versions: &[(u64, WriteKind)], safe_point: u64) -> Vec<u64> {
    let mut newest_data_seen = false;
    let mut deletions = Vec::new();
    for (commit_ts, kind) in versions {
        if *commit_ts > safe_point {
            continue;
        }
        let is_data = matches!(kind, WriteKind::Put | WriteKind::Delete);
        let keep = is_data && !newest_data_seen && *kind == WriteKind::Put;
        newest_data_seen |= is_data;
        if !keep {
            deletions.push(*commit_ts);
        }
    }
    deletions
}

/// The refusal of a transaction command that would take new locks for a
/// transaction started below the region's applied safe point: its
/// write-conflict check could miss a collected Delete or commit record, so
/// it must not lock anything (commits, rollbacks and lock resolution of
/// locks it already holds still apply). Pure.
pub fn refuse_txn_below_safe_point(command: &TxnCommand, safe_point: u64) -> Option<TxnOutcome> {
    let takes_locks = matches!(
        command,
        TxnCommand::Prewrite(_) | TxnCommand::PessimisticLock(_)
    );
    let start_ts = command.start_ts();
    if !takes_locks || start_ts >= safe_point {
        return None;
    }
    let key = command
        .keys()
        .first()
        .map(|key| key.to_vec())
        .unwrap_or_default();
    Some(TxnOutcome::Failed(TxnError::Aborted {
        key,
        start_ts,
        reason: AbortReason::BelowGcSafePoint,
    }))
}

/// What one pass over part of a region found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcScan {
    /// Write CF keys of the versions to delete.
    pub deletions: Vec<Vec<u8>>,
    /// The first user key left for the next batch; `None` = range done.
    pub next: Option<Vec<u8>>,
}

fn corrupt(key: &[u8], hint: impl std::fmt::Display) -> RaftstoreError {
    RaftstoreError::Corrupt {
        context: format!("write record at {key:?} (GC)"),
        hint: hint.to_string(),
    }
}

/// The versions to delete in `range` below `safe_point`, stopping at the
/// first key boundary once `keys_max` keys or `deletes_max` deletions are
/// reached.
pub fn scan(
    db: &DB,
    range: &KeyRange,
    safe_point: u64,
    keys_max: usize,
    deletes_max: usize,
) -> Result<GcScan, RaftstoreError> {
    let mut outcome = GcScan::default();
    if !range.end.is_empty() && range.start >= range.end {
        return Ok(outcome);
    }
    let iter = db.iterator_cf_opt(
        cf(db, CF_WRITE),
        range.write_read_options(),
        IteratorMode::Start,
    );
    // The current key and its versions (write key, commit_ts, kind).
    let mut current: Option<Vec<u8>> = None;
    let mut versions: Vec<(Vec<u8>, u64, WriteKind)> = Vec::new();
    let mut keys_seen = 0usize;
    for item in iter {
        let (key, value) = item.map_err(|source| RaftstoreError::Storage {
            context: "reading versions for GC".into(),
            source,
        })?;
        let (user_key, commit_ts) =
            keys::decode_write_key(&key).ok_or_else(|| corrupt(&key, "undecodable key"))?;
        if current.as_ref() != Some(&user_key) {
            finish_key(&mut versions, safe_point, &mut outcome.deletions);
            if keys_seen >= keys_max || outcome.deletions.len() >= deletes_max {
                outcome.next = Some(user_key);
                return Ok(outcome);
            }
            keys_seen += 1;
            current = Some(user_key);
        }
        let kind = record::decode_write(&value)
            .map_err(|error| corrupt(&key, error))?
            .kind;
        versions.push((key.to_vec(), commit_ts, kind));
    }
    finish_key(&mut versions, safe_point, &mut outcome.deletions);
    Ok(outcome)
}

/// Moves the deletable versions of one key into `deletions`.
fn finish_key(
    versions: &mut Vec<(Vec<u8>, u64, WriteKind)>,
    safe_point: u64,
    deletions: &mut Vec<Vec<u8>>,
) {
    let picked: Vec<(u64, WriteKind)> = versions.iter().map(|(_, ts, kind)| (*ts, *kind)).collect();
    let doomed = versions_to_delete(&picked, safe_point);
    for (key, commit_ts, _) in versions.drain(..) {
        if doomed.contains(&commit_ts) {
            deletions.push(key);
        }
    }
}

/// Stages the deletions of a GC command applied to a region over `region`;
/// returns how many versions it deletes. Called by apply.
pub fn stage(
    db: &DB,
    region: &KeyRange,
    command: &GcCommand,
    batch: &mut WriteBatch,
) -> Result<u64, RaftstoreError> {
    let Some(range) = clip_to_region(region, &command.start_key, &command.end_key) else {
        return Ok(0);
    };
    // No limit here: the leader bounded the range it proposed; apply must
    // cover all of it so every replica deletes the same versions.
    let found = scan(db, &range, command.safe_point, usize::MAX, usize::MAX)?;
    let writes = cf(db, CF_WRITE);
    for key in &found.deletions {
        batch.delete_cf(writes, key);
    }
    Ok(found.deletions.len() as u64)
}

/// Why a GC pass over a region stopped early (the next tick retries).
#[derive(Debug, thiserror::Error)]
enum PassStopped {
    #[error("no longer the leader")]
    NotLeader,
    #[error("a GC entry was refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Failed(RaftstoreError),
}

/// One pass over `peer`'s region at `safe_point`, batch by batch.
async fn gc_region(node: &StoreNode, peer: &Peer, safe_point: u64) -> Result<u64, PassStopped> {
    let mut from = peer.descriptor().start_key;
    let mut deleted = 0u64;
    loop {
        if !peer.is_leader() {
            return Err(PassStopped::NotLeader);
        }
        let region = range_of(&peer.descriptor());
        let Some(range) = clip_to_region(&region, &from, &region.end) else {
            return Ok(deleted);
        };
        let found = scan(node.db(), &range, safe_point, GC_KEYS_MAX, GC_DELETES_MAX)
            .map_err(PassStopped::Failed)?;
        if !found.deletions.is_empty() {
            let command = RegionCommand::gc(GcCommand {
                safe_point,
                start_key: range.start.clone(),
                end_key: found.next.clone().unwrap_or_default(),
            });
            match crate::operation::txn::propose(peer, command).await {
                Ok(Ok(response)) => deleted += response.gc_deleted.unwrap_or(0),
                Ok(Err(region_error)) => {
                    return Err(PassStopped::Refused(format!("{:?}", region_error.kind)))
                }
                Err(error) => return Err(PassStopped::Failed(error)),
            }
        }
        match found.next {
            Some(next) => from = next,
            None => return Ok(deleted),
        }
    }
}

/// Every [`GC_TICK_MS`], runs a GC pass over each region this store leads
/// whose last finished pass is below the safe point the store knows.
pub async fn run(node: Arc<StoreNode>, stop: watch::Receiver<bool>) {
    // Per region, the safe point of the last pass this store finished as
    // leader. A new leader starts from 0: it redoes a pass, which deletes
    // nothing a previous leader already deleted.
    let mut finished: HashMap<RegionId, u64> = HashMap::new();
    // The safe point of the last tick that visited every region without a
    // pass stopping early: until the safe point moves, a tick has nothing
    // to do (an idle store of a thousand regions must not walk them every
    // tick). A replica that becomes leader meanwhile collects at the next
    // safe point, at most one proposal interval later.
    let mut visited_all_for = 0;
    let mut periodic = Periodic::new(Duration::from_millis(GC_TICK_MS), stop);
    while periodic.tick().await {
        let safe_point = node.gc_safe_point();
        if safe_point == 0 || safe_point == visited_all_for {
            continue;
        }
        let peers = node.peers();
        let here: std::collections::HashSet<RegionId> =
            peers.iter().map(|peer| peer.region_id()).collect();
        finished.retain(|region_id, _| here.contains(region_id));
        let mut all_visited = true;
        for peer in peers {
            let region_id = peer.region_id();
            // A frozen source applies nothing (its GC entries would be
            // refused); the target collects the range after the merge.
            if finished.get(&region_id).copied().unwrap_or(0) >= safe_point
                || !peer.is_leader()
                || peer.merge_state().is_some()
            {
                continue;
            }
            match gc_region(&node, &peer, safe_point).await {
                Ok(deleted) => {
                    if deleted > 0 {
                        tracing::debug!(region_id, safe_point, deleted, "GC pass finished");
                    }
                    finished.insert(region_id, safe_point);
                }
                Err(stopped) => {
                    all_visited = false;
                    tracing::debug!(region_id, safe_point, %stopped, "GC pass stopped early")
                }
            }
        }
        if all_visited {
            visited_all_for = safe_point;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WriteKind::{Delete, Lock, Put, Rollback};

    const SAFE: u64 = 100;

    fn deleted(versions: &[(u64, WriteKind)]) -> Vec<u64> {
        versions_to_delete(versions, SAFE)
    }

    #[test]
    fn the_newest_put_at_or_below_the_safe_point_is_kept_and_older_ones_go() {
        assert_eq!(deleted(&[(90, Put), (80, Put), (70, Delete)]), vec![80, 70]);
        assert_eq!(
            deleted(&[(100, Put), (99, Put)]),
            vec![99],
            "at the safe point counts"
        );
    }

    #[test]
    fn versions_above_the_safe_point_are_all_kept() {
        assert_eq!(
            deleted(&[(300, Delete), (200, Put), (101, Rollback)]),
            Vec::<u64>::new()
        );
        assert_eq!(deleted(&[(150, Put), (90, Put), (80, Put)]), vec![80]);
    }

    #[test]
    fn a_delete_tombstone_at_or_below_the_safe_point_goes_with_everything_under_it() {
        assert_eq!(deleted(&[(90, Delete), (80, Put)]), vec![90, 80]);
        assert_eq!(
            deleted(&[(150, Put), (90, Delete), (80, Put)]),
            vec![90, 80]
        );
    }

    #[test]
    fn rollback_and_lock_records_at_or_below_the_safe_point_go_without_hiding_data() {
        assert_eq!(
            deleted(&[(95, Rollback), (92, Lock), (90, Put), (85, Rollback)]),
            vec![95, 92, 85]
        );
        assert_eq!(deleted(&[(95, Lock), (90, Rollback)]), vec![95, 90]);
        assert_eq!(deleted(&[(150, Rollback), (95, Lock)]), vec![95]);
    }

    #[test]
    fn a_key_with_a_single_put_keeps_it() {
        assert_eq!(deleted(&[(50, Put)]), Vec::<u64>::new());
        assert_eq!(deleted(&[]), Vec::<u64>::new());
    }

    /// Over every history of up to 5 versions around the safe point: a read
    /// at any ts >= safe point sees the same value before and after, and
    /// nothing above the safe point is deleted.
    #[test]
    fn every_small_history_reads_the_same_at_and_above_the_safe_point() {
        let kinds = [Put, Delete, Rollback, Lock];
        let timestamps = [98, 99, 100, 101, 102];
        // Each timestamp holds no version (index 4) or one of each kind.
        let mut histories = 0;
        for code in 0..5usize.pow(timestamps.len() as u32) {
            let mut versions = Vec::new();
            let mut rest = code;
            for ts in timestamps.iter().rev() {
                if let Some(kind) = kinds.get(rest % 5) {
                    versions.push((*ts, *kind));
                }
                rest /= 5;
            }
            histories += 1;
            let doomed = versions_to_delete(&versions, SAFE);
            assert!(doomed.iter().all(|ts| *ts <= SAFE), "{versions:?}");
            let kept: Vec<(u64, WriteKind)> = versions
                .iter()
                .copied()
                .filter(|(ts, _)| !doomed.contains(ts))
                .collect();
            for read_ts in SAFE..=103 {
                assert_eq!(
                    visible(&versions, read_ts),
                    visible(&kept, read_ts),
                    "{versions:?} at {read_ts}"
                );
            }
            // Nothing at or below the safe point but the one visible Put.
            let below: Vec<_> = kept.iter().filter(|(ts, _)| *ts <= SAFE).collect();
            assert!(
                below.len() <= 1 && below.iter().all(|(_, k)| *k == Put),
                "{kept:?}"
            );
        }
        assert_eq!(histories, 3125);
    }

    #[test]
    fn transactions_started_below_the_safe_point_may_not_take_locks_but_may_finish() {
        use crate::txn::commit::Commit;
        use crate::txn::pessimistic_lock::PessimisticLock;
        use crate::txn::prewrite::Prewrite;
        let prewrite = |start_ts| {
            TxnCommand::Prewrite(Prewrite {
                start_ts,
                primary: b"k".to_vec(),
                lock_ttl_ms: 3_000,
                mutations: Vec::new(),
                one_pc_commit_ts: None,
            })
        };
        let refused = refuse_txn_below_safe_point(&prewrite(SAFE - 1), SAFE);
        assert!(matches!(
            refused,
            Some(TxnOutcome::Failed(TxnError::Aborted {
                start_ts,
                reason: AbortReason::BelowGcSafePoint,
                ..
            })) if start_ts == SAFE - 1
        ));
        assert_eq!(refuse_txn_below_safe_point(&prewrite(SAFE), SAFE), None);
        let lock = TxnCommand::PessimisticLock(PessimisticLock {
            start_ts: 1,
            primary: b"k".to_vec(),
            lock_ttl_ms: 3_000,
            keys: vec![b"k".to_vec()],
        });
        assert!(refuse_txn_below_safe_point(&lock, SAFE).is_some());
        let commit = TxnCommand::Commit(Commit {
            start_ts: 1,
            commit_ts: 2,
            keys: vec![b"k".to_vec()],
        });
        assert_eq!(refuse_txn_below_safe_point(&commit, SAFE), None);
    }

    /// The newest data version at or below `read_ts`: Some(ts) of a Put,
    /// None for a Delete or nothing.
    fn visible(versions: &[(u64, WriteKind)], read_ts: u64) -> Option<u64> {
        versions
            .iter()
            .find(|(ts, kind)| *ts <= read_ts && matches!(kind, Put | Delete))
            .filter(|(_, kind)| *kind == Put)
            .map(|(ts, _)| *ts)
    }
}
