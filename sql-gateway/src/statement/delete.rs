//! DELETE FROM kv [WHERE ...].
//!
//! `WHERE k = 'a'` is one delete; its `existed` flag gives `DELETE 1` or
//! `DELETE 0`. Other shapes read the matching keys (point get or bounded
//! scan) and delete them in one batch, counting the keys that still existed.

use arbor_catalog::{Catalog, TableDescriptor};
use arbor_raftstore::WriteOutcome;
use sqlparser::ast::{self, FromTable};

use super::{
    check_batch, check_write_rows, delete_key, read_rows, resolve_filter, table_access,
    QueryResult, Returning, TableAccess, WRITE_ROWS_MAX,
};
use crate::bind::Scope;
use crate::error::GatewayError;
use crate::expr::{Expr, StatementTime};
use crate::plan::{resolve_from, resolve_writable_table, table_columns};
use crate::store::KvStore;
use crate::value::Value;

#[derive(Debug)]
pub(crate) struct DeletePlan {
    table: TableDescriptor,
    filter: Option<Expr>,
    access: TableAccess,
    returning: Option<Returning>,
}

impl DeletePlan {
    pub(crate) fn plan(
        delete: &ast::Delete,
        params: &[Value],
        catalog: &Catalog,
    ) -> Result<Self, GatewayError> {
        if !delete.tables.is_empty()
            || delete.using.is_some()
            || !delete.order_by.is_empty()
            || delete.limit.is_some()
        {
            return Err(GatewayError::unsupported("DELETE ... USING/ORDER BY/LIMIT"));
        }
        let from = match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
        };
        let [from] = from.as_slice() else {
            return Err(GatewayError::unsupported("DELETE from several tables"));
        };
        let (name, alias) = resolve_from(from)?;
        let table = resolve_writable_table(&name, "DELETE", catalog)?;
        let scope_name = alias.unwrap_or_else(|| table.name.clone());
        let scope = Scope::single(&scope_name, table_columns(&table), params);
        let filter = delete
            .selection
            .as_ref()
            .map(|selection| scope.bind_predicate(selection, "WHERE"))
            .transpose()?;
        let access = table_access(&table, filter.as_ref());
        let returning = Returning::plan(&table, &scope_name, delete.returning.as_deref(), params)?;
        Ok(DeletePlan {
            table,
            filter,
            access,
            returning,
        })
    }

    pub(crate) fn returning_columns(&self) -> Vec<crate::value::Column> {
        self.returning
            .as_ref()
            .map(|returning| returning.columns.clone())
            .unwrap_or_default()
    }

    pub(crate) async fn execute(
        mut self,
        store: &dyn KvStore,
        now: StatementTime,
    ) -> Result<QueryResult, GatewayError> {
        resolve_filter(&self.table, &mut self.filter, &mut self.access, now);
        if let Some(returning) = &mut self.returning {
            returning.resolve_statement_time(now);
        }
        let blind_point = match (&self.access.point, self.access.exact_point) {
            (Some(point), true) if self.returning.is_none() => Some(point),
            _ => None,
        };
        let (keys, rows) = if let Some(point) = blind_point {
            (
                vec![arbor_catalog::encode_primary_key(&self.table, point)?],
                Vec::new(),
            )
        } else {
            let rows = read_rows(
                store,
                &self.table,
                self.filter.as_ref(),
                &self.access,
                Some(WRITE_ROWS_MAX + 1),
            )
            .await?;
            check_write_rows(rows.len())?;
            rows.into_iter().unzip()
        };
        let existed = if keys.is_empty() {
            Vec::new()
        } else {
            let mutations: Vec<_> = keys.into_iter().map(delete_key).collect();
            check_batch(&mutations)?;
            match store.write(mutations).await? {
                WriteOutcome::Applied { existed } => existed,
                WriteOutcome::ConditionFailed { .. } => {
                    return Err(GatewayError::internal(
                        "an unconditional delete reported a failed condition",
                    ))
                }
            }
        };
        let deleted = existed.iter().filter(|&&existed| existed).count();
        Ok(match &self.returning {
            Some(returning) => {
                let rows: Vec<Vec<Value>> = rows
                    .into_iter()
                    .zip(existed)
                    .filter_map(|(row, existed)| existed.then_some(row))
                    .collect();
                returning.result("DELETE", rows)?
            }
            None => QueryResult::command("DELETE", deleted),
        })
    }
}
