//! PessimisticLock: `SELECT ... FOR UPDATE` locks its rows when it reads
//! them, so the transaction learns of a conflict then — and other writers
//! wait for it — instead of at COMMIT.
//!
//! Per key, the first of these refuses the whole batch (nothing is
//! written): another transaction's lock (`KeyLocked`: the client resolves
//! or waits, as for a prewrite); this transaction's rollback record
//! (`Aborted`); a write another transaction committed at or after
//! `start_ts` (`WriteConflict`: under snapshot isolation the row the
//! transaction read is no longer the newest, which Postgres reports as
//! "could not serialize access due to concurrent update"). A key this
//! transaction already locks (pessimistically or by prewrite) stays as it
//! is, so a retried request changes nothing.
//!
//! The lock is a [`MutationKind::PessimisticLock`]: readers ignore it, and
//! its life follows the TTL rules of every lock (its primary's TTL, which
//! [`super::heartbeat`] extends while the client lives).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    distinct, state_of, AbortReason, Decision, Effect, KeyState, Lock, MutationKind, TxnError,
    TxnOutcome, WriteKind,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PessimisticLock {
    pub start_ts: u64,
    #[serde(with = "crate::command::hex_bytes")]
    pub primary: Vec<u8>,
    pub lock_ttl_ms: u64,
    #[serde(with = "crate::command::hex_bytes_list")]
    pub keys: Vec<Vec<u8>>,
}

pub fn decide(command: &PessimisticLock, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    let start_ts = command.start_ts;
    let mut effects = Vec::new();
    for key in distinct(command.keys.iter().map(Vec::as_slice)) {
        let state = state_of(states, key);
        if let Some(lock) = state.foreign_lock(start_ts) {
            return Decision::failed(TxnError::KeyLocked(lock.info(key)));
        }
        if state.own_lock(start_ts).is_some() {
            continue;
        }
        if let Some((_, record)) = state.own_record(start_ts) {
            // Rolled back — or committed, which no live transaction asks to
            // lock afterwards: either way it cannot go on.
            let reason = match record.kind {
                WriteKind::Rollback => AbortReason::RolledBack,
                _ => AbortReason::Invalid,
            };
            return Decision::failed(TxnError::Aborted {
                key: key.to_vec(),
                start_ts,
                reason,
            });
        }
        if let Some((commit_ts, record)) = state.conflict(start_ts) {
            return Decision::failed(TxnError::WriteConflict {
                key: key.to_vec(),
                start_ts,
                conflict_start_ts: record.start_ts,
                conflict_commit_ts: commit_ts,
            });
        }
        effects.push(Effect::PutLock {
            key: key.to_vec(),
            lock: Lock {
                primary: command.primary.clone(),
                start_ts,
                ttl_ms: command.lock_ttl_ms,
                kind: MutationKind::PessimisticLock,
                value: Vec::new(),
            },
        });
    }
    Decision {
        effects,
        outcome: TxnOutcome::Done,
        key_count_delta: 0,
    }
}
