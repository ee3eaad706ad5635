//! Transactions: every statement runs inside one, implicit (autocommit) or
//! explicit (`BEGIN` … `COMMIT` / `ROLLBACK`), with snapshot isolation.
//!
//! A transaction reads at its start timestamp (taken from the coordinator's
//! TSO at its first read) and buffers its writes here, in the gateway, until
//! COMMIT hands them to [`Storage::commit`]: one raft entry when they all
//! land in one region, Percolator two-phase commit otherwise. A key written
//! by another transaction that committed after our start timestamp fails the
//! commit with 40001 (first committer wins), so lost updates cannot happen.
//!
//! `SELECT ... FOR UPDATE` inside a block locks its rows in storage at
//! once ([`locks`]): a row changed since the snapshot fails it with 40001
//! then, and other writers of those rows wait until this transaction ends.
//!
//! **Invariants:**
//! - No write of an explicit transaction reaches storage before COMMIT, so
//!   a client that disappears mid-transaction, a ROLLBACK, or an error
//!   leaves no data behind; row locks it took are rolled back when it ends
//!   any way but COMMIT (and expire one lock TTL after its last heartbeat
//!   if even that fails).
//! - After an error inside a transaction block, every statement but
//!   COMMIT / ROLLBACK / ROLLBACK TO SAVEPOINT fails with 25P02; COMMIT then
//!   rolls back.
//! - The ReadyForQuery status a client sees (`I`, `T`, `E`) is
//!   [`Session::status`], nothing else.
//! - An implicit transaction that meets a write conflict at COMMIT is run
//!   again from scratch (its results were not sent), at most
//!   [`AUTOCOMMIT_ATTEMPTS_MAX`] times; an explicit one is not, the client
//!   retries on 40001.
//!
//! DDL is not transactional: CREATE/DROP TABLE commit to root at once, also
//! inside a transaction block.

mod buffer;
mod locks;
mod store;

use pgwire::messages::response::TransactionStatus;
use sqlparser::ast::{Statement, TransactionIsolationLevel, TransactionMode};

use crate::error::GatewayError;
use crate::settings::Settings;
use crate::statement::QueryResult;

pub(crate) use buffer::WriteBuffer;
#[cfg(test)]
pub(crate) use buffer::TXN_BYTES_MAX;
pub(crate) use locks::HeldLocks;
pub(crate) use store::TxnStore;

/// Times an implicit transaction is attempted when COMMIT meets a conflict.
pub(crate) const AUTOCOMMIT_ATTEMPTS_MAX: usize = 4;
/// Savepoints one transaction may hold at once.
pub(crate) const SAVEPOINTS_MAX: usize = 64;

/// One transaction's snapshot, own writes and savepoints.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    /// Taken lazily at the first read, as Postgres takes a REPEATABLE READ
    /// snapshot at the first statement rather than at BEGIN.
    pub(crate) start_ts: Option<u64>,
    pub(crate) buffer: WriteBuffer,
    /// `(name, buffer when the savepoint was taken)`, oldest first.
    savepoints: Vec<(String, WriteBuffer)>,
    /// Rows locked by `SELECT ... FOR UPDATE`, once there is one.
    pub(crate) locks: Option<HeldLocks>,
    /// What `now()` answers in this transaction (microseconds since the
    /// Unix epoch), read from the clock by its first statement.
    pub(crate) now_micros: Option<i64>,
    /// The session's settings at BEGIN, restored if the block rolls back
    /// (a SET in a rolled-back block is undone, as in Postgres). ROLLBACK
    /// TO SAVEPOINT keeps the settings: only the writes are undone.
    pub(crate) settings_at_begin: Option<Settings>,
}

impl Transaction {
    fn savepoint(&mut self, name: String) -> Result<(), GatewayError> {
        if self.savepoints.len() >= SAVEPOINTS_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("savepoint \"{name}\""),
                limit: SAVEPOINTS_MAX,
            });
        }
        self.savepoints.push((name, self.buffer.clone()));
        Ok(())
    }

    /// The newest savepoint of that name (Postgres allows repeats).
    fn find(&self, name: &str) -> Result<usize, GatewayError> {
        self.savepoints
            .iter()
            .rposition(|(held, _)| held == name)
            .ok_or_else(|| GatewayError::UndefinedSavepoint {
                name: name.to_owned(),
            })
    }

    /// Forgets the savepoint and every later one; the writes stay.
    fn release(&mut self, name: &str) -> Result<(), GatewayError> {
        let index = self.find(name)?;
        self.savepoints.truncate(index);
        Ok(())
    }

    /// Undoes every write since the savepoint, which stays defined.
    fn rollback_to(&mut self, name: &str) -> Result<(), GatewayError> {
        let index = self.find(name)?;
        self.savepoints.truncate(index + 1);
        if let Some((_, buffer)) = self.savepoints.last() {
            self.buffer = buffer.clone();
        }
        Ok(())
    }
}

