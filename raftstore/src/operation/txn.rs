//! Transaction commands as the store service performs them: each request
//! is admitted like any other (region, epoch, keys inside the range),
//! becomes one raft entry, and apply decides it ([`crate::txn::decide`]).
//! A one-phase commit also takes memory locks and fetches its commit
//! timestamp from the TSO first ([`crate::memory_lock`] says why).

use std::sync::Arc;
use std::time::Duration;

use arbor_proto::{
    CheckTxnStatusRequest, CheckTxnStatusResponse, CommitRequest, CommitResponse, Mutation,
    PessimisticLockRequest, PessimisticLockResponse, PrewriteRequest, PrewriteResponse,
    RegionContext, RegionDescriptor, RegionError, ResolveLockRequest, ResolveLockResponse,
    RollbackRequest, RollbackResponse, TxnHeartbeatRequest, TxnHeartbeatResponse,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;

use super::{admit, check_key_size, epoch_not_match};
use crate::command::{
    mutation_from_proto, mutation_op, EpochRecord, RegionCommand, RegionResponse,
};
use crate::config::{
    LOCK_TTL_MAX_MS, REQUEST_TIMEOUT_MS, VALUE_BYTES_MAX, WRITE_BATCH_BYTES_MAX,
    WRITE_MUTATIONS_MAX,
};
use crate::error::RaftstoreError;
use crate::memory_lock::MemoryLockRefusal;
use crate::peer::{range_of, server_busy, Peer};
use crate::store::StoreNode;
use crate::txn::check_txn_status::CheckTxnStatus;
use crate::txn::commit::Commit;
use crate::txn::heartbeat::Heartbeat;
use crate::txn::pessimistic_lock::PessimisticLock;
use crate::txn::prewrite::Prewrite;
use crate::txn::resolve_lock::ResolveLock;
use crate::txn::rollback::Rollback;
use crate::txn::{CommandMutation, LockInfo, TxnCommand, TxnError, TxnOutcome, TxnStatus};
use crate::types::{RegionTypeConfig, StoreId};

type WriteResult = Result<
    ClientWriteResponse<RegionTypeConfig>,
    RaftError<StoreId, ClientWriteError<StoreId, openraft::BasicNode>>,
>;

/// Checks a batch of mutations against every size limit and converts it.
pub fn validate_batch(mutations: &[Mutation]) -> Result<Vec<CommandMutation>, RaftstoreError> {
    if mutations.len() > WRITE_MUTATIONS_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "{} mutations exceed the {WRITE_MUTATIONS_MAX}-mutation batch limit",
                mutations.len()
            ),
        });
    }
    let mut batch_bytes = 0usize;
    for mutation in mutations {
        check_key_size(&mutation.key)?;
        if mutation.value.len() > VALUE_BYTES_MAX {
            return Err(RaftstoreError::InvalidArgument {
                hint: format!(
                    "value of {} bytes exceeds the {VALUE_BYTES_MAX}-byte limit",
                    mutation.value.len()
                ),
            });
        }
        batch_bytes += mutation.key.len() + mutation.value.len();
    }
    check_batch_bytes(batch_bytes)?;
    mutations.iter().map(mutation_from_proto).collect()
}

fn check_batch_bytes(batch_bytes: usize) -> Result<(), RaftstoreError> {
    if batch_bytes > WRITE_BATCH_BYTES_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "batch of {batch_bytes} bytes exceeds the {WRITE_BATCH_BYTES_MAX}-byte limit"
            ),
        });
    }
    Ok(())
}

/// Checks a list of keys (commit, rollback, resolve) against the limits.
fn validate_keys(keys: &[Vec<u8>]) -> Result<(), RaftstoreError> {
    if keys.len() > WRITE_MUTATIONS_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "{} keys exceed the {WRITE_MUTATIONS_MAX}-key batch limit",
                keys.len()
            ),
        });
    }
    for key in keys {
        check_key_size(key)?;
    }
    check_batch_bytes(keys.iter().map(Vec::len).sum())
}

fn invalid(hint: impl Into<String>) -> RaftstoreError {
    RaftstoreError::InvalidArgument { hint: hint.into() }
}

