//! ResolveLock: once the primary decided a transaction's fate, commit
//! (`commit_ts > 0`) or roll back (`commit_ts == 0`) its leftover locks on
//! these keys. Keys without its lock are left alone (resolved already, or
//! never locked), so resolving twice is harmless.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{distinct, rollback_key, state_of, Decision, KeyState, TxnOutcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveLock {
    pub start_ts: u64,
    /// 0 = roll back.
    pub commit_ts: u64,
    #[serde(with = "crate::command::hex_bytes_list")]
    pub keys: Vec<Vec<u8>>,
}

pub fn decide(command: &ResolveLock, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    let (start_ts, commit_ts) = (command.start_ts, command.commit_ts);
    let mut effects = Vec::new();
    let mut key_count_delta = 0;
    for key in distinct(command.keys.iter().map(Vec::as_slice)) {
        let state = state_of(states, key);
        let Some(lock) = state.own_lock(start_ts) else {
            continue;
        };
        if commit_ts == 0 {
            effects.extend(rollback_key(key, start_ts, state));
        } else if commit_ts > start_ts {
            let (committing, delta) = super::commit_lock(key, lock, commit_ts, state);
            effects.extend(committing);
            key_count_delta += delta;
        }
        // 0 < commit_ts <= start_ts cannot be a commit; the service refuses
        // it before it reaches the log, and apply leaves the lock.
    }
    Decision {
        effects,
        outcome: TxnOutcome::Done,
        key_count_delta,
    }
}
