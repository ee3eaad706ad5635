//! Percolator transactions over the multi-version layout, as pure
//! functions: `(the lock and write records of the keys a command touches,
//! the command) -> (records to write, response)`. No IO here: the region's
//! apply ([`crate::storage::state_machine`]) gathers each key's
//! [`KeyState`] through a [`TxnReader`], calls [`decide`], and writes the
//! [`Effect`]s in the entry's write batch. One file per operation.
//!
//! The protocol (Percolator, as TiKV runs it):
//! - [`prewrite`]: lock every key of a transaction at its `start_ts`, after
//!   checking nobody else holds a lock and nobody committed a write at or
//!   after `start_ts` (first committer wins), and the mutation's condition
//!   against the newest committed version. With a one-phase commit
//!   timestamp, write the versions at once instead of locks.
//! - [`commit`]: turn the transaction's locks into write records at
//!   `commit_ts`. The primary key's commit is the transaction's commit point.
//! - [`rollback`]: drop the locks and leave a `Rollback` record at
//!   `start_ts`, so a prewrite that arrives late fails.
//! - [`check_txn_status`]: what a reader blocked by a lock asks of the
//!   primary key: committed, still locked, or (after the lock's TTL, or when
//!   it never arrived) rolled back now.
//! - [`resolve_lock`]: commit or roll back the leftover locks of a
//!   transaction whose fate the primary decided.
//! - [`read`]: the newest version at or below a read timestamp.
//! - [`pessimistic_lock`]: `SELECT ... FOR UPDATE` — lock keys at read
//!   time, before the transaction's writes are known. The lock holds off
//!   other writers (they wait or resolve it like any lock) but not readers;
//!   the transaction's own prewrite later turns it into a prewrite lock.
//! - [`heartbeat`]: a live client extends the TTL of its primary lock, so a
//!   long transaction is not rolled back by the readers it blocks while a
//!   crashed one still is, one TTL after its last heartbeat.
//!
//! **Invariants** (checked over generated interleavings in `tests`): two
//! committed writes of one key never overlap in `[start_ts, commit_ts]`; a
//! rolled-back transaction never commits afterwards; commit, rollback and
//! prewrite are idempotent for one `start_ts`; a transaction whose primary
//! committed resolves every secondary to committed.

pub mod check_txn_status;
pub mod commit;
pub mod heartbeat;
pub mod pessimistic_lock;
pub mod prewrite;
pub mod read;
pub mod record;
pub mod resolve_lock;
pub mod rollback;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bits of a hybrid timestamp below its physical milliseconds.
pub const LOGICAL_BITS: u32 = 18;

/// The physical milliseconds of a hybrid timestamp.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// What a mutation (and the lock it leaves) does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MutationKind {
    Put,
    Delete,
    /// No change; the key takes part in conflict detection (`SELECT ... FOR
    /// UPDATE`). Readers ignore such locks and records.
    Lock,
    /// Only the kind of a lock, never of a prewrite mutation: a lock taken
    /// at read time by [`pessimistic_lock`]. Readers ignore it; other
    /// writers wait for it; the holder's prewrite replaces it.
    PessimisticLock,
}

impl MutationKind {
    /// Put or Delete: the kind of a lock whose commit makes a new version.
    pub fn changes_data(self) -> bool {
        matches!(self, MutationKind::Put | MutationKind::Delete)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    None,
    MustNotExist,
    MustExist,
}

/// One mutation of a prewrite, as stored in the raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMutation {
    pub kind: MutationKind,
    #[serde(with = "crate::command::hex_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "crate::command::hex_bytes")]
    pub value: Vec<u8>,
    pub condition: Condition,
}

/// A transaction's lock on a key (the `lock` column family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub primary: Vec<u8>,
    pub start_ts: u64,
    /// The lock is alive until `physical_ms(start_ts) + ttl_ms`: its creation
    /// time is taken from `start_ts`, so a client prewriting long after its
    /// start adds the time since then to the TTL.
    pub ttl_ms: u64,
    pub kind: MutationKind,
    pub value: Vec<u8>,
}

impl Lock {
    pub fn expires_at_ms(&self) -> u64 {
        physical_ms(self.start_ts).saturating_add(self.ttl_ms)
    }

    /// Milliseconds left at `current_ts` (0 = expired).
    pub fn ttl_remaining_ms(&self, current_ts: u64) -> u64 {
        self.expires_at_ms().saturating_sub(physical_ms(current_ts))
    }