fn check_start_ts(start_ts: u64) -> Result<(), RaftstoreError> {
    if start_ts == 0 {
        return Err(invalid("a transaction command needs a start_ts"));
    }
    Ok(())
}

/// Maps a finished proposal to its apply result or the region error.
fn proposal_result(
    peer: &Peer,
    written: WriteResult,
) -> Result<Result<RegionResponse, RegionError>, RaftstoreError> {
    match written {
        Ok(written) => Ok(Ok(written.data)),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Ok(Err(peer.not_leader(&forward)))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error))) => {
            Err(RaftstoreError::Raft {
                region_id: peer.region_id(),
                hint: format!("a data write was refused as a membership change: {error}"),
            })
        }
        Err(RaftError::Fatal(fatal)) => {
            Ok(Err(server_busy(format!("region raft stopped: {fatal}"))))
        }
    }
}

/// Proposes `command` and waits for its apply result.
pub(crate) async fn propose(
    peer: &Peer,
    command: RegionCommand,
) -> Result<Result<RegionResponse, RegionError>, RaftstoreError> {
    propose_within(peer, command, Duration::from_millis(REQUEST_TIMEOUT_MS)).await
}

/// [`propose`], waiting at most `timeout` for the apply result. A command
/// the region refused because it is frozen for a merge answers
/// `RegionMerging` (nothing was written).
pub(crate) async fn propose_within(
    peer: &Peer,
    command: RegionCommand,
    timeout: Duration,
) -> Result<Result<RegionResponse, RegionError>, RaftstoreError> {
    let proposal = peer.raft().client_write(command);
    let response = match tokio::time::timeout(timeout, proposal).await {
        // The entry may still commit later; the caller learns "unknown", not
        // "failed" — every transaction command is idempotent, so it retries.
        Err(_) => return Ok(Err(server_busy("timed out waiting for the write to apply"))),
        Ok(written) => proposal_result(peer, written)?,
    };
    let response = match response {
        Ok(response) => response,
        Err(region_error) => return Ok(Err(region_error)),
    };
    if let Some(target_region_id) = response.merging {
        return Ok(Err(super::merge::region_merging(
            peer.region_id(),
            target_region_id,
        )));
    }
    Ok(Ok(response))
}

/// The region a command's keys must all lie in, or the region error.
fn admit_keys<'a>(
    node: &StoreNode,
    context: Option<&RegionContext>,
    keys: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Result<(Arc<Peer>, RegionDescriptor), RegionError>, RaftstoreError> {
    let (peer, descriptor) = match admit(node, context)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(Err(region_error)),
    };
    let range = range_of(&descriptor);
    if let Some(outside) = keys.into_iter().find(|key| !range.contains(key)) {
        return Ok(Err(Peer::key_not_in_region(&descriptor, outside)));
    }
    Ok(Ok((peer, descriptor)))
}

/// Applies `command` in the admitted region: its outcome, or the region
/// error to answer with.
async fn run(
    node: &StoreNode,
    peer: &Peer,
    descriptor: &RegionDescriptor,
    command: TxnCommand,
) -> Result<Result<TxnOutcome, RegionError>, RaftstoreError> {
    let command = RegionCommand::txn(command, EpochRecord::of(descriptor.epoch.as_ref()));
    let response = match propose(peer, command).await? {
        Ok(response) => response,
        Err(region_error) => return Ok(Err(region_error)),
    };
    outcome_of(node, descriptor, response)
}

fn outcome_of(
    node: &StoreNode,
    descriptor: &RegionDescriptor,
    response: RegionResponse,
) -> Result<Result<TxnOutcome, RegionError>, RaftstoreError> {
    if let Some(current) = response.epoch_not_match {
        // A split applied between admission and apply; nothing was written.
        return Ok(Err(epoch_not_match(node, current)));
    }
    if response.unsupported_format {
        return Err(RaftstoreError::Raft {
            region_id: descriptor.region_id,
            hint: "the region refused the command format this store wrote".into(),
        });
    }
    response.txn.map(Ok).ok_or_else(|| RaftstoreError::Raft {
        region_id: descriptor.region_id,
        hint: "a transaction command applied without an outcome".into(),
    })
}

