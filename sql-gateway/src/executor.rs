//! The executor: SQL text or a parsed statement in, [`QueryResult`]s out.
//! Knows nothing of the wire protocol; `handler.rs` adapts it to pgwire.
//!
//! Invariant: a failed statement returns its error and changes nothing; the
//! statements after it in the same simple query are not run, as in Postgres.

use std::sync::Arc;
use std::time::Duration;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::ParserError;
use sqlparser::tokenizer::Tokenizer;

use arbor_catalog::Catalog;

use crate::catalog_source::CatalogSource;
use crate::cluster_view::ClusterViewSource;
use crate::error::GatewayError;
use crate::expr::{system_clock, Clock, StatementTime};
use crate::plan::{plan_statement, Plan};
use crate::statement::admin::{
    self, show_regions::show_regions, split_at::SplitAtPlan, unsplit_at::UnsplitAtPlan,
    AdminStatement, ParsedStatement, SPLIT_AT_STATEMENT, UNSPLIT_AT_STATEMENT,
};
use crate::statement::session::SessionCommand;
use crate::statement::QueryResult;
use crate::store::{Autocommit, Storage};
use crate::transaction::{
    self, Control, Effect, HeldLocks, Session, Transaction, TxnState, TxnStore,
    AUTOCOMMIT_ATTEMPTS_MAX,
};
use crate::value::{Column, Value};

/// Longest SQL text accepted (room for a few maximal values in one INSERT).
pub(crate) const SQL_BYTES_MAX: usize = 16 << 20;
const _: () = assert!(SQL_BYTES_MAX > 2 * crate::statement::VALUE_BYTES_MAX);
/// First pause before an implicit transaction runs again after a conflict;
/// doubled on every attempt.
const AUTOCOMMIT_BACKOFF_MS: u64 = 2;

/// sqlparser's statements alone (tests, and code that never meets admin
/// statements).
#[cfg(test)]
pub(crate) fn parse_sql(sql: &str) -> Result<Vec<Statement>, GatewayError> {
    check_sql_bytes(sql)?;
    Ok(sqlparser::parser::Parser::parse_sql(
        &PostgreSqlDialect {},
        sql,
    )?)
}

/// Every statement of a query text, admin statements (which sqlparser does
/// not know) recognised in the token stream first; see `statement::admin`.
pub(crate) fn parse_statements(sql: &str) -> Result<Vec<ParsedStatement>, GatewayError> {
    check_sql_bytes(sql)?;
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(ParserError::from)?;
    crate::statement::admin::parse_tokens(tokens)
}

fn check_sql_bytes(sql: &str) -> Result<(), GatewayError> {
    if sql.len() > SQL_BYTES_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a statement of {} bytes", sql.len()),
            limit: SQL_BYTES_MAX,
        });
    }
    Ok(())
}

pub(crate) struct Executor {
    storage: Arc<dyn Storage>,
    views: Arc<dyn ClusterViewSource>,
    catalogs: Arc<dyn CatalogSource>,
    /// What `now()` reads, once per statement.
    clock: Clock,
}

