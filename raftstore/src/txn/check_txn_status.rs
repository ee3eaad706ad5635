//! CheckTxnStatus: the fate of a transaction, asked of its primary key by
//! a reader (or writer) its lock blocks. Committed when the primary's
//! commit record is there; still locked while the primary's lock lives
//! (`physical(start_ts) + ttl_ms > physical(current_ts)`); otherwise rolled
//! back — now, if the lock expired or never arrived (a `Rollback` record is
//! left, so the transaction can never commit afterwards).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{rollback_key, state_of, Decision, KeyState, TxnOutcome, TxnStatus, WriteKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTxnStatus {
    #[serde(with = "crate::command::hex_bytes")]
    pub primary_key: Vec<u8>,
    pub start_ts: u64,
    pub current_ts: u64,
}

pub fn decide(command: &CheckTxnStatus, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    let (key, start_ts) = (command.primary_key.as_slice(), command.start_ts);
    let state = state_of(states, key);
    let status = |status| Decision {
        effects: Vec::new(),
        outcome: TxnOutcome::Status(status),
        key_count_delta: 0,
    };
    let rolled_back = || Decision {
        effects: rollback_key(key, start_ts, state),
        outcome: TxnOutcome::Status(TxnStatus::RolledBack),
        key_count_delta: 0,
    };
    if let Some(lock) = state.own_lock(start_ts) {
        let ttl_remaining_ms = lock.ttl_remaining_ms(command.current_ts);
        if ttl_remaining_ms > 0 {
            return status(TxnStatus::Locked { ttl_remaining_ms });
        }
        return rolled_back();
    }
    match state.own_record(start_ts) {
        Some((_, record)) if record.kind == WriteKind::Rollback => status(TxnStatus::RolledBack),
        Some((commit_ts, _)) => status(TxnStatus::Committed { commit_ts }),
        None => rolled_back(),
    }
}