pub fn lock_info_proto(info: &LockInfo) -> arbor_proto::LockInfo {
    arbor_proto::LockInfo {
        key: info.key.clone(),
        primary_key: info.primary.clone(),
        start_ts: info.start_ts,
        ttl_ms: info.ttl_ms,
        kind: mutation_op(info.kind) as i32,
        in_memory: info.in_memory,
    }
}

fn txn_error_proto(error: &TxnError) -> arbor_proto::TxnError {
    use arbor_proto::txn_error::Kind;
    let kind = match error {
        TxnError::KeyLocked(info) => Kind::KeyLocked(lock_info_proto(info)),
        TxnError::WriteConflict {
            key,
            start_ts,
            conflict_start_ts,
            conflict_commit_ts,
        } => Kind::WriteConflict(arbor_proto::WriteConflict {
            key: key.clone(),
            start_ts: *start_ts,
            conflict_start_ts: *conflict_start_ts,
            conflict_commit_ts: *conflict_commit_ts,
        }),
        TxnError::Aborted {
            key,
            start_ts,
            reason,
        } => Kind::Aborted(arbor_proto::TxnAborted {
            key: key.clone(),
            start_ts: *start_ts,
            reason: reason.to_string(),
        }),
        TxnError::ConditionFailed { mutation_index } => {
            Kind::ConditionFailed(arbor_proto::ConditionFailed {
                mutation_index: u32::try_from(*mutation_index).unwrap_or(u32::MAX),
            })
        }
        TxnError::Committed { key, commit_ts } => Kind::Committed(arbor_proto::AlreadyCommitted {
            key: key.clone(),
            commit_ts: *commit_ts,
        }),
    };
    arbor_proto::TxnError { kind: Some(kind) }
}

/// The error of an outcome that failed; `None` when it succeeded.
fn failure(outcome: &TxnOutcome) -> Option<arbor_proto::TxnError> {
    match outcome {
        TxnOutcome::Failed(error) => Some(txn_error_proto(error)),
        _ => None,
    }
}

fn unexpected(descriptor: &RegionDescriptor, outcome: &TxnOutcome) -> RaftstoreError {
    RaftstoreError::Raft {
        region_id: descriptor.region_id,
        hint: format!("a transaction command applied with an unexpected outcome {outcome:?}"),
    }
}

fn check_lock_ttl(lock_ttl_ms: u64) -> Result<(), RaftstoreError> {
    if lock_ttl_ms > LOCK_TTL_MAX_MS {
        return Err(invalid(format!(
            "lock TTL of {lock_ttl_ms} ms exceeds the {LOCK_TTL_MAX_MS} ms limit \
             (a transaction holding locks lives at most that long)"
        )));
    }
    Ok(())
}

pub async fn prewrite(
    node: &StoreNode,
    request: PrewriteRequest,
) -> Result<PrewriteResponse, RaftstoreError> {
    check_start_ts(request.start_ts)?;
    check_key_size(&request.primary_key)?;
    check_lock_ttl(request.lock_ttl_ms)?;
    let mutations = validate_batch(&request.mutations)?;
    let refused = |region_error| PrewriteResponse {
        region_error: Some(region_error),
        ..Default::default()
    };
    let keys = mutations.iter().map(|mutation| mutation.key.as_slice());
    let (peer, descriptor) = match admit_keys(node, request.context.as_ref(), keys)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    if mutations.is_empty() {
        return Ok(PrewriteResponse::default());
    }
    let written_bytes: usize = mutations
        .iter()
        .map(|mutation| mutation.key.len() + mutation.value.len())
        .sum();
    let written_keys = mutations.len() as u64;
    let command = Prewrite {
        start_ts: request.start_ts,
        primary: request.primary_key,
        lock_ttl_ms: request.lock_ttl_ms,
        mutations,
        one_pc_commit_ts: None,
    };
    let outcome = if request.one_pc {
        one_phase_commit(node, peer.clone(), &descriptor, command).await?
    } else {
        run(node, &peer, &descriptor, TxnCommand::Prewrite(command)).await?
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(region_error) => return Ok(refused(region_error)),
    };
    match outcome {
        TxnOutcome::Prewritten {
            existed,
            one_pc_commit_ts,
        } => {
            peer.traffic()
                .record_write(written_keys, written_bytes as u64);
            Ok(PrewriteResponse {
                existed,
                one_pc_commit_ts: one_pc_commit_ts.unwrap_or(0),
                ..Default::default()
            })
        }
        TxnOutcome::Failed(error) => Ok(PrewriteResponse {
            error: Some(txn_error_proto(&error)),
            ..Default::default()
        }),
        other => Err(unexpected(&descriptor, &other)),
    }
}