/// Where a session stands between statements.
#[derive(Debug, Default)]
pub(crate) enum TxnState {
    /// No transaction block: each statement is its own transaction.
    #[default]
    Idle,
    Active(Transaction),
    /// A statement of the block failed; only ending it (or rolling back to
    /// a savepoint) is allowed.
    Failed(Transaction),
}

impl TxnState {
    pub(crate) fn status(&self) -> TransactionStatus {
        match self {
            TxnState::Idle => TransactionStatus::Idle,
            TxnState::Active(_) => TransactionStatus::Transaction,
            TxnState::Failed(_) => TransactionStatus::Error,
        }
    }

    /// A statement of the block failed.
    pub(crate) fn fail(&mut self) {
        *self = match std::mem::take(self) {
            TxnState::Active(transaction) => TxnState::Failed(transaction),
            other => other,
        };
    }
}

/// Per-connection state, kept in pgwire's session extensions.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) state: tokio::sync::Mutex<TxnState>,
    /// The session's settings (SET / SHOW). Locked only briefly and never
    /// across an await; statements that change them hold `state` too.
    settings: std::sync::Mutex<Settings>,
    /// The `GUC_REPORT` values the client was last told (ParameterStatus),
    /// so only changes are sent.
    reported: std::sync::Mutex<Vec<(&'static str, String)>>,
    /// A COMMIT is in flight: a CancelRequest now is ignored, as Postgres
    /// ignores it, rather than answered 57014 for a commit that may land.
    committing: std::sync::atomic::AtomicBool,
}

/// Marks a session committing until dropped.
pub(crate) struct Committing<'a>(&'a Session);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0
            .committing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Session {
    /// A session of `user` that sent `parameters` at startup (as startup
    /// makes one; tests build sessions with it).
    #[cfg(test)]
    pub(crate) fn for_login<'a>(
        user: &str,
        parameters: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Session {
        let session = Session::default();
        session.start(Settings::for_login(user, parameters));
        session
    }

    /// Installs the settings a login starts with and returns the reported
    /// ones, which the startup ParameterStatus messages carry.
    pub(crate) fn start(&self, settings: Settings) -> Vec<(&'static str, String)> {
        let reported = settings.reported();
        *self.settings() = settings;
        *lock(&self.reported) = reported.clone();
        reported
    }

    /// The session's settings. A panic while they were locked cannot leave
    /// them half-changed (every change is one map operation), so a
    /// poisoned lock is still read.
    pub(crate) fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        lock(&self.settings)
    }

    /// The reported settings whose value changed since the client was last
    /// told, now marked told: Postgres sends these as ParameterStatus
    /// before the next ReadyForQuery.
    pub(crate) fn take_changed_reports(&self) -> Vec<(&'static str, String)> {
        let current = self.settings().reported();
        let mut told = lock(&self.reported);
        let changed = current
            .iter()
            .filter(|entry| !told.contains(entry))
            .cloned()
            .collect();
        *told = current;
        changed
    }

    pub(crate) fn committing(&self) -> bool {
        self.committing.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn start_commit(&self) -> Committing<'_> {
        self.committing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Committing(self)
    }

    pub(crate) async fn status(&self) -> TransactionStatus {
        self.state.lock().await.status()
    }

    /// Marks the block failed after an error outside statement execution
    /// (a Parse or Bind error).
    pub(crate) async fn fail(&self) {
        self.state.lock().await.fail();
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A transaction-control statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Begin,
    Commit,
    Rollback,
    Savepoint(String),
    Release(String),
    RollbackTo(String),
}

impl Control {
    pub(crate) fn of(statement: &Statement) -> Option<Result<Control, GatewayError>> {
        let name = |ident: &sqlparser::ast::Ident| crate::bind::normalize_ident(ident);
        Some(Ok(match statement {
            Statement::StartTransaction {
                statements, modes, ..
            } if statements.is_empty() => {
                let serializable = modes.iter().any(|mode| {
                    matches!(
                        mode,
                        TransactionMode::IsolationLevel(TransactionIsolationLevel::Serializable)
                    )
                });
                if serializable {
                    // Weaker than asked must not pass silently.
                    return Some(Err(crate::settings::serializable_refused()));
                }
                Control::Begin
            }
            Statement::Commit { chain: true, .. } | Statement::Rollback { chain: true, .. } => {
                return Some(Err(GatewayError::unsupported("AND CHAIN")))
            }
            Statement::Commit { .. } => Control::Commit,
            Statement::Rollback {
                savepoint: None, ..
            } => Control::Rollback,
            Statement::Rollback {
                savepoint: Some(savepoint),
                ..
            } => Control::RollbackTo(name(savepoint)),
            Statement::Savepoint { name: savepoint } => Control::Savepoint(name(savepoint)),
            Statement::ReleaseSavepoint { name: savepoint } => Control::Release(name(savepoint)),
            _ => return None,
        }))
    }
}

