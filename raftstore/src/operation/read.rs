//! Linearizable reads: a raft read barrier (`ensure_linearizable`: leadership
//! confirmed by a quorum, state machine caught up), then RocksDB.

use std::time::Duration;

use arbor_proto::{
    GetRequest, GetResponse, KvPair, RegionDescriptor, RegionError, ScanRequest, ScanResponse,
};
use openraft::error::{CheckIsLeaderError, RaftError};
use rocksdb::IteratorMode;

use super::{admit, check_key_size, epoch_not_match};
use crate::config::{REQUEST_TIMEOUT_MS, SCAN_RESPONSE_BYTES_MAX, SCAN_ROWS_MAX};
use crate::error::RaftstoreError;
use crate::keys::{self, CF_DATA};
use crate::peer::{range_of, server_busy, Peer};
use crate::storage::cf;
use crate::storage::state_machine::KeyRange;
use crate::store::StoreNode;

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

fn storage_error(region_id: u64) -> impl FnOnce(rocksdb::Error) -> RaftstoreError {
    move |source| RaftstoreError::Storage {
        context: format!("reading region {region_id}"),
        source,
    }
}

pub async fn get(node: &StoreNode, request: GetRequest) -> Result<GetResponse, RaftstoreError> {
    check_key_size(&request.key)?;
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
    let db = node.db();
    let value = db
        .get_cf(cf(db, CF_DATA), keys::data_key(&request.key))
        .map_err(storage_error(descriptor.region_id))?;
    Ok(GetResponse {
        region_error: None,
        found: value.is_some(),
        value: value.unwrap_or_default(),
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

pub async fn scan(node: &StoreNode, request: ScanRequest) -> Result<ScanResponse, RaftstoreError> {
    check_scan_bound_size(&request.start_key)?;
    check_scan_bound_size(&request.end_key)?;
    let refused = |region_error| ScanResponse {
        region_error: Some(region_error),
        ..Default::default()
    };
    let (peer, descriptor) = match admit(node, request.context.as_ref())? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    let Some(range) = clip_to_region(&range_of(&descriptor), &request.start_key, &request.end_key)
    else {
        return Ok(refused(Peer::key_not_in_region(
            &descriptor,
            &request.start_key,
        )));
    };
    if let Err(region_error) = read_barrier(node, &peer, &descriptor).await {
        return Ok(refused(region_error));
    }
    let rows_limit = scan_rows_limit(request.limit);
    let db = node.db();
    let mut pairs = Vec::new();
    let mut bytes = 0usize;
    let mut more = false;
    if range.end.is_empty() || range.start < range.end {
        for item in db.iterator_cf_opt(cf(db, CF_DATA), range.read_options(), IteratorMode::Start) {
            let (key, value) = item.map_err(storage_error(descriptor.region_id))?;
            if pairs.len() >= rows_limit || (!pairs.is_empty() && bytes >= SCAN_RESPONSE_BYTES_MAX)
            {
                more = true;
                break;
            }
            bytes += key.len() + value.len();
            pairs.push(KvPair {
                key: key.to_vec(),
                value: value.to_vec(),
            });
        }
    }
    Ok(ScanResponse {
        region_error: None,
        pairs,
        more,
    })
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
