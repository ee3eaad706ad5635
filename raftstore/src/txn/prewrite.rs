//! Prewrite: lock every key of the transaction, or — with a one-phase
//! commit timestamp — write its versions at once.
//!
//! Per key, in mutation order, the first of these refuses the whole batch
//! (nothing is written): another transaction's lock (`KeyLocked`); this
//! transaction's rollback record (`Aborted`); a write another transaction
//! committed at or after `start_ts` (`WriteConflict`). Then each
//! mutation's condition is checked, in order, against the newest committed
//! version as changed by the mutations before it in the batch
//! (`ConditionFailed`). A key the transaction already holds the lock of is
//! simply locked again — which is also how the pessimistic lock of a
//! `SELECT ... FOR UPDATE` becomes this prewrite's lock; a key it already
//! committed is left alone (a retry of a prewrite or one-phase commit that
//! applied).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    distinct, state_of, AbortReason, CommandMutation, Condition, Decision, Effect, KeyState, Lock,
    MutationKind, TxnError, TxnOutcome, WriteKind,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prewrite {
    pub start_ts: u64,
    #[serde(with = "crate::command::hex_bytes")]
    pub primary: Vec<u8>,
    pub lock_ttl_ms: u64,
    pub mutations: Vec<CommandMutation>,
    /// Set for a one-phase commit: write versions at this timestamp instead
    /// of locks (the region leader fetched it after taking memory locks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_pc_commit_ts: Option<u64>,
}

/// What the batch leaves on one key: the last Put or Delete, else Lock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Final {
    kind: MutationKind,
    value: Vec<u8>,
}

fn fold(mutations: &[CommandMutation]) -> BTreeMap<&[u8], Final> {
    let mut finals: BTreeMap<&[u8], Final> = BTreeMap::new();
    for mutation in mutations {
        let next = Final {
            kind: mutation.kind,
            value: match mutation.kind {
                MutationKind::Put => mutation.value.clone(),
                MutationKind::Delete | MutationKind::Lock | MutationKind::PessimisticLock => {
                    Vec::new()
                }
            },
        };
        match finals.get_mut(mutation.key.as_slice()) {
            Some(_) if !mutation.kind.changes_data() => {}
            Some(existing) => *existing = next,
            None => {
                finals.insert(mutation.key.as_slice(), next);
            }
        }
    }
    finals
}

/// The first per-key refusal, if any; also which keys this transaction
/// committed already, with the commit timestamp.
fn check_keys(
    command: &Prewrite,
    states: &BTreeMap<Vec<u8>, KeyState>,
) -> Result<BTreeMap<Vec<u8>, u64>, TxnError> {
    let start_ts = command.start_ts;
    let mut committed = BTreeMap::new();
    let keys = distinct(command.mutations.iter().map(|m| m.key.as_slice()));
    for key in keys {
        let state = state_of(states, key);
        if let Some(lock) = state.foreign_lock(start_ts) {
            return Err(TxnError::KeyLocked(lock.info(key)));
        }
        match state.own_record(start_ts) {
            Some((_, record)) if record.kind == WriteKind::Rollback => {
                return Err(TxnError::Aborted {
                    key: key.to_vec(),
                    start_ts,
                    reason: AbortReason::RolledBack,
                })
            }
            Some((commit_ts, _)) => {
                committed.insert(key.to_vec(), commit_ts);
                continue;
            }
            None => {}
        }
        if let Some((commit_ts, record)) = state.conflict(start_ts) {
            return Err(TxnError::WriteConflict {
                key: key.to_vec(),
                start_ts,
                conflict_start_ts: record.start_ts,
                conflict_commit_ts: commit_ts,
            });
        }
    }
    Ok(committed)
}

/// Checks conditions in order over a model of key presence; returns
/// `existed` per mutation, or the first failing mutation. `check` false
/// (a retry of a batch that applied) only computes `existed`.
fn check_conditions(
    command: &Prewrite,
    states: &BTreeMap<Vec<u8>, KeyState>,
    check: bool,
) -> Result<Vec<bool>, usize> {
    let mut present: BTreeMap<&[u8], bool> = BTreeMap::new();
    let mut existed = Vec::with_capacity(command.mutations.len());
    for (index, mutation) in command.mutations.iter().enumerate() {
        let key = mutation.key.as_slice();
        let exists = *present
            .entry(key)
            .or_insert_with(|| state_of(states, key).exists_before(command.start_ts));
        let holds = match mutation.condition {
            Condition::None => true,
            Condition::MustNotExist => !exists,
            Condition::MustExist => exists,
        };
        if check && !holds {
            return Err(index);
        }
        existed.push(exists);
        match mutation.kind {
            MutationKind::Put => present.insert(key, true),
            MutationKind::Delete => present.insert(key, false),
            MutationKind::Lock | MutationKind::PessimisticLock => None,
        };
    }
    Ok(existed)
}

pub fn decide(command: &Prewrite, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    let start_ts = command.start_ts;
    if command
        .one_pc_commit_ts
        .is_some_and(|commit_ts| commit_ts <= start_ts)
    {
        return Decision::failed(TxnError::Aborted {
            key: command.primary.clone(),
            start_ts,
            reason: AbortReason::Invalid,
        });
    }
    let committed = match check_keys(command, states) {
        Ok(committed) => committed,
        Err(error) => return Decision::failed(error),
    };
    let existed = match check_conditions(command, states, committed.is_empty()) {
        Ok(existed) => existed,
        Err(mutation_index) => {
            return Decision::failed(TxnError::ConditionFailed { mutation_index })
        }
    };
    let mut effects = Vec::new();
    let mut key_count_delta = 0i64;
    for (key, last) in fold(&command.mutations) {
        if committed.contains_key(key) {
            continue;
        }
        let state = state_of(states, key);
        let lock = Lock {
            primary: command.primary.clone(),
            start_ts,
            ttl_ms: command.lock_ttl_ms,
            kind: last.kind,
            value: last.value,
        };
        match command.one_pc_commit_ts {
            None => effects.push(Effect::PutLock {
                key: key.to_vec(),
                lock,
            }),
            Some(commit_ts) => {
                let (committing, delta) = super::commit_lock(key, &lock, commit_ts, state);
                key_count_delta += delta;
                // Only drop a lock that is there (a one-phase commit takes
                // none, but an earlier prewrite of this start_ts may have).
                effects.extend(committing.into_iter().filter(|effect| {
                    !matches!(effect, Effect::DeleteLock { .. })
                        || state.own_lock(start_ts).is_some()
                }));
            }
        }
    }
    let one_pc_commit_ts = command.one_pc_commit_ts.map(|commit_ts| {
        // A retry of a one-phase commit that applied answers the first
        // attempt's commit timestamp.
        committed.values().copied().max().unwrap_or(commit_ts)
    });
    Decision {
        effects,
        outcome: TxnOutcome::Prewritten {
            existed,
            one_pc_commit_ts,
        },
        key_count_delta,
    }
}