    /// A reader at `read_ts` must wait for this lock: its transaction may
    /// commit below `read_ts` and it changes the value (a `Lock`-kind lock
    /// never does).
    pub fn blocks_read(&self, read_ts: u64) -> bool {
        self.start_ts <= read_ts && self.kind.changes_data()
    }

    pub fn info(&self, key: &[u8]) -> LockInfo {
        LockInfo {
            key: key.to_vec(),
            primary: self.primary.clone(),
            start_ts: self.start_ts,
            ttl_ms: self.ttl_ms,
            kind: self.kind,
            in_memory: false,
        }
    }
}

/// What a write record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Delete,
    /// Written at `commit_ts == start_ts` when a transaction is rolled back,
    /// so its late prewrite fails. Not data.
    Rollback,
    /// A committed `Lock` mutation. Not data.
    Lock,
}

/// One entry of the `write` column family, at some `commit_ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub kind: WriteKind,
    /// The transaction that wrote it.
    pub start_ts: u64,
    /// The value of a `Put`, empty otherwise.
    pub value: Vec<u8>,
}

impl WriteRecord {
    pub fn rollback(start_ts: u64) -> Self {
        Self {
            kind: WriteKind::Rollback,
            start_ts,
            value: Vec::new(),
        }
    }

    fn committed(lock: &Lock) -> Self {
        let kind = match lock.kind {
            MutationKind::Put => WriteKind::Put,
            MutationKind::Delete => WriteKind::Delete,
            MutationKind::Lock | MutationKind::PessimisticLock => WriteKind::Lock,
        };
        let value = match kind {
            WriteKind::Put => lock.value.clone(),
            _ => Vec::new(),
        };
        Self {
            kind,
            start_ts: lock.start_ts,
            value,
        }
    }

    /// Put or Delete: a version a reader can see.
    pub fn is_data(&self) -> bool {
        matches!(self.kind, WriteKind::Put | WriteKind::Delete)
    }
}

/// A lock as reported to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub key: Vec<u8>,
    pub primary: Vec<u8>,
    pub start_ts: u64,
    pub ttl_ms: u64,
    pub kind: MutationKind,
    /// A leader's memory lock of a one-phase commit in flight.
    pub in_memory: bool,
}

/// What a command needs to know about one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyState {
    pub lock: Option<Lock>,
    /// Write records with `commit_ts >= since_ts` (the command's start_ts),
    /// newest first, followed by the newest data record below `since_ts`
    /// (Rollback and Lock records below it are skipped).
    pub writes: Vec<(u64, WriteRecord)>,
}

impl KeyState {
    /// The lock, when `start_ts`'s transaction holds it.
    pub fn own_lock(&self, start_ts: u64) -> Option<&Lock> {
        self.lock.as_ref().filter(|lock| lock.start_ts == start_ts)
    }

    /// The lock, when another transaction holds it.
    pub fn foreign_lock(&self, start_ts: u64) -> Option<&Lock> {
        self.lock.as_ref().filter(|lock| lock.start_ts != start_ts)
    }

    /// The record `start_ts`'s transaction left (commit or rollback).
    pub fn own_record(&self, start_ts: u64) -> Option<(u64, &WriteRecord)> {
        self.writes
            .iter()
            .find(|(commit_ts, record)| *commit_ts >= start_ts && record.start_ts == start_ts)
            .map(|(commit_ts, record)| (*commit_ts, record))
    }

    /// The newest write another transaction committed at or after
    /// `start_ts` (rollbacks are not writes): a write-write conflict.
    pub fn conflict(&self, start_ts: u64) -> Option<(u64, &WriteRecord)> {
        self.writes
            .iter()
            .take_while(|(commit_ts, _)| *commit_ts >= start_ts)
            .find(|(_, record)| record.start_ts != start_ts && record.kind != WriteKind::Rollback)
            .map(|(commit_ts, record)| (*commit_ts, record))
    }

    /// Whether the newest data version committed below `ts` is a Put.
    pub fn exists_before(&self, ts: u64) -> bool {
        self.writes
            .iter()
            .find(|(commit_ts, record)| *commit_ts < ts && record.is_data())
            .is_some_and(|(_, record)| record.kind == WriteKind::Put)
    }

    /// Whether the newest data version is a Put.
    pub fn exists_now(&self) -> bool {
        self.writes
            .iter()
            .find(|(_, record)| record.is_data())
            .is_some_and(|(_, record)| record.kind == WriteKind::Put)
    }

