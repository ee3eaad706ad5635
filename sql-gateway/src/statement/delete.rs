//! DELETE FROM kv [WHERE ...].
//!
//! `WHERE k = 'a'` is one delete; its `existed` flag gives `DELETE 1` or
//! `DELETE 0`. Other shapes read the matching keys (point get or bounded
//! scan) and delete them in one batch, counting the keys that still existed.

use arbor_catalog::TableDescriptor;
use arbor_raftstore::WriteOutcome;
use sqlparser::ast::{self, FromTable};

use super::{
    check_batch, check_write_rows, delete_key, is_plain_point_filter, read_rows, table_range,
    QueryResult, WRITE_ROWS_MAX,
};
use crate::bind::Scope;
use crate::error::GatewayError;
use crate::expr::{Expr, KeyRange};
use crate::plan::{resolve_from, resolve_writable_table, table_columns};
use crate::store::KvStore;

#[derive(Debug)]
pub(crate) struct DeletePlan {
    table: TableDescriptor,
    filter: Option<Expr>,
    range: KeyRange,
}

impl DeletePlan {
    pub(crate) fn plan(
        delete: &ast::Delete,
        params: &[Option<String>],
    ) -> Result<Self, GatewayError> {
        if delete.returning.is_some() {
            return Err(GatewayError::unsupported("DELETE ... RETURNING"));
        }
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
        let table = resolve_writable_table(&name, "DELETE")?;
        let scope_name = alias.unwrap_or_else(|| table.name.clone());
        let scope = Scope::single(&scope_name, table_columns(&table), params);
        let filter = delete
            .selection
            .as_ref()
            .map(|selection| scope.bind_predicate(selection, "WHERE"))
            .transpose()?;
        let range = table_range(&table, filter.as_ref());
        Ok(DeletePlan {
            table,
            filter,
            range,
        })
    }

    pub(crate) async fn execute(&self, store: &dyn KvStore) -> Result<QueryResult, GatewayError> {
        let keys = if let (Some(point), true) = (
            self.range.point(),
            is_plain_point_filter(&self.table, self.filter.as_ref()),
        ) {
            vec![arbor_catalog::encode_primary_key(
                &self.table,
                &[arbor_catalog::Datum::Text(point.to_owned())],
            )?]
        } else {
            let rows = read_rows(
                store,
                &self.table,
                self.filter.as_ref(),
                &self.range,
                Some(WRITE_ROWS_MAX + 1),
            )
            .await?;
            check_write_rows(rows.len())?;
            rows.into_iter().map(|(key, _)| key).collect()
        };
        if keys.is_empty() {
            return Ok(QueryResult::command("DELETE", 0));
        }
        let mutations: Vec<_> = keys.into_iter().map(delete_key).collect();
        check_batch(&mutations)?;
        match store.write(mutations).await? {
            WriteOutcome::Applied { existed } => Ok(QueryResult::command(
                "DELETE",
                existed.iter().filter(|&&existed| existed).count(),
            )),
            WriteOutcome::ConditionFailed { .. } => Err(GatewayError::internal(
                "an unconditional delete reported a failed condition",
            )),
        }
    }
}
