//! Linearizable reads at a timestamp: a raft read barrier
//! (`ensure_linearizable`: leadership confirmed by a quorum, state machine
//! caught up), then the memory locks of one-phase commits in flight
//! ([`crate::memory_lock`]), then the lock column family, then the versions
//! ([`crate::txn::read`]).
//!
//! **Invariant:** locks are read before data (a RocksDB iterator reads a
//! snapshot taken when it is created), so a transaction committing in
//! between is seen either as its lock or as its write record, never as
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use arbor_proto::{
    GetRequest, GetResponse, KvPair, RegionDescriptor, RegionError, ScanLocksRequest,
    ScanLocksResponse, ScanRequest, ScanResponse, SnapshotTooOld,
};
use openraft::error::{CheckIsLeaderError, RaftError};

use super::txn::lock_info_proto;
use super::{admit, check_key_size, epoch_not_match};
use crate::config::{
    MEMORY_LOCK_WAIT_MS, REQUEST_TIMEOUT_MS, SCAN_RESPONSE_BYTES_MAX, SCAN_ROWS_MAX,
};
use crate::error::RaftstoreError;
use crate::memory_lock::key_range;
use crate::peer::{range_of, server_busy, Peer};
use crate::storage::mvcc::{self, DbReader, ScanLimits};
use crate::storage::state_machine::{applied_gc_safe_point, KeyRange};
use crate::store::StoreNode;
use crate::txn::{record, LockInfo, TxnReader};

/// Returns once a read of this peer's data is linearizable.
///
/// The region's epoch is checked again after the barrier: a split that
/// applied while waiting hands part of the range to another group, whose
/// leader (maybe elsewhere) may already have newer data for it.
pub(crate) async fn read_barrier(
    node: &StoreNode,
    peer: &Peer,
    descriptor: &RegionDescriptor,
) -> Result<(), RegionError> {
    barrier(peer).await?;
    if let Some(state) = peer.merge_state() {
        // Frozen while waiting: the target may serve the range soon.
        return Err(super::merge::region_merging(
            peer.region_id(),
            state.target_region_id,
        ));
    }
    peer.check_epoch(descriptor.epoch.as_ref())
        .map(|_| ())
        .map_err(|current| epoch_not_match(node, current))
}

async fn barrier(peer: &Peer) -> Result<(), RegionError> {
    let barrier = peer.raft().ensure_linearizable();
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), barrier).await {
        Err(_) => Err(server_busy("timed out confirming leadership")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
            Err(peer.not_leader(&forward))
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error)))) => {
            Err(server_busy(format!("no quorum: {error}")))
        }
        Ok(Err(RaftError::Fatal(fatal))) => {
            Err(server_busy(format!("region raft stopped: {fatal}")))
        }
    }
}

fn check_read_ts(read_ts: u64) -> Result<(), RaftstoreError> {
    if read_ts == 0 {
        return Err(RaftstoreError::InvalidArgument {
            hint: "a read needs a read_ts (a timestamp from the TSO)".into(),
        });
    }
    Ok(())
}

/// Waits (bounded) for memory locks of one-phase commits in flight that
/// block a read of `range` at `read_ts`; the lock still there, if any.
async fn memory_lock(node: &StoreNode, range: &KeyRange, read_ts: u64) -> Option<LockInfo> {
    node.memory_locks()
        .wait_unblocked(range, read_ts, Duration::from_millis(MEMORY_LOCK_WAIT_MS))
        .await
}

pub async fn get(node: &StoreNode, request: GetRequest) -> Result<GetResponse, RaftstoreError> {
    check_key_size(&request.key)?;
    check_read_ts(request.read_ts)?;
    let refused = |region_error| GetResponse {
        region_error: Some(region_error),
        ..Default::default()
    };
    let (peer, descriptor) = match admit(node, request.context.as_ref())? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    if !range_of(&descriptor).contains(&request.key) {
        return Ok(refused(Peer::key_not_in_region(&descriptor, &request.key)));
    }
    if let Err(region_error) = read_barrier(node, &peer, &descriptor).await {
        return Ok(refused(region_error));
    }
    let locked = |info: LockInfo| GetResponse {
        locked: Some(lock_info_proto(&info)),
        ..Default::default()
    };
    let (key, read_ts) = (request.key.as_slice(), request.read_ts);
    if let Some(info) = memory_lock(node, &key_range(key), read_ts).await {
        return Ok(locked(info));
    }
    let reader = DbReader { db: node.db() };
    if let Some(lock) = reader.lock(key)?.filter(|lock| lock.blocks_read(read_ts)) {
        return Ok(locked(lock.info(key)));
    }
    let value = reader.value_at(key, read_ts)?;
    if let Some(refusal) = snapshot_too_old(node, &peer, read_ts)? {
        return Ok(GetResponse {
            snapshot_too_old: Some(refusal),
            ..Default::default()
        });
    }
    if let Some(value) = &value {
        peer.traffic()
            .record_read(1, (key.len() + value.len()) as u64);
    }
    Ok(GetResponse {
        region_error: None,
        found: value.is_some(),
        value: value.unwrap_or_default(),
        locked: None,
        snapshot_too_old: None,
    })
}