/// Memory locks, then the commit timestamp, then the entry; the locks go
/// only once the proposal finished (see [`crate::memory_lock`]), so that
/// part runs in its own task, which a cancelled request cannot stop.
async fn one_phase_commit(
    node: &StoreNode,
    peer: Arc<Peer>,
    descriptor: &RegionDescriptor,
    mut command: Prewrite,
) -> Result<Result<TxnOutcome, RegionError>, RaftstoreError> {
    let Some(tso) = node.tso().cloned() else {
        return Ok(Err(server_busy(
            "this store has no coordinator to take one-phase commit timestamps from",
        )));
    };
    let keys: Vec<Vec<u8>> = command.mutations.iter().map(|m| m.key.clone()).collect();
    let guard = match node
        .memory_locks()
        .lock_keys(&keys, command.start_ts, &command.primary)
    {
        Ok(guard) => guard,
        Err(MemoryLockRefusal::Locked(info)) => {
            return Ok(Ok(TxnOutcome::Failed(TxnError::KeyLocked(info))))
        }
        Err(MemoryLockRefusal::Full) => {
            return Ok(Err(server_busy("too many one-phase commits in flight")))
        }
    };
    let epoch = EpochRecord::of(descriptor.epoch.as_ref());
    let proposer = peer.clone();
    let task = tokio::spawn(async move {
        let _held_until_the_proposal_finished = guard;
        let commit_ts = tso.timestamp().await?;
        command.one_pc_commit_ts = Some(commit_ts);
        let command = RegionCommand::txn(TxnCommand::Prewrite(command), epoch);
        Ok::<_, RaftstoreError>(proposer.raft().client_write(command).await)
    });
    let finished = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), task).await;
    let written = match finished {
        Err(_) => {
            return Ok(Err(server_busy(
                "timed out waiting for the one-phase commit",
            )))
        }
        Ok(Err(join_error)) => {
            return Err(RaftstoreError::Raft {
                region_id: descriptor.region_id,
                hint: format!("the one-phase commit task failed: {join_error}"),
            })
        }
        Ok(Ok(Err(tso_error))) => {
            return Ok(Err(server_busy(format!(
                "no commit timestamp: {tso_error}"
            ))))
        }
        Ok(Ok(Ok(written))) => written,
    };
    match proposal_result(&peer, written)? {
        Ok(response) => outcome_of(node, descriptor, response),
        Err(region_error) => Ok(Err(region_error)),
    }
}

pub async fn commit(
    node: &StoreNode,
    request: CommitRequest,
) -> Result<CommitResponse, RaftstoreError> {
    check_start_ts(request.start_ts)?;
    if request.commit_ts <= request.start_ts {
        return Err(invalid(format!(
            "commit_ts {} is not after start_ts {}",
            request.commit_ts, request.start_ts
        )));
    }
    validate_keys(&request.keys)?;
    let refused = |region_error| CommitResponse {
        region_error: Some(region_error),
        error: None,
    };
    let keys = request.keys.iter().map(Vec::as_slice);
    let (peer, descriptor) = match admit_keys(node, request.context.as_ref(), keys)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    if request.keys.is_empty() {
        return Ok(CommitResponse::default());
    }
    let command = TxnCommand::Commit(Commit {
        start_ts: request.start_ts,
        commit_ts: request.commit_ts,
        keys: request.keys,
    });
    match run(node, &peer, &descriptor, command).await? {
        Ok(outcome) => Ok(CommitResponse {
            region_error: None,
            error: failure(&outcome),
        }),
        Err(region_error) => Ok(refused(region_error)),
    }
}

