//! The Percolator decisions over an in-memory model of the two column
//! families: single-operation behaviour, then generated interleavings of
//! two or three transactions (clients that lock for update, prewrite,
//! heartbeat, commit and roll back,
//! readers that check status and resolve, duplicated deliveries) with the
//! protocol's invariants checked after every step.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use super::check_txn_status::CheckTxnStatus;
use super::commit::Commit;
use super::heartbeat::Heartbeat;
use super::pessimistic_lock::PessimisticLock;
use super::prewrite::Prewrite;
use super::resolve_lock::ResolveLock;
use super::rollback::Rollback;
use super::*;

/// Both column families of one region, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    locks: BTreeMap<Vec<u8>, Lock>,
    writes: BTreeMap<Vec<u8>, BTreeMap<Reverse<u64>, WriteRecord>>,
    key_count: i64,
}

impl TxnReader for Model {
    type Error = Infallible;

    fn lock(&self, key: &[u8]) -> Result<Option<Lock>, Infallible> {
        Ok(self.locks.get(key).cloned())
    }

    fn versions<'a>(
        &'a self,
        key: &[u8],
    ) -> Box<dyn Iterator<Item = Result<(u64, WriteRecord), Infallible>> + 'a> {
        match self.writes.get(key) {
            None => Box::new(std::iter::empty()),
            Some(versions) => Box::new(
                versions
                    .iter()
                    .map(|(Reverse(ts), record)| Ok((*ts, record.clone()))),
            ),
        }
    }
}

impl Model {
    fn run(&mut self, command: &TxnCommand) -> TxnOutcome {
        let states = match key_states(self, command.keys(), command.start_ts()) {
            Ok(states) => states,
            Err(never) => match never {},
        };
        let decision = decide(command, &states);
        for effect in decision.effects {
            match effect {
                Effect::PutLock { key, lock } => {
                    self.locks.insert(key, lock);
                }
                Effect::DeleteLock { key } => {
                    self.locks.remove(&key);
                }
                Effect::PutWrite {
                    key,
                    commit_ts,
                    record,
                } => {
                    self.writes
                        .entry(key)
                        .or_default()
                        .insert(Reverse(commit_ts), record);
                }
            }
        }
        self.key_count += decision.key_count_delta;
        decision.outcome
    }

    fn read(&self, key: &[u8], read_ts: u64) -> Result<Option<Vec<u8>>, LockInfo> {
        if let Some(lock) = self.locks.get(key).filter(|lock| lock.blocks_read(read_ts)) {
            return Err(lock.info(key));
        }
        match read::visible_value(self.versions(key), read_ts) {
            Ok(value) => Ok(value),
            Err(never) => match never {},
        }
    }

    fn live_keys(&self) -> i64 {
        self.writes
            .values()
            .filter(|versions| {
                versions
                    .values()
                    .find(|record| record.is_data())
                    .is_some_and(|record| record.kind == WriteKind::Put)
            })
            .count() as i64
    }

