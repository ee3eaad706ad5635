//! Commit: turn the transaction's locks on these keys into write records
//! at `commit_ts`. All or nothing: a key whose lock is gone refuses the
//! whole command — `Aborted` (rolled back, or neither lock nor commit
//! record there). A key already committed by this transaction is fine
//! (a retried commit).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{distinct, state_of, AbortReason, Decision, KeyState, TxnError, TxnOutcome, WriteKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub start_ts: u64,
    pub commit_ts: u64,
    #[serde(with = "crate::command::hex_bytes_list")]
    pub keys: Vec<Vec<u8>>,
}

pub fn decide(command: &Commit, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    let (start_ts, commit_ts) = (command.start_ts, command.commit_ts);
    let abort = |key: &[u8], reason| {
        Decision::failed(TxnError::Aborted {
            key: key.to_vec(),
            start_ts,
            reason,
        })
    };
    if commit_ts <= start_ts {
        let key = command.keys.first().map(Vec::as_slice).unwrap_or_default();
        return abort(key, AbortReason::Invalid);
    }
    let mut effects = Vec::new();
    let mut key_count_delta = 0;
    for key in distinct(command.keys.iter().map(Vec::as_slice)) {
        let state = state_of(states, key);
        if let Some(lock) = state.own_lock(start_ts) {
            let (committing, delta) = super::commit_lock(key, lock, commit_ts, state);
            effects.extend(committing);
            key_count_delta += delta;
            continue;
        }
        match state.own_record(start_ts) {
            Some((_, record)) if record.kind == WriteKind::Rollback => {
                return abort(key, AbortReason::RolledBack)
            }
            Some(_) => {}
            None => return abort(key, AbortReason::LockNotFound),
        }
    }
    Decision {
        effects,
        outcome: TxnOutcome::Done,
        key_count_delta,
    }
}