/// What the executor must do after [`step`].
#[derive(Debug)]
pub(crate) enum Effect {
    /// Answer this; the state is already updated.
    Reply(QueryResult),
    /// Commit this transaction (the state is already `Idle`), then answer
    /// `COMMIT`, or the commit's error.
    Commit(Transaction),
    /// Give back what this transaction holds in storage (the state is
    /// already `Idle`), then answer `tag` (ROLLBACK).
    Rollback(Transaction, &'static str),
}

fn command(tag: &'static str) -> Effect {
    Effect::Reply(QueryResult::Command { tag, rows: None })
}

fn end(tag: &'static str) -> Effect {
    Effect::Reply(QueryResult::TransactionEnd { tag })
}

/// The pure session transition for a transaction-control statement.
pub(crate) fn step(state: &mut TxnState, control: Control) -> Result<Effect, GatewayError> {
    let current = std::mem::take(state);
    let (next, effect) = match (current, control) {
        (TxnState::Idle, Control::Begin) => (
            TxnState::Active(Transaction::default()),
            Ok(Effect::Reply(QueryResult::TransactionStart)),
        ),
        // Postgres warns and carries on.
        (active @ TxnState::Active(_), Control::Begin) => {
            (active, Ok(Effect::Reply(QueryResult::TransactionStart)))
        }
        (TxnState::Idle, Control::Commit) => (TxnState::Idle, Ok(end("COMMIT"))),
        (TxnState::Active(transaction), Control::Commit) => {
            (TxnState::Idle, Ok(Effect::Commit(transaction)))
        }
        (TxnState::Active(transaction) | TxnState::Failed(transaction), Control::Rollback)
        | (TxnState::Failed(transaction), Control::Commit) => (
            TxnState::Idle,
            Ok(Effect::Rollback(transaction, "ROLLBACK")),
        ),
        (TxnState::Idle, Control::Rollback) => (TxnState::Idle, Ok(end("ROLLBACK"))),
        (TxnState::Idle, Control::Savepoint(_)) => (
            TxnState::Idle,
            Err(GatewayError::NoActiveTransaction {
                statement: "SAVEPOINT",
            }),
        ),
        (TxnState::Idle, Control::Release(_)) => (
            TxnState::Idle,
            Err(GatewayError::NoActiveTransaction {
                statement: "RELEASE SAVEPOINT",
            }),
        ),
        (TxnState::Idle, Control::RollbackTo(_)) => (
            TxnState::Idle,
            Err(GatewayError::NoActiveTransaction {
                statement: "ROLLBACK TO SAVEPOINT",
            }),
        ),
        (TxnState::Active(mut transaction), Control::Savepoint(name)) => {
            match transaction.savepoint(name) {
                Ok(()) => (TxnState::Active(transaction), Ok(command("SAVEPOINT"))),
                Err(error) => (TxnState::Failed(transaction), Err(error)),
            }
        }
        (TxnState::Active(mut transaction), Control::Release(name)) => {
            match transaction.release(&name) {
                Ok(()) => (TxnState::Active(transaction), Ok(command("RELEASE"))),
                Err(error) => (TxnState::Failed(transaction), Err(error)),
            }
        }
        (
            TxnState::Active(mut transaction) | TxnState::Failed(mut transaction),
            Control::RollbackTo(name),
        ) => match transaction.rollback_to(&name) {
            Ok(()) => (TxnState::Active(transaction), Ok(command("ROLLBACK"))),
            Err(error) => (TxnState::Failed(transaction), Err(error)),
        },
        (
            failed @ TxnState::Failed(_),
            Control::Begin | Control::Savepoint(_) | Control::Release(_),
        ) => (failed, Err(GatewayError::InFailedTransaction)),
    };
    *state = next;
    effect
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(transaction: &mut Transaction, key: &str) {
        transaction
            .buffer
            .write_all(vec![(
                key.as_bytes().to_vec(),
                crate::store::WriteIntent::Put(b"v".to_vec()),
            )])
            .expect("fits");
    }

    fn active(state: &mut TxnState) -> &mut Transaction {
        match state {
            TxnState::Active(transaction) => transaction,
            other => panic!("expected an active transaction, got {other:?}"),
        }
    }

    #[test]
    fn begin_then_commit_hands_the_transaction_over_and_goes_idle() {
        let mut state = TxnState::Idle;
        step(&mut state, Control::Begin).expect("begin");
        assert_eq!(state.status(), TransactionStatus::Transaction);
        put(active(&mut state), "k");
        match step(&mut state, Control::Commit).expect("commit") {
            Effect::Commit(transaction) => assert_eq!(transaction.buffer.len(), 1),
            other => panic!("expected a commit, got {other:?}"),
        }
        assert_eq!(state.status(), TransactionStatus::Idle);
    }

    #[test]
    fn commit_of_a_failed_block_rolls_back() {
        let mut state = TxnState::Idle;
        step(&mut state, Control::Begin).expect("begin");
        state.fail();
        assert_eq!(state.status(), TransactionStatus::Error);
        match step(&mut state, Control::Commit).expect("commit") {
            Effect::Rollback(_, tag) => assert_eq!(tag, "ROLLBACK"),
            other => panic!("expected ROLLBACK, got {other:?}"),
        }
        assert_eq!(state.status(), TransactionStatus::Idle);
    }

    #[test]
    fn failing_is_idempotent_and_never_opens_a_block() {
        let mut state = TxnState::Idle;
        state.fail();
        assert_eq!(state.status(), TransactionStatus::Idle);
        step(&mut state, Control::Begin).expect("begin");
        state.fail();
        state.fail();
        assert_eq!(state.status(), TransactionStatus::Error);
    }

    #[test]
    fn a_failed_block_refuses_everything_but_ending_it() {
        let mut state = TxnState::Idle;
        step(&mut state, Control::Begin).expect("begin");
        state.fail();
        for control in [
            Control::Begin,
            Control::Savepoint("s".into()),
            Control::Release("s".into()),
        ] {
            let error = step(&mut state, control).expect_err("refused");
            assert_eq!(error.sqlstate(), "25P02");
            assert_eq!(state.status(), TransactionStatus::Error);
        }
    }

    #[test]
    fn rollback_to_savepoint_undoes_later_writes_and_recovers_a_failed_block() {
        let mut state = TxnState::Idle;
        step(&mut state, Control::Begin).expect("begin");
        put(active(&mut state), "before");
        step(&mut state, Control::Savepoint("s".into())).expect("savepoint");
        put(active(&mut state), "after");
        state.fail();
        step(&mut state, Control::RollbackTo("s".into())).expect("rollback to");
        let transaction = active(&mut state);
        assert_eq!(
            transaction.buffer.len(),
            1,
            "only the write before the savepoint stays"
        );
        // The savepoint is still defined: roll back to it again.
        put(transaction, "again");
        step(&mut state, Control::RollbackTo("s".into())).expect("rollback to again");
        assert_eq!(active(&mut state).buffer.len(), 1);
        step(&mut state, Control::Release("s".into())).expect("release");
        let error = step(&mut state, Control::RollbackTo("s".into())).expect_err("released");
        assert_eq!(error.sqlstate(), "3B001");
        assert_eq!(state.status(), TransactionStatus::Error);
    }

    #[test]
    fn savepoints_outside_a_block_are_refused_without_a_state_change() {
        let mut state = TxnState::Idle;
        for control in [
            Control::Savepoint("s".into()),
            Control::Release("s".into()),
            Control::RollbackTo("s".into()),
        ] {
            let error = step(&mut state, control).expect_err("no block");
            assert_eq!(error.sqlstate(), "25P01");
            assert_eq!(state.status(), TransactionStatus::Idle);
        }
    }

    #[test]
    fn begin_serializable_is_refused_rather_than_silently_weakened() {
        let parse = |sql: &str| {
            crate::executor::parse_sql(sql)
                .expect("parses")
                .pop()
                .expect("one statement")
        };
        for sql in [
            "BEGIN",
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            "START TRANSACTION READ WRITE",
        ] {
            let control = Control::of(&parse(sql))
                .expect("control")
                .expect("accepted");
            assert_eq!(control, Control::Begin, "{sql}");
        }
        let refused = Control::of(&parse("BEGIN ISOLATION LEVEL SERIALIZABLE")).expect("control");
        assert_eq!(refused.expect_err("refused").sqlstate(), "0A000");
        let savepoint = Control::of(&parse("ROLLBACK TO SAVEPOINT \"Sp\"")).expect("control");
        assert_eq!(
            savepoint.expect("accepted"),
            Control::RollbackTo("Sp".into())
        );
    }

    #[test]
    fn savepoints_are_bounded() {
        let mut state = TxnState::Idle;
        step(&mut state, Control::Begin).expect("begin");
        for index in 0..SAVEPOINTS_MAX {
            step(&mut state, Control::Savepoint(format!("s{index}"))).expect("under the limit");
        }
        let error = step(&mut state, Control::Savepoint("one_more".into())).expect_err("limit");
        assert_eq!(error.sqlstate(), "54000");
    }
}
