//! The storage seam: the three region-client calls the executor needs, behind
//! a trait so statement execution is testable without a cluster.
//!
//! Production always uses [`arbor_raftstore::RegionClient`]; tests use an
//! in-memory map with the same condition semantics.
//!
//! Invariant: every scan here is paged ([`SCAN_PAGE_ROWS`]) and refuses to
//! examine more than [`SCAN_ROWS_MAX`] rows, so a statement's memory is
//! bounded whatever the table size.

use arbor_catalog::{decode_row, key_successor, TableDescriptor};
use arbor_proto::Mutation;
use arbor_raftstore::{RaftstoreError, RegionClient, WriteOutcome};
use async_trait::async_trait;

use crate::error::GatewayError;
use crate::expr::Expr;
use crate::value::Row;

/// Rows asked of the region client per scan call.
pub(crate) const SCAN_PAGE_ROWS: usize = 1_000;
/// Rows one statement may examine; past this it fails with 54000 rather
/// than holding an unbounded result in memory.
pub(crate) const SCAN_ROWS_MAX: usize = 100_000;
const _: () = assert!(SCAN_PAGE_ROWS <= SCAN_ROWS_MAX);

#[async_trait]
pub(crate) trait KvStore: Send + Sync {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, GatewayError>;
    /// `[start, end)`, empty `end` = to the end of the key space; at most
    /// `limit` pairs in key order.
    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError>;
    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError>;
}

/// The region client has already retried region errors; what is left is
/// either "the cluster cannot serve now" (retryable, 57P03), corrupt data,
/// or a request the gateway should never have built (internal).
fn unavailable(error: RaftstoreError) -> GatewayError {
    let reason = error.to_string();
    match error {
        RaftstoreError::RegionNotFound { .. }
        | RaftstoreError::RegionUnavailable { .. }
        | RaftstoreError::RouteUnavailable { .. }
        | RaftstoreError::NoCoordinatorReachable { .. }
        | RaftstoreError::Transport { .. } => GatewayError::StorageUnavailable { reason },
        RaftstoreError::Corrupt { .. } => GatewayError::StorageCorrupt { reason },
        RaftstoreError::InvalidArgument { .. }
        | RaftstoreError::Storage { .. }
        | RaftstoreError::Io { .. }
        | RaftstoreError::Raft { .. }
        | RaftstoreError::Bind { .. } => GatewayError::Internal { message: reason },
    }
}

#[async_trait]
impl KvStore for RegionClient {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
        RegionClient::get(self, key).await.map_err(unavailable)
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError> {
        RegionClient::scan(self, start, end, limit)
            .await
            .map_err(unavailable)
    }

    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError> {
        RegionClient::write(self, mutations)
            .await
            .map_err(unavailable)
    }
}

/// What a bounded table scan should read and keep.
pub(crate) struct ScanRequest<'a> {
    pub(crate) table: &'a TableDescriptor,
    pub(crate) start: Vec<u8>,
    pub(crate) end: Vec<u8>,
    /// Rows that do not match are dropped as they are read.
    pub(crate) filter: Option<&'a Expr>,
    /// Stop once this many matching rows are held (a pushed-down LIMIT).
    pub(crate) matches_max: Option<usize>,
}

/// Decoded rows in key order, each `(key, row)`.
pub(crate) async fn scan_rows(
    store: &dyn KvStore,
    request: ScanRequest<'_>,
) -> Result<Vec<(Vec<u8>, Row)>, GatewayError> {
    let mut rows = Vec::new();
    let mut examined = 0usize;
    let mut start = request.start;
    if request.matches_max == Some(0) {
        return Ok(rows);
    }
    loop {
        let wanted = request
            .matches_max
            .map_or(SCAN_PAGE_ROWS, |max| (max - rows.len()).min(SCAN_PAGE_ROWS));
        let page = store.scan(&start, &request.end, wanted).await?;
        let page_len = page.len();
        for (key, value) in page {
            examined += 1;
            if examined > SCAN_ROWS_MAX {
                return Err(GatewayError::ProgramLimitExceeded {
                    what: format!("scanning table \"{}\"", request.table.name),
                    limit: SCAN_ROWS_MAX,
                });
            }
            let row: Row =
                decode_row(request.table, &key, &value).map_err(GatewayError::Corrupt)?;
            start = key_successor(&key);
            if request.filter.is_none_or(|filter| filter.matches(&row)) {
                rows.push((key, row));
                if request.matches_max == Some(rows.len()) {
                    return Ok(rows);
                }
            }
        }
        if page_len < wanted {
            return Ok(rows);
        }
    }
}