pub async fn rollback(
    node: &StoreNode,
    request: RollbackRequest,
) -> Result<RollbackResponse, RaftstoreError> {
    check_start_ts(request.start_ts)?;
    validate_keys(&request.keys)?;
    let refused = |region_error| RollbackResponse {
        region_error: Some(region_error),
        error: None,
    };
    let keys = request.keys.iter().map(Vec::as_slice);
    let (peer, descriptor) = match admit_keys(node, request.context.as_ref(), keys)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    if request.keys.is_empty() {
        return Ok(RollbackResponse::default());
    }
    let command = TxnCommand::Rollback(Rollback {
        start_ts: request.start_ts,
        keys: request.keys,
    });
    match run(node, &peer, &descriptor, command).await? {
        Ok(outcome) => Ok(RollbackResponse {
            region_error: None,
            error: failure(&outcome),
        }),
        Err(region_error) => Ok(refused(region_error)),
    }
}

pub async fn check_txn_status(
    node: &StoreNode,
    request: CheckTxnStatusRequest,
) -> Result<CheckTxnStatusResponse, RaftstoreError> {
    check_start_ts(request.start_ts)?;
    check_key_size(&request.primary_key)?;
    if request.current_ts == 0 {
        return Err(invalid("a status check needs a current_ts"));
    }
    let refused = |region_error| CheckTxnStatusResponse {
        region_error: Some(region_error),
        ..Default::default()
    };
    let key = [request.primary_key.as_slice()];
    let (peer, descriptor) = match admit_keys(node, request.context.as_ref(), key)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    let command = TxnCommand::CheckTxnStatus(CheckTxnStatus {
        primary_key: request.primary_key,
        start_ts: request.start_ts,
        current_ts: request.current_ts,
    });
    let outcome = match run(node, &peer, &descriptor, command).await? {
        Ok(outcome) => outcome,
        Err(region_error) => return Ok(refused(region_error)),
    };
    use arbor_proto::TxnStatus as Wire;
    let answer = |status: Wire, commit_ts, lock_ttl_remaining_ms| CheckTxnStatusResponse {
        region_error: None,
        error: None,
        status: status as i32,
        commit_ts,
        lock_ttl_remaining_ms,
    };
    match outcome {
        TxnOutcome::Status(TxnStatus::Committed { commit_ts }) => {
            Ok(answer(Wire::Committed, commit_ts, 0))
        }
        TxnOutcome::Status(TxnStatus::Locked { ttl_remaining_ms }) => {
            Ok(answer(Wire::Locked, 0, ttl_remaining_ms))
        }
        TxnOutcome::Status(TxnStatus::RolledBack) => Ok(answer(Wire::RolledBack, 0, 0)),
        TxnOutcome::Failed(error) => Ok(CheckTxnStatusResponse {
            error: Some(txn_error_proto(&error)),
            ..Default::default()
        }),
        other => Err(unexpected(&descriptor, &other)),
    }
}

pub async fn resolve_lock(
    node: &StoreNode,
    request: ResolveLockRequest,
) -> Result<ResolveLockResponse, RaftstoreError> {
    check_start_ts(request.start_ts)?;
    if request.commit_ts != 0 && request.commit_ts <= request.start_ts {
        return Err(invalid(format!(
            "commit_ts {} is not after start_ts {} (0 rolls back)",
            request.commit_ts, request.start_ts
        )));
    }
    validate_keys(&request.keys)?;
    let refused = |region_error| ResolveLockResponse {
        region_error: Some(region_error),
        error: None,
    };
    let keys = request.keys.iter().map(Vec::as_slice);
    let (peer, descriptor) = match admit_keys(node, request.context.as_ref(), keys)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    if request.keys.is_empty() {
        return Ok(ResolveLockResponse::default());
    }
    let command = TxnCommand::ResolveLock(ResolveLock {
        start_ts: request.start_ts,
        commit_ts: request.commit_ts,
        keys: request.keys,
    });
    match run(node, &peer, &descriptor, command).await? {
        Ok(outcome) => Ok(ResolveLockResponse {
            region_error: None,
            error: failure(&outcome),
        }),
        Err(region_error) => Ok(refused(region_error)),
    }
}

