//! Rollback: drop the transaction's locks on these keys and leave a
//! `Rollback` record at `start_ts` on each (also where no lock arrived yet,
//! so a late prewrite fails). Refused whole — `Committed` — when the
//! transaction committed any of the keys. Repeating it changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    distinct, rollback_key, state_of, Decision, KeyState, TxnError, TxnOutcome, WriteKind,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub start_ts: u64,
    #[serde(with = "crate::command::hex_bytes_list")]
    pub keys: Vec<Vec<u8>>,
}

pub fn decide(command: &Rollback, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    let start_ts = command.start_ts;
    let mut effects = Vec::new();
    for key in distinct(command.keys.iter().map(Vec::as_slice)) {
        let state = state_of(states, key);
        match state.own_record(start_ts) {
            Some((_, record)) if record.kind == WriteKind::Rollback => {}
            Some((commit_ts, _)) => {
                return Decision::failed(TxnError::Committed {
                    key: key.to_vec(),
                    commit_ts,
                })
            }
            None => effects.extend(rollback_key(key, start_ts, state)),
        }
    }
    Decision {
        effects,
        outcome: TxnOutcome::Done,
        key_count_delta: 0,
    }
}