    /// `(commit_ts, record)` of every write record `start_ts` left on `key`.
    fn records_of(&self, key: &[u8], start_ts: u64) -> Vec<(u64, WriteRecord)> {
        self.writes
            .get(key)
            .map(|versions| {
                versions
                    .iter()
                    .filter(|(_, record)| record.start_ts == start_ts)
                    .map(|(Reverse(ts), record)| (*ts, record.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

const TS: u64 = 1 << LOGICAL_BITS;

fn ts(physical: u64) -> u64 {
    physical * TS
}

fn put(key: &str, value: &str, condition: Condition) -> CommandMutation {
    CommandMutation {
        kind: MutationKind::Put,
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        condition,
    }
}

fn prewrite(start_ts: u64, primary: &str, mutations: Vec<CommandMutation>) -> TxnCommand {
    TxnCommand::Prewrite(Prewrite {
        start_ts,
        primary: primary.as_bytes().to_vec(),
        lock_ttl_ms: 3,
        mutations,
        one_pc_commit_ts: None,
    })
}

fn one_pc(start_ts: u64, commit_ts: u64, mutations: Vec<CommandMutation>) -> TxnCommand {
    let primary = mutations[0].key.clone();
    TxnCommand::Prewrite(Prewrite {
        start_ts,
        primary,
        lock_ttl_ms: 3,
        mutations,
        one_pc_commit_ts: Some(commit_ts),
    })
}

fn keys(keys: &[&str]) -> Vec<Vec<u8>> {
    keys.iter().map(|key| key.as_bytes().to_vec()).collect()
}

fn commit(start_ts: u64, commit_ts: u64, on: &[&str]) -> TxnCommand {
    TxnCommand::Commit(Commit {
        start_ts,
        commit_ts,
        keys: keys(on),
    })
}

fn rollback(start_ts: u64, on: &[&str]) -> TxnCommand {
    TxnCommand::Rollback(Rollback {
        start_ts,
        keys: keys(on),
    })
}

fn check(primary: &str, start_ts: u64, current_ts: u64) -> TxnCommand {
    TxnCommand::CheckTxnStatus(CheckTxnStatus {
        primary_key: primary.as_bytes().to_vec(),
        start_ts,
        current_ts,
    })
}

fn prewritten(existed: Vec<bool>) -> TxnOutcome {
    TxnOutcome::Prewritten {
        existed,
        one_pc_commit_ts: None,
    }
}

#[test]
fn a_two_phase_commit_is_invisible_until_committed_and_visible_at_its_commit_ts() {
    let mut model = Model::default();
    let batch = vec![
        put("a", "1", Condition::None),
        put("b", "2", Condition::None),
    ];
    assert_eq!(
        model.run(&prewrite(ts(10), "a", batch)),
        prewritten(vec![false, false])
    );
    assert!(
        model.read(b"a", ts(11)).is_err(),
        "a lock blocks a later read"
    );
    assert_eq!(
        model.read(b"a", ts(9)),
        Ok(None),
        "an older read ignores it"
    );
    assert_eq!(model.run(&commit(ts(10), ts(12), &["a"])), TxnOutcome::Done);
    assert_eq!(model.read(b"a", ts(12)), Ok(Some(b"1".to_vec())));
    assert_eq!(model.read(b"a", ts(11)), Ok(None));
    assert_eq!(model.run(&commit(ts(10), ts(12), &["b"])), TxnOutcome::Done);
    assert_eq!(model.read(b"b", ts(13)), Ok(Some(b"2".to_vec())));
    assert_eq!(model.key_count, 2);
}

#[test]
fn prewrite_refuses_locked_keys_conflicts_and_failed_conditions_writing_nothing() {
    let mut model = Model::default();
    model.run(&one_pc(
        ts(1),
        ts(2),
        vec![put("a", "old", Condition::None)],
    ));
    model.run(&prewrite(ts(5), "b", vec![put("b", "x", Condition::None)]));
    let before = model.clone();
    let locked = model.run(&prewrite(
        ts(6),
        "c",
        vec![
            put("c", "1", Condition::None),
            put("b", "y", Condition::None),
        ],
    ));
    assert!(
        matches!(&locked, TxnOutcome::Failed(TxnError::KeyLocked(info)) if info.key == b"b" && info.start_ts == ts(5)),
        "{locked:?}"
    );
    // Started before "a" was committed at ts(2): first committer wins.
    let conflict = model.run(&prewrite(
        ts(2) - 1,
        "a",
        vec![put("a", "late", Condition::None)],
    ));
    assert_eq!(
        conflict,
        TxnOutcome::Failed(TxnError::WriteConflict {
            key: b"a".to_vec(),
            start_ts: ts(2) - 1,
            conflict_start_ts: ts(1),
            conflict_commit_ts: ts(2),
        })
    );
    let condition = model.run(&prewrite(
        ts(7),
        "c",
        vec![
            put("c", "1", Condition::MustNotExist),
            put("a", "2", Condition::MustNotExist),
        ],
    ));
    assert_eq!(
        condition,
        TxnOutcome::Failed(TxnError::ConditionFailed { mutation_index: 1 })
    );
    assert_eq!(model, before, "refused prewrites write nothing");
}

#[test]
fn conditions_see_earlier_mutations_of_the_same_batch() {
    let mut model = Model::default();
    let batch = vec![
        put("k", "1", Condition::MustNotExist),
        put("k", "2", Condition::MustExist),
        CommandMutation {
            kind: MutationKind::Delete,
            key: b"k".to_vec(),
            value: Vec::new(),
            condition: Condition::MustExist,
        },
        put("k", "3", Condition::MustNotExist),
    ];
    assert_eq!(
        model.run(&one_pc(ts(1), ts(2), batch)),
        TxnOutcome::Prewritten {
            existed: vec![false, true, true, false],
            one_pc_commit_ts: Some(ts(2)),
        }
    );
    assert_eq!(
        model.read(b"k", ts(3)),
        Ok(Some(b"3".to_vec())),
        "the last write wins"
    );
}

#[test]
fn a_retried_one_phase_commit_answers_its_first_commit_and_writes_nothing() {
    let mut model = Model::default();
    let batch = vec![put("a", "1", Condition::MustNotExist)];
    let first = model.run(&one_pc(ts(1), ts(2), batch.clone()));
    assert_eq!(
        first,
        TxnOutcome::Prewritten {
            existed: vec![false],
            one_pc_commit_ts: Some(ts(2)),
        }
    );
    // Another transaction overwrites the key afterwards.
    model.run(&one_pc(ts(3), ts(4), vec![put("a", "2", Condition::None)]));
    let after = model.clone();
    // The retry (new commit_ts fetched by the leader) finds its own commit.
    assert_eq!(model.run(&one_pc(ts(1), ts(5), batch)), first);
    assert_eq!(model, after);
}

#[test]
fn rollback_stops_a_late_prewrite_and_commit_after_rollback_is_aborted() {
    let mut model = Model::default();
    assert_eq!(model.run(&rollback(ts(1), &["a"])), TxnOutcome::Done);
    let late = model.run(&prewrite(ts(1), "a", vec![put("a", "1", Condition::None)]));
    assert!(matches!(
        late,
        TxnOutcome::Failed(TxnError::Aborted {
            reason: AbortReason::RolledBack,
            ..
        })
    ));
    let commit_late = model.run(&commit(ts(1), ts(2), &["a"]));
    assert!(matches!(
        commit_late,
        TxnOutcome::Failed(TxnError::Aborted {
            reason: AbortReason::RolledBack,
            ..
        })
    ));
    let never = model.run(&commit(ts(3), ts(4), &["b"]));
    assert!(matches!(
        never,
        TxnOutcome::Failed(TxnError::Aborted {
            reason: AbortReason::LockNotFound,
            ..
        })
    ));
}

#[test]
fn rollback_of_a_committed_transaction_is_refused() {
    let mut model = Model::default();
    model.run(&prewrite(ts(1), "a", vec![put("a", "1", Condition::None)]));
    model.run(&commit(ts(1), ts(2), &["a"]));
    assert_eq!(
        model.run(&rollback(ts(1), &["a"])),
        TxnOutcome::Failed(TxnError::Committed {
            key: b"a".to_vec(),
            commit_ts: ts(2),
        })
    );
}

#[test]
fn check_txn_status_waits_for_a_live_lock_and_rolls_back_an_expired_or_missing_one() {
    let mut model = Model::default();
    model.run(&prewrite(ts(10), "p", vec![put("p", "1", Condition::None)]));
    assert_eq!(
        model.run(&check("p", ts(10), ts(11))),
        TxnOutcome::Status(TxnStatus::Locked {
            ttl_remaining_ms: 2
        })
    );
    assert_eq!(
        model.run(&check("p", ts(10), ts(13))),
        TxnOutcome::Status(TxnStatus::RolledBack)
    );
    assert!(model.locks.is_empty());
    assert!(matches!(
        model.run(&commit(ts(10), ts(14), &["p"])),
        TxnOutcome::Failed(TxnError::Aborted { .. })
    ));
    // Never prewritten: recorded as rolled back, so it can never commit.
    assert_eq!(
        model.run(&check("q", ts(20), ts(20))),
        TxnOutcome::Status(TxnStatus::RolledBack)
    );
    assert!(matches!(
        model.run(&prewrite(ts(20), "q", vec![put("q", "1", Condition::None)])),
        TxnOutcome::Failed(TxnError::Aborted { .. })
    ));
    model.run(&prewrite(ts(30), "r", vec![put("r", "1", Condition::None)]));
    model.run(&commit(ts(30), ts(31), &["r"]));
    assert_eq!(
        model.run(&check("r", ts(30), ts(99))),
        TxnOutcome::Status(TxnStatus::Committed { commit_ts: ts(31) })
    );
}

#[test]
fn resolve_lock_commits_or_rolls_back_only_the_transactions_own_locks() {
    let mut model = Model::default();
    model.run(&prewrite(
        ts(1),
        "a",
        vec![
            put("a", "1", Condition::None),
            put("b", "2", Condition::None),
        ],
    ));
    model.run(&commit(ts(1), ts(2), &["a"]));
    let resolve = |start_ts, commit_ts, on: &[&str]| {
        TxnCommand::ResolveLock(ResolveLock {
            start_ts,
            commit_ts,
            keys: keys(on),
        })
    };
    assert_eq!(
        model.run(&resolve(ts(1), ts(2), &["b", "a"])),
        TxnOutcome::Done
    );
    assert_eq!(model.read(b"b", ts(2)), Ok(Some(b"2".to_vec())));
    assert_eq!(model.key_count, 2);
    model.run(&prewrite(ts(5), "c", vec![put("c", "3", Condition::None)]));
    let other = model.clone();
    assert_eq!(model.run(&resolve(ts(4), 0, &["c"])), TxnOutcome::Done);
    assert_eq!(model, other, "another transaction's lock is left alone");
    assert_eq!(model.run(&resolve(ts(5), 0, &["c"])), TxnOutcome::Done);
    assert!(model.locks.is_empty());
    assert_eq!(model.read(b"c", ts(9)), Ok(None));
}

#[test]
fn lock_mutations_conflict_but_never_block_or_change_reads() {
    let mut model = Model::default();
    model.run(&one_pc(ts(1), ts(2), vec![put("a", "1", Condition::None)]));
    let lock_a = CommandMutation {
        kind: MutationKind::Lock,
        key: b"a".to_vec(),
        value: Vec::new(),
        condition: Condition::MustExist,
    };
    assert_eq!(
        model.run(&prewrite(ts(3), "a", vec![lock_a.clone()])),
        prewritten(vec![true])
    );
    assert_eq!(
        model.read(b"a", ts(4)),
        Ok(Some(b"1".to_vec())),
        "not blocked"
    );
    model.run(&commit(ts(3), ts(5), &["a"]));
    assert_eq!(
        model.read(b"a", ts(6)),
        Ok(Some(b"1".to_vec())),
        "unchanged"
    );
    let conflict = model.run(&prewrite(ts(4), "a", vec![put("a", "2", Condition::None)]));
    assert!(matches!(
        conflict,
        TxnOutcome::Failed(TxnError::WriteConflict { conflict_commit_ts, .. }) if conflict_commit_ts == ts(5)
    ));
    assert_eq!(model.key_count, 1);
}

fn lock_for_update(start_ts: u64, primary: &str, on: &[&str]) -> TxnCommand {
    TxnCommand::PessimisticLock(PessimisticLock {
        start_ts,
        primary: primary.as_bytes().to_vec(),
        lock_ttl_ms: 3,
        keys: keys(on),
    })
}

fn heartbeat(start_ts: u64, primary: &str, lock_ttl_ms: u64) -> TxnCommand {
    TxnCommand::Heartbeat(Heartbeat {
        start_ts,
        primary: primary.as_bytes().to_vec(),
        lock_ttl_ms,
    })
}

fn lock_kind(model: &Model, key: &str) -> Option<(u64, MutationKind)> {
    model
        .locks
        .get(key.as_bytes())
        .map(|lock| (lock.start_ts, lock.kind))
}

#[test]
fn a_pessimistic_lock_holds_off_writers_but_not_readers_and_its_prewrite_replaces_it() {
    let mut model = Model::default();
    model.run(&one_pc(ts(1), ts(2), vec![put("a", "1", Condition::None)]));
    assert_eq!(
        model.run(&lock_for_update(ts(3), "a", &["a", "b"])),
        TxnOutcome::Done
    );
    assert_eq!(
        lock_kind(&model, "b"),
        Some((ts(3), MutationKind::PessimisticLock)),
        "a key that does not exist is locked too (no phantom insert)"
    );
    assert_eq!(
        model.read(b"a", ts(9)),
        Ok(Some(b"1".to_vec())),
        "readers ignore it"
    );
    let blocked = model.run(&prewrite(ts(4), "a", vec![put("a", "x", Condition::None)]));
    assert!(
        matches!(blocked, TxnOutcome::Failed(TxnError::KeyLocked(ref info)) if info.start_ts == ts(3) && info.kind == MutationKind::PessimisticLock),
        "{blocked:?}"
    );
    let second_locker = model.run(&lock_for_update(ts(5), "b", &["b"]));
    assert!(matches!(
        second_locker,
        TxnOutcome::Failed(TxnError::KeyLocked(_))
    ));
    assert_eq!(
        model.run(&lock_for_update(ts(3), "a", &["a"])),
        TxnOutcome::Done,
        "locking again is a no-op"
    );
    let upgrade = vec![
        put("a", "2", Condition::None),
        CommandMutation {
            kind: MutationKind::Lock,
            key: b"b".to_vec(),
            value: Vec::new(),
            condition: Condition::None,
        },
    ];
    assert_eq!(
        model.run(&prewrite(ts(3), "a", upgrade)),
        prewritten(vec![true, false])
    );
    assert_eq!(lock_kind(&model, "a"), Some((ts(3), MutationKind::Put)));
    assert_eq!(lock_kind(&model, "b"), Some((ts(3), MutationKind::Lock)));
    assert_eq!(
        model.run(&commit(ts(3), ts(6), &["a", "b"])),
        TxnOutcome::Done
    );
    assert_eq!(model.read(b"a", ts(7)), Ok(Some(b"2".to_vec())));
    assert!(model.locks.is_empty());
}

#[test]
fn a_pessimistic_lock_on_a_row_changed_since_the_snapshot_is_a_write_conflict() {
    let mut model = Model::default();
    model.run(&one_pc(ts(5), ts(6), vec![put("a", "1", Condition::None)]));
    let stale = model.run(&lock_for_update(ts(4), "a", &["a"]));
    assert!(
        matches!(stale, TxnOutcome::Failed(TxnError::WriteConflict { conflict_commit_ts, .. }) if conflict_commit_ts == ts(6)),
        "{stale:?}"
    );
    assert!(model.locks.is_empty(), "refused whole, nothing locked");
    let mixed = model.run(&lock_for_update(ts(4), "z", &["z", "a"]));
    assert!(matches!(
        mixed,
        TxnOutcome::Failed(TxnError::WriteConflict { .. })
    ));
    assert!(model.locks.is_empty(), "the good key was not locked either");
    assert_eq!(
        model.run(&lock_for_update(ts(7), "a", &["a"])),
        TxnOutcome::Done
    );
}

#[test]
fn a_rolled_back_pessimistic_transaction_can_neither_lock_nor_prewrite_again() {
    let mut model = Model::default();
    model.run(&lock_for_update(ts(1), "a", &["a", "b"]));
    assert_eq!(model.run(&rollback(ts(1), &["a", "b"])), TxnOutcome::Done);
    assert!(model.locks.is_empty());
    let relock = model.run(&lock_for_update(ts(1), "a", &["a"]));
    assert!(matches!(
        relock,
        TxnOutcome::Failed(TxnError::Aborted {
            reason: AbortReason::RolledBack,
            ..
        })
    ));
    let late = model.run(&prewrite(ts(1), "a", vec![put("a", "1", Condition::None)]));
    assert!(matches!(late, TxnOutcome::Failed(TxnError::Aborted { .. })));
}

#[test]
fn an_expired_pessimistic_primary_is_rolled_back_unless_heartbeats_extend_it() {
    let mut model = Model::default();
    model.run(&lock_for_update(ts(10), "p", &["p", "s"]));
    // TTL 3 ms from ts(10): alive at 12, expired at 13.
    assert_eq!(
        model.run(&check("p", ts(10), ts(12))),
        TxnOutcome::Status(TxnStatus::Locked {
            ttl_remaining_ms: 1
        })
    );
    assert_eq!(
        model.run(&heartbeat(ts(10), "p", 20)),
        TxnOutcome::LockTtl { ttl_ms: 20 }
    );
    assert_eq!(
        model.run(&heartbeat(ts(10), "p", 5)),
        TxnOutcome::LockTtl { ttl_ms: 20 },
        "a TTL never shrinks"
    );
    assert_eq!(
        model.run(&check("p", ts(10), ts(25))),
        TxnOutcome::Status(TxnStatus::Locked {
            ttl_remaining_ms: 5
        }),
        "alive past its first TTL"
    );
    assert_eq!(
        model.run(&check("p", ts(10), ts(30))),
        TxnOutcome::Status(TxnStatus::RolledBack)
    );
    let after = model.run(&heartbeat(ts(10), "p", 40));
    assert!(matches!(
        after,
        TxnOutcome::Failed(TxnError::Aborted {
            reason: AbortReason::LockNotFound,
            ..
        })
    ));
    assert!(
        model.locks.get(b"p".as_slice()).is_none(),
        "a heartbeat never brings a lock back"
    );
    let foreign = model.run(&heartbeat(ts(11), "s", 40));
    assert!(
        matches!(foreign, TxnOutcome::Failed(_)),
        "only the holder's heartbeat counts"
    );
    assert_eq!(
        lock_kind(&model, "s"),
        Some((ts(10), MutationKind::PessimisticLock))
    );
}

// ---------------------------------------------------------------------------
// Generated interleavings
// ---------------------------------------------------------------------------

/// xorshift64*: deterministic, so a failing seed reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: [&str; 2] = ["a", "b"];
/// Lock TTL in the interleavings, in physical ms (= steps of the clock).
const TTL_MS: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `SELECT ... FOR UPDATE` of every key first (a pessimistic client).
    LockForUpdate,
    /// Prewriting batch `n` next.
    Prewrite(usize),
    CommitPrimary,
    CommitSecondaries,
    Finished,
}

/// One transaction's client.
#[derive(Debug, Clone)]
struct Client {
    start_ts: u64,
    primary: Vec<u8>,
    /// Prewrite batches (one per "region"); one batch + `one_pc` = 1PC.
    batches: Vec<Vec<CommandMutation>>,
    one_pc: bool,
    commit_ts: Option<u64>,
    phase: Phase,
    /// Every command sent, for duplicated deliveries.
    sent: Vec<TxnCommand>,
}

impl Client {
    /// Every key the client may lock, in its order.
    fn keys(&self) -> Vec<Vec<u8>> {
        self.batches
            .iter()
            .flatten()
            .map(|mutation| mutation.key.clone())
            .collect()
    }
}

/// What the protocol has told anyone about a transaction so far.
#[derive(Debug, Default, Clone)]
struct Fate {
    committed_at: Option<u64>,
    rolled_back: bool,
}

struct World {
    model: Model,
    clock: u64,
    clients: Vec<Client>,
    fates: BTreeMap<u64, Fate>,
    log: Vec<String>,
    seen: Coverage,
}

/// How often each interesting answer came up over all seeds, so the test
/// fails if the generator stops reaching one.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    two_phase_commits: u32,
    one_phase_commits: u32,
    write_conflicts: u32,
    key_locked: u32,
    aborted: u32,
    rolled_back_by_status: u32,
    committed_by_status: u32,
    pessimistic_locks: u32,
    heartbeats_extended: u32,
}

impl Coverage {
    fn count(&mut self, command: &TxnCommand, outcome: &TxnOutcome) {
        match (command, outcome) {
            (TxnCommand::Commit(_), TxnOutcome::Done) => self.two_phase_commits += 1,
            (TxnCommand::PessimisticLock(_), TxnOutcome::Done) => self.pessimistic_locks += 1,
            (_, TxnOutcome::LockTtl { .. }) => self.heartbeats_extended += 1,
            (
                _,
                TxnOutcome::Prewritten {
                    one_pc_commit_ts: Some(_),
                    ..
                },
            ) => self.one_phase_commits += 1,
            (_, TxnOutcome::Failed(TxnError::WriteConflict { .. })) => self.write_conflicts += 1,
            (_, TxnOutcome::Failed(TxnError::KeyLocked(_))) => self.key_locked += 1,
            (_, TxnOutcome::Failed(TxnError::Aborted { .. })) => self.aborted += 1,
            (_, TxnOutcome::Status(TxnStatus::RolledBack)) => self.rolled_back_by_status += 1,
            (_, TxnOutcome::Status(TxnStatus::Committed { .. })) => self.committed_by_status += 1,
            _ => {}
        }
    }

    fn add(&mut self, other: Coverage) {
        self.two_phase_commits += other.two_phase_commits;
        self.one_phase_commits += other.one_phase_commits;
        self.write_conflicts += other.write_conflicts;
        self.key_locked += other.key_locked;
        self.aborted += other.aborted;
        self.rolled_back_by_status += other.rolled_back_by_status;
        self.committed_by_status += other.committed_by_status;
        self.pessimistic_locks += other.pessimistic_locks;
        self.heartbeats_extended += other.heartbeats_extended;
    }
}

impl World {
    fn now(&mut self) -> u64 {
        self.clock += 1;
        // Physical ms = clock; the logical part keeps every ts unique.
        self.clock * TS + self.clock % 7
    }

    fn fate(&mut self, start_ts: u64) -> &mut Fate {
        self.fates.entry(start_ts).or_default()
    }

    /// Runs `command`, checks the answer against what was said before and
    /// that a duplicate delivery right after changes nothing.
    fn run(&mut self, command: TxnCommand) -> TxnOutcome {
        let outcome = self.model.run(&command);
        self.log.push(format!("{command:?} -> {outcome:?}"));
        self.seen.count(&command, &outcome);
        self.learn(&command, &outcome);
        let settled = self.model.clone();
        let again = self.model.run(&command);
        let idempotent = matches!(command, TxnCommand::CheckTxnStatus(_))
            || (again == outcome && self.model == settled);
        assert!(
            idempotent,
            "repeating {command:?} answered {again:?} (first {outcome:?})\n{}",
            self.log.join("\n")
        );
        self.model = settled;
        self.check_invariants();
        outcome
    }

    /// Records what an answer says about a transaction's fate and checks it
    /// never contradicts an earlier answer.
    fn learn(&mut self, command: &TxnCommand, outcome: &TxnOutcome) {
        let start_ts = command.start_ts();
        let primary = self
            .clients
            .iter()
            .find(|client| client.start_ts == start_ts)
            .map(|client| client.primary.clone());
        let on_primary = command
            .keys()
            .iter()
            .any(|key| Some(key.to_vec()) == primary);
        let log = self.log.join("\n");
        let fate = self.fate(start_ts);
        let committed = match (command, outcome) {
            (TxnCommand::Commit(commit), TxnOutcome::Done) if on_primary => Some(commit.commit_ts),
            (
                _,
                TxnOutcome::Prewritten {
                    one_pc_commit_ts: Some(commit_ts),
                    ..
                },
            ) => Some(*commit_ts),
            (_, TxnOutcome::Status(TxnStatus::Committed { commit_ts })) => Some(*commit_ts),
            _ => None,
        };
        let rolled_back = match (command, outcome) {
            (TxnCommand::Rollback(_), TxnOutcome::Done) => on_primary,
            (_, TxnOutcome::Status(TxnStatus::RolledBack)) => true,
            _ => false,
        };
        if let Some(commit_ts) = committed {
            assert!(
                !fate.rolled_back,
                "a rolled-back transaction committed\n{log}"
            );
            assert!(
                fate.committed_at.is_none_or(|earlier| earlier == commit_ts),
                "two commit timestamps\n{log}"
            );
            fate.committed_at = Some(commit_ts);
        }
        if rolled_back {
            assert!(
                fate.committed_at.is_none(),
                "a committed transaction rolled back\n{log}"
            );
            fate.rolled_back = true;
        }
    }

    fn check_invariants(&self) {
        let log = || self.log.join("\n");
        for (key, versions) in &self.model.writes {
            let spans: Vec<(u64, u64)> = versions
                .iter()
                .filter(|(_, record)| record.kind != WriteKind::Rollback)
                .map(|(Reverse(commit_ts), record)| (record.start_ts, *commit_ts))
                .collect();
            for (i, a) in spans.iter().enumerate() {
                for b in &spans[i + 1..] {
                    let overlap = a.0 <= b.1 && b.0 <= a.1;
                    assert!(
                        !overlap,
                        "{key:?}: writes {a:?} and {b:?} overlap\n{}",
                        log()
                    );
                }
            }
            for (Reverse(commit_ts), record) in versions {
                if record.kind == WriteKind::Rollback {
                    continue;
                }
                let fate = self
                    .fates
                    .get(&record.start_ts)
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    !fate.rolled_back,
                    "{key:?}@{commit_ts}: record of a rolled-back txn\n{}",
                    log()
                );
            }
        }
        assert_eq!(
            self.model.key_count,
            self.model.live_keys(),
            "key count\n{}",
            log()
        );
    }

    /// A client's next step.
    fn step_client(&mut self, index: usize) {
        let client = self.clients[index].clone();
        match client.phase {
            Phase::LockForUpdate => {
                let command = TxnCommand::PessimisticLock(PessimisticLock {
                    start_ts: client.start_ts,
                    primary: client.primary.clone(),
                    lock_ttl_ms: TTL_MS,
                    keys: client.keys(),
                });
                self.clients[index].sent.push(command.clone());
                match self.run(command) {
                    TxnOutcome::Done => self.clients[index].phase = Phase::Prewrite(0),
                    // Waits, and tries again at its next step.
                    TxnOutcome::Failed(TxnError::KeyLocked(_)) => {}
                    _ => self.abort(index),
                }
            }
            Phase::Prewrite(batch) => {
                let one_pc_commit_ts = client.one_pc.then(|| self.now());
                let command = TxnCommand::Prewrite(Prewrite {
                    start_ts: client.start_ts,
                    primary: client.primary.clone(),
                    lock_ttl_ms: TTL_MS,
                    mutations: client.batches[batch].clone(),
                    one_pc_commit_ts,
                });
                self.clients[index].sent.push(command.clone());
                match self.run(command) {
                    TxnOutcome::Prewritten {
                        one_pc_commit_ts: Some(_),
                        ..
                    } => {
                        self.clients[index].phase = Phase::Finished;
                    }
                    TxnOutcome::Prewritten { .. } if batch + 1 < client.batches.len() => {
                        self.clients[index].phase = Phase::Prewrite(batch + 1);
                    }
                    TxnOutcome::Prewritten { .. } => {
                        self.clients[index].phase = Phase::CommitPrimary;
                    }
                    _ => self.abort(index),
                }
            }
            Phase::CommitPrimary => {
                let commit_ts = self.now();
                self.clients[index].commit_ts = Some(commit_ts);
                let command = TxnCommand::Commit(Commit {
                    start_ts: client.start_ts,
                    commit_ts,
                    keys: vec![client.primary.clone()],
                });
                self.clients[index].sent.push(command.clone());
                match self.run(command) {
                    TxnOutcome::Done => self.clients[index].phase = Phase::CommitSecondaries,
                    _ => self.abort(index),
                }
            }
            Phase::CommitSecondaries => {
                let keys: Vec<Vec<u8>> = client
                    .batches
                    .iter()
                    .flatten()
                    .map(|mutation| mutation.key.clone())
                    .filter(|key| *key != client.primary)
                    .collect();
                let command = TxnCommand::Commit(Commit {
                    start_ts: client.start_ts,
                    commit_ts: client.commit_ts.expect("committed the primary first"),
                    keys,
                });
                self.clients[index].sent.push(command.clone());
                let outcome = self.run(command);
                // A reader may have resolved them already: still done.
                assert_eq!(outcome, TxnOutcome::Done, "{}", self.log.join("\n"));
                self.clients[index].phase = Phase::Finished;
            }
            Phase::Finished => {}
        }
    }

    /// A live client raises its primary lock's TTL to one TTL from now.
    fn heartbeat(&mut self, index: usize) {
        let client = self.clients[index].clone();
        if client.phase == Phase::Finished {
            return;
        }
        let elapsed_ms = physical_ms(self.now()) - physical_ms(client.start_ts);
        let command = TxnCommand::Heartbeat(Heartbeat {
            start_ts: client.start_ts,
            primary: client.primary.clone(),
            lock_ttl_ms: elapsed_ms + TTL_MS,
        });
        self.clients[index].sent.push(command.clone());
        self.run(command);
    }

    /// The client gives up: rolls back every key it may have locked.
    fn abort(&mut self, index: usize) {
        let client = self.clients[index].clone();
        let command = TxnCommand::Rollback(Rollback {
            start_ts: client.start_ts,
            keys: client.keys(),
        });
        self.clients[index].sent.push(command.clone());
        let outcome = self.run(command);
        let committed_elsewhere = self
            .fates
            .get(&client.start_ts)
            .and_then(|f| f.committed_at);
        assert!(
            outcome == TxnOutcome::Done || committed_elsewhere.is_some(),
            "{outcome:?}\n{}",
            self.log.join("\n")
        );
        self.clients[index].phase = Phase::Finished;
    }

    /// A reader meets whatever lock is on `key` and resolves it if it can.
    fn step_reader(&mut self, key: &[u8], wait_out_ttl: bool) {
        let Some(lock) = self.model.locks.get(key).cloned() else {
            return;
        };
        if wait_out_ttl {
            self.clock += TTL_MS;
        }
        let current_ts = self.now();
        let status = self.run(TxnCommand::CheckTxnStatus(CheckTxnStatus {
            primary_key: lock.primary.clone(),
            start_ts: lock.start_ts,
            current_ts,
        }));
        let commit_ts = match status {
            TxnOutcome::Status(TxnStatus::Committed { commit_ts }) => commit_ts,
            TxnOutcome::Status(TxnStatus::RolledBack) => 0,
            _ => return,
        };
        self.run(TxnCommand::ResolveLock(ResolveLock {
            start_ts: lock.start_ts,
            commit_ts,
            keys: vec![key.to_vec()],
        }));
    }

    /// Resolves every lock left (waiting out TTLs), then checks that
    /// committed transactions are whole and atomically visible.
    fn finish(&mut self) {
        // Heartbeats may have stretched TTLs: enough rounds to outwait them.
        for _ in 0..64 {
            let locked: Vec<Vec<u8>> = self.model.locks.keys().cloned().collect();
            if locked.is_empty() {
                break;
            }
            for key in locked {
                self.step_reader(&key, true);
            }
        }
        let log = self.log.join("\n");
        assert!(self.model.locks.is_empty(), "locks left\n{log}");
        for client in &self.clients {
            let fate = self
                .fates
                .get(&client.start_ts)
                .cloned()
                .unwrap_or_default();
            let keys: BTreeSet<Vec<u8>> = client
                .batches
                .iter()
                .flatten()
                .map(|mutation| mutation.key.clone())
                .collect();
            let primary_commit = self
                .model
                .records_of(&client.primary, client.start_ts)
                .into_iter()
                .find(|(_, record)| record.kind != WriteKind::Rollback)
                .map(|(commit_ts, _)| commit_ts);
            for key in &keys {
                let commits: Vec<u64> = self
                    .model
                    .records_of(key, client.start_ts)
                    .into_iter()
                    .filter(|(_, record)| record.kind != WriteKind::Rollback)
                    .map(|(commit_ts, _)| commit_ts)
                    .collect();
                match primary_commit {
                    Some(commit_ts) => {
                        assert_eq!(
                            commits,
                            vec![commit_ts],
                            "{key:?} of a committed txn\n{log}"
                        );
                        let value = self.model.read(key, commit_ts).expect("no locks left");
                        let last = client
                            .batches
                            .iter()
                            .flatten()
                            .filter(|mutation| mutation.key == *key)
                            .last()
                            .expect("the key is the client's");
                        assert_eq!(value, Some(last.value.clone()), "atomic visibility\n{log}");
                    }
                    None => assert!(commits.is_empty(), "{key:?} of an uncommitted txn\n{log}"),
                }
            }
            if let Some(commit_ts) = fate.committed_at {
                assert_eq!(primary_commit, Some(commit_ts), "told committed\n{log}");
            }
        }
    }
}

fn generate_client(rng: &mut Rng, start_ts: u64, writer: usize) -> Client {
    let value = format!("w{writer}");
    let mut keys: Vec<&str> = KEYS.to_vec();
    if rng.below(2) == 0 {
        keys.reverse();
    }
    if rng.below(3) == 0 {
        keys.truncate(1);
    }
    let mutations: Vec<CommandMutation> = keys
        .iter()
        .map(|key| put(key, &value, Condition::None))
        .collect();
    let primary = mutations[0].key.clone();
    let pessimistic = rng.below(3) == 0;
    let (batches, one_pc) = match (mutations.len(), rng.below(3)) {
        (2, 0) => (mutations.into_iter().map(|m| vec![m]).collect(), false),
        (_, 1) => (vec![mutations], true),
        _ => (vec![mutations], false),
    };
    Client {
        start_ts,
        primary,
        batches,
        one_pc,
        commit_ts: None,
        phase: if pessimistic {
            Phase::LockForUpdate
        } else {
            Phase::Prewrite(0)
        },
        sent: Vec::new(),
    }
}

fn run_interleaving(seed: u64) -> Coverage {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut world = World {
        model: Model::default(),
        clock: 0,
        clients: Vec::new(),
        fates: BTreeMap::new(),
        log: vec![format!("seed {seed}")],
        seen: Coverage::default(),
    };
    let writers = 2 + rng.below(2) as usize;
    for writer in 0..writers {
        let start_ts = world.now();
        let client = generate_client(&mut rng, start_ts, writer);
        world.clients.push(client);
    }
    for _ in 0..40 {
        match rng.below(10) {
            0..=5 => {
                let index = rng.below(writers as u64) as usize;
                world.step_client(index);
            }
            6 | 7 => {
                let key = KEYS[rng.below(2) as usize].as_bytes().to_vec();
                let wait = rng.below(2) == 0;
                world.step_reader(&key, wait);
            }
            8 if rng.below(2) == 0 => world.clock += 1,
            8 => {
                let index = rng.below(writers as u64) as usize;
                world.heartbeat(index);
            }
            _ => {
                // A duplicate of any command sent before, delivered late.
                let index = rng.below(writers as u64) as usize;
                let sent = &world.clients[index].sent;
                if !sent.is_empty() {
                    let command = sent[rng.below(sent.len() as u64) as usize].clone();
                    world.run(command);
                }
            }
        }
    }
    world.finish();
    world.seen
}

#[test]
fn generated_interleavings_keep_the_percolator_invariants() {
    let mut seen = Coverage::default();
    for seed in 0..3_000 {
        seen.add(run_interleaving(seed));
    }
    let counts = [
        seen.two_phase_commits,
        seen.one_phase_commits,
        seen.write_conflicts,
        seen.key_locked,
        seen.aborted,
        seen.rolled_back_by_status,
        seen.committed_by_status,
        seen.pessimistic_locks,
        seen.heartbeats_extended,
    ];
    println!("{seen:?}");
    assert!(
        counts.iter().all(|count| *count > 0),
        "the generator reaches every case: {seen:?}"
    );
}