/// The refusal of a read at `read_ts` below the region's applied GC safe
/// point, if it is. Asked *after* the data was read: GC raises the safe
/// point in the same write batch as its deletions, so a read that may have
/// missed a collected version always sees the raised safe point here.
fn snapshot_too_old(
    node: &StoreNode,
    peer: &Peer,
    read_ts: u64,
) -> Result<Option<SnapshotTooOld>, RaftstoreError> {
    let safe_point = applied_gc_safe_point(node.db(), peer.region_id())?;
    Ok(refuse_below_safe_point(read_ts, safe_point))
}

/// Pure: a read at `read_ts` is refused when it lies below `safe_point`
/// (a read exactly at it still sees every version it needs).
pub fn refuse_below_safe_point(read_ts: u64, safe_point: u64) -> Option<SnapshotTooOld> {
    (read_ts < safe_point).then_some(SnapshotTooOld {
        read_ts,
        safe_point,
    })
}

/// `[start, end)` of the request clipped to the region, or `None` when the
/// request's start lies past the region.
pub fn clip_to_region(region: &KeyRange, start: &[u8], end: &[u8]) -> Option<KeyRange> {
    let start = std::cmp::max(start, region.start.as_slice());
    let end = match (end.is_empty(), region.end.is_empty()) {
        (true, _) => region.end.as_slice(),
        (false, true) => end,
        (false, false) => std::cmp::min(end, region.end.as_slice()),
    };
    if !region.end.is_empty() && start >= region.end.as_slice() {
        return None;
    }
    Some(KeyRange {
        start: start.to_vec(),
        end: end.to_vec(),
    })
}

/// Rows a scan asked for, capped; 0 asks for the cap.
pub fn scan_rows_limit(requested: u32) -> usize {
    match requested as usize {
        0 => SCAN_ROWS_MAX,
        requested => requested.min(SCAN_ROWS_MAX),
    }
}

/// Scan bounds may be one byte longer than a key: the region client resumes
/// a scan at "the last key returned" + 0x00.
fn check_scan_bound_size(bound: &[u8]) -> Result<(), RaftstoreError> {
    match bound.split_last() {
        Some((0, key)) => check_key_size(key),
        _ => check_key_size(bound),
    }
}

/// Admits a range read: the region is here and led here at the request's
/// epoch, `[start, end)` clipped to it is not empty, and the read barrier
/// passed. A region error is the answer to send instead.
async fn admit_range(
    node: &StoreNode,
    context: Option<&arbor_proto::RegionContext>,
    start: &[u8],
    end: &[u8],
) -> Result<Result<(Arc<Peer>, KeyRange), RegionError>, RaftstoreError> {
    let (peer, descriptor) = match admit(node, context)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(Err(region_error)),
    };
    let Some(range) = clip_to_region(&range_of(&descriptor), start, end) else {
        return Ok(Err(Peer::key_not_in_region(&descriptor, start)));
    };
    if let Err(region_error) = read_barrier(node, &peer, &descriptor).await {
        return Ok(Err(region_error));
    }
    Ok(Ok((peer, range)))
}