impl Executor {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        views: Arc<dyn ClusterViewSource>,
        catalogs: Arc<dyn CatalogSource>,
    ) -> Self {
        Executor {
            storage,
            views,
            catalogs,
            clock: system_clock(),
        }
    }

    /// The same executor with `now()` read from `clock` (tests fix it).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The catalog a statement plans against: read fresh from root unless
    /// the statement names only built-in relations (see `catalog_source`).
    pub(crate) async fn catalog_for(
        &self,
        statement: &Statement,
    ) -> Result<Arc<Catalog>, GatewayError> {
        if names_only_built_ins(statement) {
            return Ok(Arc::new(Catalog::empty()));
        }
        self.catalogs.current().await
    }

    /// Runs every statement of a simple query in order, stopping after the
    /// first error (which is the last element).
    pub(crate) async fn execute_sql(
        &self,
        session: &Session,
        sql: &str,
    ) -> Vec<Result<QueryResult, GatewayError>> {
        let statements = match parse_statements(sql) {
            Ok(statements) => statements,
            Err(error) => {
                session.fail().await;
                return vec![Err(error)];
            }
        };
        let mut results = Vec::with_capacity(statements.len());
        for statement in &statements {
            let result = self.execute_parsed(session, statement, &[]).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }

    /// Runs one parsed statement: sqlparser's through [`Executor::execute`],
    /// admin ones through [`Executor::execute_admin`].
    pub(crate) async fn execute_parsed(
        &self,
        session: &Session,
        statement: &ParsedStatement,
        params: &[Value],
    ) -> Result<QueryResult, GatewayError> {
        match statement {
            ParsedStatement::Sql(statement) => self.execute(session, statement, params).await,
            ParsedStatement::Admin(statement) => self.execute_admin(session, statement).await,
        }
    }

    /// Runs an admin statement. SPLIT AT changes the cluster at once and
    /// cannot be rolled back, so inside a transaction block it is refused
    /// with 25001 (as Postgres refuses CREATE DATABASE there), which fails
    /// the block like any error in it; SHOW REGIONS reads the cluster view
    /// and runs anywhere a SELECT of `system.regions` does.
    pub(crate) async fn execute_admin(
        &self,
        session: &Session,
        statement: &AdminStatement,
    ) -> Result<QueryResult, GatewayError> {
        let mut state = session.state.lock().await;
        let in_block = match &*state {
            TxnState::Failed(_) => return Err(GatewayError::InFailedTransaction),
            TxnState::Active(_) => true,
            TxnState::Idle => false,
        };
        let result = if in_block && statement.changes_cluster() {
            Err(GatewayError::ActiveSqlTransaction {
                statement: match statement {
                    AdminStatement::UnsplitAt { .. } => UNSPLIT_AT_STATEMENT,
                    _ => SPLIT_AT_STATEMENT,
                },
            })
        } else {
            self.run_admin(statement).await
        };
        if result.is_err() {
            state.fail();
        }
        result
    }

    async fn run_admin(&self, statement: &AdminStatement) -> Result<QueryResult, GatewayError> {
        // `kv` is built in: splitting or listing it needs no catalog read.
        let catalog = if admin::names_kv(statement.table()) {
            Arc::new(Catalog::empty())
        } else {
            self.catalogs.current().await?
        };
        match statement {
            AdminStatement::SplitAt { table, rows } => {
                let table = admin::resolve_table(table, "split", &catalog)?;
                let now = StatementTime::from_unix_micros((self.clock)());
                let plan = SplitAtPlan::plan(table, rows, now)?;
                plan.execute(self.storage.as_ref()).await
            }
            AdminStatement::UnsplitAt { table, rows } => {
                let table = admin::resolve_table(table, "unsplit", &catalog)?;
                let now = StatementTime::from_unix_micros((self.clock)());
                let plan = UnsplitAtPlan::plan(table, rows, now)?;
                plan.execute(self.storage.as_ref()).await
            }
            AdminStatement::ShowRegions { table } => {
                let table = admin::resolve_table(table, "listed by SHOW REGIONS", &catalog)?;
                let view = self.views.cluster_view().await?;
                Ok(show_regions(&table, &view))
            }
        }
    }

    /// Runs one statement in the session's transaction: transaction control
    /// moves the session state ([`transaction::step`]); inside a block the
    /// statement joins the transaction (and fails it on error); outside one
    /// it is a transaction of its own.
    pub(crate) async fn execute(
        &self,
        session: &Session,
        statement: &Statement,
        params: &[Value],
    ) -> Result<QueryResult, GatewayError> {
        let mut state = session.state.lock().await;
        if let Some(control) = Control::of(statement) {
            let effect = control.and_then(|control| transaction::step(&mut state, control));
            if let (Ok(Effect::Reply(QueryResult::TransactionStart)), TxnState::Active(block)) =
                (&effect, &mut *state)
            {
                // A repeated BEGIN keeps the snapshot of the first.
                block
                    .settings_at_begin
                    .get_or_insert_with(|| session.settings().clone());
            }
            return match effect {
                Ok(Effect::Reply(result)) => Ok(result),
                Ok(Effect::Commit(mut transaction)) => {
                    let settings_at_begin = transaction.settings_at_begin.take();
                    let _committing = session.start_commit();
                    match self.commit(transaction).await {
                        Ok(()) => session.settings().end_block(),
                        Err(error) => {
                            // A failed COMMIT rolled the block back: so are
                            // its SETs.
                            restore_settings(session, settings_at_begin);
                            return Err(error);
                        }
                    }
                    Ok(QueryResult::TransactionEnd { tag: "COMMIT" })
                }
                Ok(Effect::Rollback(mut transaction, tag)) => {
                    restore_settings(session, transaction.settings_at_begin.take());
                    release(transaction).await;
                    Ok(QueryResult::TransactionEnd { tag })
                }
                Err(error) => {
                    state.fail();
                    Err(error)
                }
            };
        }
        if let Some(command) = SessionCommand::of(statement) {
            return run_session_command(session, &mut state, command);
        }
        match &mut *state {
            TxnState::Failed(_) => Err(GatewayError::InFailedTransaction),
            TxnState::Active(transaction) => {
                let result = self
                    .run(session, statement, params, transaction, false)
                    .await;
                if result.is_err() {
                    state.fail();
                }
                result
            }
            TxnState::Idle => self.autocommit(session, statement, params).await,
        }
    }

    /// One statement as its own transaction, run again from scratch when it
    /// meets a write conflict (nothing of a failed attempt was sent).
    async fn autocommit(
        &self,
        session: &Session,
        statement: &Statement,
        params: &[Value],
    ) -> Result<QueryResult, GatewayError> {
        let mut attempt = 1;
        loop {
            let mut transaction = Transaction::default();
            let outcome = match self
                .run(session, statement, params, &mut transaction, true)
                .await
            {
                Ok(result) => {
                    let _committing = session.start_commit();
                    self.commit(transaction).await.map(|()| result)
                }
                Err(error) => Err(error),
            };
            match outcome {
                Err(GatewayError::SerializationFailure { reason })
                    if attempt < AUTOCOMMIT_ATTEMPTS_MAX =>
                {
                    tracing::debug!(attempt, %reason, "retrying an implicit transaction");
                    tokio::time::sleep(Duration::from_millis(AUTOCOMMIT_BACKOFF_MS << attempt))
                        .await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// Commits the transaction's writes — with a row lock for every row
    /// it locked and did not change, its locks' primary first. If the
    /// commit fails, its locks are rolled back (primary first); should that
    /// find the commit had gone through after all, it is a success.
    ///
    /// The commit runs on a task of its own: a statement future dropped
    /// part way (a CancelRequest, a vanished client) must not stop a
    /// two-phase commit between its primary and its secondaries.
    async fn commit(&self, transaction: Transaction) -> Result<(), GatewayError> {
        let storage = self.storage.clone();
        tokio::spawn(commit_transaction(storage, transaction))
            .await
            .map_err(|join_error| {
                GatewayError::internal(format!("commit task failed: {join_error}"))
            })?
    }

    /// Plans and runs a statement against `transaction`.
    async fn run(
        &self,
        session: &Session,
        statement: &Statement,
        params: &[Value],
        transaction: &mut Transaction,
        autocommit: bool,
    ) -> Result<QueryResult, GatewayError> {
        let catalog = self.catalog_for(statement).await?;
        let in_catalog = |catalog: &Catalog| {
            // The session's settings: current_setting reads them and
            // set_config changes them, kept only if the query succeeds.
            let mut settings = session.settings().clone();
            let result = crate::pg_catalog::execute_in_session(
                statement,
                params,
                catalog,
                &mut settings,
                !autocommit,
            )?;
            *session.settings() = settings;
            Ok(result)
        };
        if crate::pg_catalog::is_catalog_query(statement) {
            return in_catalog(&catalog);
        }
        let plan = match plan_statement(statement, params, &catalog) {
            Ok(plan) => plan,
            Err(error) if hands_to_catalog(statement, &error) => return in_catalog(&catalog),
            Err(error) => return Err(error),
        };
        // Postgres' now() is the transaction's start: the first statement
        // of the block reads the clock, later ones reuse it.
        let now_micros = *transaction.now_micros.get_or_insert_with(|| (self.clock)());
        let now = StatementTime::from_unix_micros(now_micros);
        let store = TxnStore::new(&self.storage, transaction, autocommit);
        match plan {
            Plan::CreateTable(plan) => plan.execute(self.catalogs.as_ref()).await,
            Plan::DropTable(plan) => {
                let store = Autocommit(self.storage.as_ref());
                plan.execute(self.catalogs.as_ref(), &store).await
            }
            Plan::Insert(plan) => plan.execute(&store, now).await,
            Plan::Update(plan) => plan.execute(&store, now).await,
            Plan::Delete(plan) => plan.execute(&store, now).await,
            Plan::Select(plan) => plan.execute(&store, self.views.as_ref(), now).await,
            Plan::Set | Plan::Show(_) => Err(GatewayError::internal(
                "session statements run before planning (Executor::execute)",
            )),
            Plan::Deallocate { all } => Ok(QueryResult::Command {
                tag: if all { "DEALLOCATE ALL" } else { "DEALLOCATE" },
                rows: None,
            }),
        }
    }
}

/// The result columns of a statement, without running it (for Describe).
/// Only row-returning statements are planned, with parameters as NULL (only
/// their count matters for the result shape); others return no columns.
pub(crate) fn describe(
    statement: &Statement,
    parameter_count: usize,
    catalog: &Catalog,
) -> Result<Vec<Column>, GatewayError> {
    let returns_rows = match statement {
        Statement::Query(_) | Statement::ShowVariable { .. } => true,
        Statement::Insert(insert) => insert.returning.is_some(),
        Statement::Update(update) => update.returning.is_some(),
        Statement::Delete(delete) => delete.returning.is_some(),
        _ => false,
    };
    if !returns_rows {
        return Ok(Vec::new());
    }
    if crate::pg_catalog::is_catalog_query(statement) {
        return crate::pg_catalog::describe(statement, parameter_count, catalog);
    }
    let params = vec![Value::Null; parameter_count];
    let plan = match plan_statement(statement, &params, catalog) {
        Ok(plan) => plan,
        Err(error) if hands_to_catalog(statement, &error) => {
            return crate::pg_catalog::describe(statement, parameter_count, catalog)
        }
        Err(error) => return Err(error),
    };
    Ok(match plan {
        Plan::Select(plan) => plan.columns().to_vec(),
        Plan::Show(plan) => plan.columns(),
        Plan::Insert(plan) => plan.returning_columns(),
        Plan::Update(plan) => plan.returning_columns(),
        Plan::Delete(plan) => plan.returning_columns(),
        _ => Vec::new(),
    })
}

/// A SELECT without FROM that the statement planner cannot do (a function
/// such as `current_setting`, a CASE, a subquery) goes to the catalog
/// evaluator, which knows more functions and expression forms.
fn hands_to_catalog(statement: &Statement, error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::Unsupported { .. } | GatewayError::UndefinedFunction { .. }
    ) && crate::pg_catalog::is_constant_query(statement)
}

/// True when `statement` can only name `kv` or `system.*` tables (or none),
/// so it needs no catalog read. Conservative: anything else reads it.
fn names_only_built_ins(statement: &Statement) -> bool {
    use sqlparser::ast::{FromTable, SetExpr, TableFactor, TableObject, TableWithJoins};
    fn built_in(name: &sqlparser::ast::ObjectName) -> bool {
        match crate::plan::name_parts(name).as_deref() {
            Some([table]) => table == arbor_catalog::KV_TABLE_NAME,
            Some([schema, table]) => {
                schema == "public" && table == arbor_catalog::KV_TABLE_NAME
                    || schema == crate::system_tables::SYSTEM_SCHEMA
            }
            _ => false,
        }
    }
    fn from_built_in(from: &[TableWithJoins]) -> bool {
        from.iter().all(|item| {
            item.joins.is_empty()
                && matches!(&item.relation, TableFactor::Table { name, .. } if built_in(name))
        })
    }
    match statement {
        Statement::Query(query) => match query.body.as_ref() {
            SetExpr::Select(select) => query.with.is_none() && from_built_in(&select.from),
            _ => false,
        },
        Statement::Insert(insert) => {
            matches!(&insert.table, TableObject::TableName(name) if built_in(name))
        }
        Statement::Update(update) => from_built_in(std::slice::from_ref(&update.table)),
        Statement::Delete(delete) => match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => {
                from_built_in(from)
            }
        },
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Set(_)
        | Statement::Reset(_)
        | Statement::Deallocate { .. }
        | Statement::ShowVariable { .. } => true,
        _ => false,
    }
}

/// The highest `$n` placeholder in `sql` (0 when there are none).
pub(crate) fn parameter_count(sql: &str) -> usize {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return 0;
    };
    tokens
        .iter()
        .filter_map(|token| match token {
            Token::Placeholder(placeholder) => placeholder.strip_prefix('$')?.parse().ok(),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// SET / RESET / SHOW on the session's settings: refused in a failed
/// block (25P02); an error inside a block fails it, like any statement's.
fn run_session_command(
    session: &Session,
    state: &mut TxnState,
    command: Result<SessionCommand, GatewayError>,
) -> Result<QueryResult, GatewayError> {
    let in_block = match state {
        TxnState::Failed(_) => return Err(GatewayError::InFailedTransaction),
        TxnState::Active(_) => true,
        TxnState::Idle => false,
    };
    let result = command.and_then(|command| command.execute(&mut session.settings(), in_block));
    if result.is_err() {
        state.fail();
    }
    result
}

/// Puts back the settings a rolled-back block started with.
fn restore_settings(session: &Session, settings_at_begin: Option<crate::settings::Settings>) {
    if let Some(settings) = settings_at_begin {
        *session.settings() = settings;
    }
}

/// Gives back what an ended (rolled-back) transaction holds in storage:
/// its row locks, if it took any.
async fn release(mut transaction: Transaction) {
    if let Some(locks) = transaction.locks.take() {
        release_locks(locks).await;
    }
}

/// Best effort: locks not given back expire one lock TTL after the last
/// heartbeat, so a failure here only makes other writers wait longer.
async fn release_locks(locks: HeldLocks) {
    match locks.release().await {
        Ok(None) => {}
        Ok(Some(commit_ts)) => {
            tracing::warn!(commit_ts, "a rolled-back transaction's locks had committed")
        }
        Err(error) => tracing::info!(%error, "row locks left to expire"),
    }
}

async fn commit_transaction(
    storage: Arc<dyn Storage>,
    mut transaction: Transaction,
) -> Result<(), GatewayError> {
    let locks = transaction.locks.take();
    if transaction.buffer.is_empty() {
        if let Some(locks) = locks {
            release_locks(locks).await;
        }
        return Ok(());
    }
    let start_ts = match transaction.start_ts {
        Some(start_ts) => start_ts,
        None => storage.timestamp().await?,
    };
    let writes = transaction.buffer.into_writes();
    let writes = match &locks {
        Some(locks) => locks.commit_writes(writes),
        None => writes,
    };
    let committed = storage.commit(start_ts, writes).await;
    match (committed, locks) {
        (Ok(_), Some(locks)) => {
            locks.settle();
            Ok(())
        }
        (Ok(_), None) => Ok(()),
        (Err(error), None) => Err(error),
        // Rolling the locks back, primary first, settles an unknown outcome:
        // if the primary had committed after all, so did the transaction.
        (Err(error), Some(locks)) => match locks.release().await {
            Ok(Some(_commit_ts)) => Ok(()),
            Ok(None) => Err(error),
            Err(release_error) => {
                tracing::info!(%release_error, "locks of a failed commit left to expire");
                Err(error)
            }
        },
    }
}
