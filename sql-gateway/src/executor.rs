//! The executor: SQL text or a parsed statement in, [`QueryResult`]s out.
//! Knows nothing of the wire protocol; `handler.rs` adapts it to pgwire.
//!
//! Invariant: a failed statement returns its error and changes nothing; the
//! statements after it in the same simple query are not run, as in Postgres.

use std::sync::Arc;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::cluster_view::ClusterViewSource;
use crate::error::GatewayError;
use crate::plan::{plan_statement, Plan};
use crate::statement::QueryResult;
use crate::store::KvStore;
use crate::value::Column;

/// Longest SQL text accepted (room for a few maximal values in one INSERT).
pub(crate) const SQL_BYTES_MAX: usize = 16 << 20;
const _: () = assert!(SQL_BYTES_MAX > 2 * crate::statement::VALUE_BYTES_MAX);

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
    store: Arc<dyn KvStore>,
    views: Arc<dyn ClusterViewSource>,
}

impl Executor {
    pub(crate) fn new(store: Arc<dyn KvStore>, views: Arc<dyn ClusterViewSource>) -> Self {
        Executor { store, views }
    }

    /// Runs every statement of a simple query in order, stopping after the
    /// first error (which is the last element).
    pub(crate) async fn execute_sql(&self, sql: &str) -> Vec<Result<QueryResult, GatewayError>> {
        let statements = match parse_sql(sql) {
            Ok(statements) => statements,
            Err(error) => return vec![Err(error)],
        };
        let mut results = Vec::with_capacity(statements.len());
        for statement in &statements {
            let result = self.execute(statement, &[]).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }

    pub(crate) async fn execute(
        &self,
        statement: &Statement,
        params: &[Option<String>],
    ) -> Result<QueryResult, GatewayError> {
        let plan = plan_statement(statement, params)?;
        let store = self.store.as_ref();
        match plan {
            Plan::Insert(plan) => plan.execute(store).await,
            Plan::Update(plan) => plan.execute(store).await,
            Plan::Delete(plan) => plan.execute(store).await,
            Plan::Select(plan) => plan.execute(store, self.views.as_ref()).await,
            Plan::Begin => Ok(QueryResult::TransactionStart),
            Plan::Commit => Ok(QueryResult::TransactionEnd { tag: "COMMIT" }),
            Plan::Rollback => Ok(QueryResult::TransactionEnd { tag: "ROLLBACK" }),
            Plan::Set => Ok(QueryResult::Command {
                tag: "SET",
                rows: None,
            }),
            Plan::Show(plan) => Ok(plan.execute()),
        }
    }
}

/// The result columns of a statement, without running it (for Describe).
/// Only row-returning statements are planned, with parameters as NULL (only
/// their count matters for the result shape); others return no columns.
pub(crate) fn describe(
    statement: &Statement,
    parameter_count: usize,
) -> Result<Vec<Column>, GatewayError> {
    if !matches!(
        statement,
        Statement::Query(_) | Statement::ShowVariable { .. }
    ) {
        return Ok(Vec::new());
    }
    let params = vec![None; parameter_count];
    Ok(match plan_statement(statement, &params)? {
        Plan::Select(plan) => plan.columns().to_vec(),
        Plan::Show(plan) => plan.columns(),
        _ => Vec::new(),
    })
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