pub async fn pessimistic_lock(
    node: &StoreNode,
    request: PessimisticLockRequest,
) -> Result<PessimisticLockResponse, RaftstoreError> {
    check_start_ts(request.start_ts)?;
    check_key_size(&request.primary_key)?;
    check_lock_ttl(request.lock_ttl_ms)?;
    validate_keys(&request.keys)?;
    let refused = |region_error| PessimisticLockResponse {
        region_error: Some(region_error),
        error: None,
    };
    let keys = request.keys.iter().map(Vec::as_slice);
    let (peer, descriptor) = match admit_keys(node, request.context.as_ref(), keys)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    if request.keys.is_empty() {
        return Ok(PessimisticLockResponse::default());
    }
    let command = TxnCommand::PessimisticLock(PessimisticLock {
        start_ts: request.start_ts,
        primary: request.primary_key,
        lock_ttl_ms: request.lock_ttl_ms,
        keys: request.keys,
    });
    match run(node, &peer, &descriptor, command).await? {
        Ok(outcome) => Ok(PessimisticLockResponse {
            region_error: None,
            error: failure(&outcome),
        }),
        Err(region_error) => Ok(refused(region_error)),
    }
}

pub async fn txn_heartbeat(
    node: &StoreNode,
    request: TxnHeartbeatRequest,
) -> Result<TxnHeartbeatResponse, RaftstoreError> {
    check_start_ts(request.start_ts)?;
    check_key_size(&request.primary_key)?;
    check_lock_ttl(request.lock_ttl_ms)?;
    let refused = |region_error| TxnHeartbeatResponse {
        region_error: Some(region_error),
        ..Default::default()
    };
    let key = [request.primary_key.as_slice()];
    let (peer, descriptor) = match admit_keys(node, request.context.as_ref(), key)? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    let command = TxnCommand::Heartbeat(Heartbeat {
        start_ts: request.start_ts,
        primary: request.primary_key,
        lock_ttl_ms: request.lock_ttl_ms,
    });
    match run(node, &peer, &descriptor, command).await? {
        Ok(TxnOutcome::LockTtl { ttl_ms }) => Ok(TxnHeartbeatResponse {
            lock_ttl_ms: ttl_ms,
            ..Default::default()
        }),
        Ok(TxnOutcome::Failed(error)) => Ok(TxnHeartbeatResponse {
            error: Some(txn_error_proto(&error)),
            ..Default::default()
        }),
        Ok(other) => Err(unexpected(&descriptor, &other)),
        Err(region_error) => Ok(refused(region_error)),
    }
}

#[cfg(test)]
mod tests {
    use arbor_proto::{MutationCondition, MutationOp};

    use super::*;
    use crate::config::KEY_BYTES_MAX;

    fn put(key: Vec<u8>, value: Vec<u8>) -> Mutation {
        Mutation {
            op: MutationOp::Put as i32,
            key,
            value,
            condition: MutationCondition::None as i32,
        }
    }

    #[test]
    fn oversized_keys_values_and_batches_are_invalid() {
        let ok = validate_batch(&[put(vec![1; KEY_BYTES_MAX], vec![2; VALUE_BYTES_MAX])]);
        assert!(ok.is_ok());
        let long_key = validate_batch(&[put(vec![1; KEY_BYTES_MAX + 1], Vec::new())]);
        assert!(matches!(
            long_key,
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        let long_value = validate_batch(&[put(b"k".to_vec(), vec![0; VALUE_BYTES_MAX + 1])]);
        assert!(matches!(
            long_value,
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        let many = vec![put(b"k".to_vec(), Vec::new()); WRITE_MUTATIONS_MAX + 1];
        assert!(validate_batch(&many).is_err());
        let heavy = vec![
            put(b"k".to_vec(), vec![0; VALUE_BYTES_MAX]);
            WRITE_BATCH_BYTES_MAX / VALUE_BYTES_MAX + 1
        ];
        assert!(validate_batch(&heavy).is_err());
        assert!(validate_keys(&vec![b"k".to_vec(); WRITE_MUTATIONS_MAX + 1]).is_err());
        assert!(validate_keys(&[vec![0; KEY_BYTES_MAX + 1]]).is_err());
    }
}
