//! `ALTER TABLE t UNSPLIT AT VALUES (v1, ...), ...`: the inverse of SPLIT
//! AT — for each VALUES row, the region that starts exactly at that row's
//! key merges into its left neighbour. Keys are planned exactly as SPLIT AT
//! plans them (same expression evaluation, conversion and key encoding), so
//! `UNSPLIT AT VALUES (x)` removes the boundary `SPLIT AT VALUES (x)` made.
//! Execution asks [`Storage::unsplit_at`] for each key in turn, in the order
//! given; a key no region starts at (never split, or already merged) is
//! answered at once, so running the statement again is harmless.
//!
//! Result (one row per VALUES row): `unsplit_key` text (the key as the
//! primary-key values, `/50`) and `region_id` bigint (the region holding
//! the key afterwards, which `SHOW REGIONS FROM TABLE` lists). CockroachDB
//! answers `key` and `pretty`; Arbor shows keys one way and adds the
//! region, as its SPLIT AT does.

use arbor_catalog::TableDescriptor;
use sqlparser::ast::Query;

use crate::error::GatewayError;
use crate::expr::StatementTime;
use crate::statement::QueryResult;
use crate::store::Storage;
use crate::value::{Column, SqlType, Value};

use super::key_text::key_text;
use super::split_at::{split_key, values_rows, SPLIT_ROWS_MAX};
use super::{column, int, UNSPLIT_AT_STATEMENT};

/// VALUES rows one UNSPLIT AT may give: each is a coordinator round trip
/// (three store calls and two root proposals), bounded like SPLIT AT.
pub(crate) const UNSPLIT_ROWS_MAX: usize = SPLIT_ROWS_MAX;

pub(crate) fn columns() -> Vec<Column> {
    vec![
        column("unsplit_key", SqlType::Text),
        column("region_id", SqlType::Int8),
    ]
}

#[derive(Debug)]
pub(crate) struct UnsplitAtPlan {
    table: TableDescriptor,
    /// One storage key per VALUES row, in the order given.
    keys: Vec<Vec<u8>>,
}

impl UnsplitAtPlan {
    /// Evaluates `rows` (a `VALUES` list of constants) into region start
    /// keys of `table`.
    pub(crate) fn plan(
        table: TableDescriptor,
        rows: &Query,
        now: StatementTime,
    ) -> Result<Self, GatewayError> {
        let rows = values_rows(rows, UNSPLIT_AT_STATEMENT)?;
        if rows.len() > UNSPLIT_ROWS_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("{UNSPLIT_AT_STATEMENT} with {} rows", rows.len()),
                limit: UNSPLIT_ROWS_MAX,
            });
        }
        let keys = rows
            .iter()
            .map(|row| split_key(&table, &row.content, now, "UNSPLIT AT"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UnsplitAtPlan { table, keys })
    }

    /// Merges at each key in turn. A failure stops the statement; the
    /// merges before it stay (each is committed on its own), and running
    /// the statement again skips them at once.
    pub(crate) async fn execute(&self, storage: &dyn Storage) -> Result<QueryResult, GatewayError> {
        let mut rows = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let region_id = storage.unsplit_at(key).await?;
            rows.push(vec![
                key_text(&self.table, key).map_or(Value::Null, Value::Text),
                int(region_id),
            ]);
        }
        Ok(QueryResult::Rows {
            columns: columns(),
            rows,
        })
    }
}