pub async fn scan(node: &StoreNode, request: ScanRequest) -> Result<ScanResponse, RaftstoreError> {
    check_scan_bound_size(&request.start_key)?;
    check_scan_bound_size(&request.end_key)?;
    if !request.ignore_locks {
        check_read_ts(request.read_ts)?;
    }
    let (peer, range) = match admit_range(
        node,
        request.context.as_ref(),
        &request.start_key,
        &request.end_key,
    )
    .await?
    {
        Ok(admitted) => admitted,
        Err(region_error) => {
            return Ok(ScanResponse {
                region_error: Some(region_error),
                ..Default::default()
            })
        }
    };
    let limits = ScanLimits {
        rows: scan_rows_limit(request.limit),
        bytes: SCAN_RESPONSE_BYTES_MAX,
    };
    let db = node.db();
    if request.ignore_locks {
        // The scheduler's sampling: newest versions, no lock consulted.
        let outcome = mvcc::scan_range(db, &range, u64::MAX, limits)?;
        return Ok(scanned(outcome));
    }
    let read_ts = request.read_ts;
    let locked = |info: LockInfo| ScanResponse {
        locked: Some(lock_info_proto(&info)),
        ..Default::default()
    };
    if let Some(info) = memory_lock(node, &range, read_ts).await {
        return Ok(locked(info));
    }
    let reader = DbReader { db };
    let locks = reader.locks_now(&range);
    let outcome = mvcc::scan_range(db, &range, read_ts, limits)?;
    if let Some(refusal) = snapshot_too_old(node, &peer, read_ts)? {
        return Ok(ScanResponse {
            snapshot_too_old: Some(refusal),
            ..Default::default()
        });
    }
    // Only locks inside what the scan covered matter: up to its last pair
    // when the limits cut it short, else the whole range.
    let until = match (outcome.more, outcome.pairs.last()) {
        (true, Some((last, _))) => {
            let mut until = last.clone();
            until.push(0);
            Some(until)
        }
        _ => None,
    };
    if let Some((key, lock)) = mvcc::first_blocking_lock(locks, until.as_deref(), read_ts)? {
        return Ok(locked(lock.info(&key)));
    }
    let bytes: usize = outcome.pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    peer.traffic()
        .record_read(outcome.pairs.len() as u64, bytes as u64);
    Ok(scanned(outcome))
}

/// The locks of a range, after the read barrier: in-flight or abandoned
/// transactions, for operators and tests (never part of a transaction).
pub async fn scan_locks(
    node: &StoreNode,
    request: ScanLocksRequest,
) -> Result<ScanLocksResponse, RaftstoreError> {
    check_scan_bound_size(&request.start_key)?;
    check_scan_bound_size(&request.end_key)?;
    let (peer, range) = match admit_range(
        node,
        request.context.as_ref(),
        &request.start_key,
        &request.end_key,
    )
    .await?
    {
        Ok(admitted) => admitted,
        Err(region_error) => {
            return Ok(ScanLocksResponse {
                region_error: Some(region_error),
                ..Default::default()
            })
        }
    };
    let limit = scan_rows_limit(request.limit);
    let mut response = ScanLocksResponse::default();
    for item in (DbReader { db: node.db() }).locks_now(&range) {
        let (key, value) = item.map_err(|source| RaftstoreError::Storage {
            context: format!("scanning locks of region {}", peer.region_id()),
            source,
        })?;
        if response.locks.len() == limit {
            response.more = true;
            break;
        }
        let lock = record::decode_lock(&value).map_err(|error| RaftstoreError::Corrupt {
            context: format!("lock of key {key:?} in region {}", peer.region_id()),
            hint: error.to_string(),
        })?;
        response.locks.push(lock_info_proto(&lock.info(&key)));
    }
    Ok(response)
}

fn scanned(outcome: mvcc::ScanOutcome) -> ScanResponse {
    ScanResponse {
        region_error: None,
        pairs: outcome
            .pairs
            .into_iter()
            .map(|(key, value)| KvPair { key, value })
            .collect(),
        more: outcome.more,
        locked: None,
        snapshot_too_old: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str) -> KeyRange {
        KeyRange {
            start: start.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reads_below_the_safe_point_are_refused_and_at_or_above_it_served() {
        assert_eq!(refuse_below_safe_point(5, 0), None, "no GC yet");
        assert_eq!(refuse_below_safe_point(100, 100), None);
        assert_eq!(refuse_below_safe_point(101, 100), None);
        assert_eq!(
            refuse_below_safe_point(99, 100),
            Some(SnapshotTooOld {
                read_ts: 99,
                safe_point: 100
            })
        );
    }

    #[test]
    fn scans_are_clipped_to_the_region() {
        let region = range("b", "m");
        assert_eq!(clip_to_region(&region, b"a", b""), Some(range("b", "m")));
        assert_eq!(clip_to_region(&region, b"c", b"z"), Some(range("c", "m")));
        assert_eq!(clip_to_region(&region, b"c", b"d"), Some(range("c", "d")));
        assert_eq!(clip_to_region(&region, b"m", b""), None);
        let open = range("b", "");
        assert_eq!(clip_to_region(&open, b"", b""), Some(range("b", "")));
        assert_eq!(clip_to_region(&open, b"x", b"y"), Some(range("x", "y")));
    }

    #[test]
    fn scan_limits_are_capped() {
        assert_eq!(scan_rows_limit(0), SCAN_ROWS_MAX);
        assert_eq!(scan_rows_limit(5), 5);
        assert_eq!(scan_rows_limit(u32::MAX), SCAN_ROWS_MAX);
    }
}