    /// Whether a record other than `start_ts`'s own sits at exactly `ts`
    /// (then a rollback record there would overwrite it).
    fn slot_taken(&self, ts: u64, start_ts: u64) -> bool {
        self.writes
            .iter()
            .any(|(commit_ts, record)| *commit_ts == ts && record.start_ts != start_ts)
    }
}

/// Reads the lock and write records of keys (RocksDB in a region, a map in
/// tests).
pub trait TxnReader {
    type Error;

    fn lock(&self, key: &[u8]) -> Result<Option<Lock>, Self::Error>;

    /// Every write record of `key`, newest first.
    fn versions<'a>(
        &'a self,
        key: &[u8],
    ) -> Box<dyn Iterator<Item = Result<(u64, WriteRecord), Self::Error>> + 'a>;
}

/// The [`KeyState`] of `key` for a command of transaction `since_ts`.
pub fn key_state<R: TxnReader>(
    reader: &R,
    key: &[u8],
    since_ts: u64,
) -> Result<KeyState, R::Error> {
    let lock = reader.lock(key)?;
    let mut writes = Vec::new();
    for version in reader.versions(key) {
        let (commit_ts, record) = version?;
        if commit_ts >= since_ts {
            writes.push((commit_ts, record));
        } else if record.is_data() {
            writes.push((commit_ts, record));
            break;
        }
    }
    Ok(KeyState { lock, writes })
}

/// The states of every key a command touches.
pub fn key_states<'k, R: TxnReader>(
    reader: &R,
    keys: impl IntoIterator<Item = &'k [u8]>,
    since_ts: u64,
) -> Result<BTreeMap<Vec<u8>, KeyState>, R::Error> {
    let mut states = BTreeMap::new();
    for key in keys {
        if !states.contains_key(key) {
            states.insert(key.to_vec(), key_state(reader, key, since_ts)?);
        }
    }
    Ok(states)
}

/// A record to write (or delete) when the command applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    PutLock {
        key: Vec<u8>,
        lock: Lock,
    },
    DeleteLock {
        key: Vec<u8>,
    },
    PutWrite {
        key: Vec<u8>,
        commit_ts: u64,
        record: WriteRecord,
    },
}

/// Why a rolled-back or unknown transaction cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// A rollback record of the transaction is there.
    RolledBack,
    /// Neither its lock nor its commit record is there.
    LockNotFound,
    /// The command itself cannot be right (e.g. commit_ts <= start_ts).
    Invalid,
    /// Its start_ts lies below the region's GC safe point: versions its
    /// conflict check needs may be collected (see `storage::gc`).
    BelowGcSafePoint,
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortReason::RolledBack => write!(f, "rolled back"),
            AbortReason::LockNotFound => write!(f, "its lock is gone and it did not commit"),
            AbortReason::Invalid => write!(f, "invalid transaction command"),
            AbortReason::BelowGcSafePoint => {
                write!(
                    f,
                    "its start_ts is below the GC safe point (snapshot too old)"
                )
            }
        }
    }
}

/// Why a command wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnError {
    KeyLocked(LockInfo),
    WriteConflict {
        key: Vec<u8>,
        start_ts: u64,
        conflict_start_ts: u64,
        conflict_commit_ts: u64,
    },
    Aborted {
        key: Vec<u8>,
        start_ts: u64,
        reason: AbortReason,
    },
    ConditionFailed {
        mutation_index: usize,
    },
    /// A rollback asked of a transaction that committed.
    Committed {
        key: Vec<u8>,
        commit_ts: u64,
    },
}

/// The state of a transaction as its primary key tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Committed { commit_ts: u64 },
    Locked { ttl_remaining_ms: u64 },
    RolledBack,
}

/// What applying a transaction command answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Prewrite (or one-phase commit, with its commit timestamp) succeeded.
    Prewritten {
        existed: Vec<bool>,
        one_pc_commit_ts: Option<u64>,
    },
    /// Commit, rollback, resolve or a pessimistic lock succeeded.
    Done,
    /// A heartbeat set the primary lock's TTL to this.
    LockTtl {
        ttl_ms: u64,
    },
    Status(TxnStatus),
    Failed(TxnError),
}

/// What a command writes and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub effects: Vec<Effect>,
    pub outcome: TxnOutcome,
    /// Change of the region's count of live keys (newest data version Put).
    pub key_count_delta: i64,
}

impl Decision {
    fn failed(error: TxnError) -> Self {
        Self {
            effects: Vec::new(),
            outcome: TxnOutcome::Failed(error),
            key_count_delta: 0,
        }
    }
}

