//! Heartbeat: a client whose transaction is still running raises the TTL
//! of its primary lock. Readers and writers judge a transaction alive by
//! its primary's TTL ([`super::check_txn_status`]), so a transaction that
//! holds locks longer than one TTL (a long block after `SELECT ... FOR
//! UPDATE`, a large two-phase commit) stays alive while its client
//! heartbeats, and one that crashed is rolled back one TTL after its last
//! heartbeat. The TTL only grows; a primary whose lock is gone (committed,
//! rolled back, never taken) answers `Aborted { LockNotFound }` and
//! nothing changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{state_of, AbortReason, Decision, Effect, KeyState, TxnError, TxnOutcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub start_ts: u64,
    #[serde(with = "crate::command::hex_bytes")]
    pub primary: Vec<u8>,
    /// Counted from `start_ts`, like every lock's TTL.
    pub lock_ttl_ms: u64,
}

pub fn decide(command: &Heartbeat, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    let state = state_of(states, &command.primary);
    let Some(lock) = state.own_lock(command.start_ts) else {
        return Decision::failed(TxnError::Aborted {
            key: command.primary.clone(),
            start_ts: command.start_ts,
            reason: AbortReason::LockNotFound,
        });
    };
    if lock.ttl_ms >= command.lock_ttl_ms {
        return Decision {
            effects: Vec::new(),
            outcome: TxnOutcome::LockTtl {
                ttl_ms: lock.ttl_ms,
            },
            key_count_delta: 0,
        };
    }
    let mut extended = lock.clone();
    extended.ttl_ms = command.lock_ttl_ms;
    Decision {
        effects: vec![Effect::PutLock {
            key: command.primary.clone(),
            lock: extended,
        }],
        outcome: TxnOutcome::LockTtl {
            ttl_ms: command.lock_ttl_ms,
        },
        key_count_delta: 0,
    }
}
