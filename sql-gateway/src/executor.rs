//! The executor: SQL text or a parsed statement in, [`QueryResult`]s out.
//! Knows nothing of the wire protocol; `handler.rs` adapts it to pgwire.
//!
//! Invariant: a failed statement returns its error and changes nothing; the
//! statements after it in the same simple query are not run, as in Postgres.

use std::sync::Arc;
use std::time::Duration;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use arbor_catalog::Catalog;

use crate::catalog_source::CatalogSource;
use crate::cluster_view::ClusterViewSource;
use crate::error::GatewayError;
use crate::plan::{plan_statement, Plan};
use crate::statement::QueryResult;
use crate::store::{Autocommit, Storage};
use crate::transaction::{
    self, Control, Effect, Session, Transaction, TxnState, TxnStore, AUTOCOMMIT_ATTEMPTS_MAX,
};
use crate::value::{Column, Value};

/// Longest SQL text accepted (room for a few maximal values in one INSERT).
pub(crate) const SQL_BYTES_MAX: usize = 16 << 20;
const _: () = assert!(SQL_BYTES_MAX > 2 * crate::statement::VALUE_BYTES_MAX);
/// First pause before an implicit transaction runs again after a conflict;
/// doubled on every attempt.
const AUTOCOMMIT_BACKOFF_MS: u64 = 2;

pub(crate) fn parse_sql(sql: &str) -> Result<Vec<Statement>, GatewayError> {
    if sql.len() > SQL_BYTES_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a statement of {} bytes", sql.len()),
            limit: SQL_BYTES_MAX,
        });
    }
    Ok(Parser::parse_sql(&PostgreSqlDialect {}, sql)?)
}

pub(crate) struct Executor {
    storage: Arc<dyn Storage>,
    views: Arc<dyn ClusterViewSource>,
    catalogs: Arc<dyn CatalogSource>,
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
        }
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
        let statements = match parse_sql(sql) {
            Ok(statements) => statements,
            Err(error) => {
                session.fail().await;
                return vec![Err(error)];
            }
        };
        let mut results = Vec::with_capacity(statements.len());
        for statement in &statements {
            let result = self.execute(session, statement, &[]).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
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
            return match effect {
                Ok(Effect::Reply(result)) => Ok(result),
                Ok(Effect::Commit(transaction)) => {
                    self.commit(transaction).await?;
                    Ok(QueryResult::TransactionEnd { tag: "COMMIT" })
                }
                Err(error) => {
                    state.fail();
                    Err(error)
                }
            };
        }
        match &mut *state {
            TxnState::Failed(_) => Err(GatewayError::InFailedTransaction),
            TxnState::Active(transaction) => {
                let result = self.run(statement, params, transaction, false).await;
                if result.is_err() {
                    state.fail();
                }
                result
            }
            TxnState::Idle => self.autocommit(statement, params).await,
        }
    }

    /// One statement as its own transaction, run again from scratch when it
    /// meets a write conflict (nothing of a failed attempt was sent).
    async fn autocommit(
        &self,
        statement: &Statement,
        params: &[Value],
    ) -> Result<QueryResult, GatewayError> {
        let mut attempt = 1;
        loop {
            let mut transaction = Transaction::default();
            let outcome = match self.run(statement, params, &mut transaction, true).await {
                Ok(result) => self.commit(transaction).await.map(|()| result),
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

    async fn commit(&self, transaction: Transaction) -> Result<(), GatewayError> {
        if transaction.buffer.is_empty() {
            return Ok(());
        }
        let start_ts = match transaction.start_ts {
            Some(start_ts) => start_ts,
            None => self.storage.timestamp().await?,
        };
        self.storage
            .commit(start_ts, transaction.buffer.into_writes())
            .await
            .map(|_| ())
    }

    /// Plans and runs a statement against `transaction`.
    async fn run(
        &self,
        statement: &Statement,
        params: &[Value],
        transaction: &mut Transaction,
        autocommit: bool,
    ) -> Result<QueryResult, GatewayError> {
        let catalog = self.catalog_for(statement).await?;
        if crate::pg_catalog::is_catalog_query(statement) {
            return crate::pg_catalog::execute(statement, params, &catalog);
        }
        let plan = match plan_statement(statement, params, &catalog) {
            Ok(plan) => plan,
            Err(error) if hands_to_catalog(statement, &error) => {
                return crate::pg_catalog::execute(statement, params, &catalog)
            }
            Err(error) => return Err(error),
        };
        let store = TxnStore::new(self.storage.as_ref(), transaction, autocommit);
        match plan {
            Plan::CreateTable(plan) => plan.execute(self.catalogs.as_ref()).await,
            Plan::DropTable(plan) => {
                let store = Autocommit(self.storage.as_ref());
                plan.execute(self.catalogs.as_ref(), &store).await
            }
            Plan::Insert(plan) => plan.execute(&store).await,
            Plan::Update(plan) => plan.execute(&store).await,
            Plan::Delete(plan) => plan.execute(&store).await,
            Plan::Select(plan) => plan.execute(&store, self.views.as_ref()).await,
            Plan::Set => Ok(QueryResult::Command {
                tag: "SET",
                rows: None,
            }),
            Plan::Show(plan) => Ok(plan.execute()),
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