/// A transaction command of the raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCommand {
    Prewrite(prewrite::Prewrite),
    Commit(commit::Commit),
    Rollback(rollback::Rollback),
    CheckTxnStatus(check_txn_status::CheckTxnStatus),
    ResolveLock(resolve_lock::ResolveLock),
    PessimisticLock(pessimistic_lock::PessimisticLock),
    Heartbeat(heartbeat::Heartbeat),
}

impl TxnCommand {
    /// The transaction the command belongs to.
    pub fn start_ts(&self) -> u64 {
        match self {
            TxnCommand::Prewrite(command) => command.start_ts,
            TxnCommand::Commit(command) => command.start_ts,
            TxnCommand::Rollback(command) => command.start_ts,
            TxnCommand::CheckTxnStatus(command) => command.start_ts,
            TxnCommand::ResolveLock(command) => command.start_ts,
            TxnCommand::PessimisticLock(command) => command.start_ts,
            TxnCommand::Heartbeat(command) => command.start_ts,
        }
    }

    /// Every key the command reads or writes, in command order.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            TxnCommand::Prewrite(command) => command
                .mutations
                .iter()
                .map(|mutation| mutation.key.as_slice())
                .collect(),
            TxnCommand::Commit(command) => command.keys.iter().map(Vec::as_slice).collect(),
            TxnCommand::Rollback(command) => command.keys.iter().map(Vec::as_slice).collect(),
            TxnCommand::CheckTxnStatus(command) => vec![command.primary_key.as_slice()],
            TxnCommand::ResolveLock(command) => command.keys.iter().map(Vec::as_slice).collect(),
            TxnCommand::PessimisticLock(command) => {
                command.keys.iter().map(Vec::as_slice).collect()
            }
            TxnCommand::Heartbeat(command) => vec![command.primary.as_slice()],
        }
    }
}

/// Decides `command` over the states of its keys (every key of
/// [`TxnCommand::keys`] must have a state; a missing one counts as empty).
pub fn decide(command: &TxnCommand, states: &BTreeMap<Vec<u8>, KeyState>) -> Decision {
    match command {
        TxnCommand::Prewrite(command) => prewrite::decide(command, states),
        TxnCommand::Commit(command) => commit::decide(command, states),
        TxnCommand::Rollback(command) => rollback::decide(command, states),
        TxnCommand::CheckTxnStatus(command) => check_txn_status::decide(command, states),
        TxnCommand::ResolveLock(command) => resolve_lock::decide(command, states),
        TxnCommand::PessimisticLock(command) => pessimistic_lock::decide(command, states),
        TxnCommand::Heartbeat(command) => heartbeat::decide(command, states),
    }
}

/// The state of `key`, empty when missing.
fn state_of<'a>(states: &'a BTreeMap<Vec<u8>, KeyState>, key: &[u8]) -> &'a KeyState {
    static EMPTY: KeyState = KeyState {
        lock: None,
        writes: Vec::new(),
    };
    states.get(key).unwrap_or(&EMPTY)
}

/// The effects of committing `lock` on `key` at `commit_ts`, and the
/// change in live keys.
fn commit_lock(key: &[u8], lock: &Lock, commit_ts: u64, state: &KeyState) -> (Vec<Effect>, i64) {
    let record = WriteRecord::committed(lock);
    let delta = match record.kind {
        WriteKind::Put => i64::from(!state.exists_now()),
        WriteKind::Delete => -i64::from(state.exists_now()),
        WriteKind::Lock | WriteKind::Rollback => 0,
    };
    let effects = vec![
        Effect::PutWrite {
            key: key.to_vec(),
            commit_ts,
            record,
        },
        Effect::DeleteLock { key: key.to_vec() },
    ];
    (effects, delta)
}

/// The effects of rolling back `start_ts` on `key`: drop its lock if held,
/// and leave a rollback record unless another record sits at `start_ts`.
fn rollback_key(key: &[u8], start_ts: u64, state: &KeyState) -> Vec<Effect> {
    let mut effects = Vec::new();
    if state.own_lock(start_ts).is_some() {
        effects.push(Effect::DeleteLock { key: key.to_vec() });
    }
    if !state.slot_taken(start_ts, start_ts) {
        effects.push(Effect::PutWrite {
            key: key.to_vec(),
            commit_ts: start_ts,
            record: WriteRecord::rollback(start_ts),
        });
    }
    effects
}

/// Distinct keys in first-seen order.
fn distinct<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let mut seen = std::collections::BTreeSet::new();
    keys.into_iter().filter(|key| seen.insert(*key)).collect()
}
