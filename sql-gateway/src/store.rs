//! The storage seams, behind traits so statement execution is testable
//! without a cluster: [`Storage`] (the cluster: TSO, reads at a timestamp,
//! transactional commit, and the admin requests `split_at` and
//! `unsplit_at`) and [`KvStore`] (what statements call: get, scan,
//! conditional write).
//!
//! Production always uses [`ClusterStorage`] (the
//! [`arbor_raftstore::RegionClient`], plus the coordinators' addresses for
//! `unsplit_at`); unit tests use an in-memory versioned map with the same
//! semantics.
//!
//! Invariant: every scan here is paged ([`SCAN_PAGE_ROWS`]) and refuses to
//! examine more than [`SCAN_ROWS_MAX`] rows, so a statement's memory is
//! bounded whatever the table size.

use arbor_catalog::{decode_row, key_successor, TableDescriptor};
use arbor_proto::Mutation;
use arbor_raftstore::{
    RaftstoreError, RegionClient, TxnKeepAlive, TxnMutation, TxnMutationKind, WriteOutcome,
};
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

/// What a transaction does to one key when it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteIntent {
    Put(Vec<u8>),
    Delete,
    /// No change, but the key takes part in conflict detection as if it
    /// were written (`SELECT ... FOR UPDATE`).
    Lock,
}

/// The cluster as transactions see it: timestamps from the coordinator's
/// TSO, multi-version reads at a timestamp, and an atomic commit of a
/// transaction's writes (one region: one raft entry; several: two-phase
/// commit). Production is [`ClusterStorage`]; unit tests use a versioned map.
#[async_trait]
pub(crate) trait Storage: Send + Sync {
    /// A timestamp above every one handed out before this call started.
    async fn timestamp(&self) -> Result<u64, GatewayError>;
    /// The value committed at or before `read_ts`, never an uncommitted one.
    async fn get_at(&self, key: &[u8], read_ts: u64) -> Result<Option<Vec<u8>>, GatewayError>;
    /// Like [`KvStore::scan`], at `read_ts`.
    async fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        read_ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError>;
    /// Commits every write of the transaction that read at `start_ts`, all or
    /// nothing; a key written by another transaction that committed after
    /// `start_ts` fails the whole commit with 40001. Returns the commit ts.
    async fn commit(
        &self,
        start_ts: u64,
        writes: Vec<(Vec<u8>, WriteIntent)>,
    ) -> Result<u64, GatewayError>;
    /// A transaction of its own: conditions checked against the newest
    /// committed data, applied all or nothing.
    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError>;
    /// `SELECT ... FOR UPDATE`: locks `keys` now for the transaction at
    /// `start_ts` whose first lock is on `primary`. Other writers wait for
    /// the locks; a key written by a transaction that committed after
    /// `start_ts` fails with 40001. On an error some keys may be locked:
    /// the caller rolls back every key it asked for.
    async fn lock_keys(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<(), GatewayError>;
    /// Keeps the transaction's locks alive while the returned handle lives
    /// (heartbeats to `primary`); without it they expire one lock TTL after
    /// the last heartbeat.
    fn keep_alive(&self, start_ts: u64, primary: Vec<u8>) -> KeepAlive;
    /// Drops the transaction's locks on `keys`, `primary` first (after
    /// which it can never commit). `Some(commit_ts)` when it had committed
    /// after all (then nothing is rolled back).
    async fn rollback(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<u64>, GatewayError>;
    /// `ALTER TABLE ... SPLIT AT`: splits the region holding `key` exactly
    /// at `key` (the coordinator lease holder plans, executes and commits
    /// it) and answers the regions either side. A key that already starts
    /// a region answers at once, so asking again is harmless.
    async fn split_at(&self, key: &[u8]) -> Result<SplitOutcome, GatewayError>;
    /// `ALTER TABLE ... UNSPLIT AT`: merges the region starting exactly at
    /// `key` into its left neighbour (the coordinator lease holder plans,
    /// executes and commits it) and answers the id of the region holding
    /// `key` afterwards. A key no region starts at answers at once.
    async fn unsplit_at(&self, key: &[u8]) -> Result<u64, GatewayError>;
}

/// Production storage: the region client, and the coordinator addresses
/// `unsplit_at` asks (the region client keeps its own list private).
pub(crate) struct ClusterStorage {
    regions: RegionClient,
    coordinators: Vec<String>,
}

impl ClusterStorage {
    pub(crate) fn new(coordinators: Vec<String>) -> Self {
        ClusterStorage {
            regions: RegionClient::new(coordinators.clone()),
            coordinators,
        }
    }
}

/// The regions either side of a split key, as `split_at` answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitOutcome {
    /// None when the key starts the key space (no region lies left of it).
    pub(crate) left_region_id: Option<u64>,
    pub(crate) right_region_id: u64,
}

/// Heartbeats of one transaction's locks; they stop when this is dropped.
pub(crate) struct KeepAlive(#[allow(dead_code)] Option<TxnKeepAlive>);

impl KeepAlive {
    /// For a store whose locks never expire (the unit tests' map).
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        KeepAlive(None)
    }
}

/// The statement-facing seam: reads and conditional writes. Inside a
/// transaction it is a [`crate::transaction::TxnStore`] (snapshot reads
/// merged with the transaction's own writes); for DDL's bulk deletes,
/// [`Autocommit`] (each call its own transaction).
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
    /// `SELECT ... FOR UPDATE`: these keys take part in the transaction's
    /// conflict check as if written. Outside a transaction, nothing.
    async fn lock_keys(&self, _keys: Vec<Vec<u8>>) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// The region client has already retried region errors; what is left is
/// a transaction that lost to another (40001, retry it), one too large
/// (54000), "the cluster cannot serve now" (retryable, 57P03), corrupt
/// data, or a request the gateway should never have built (internal).
fn unavailable(error: RaftstoreError) -> GatewayError {
    let reason = error.to_string();
    match error {
        RaftstoreError::WriteConflict { .. }
        | RaftstoreError::LockWaitTimeout { .. }
        | RaftstoreError::TxnAborted { .. } => GatewayError::SerializationFailure { reason },
        RaftstoreError::SnapshotTooOld { .. } => GatewayError::SnapshotTooOld { reason },
        RaftstoreError::TxnTooLarge { limit, .. }
        | RaftstoreError::TxnBytesTooLarge { limit, .. } => GatewayError::ProgramLimitExceeded {
            what: reason,
            limit,
        },
        RaftstoreError::IncompatibleStoreFormat { .. } => {
            GatewayError::Internal { message: reason }
        }
        RaftstoreError::RegionNotFound { .. }
        | RaftstoreError::RegionUnavailable { .. }
        | RaftstoreError::RouteUnavailable { .. }
        | RaftstoreError::NoCoordinatorReachable { .. }
        | RaftstoreError::WrongStore { .. }
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
impl Storage for ClusterStorage {
    async fn timestamp(&self) -> Result<u64, GatewayError> {
        RegionClient::timestamp(&self.regions)
            .await
            .map_err(unavailable)
    }

    async fn get_at(&self, key: &[u8], read_ts: u64) -> Result<Option<Vec<u8>>, GatewayError> {
        RegionClient::get_at(&self.regions, key, read_ts)
            .await
            .map_err(unavailable)
    }

    async fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        read_ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError> {
        RegionClient::scan_at(&self.regions, start, end, limit, read_ts)
            .await
            .map_err(unavailable)
    }

    async fn commit(
        &self,
        start_ts: u64,
        writes: Vec<(Vec<u8>, WriteIntent)>,
    ) -> Result<u64, GatewayError> {
        let mutations = writes
            .into_iter()
            .map(|(key, intent)| TxnMutation {
                key,
                kind: match intent {
                    WriteIntent::Put(value) => TxnMutationKind::Put(value),
                    WriteIntent::Delete => TxnMutationKind::Delete,
                    WriteIntent::Lock => TxnMutationKind::Lock,
                },
            })
            .collect();
        RegionClient::commit(&self.regions, start_ts, mutations)
            .await
            .map_err(unavailable)
    }

    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError> {
        RegionClient::write(&self.regions, mutations)
            .await
            .map_err(unavailable)
    }

    async fn lock_keys(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<(), GatewayError> {
        RegionClient::lock_keys(&self.regions, start_ts, primary, keys)
            .await
            .map_err(unavailable)
    }

    fn keep_alive(&self, start_ts: u64, primary: Vec<u8>) -> KeepAlive {
        KeepAlive(Some(RegionClient::keep_alive(
            &self.regions,
            start_ts,
            primary,
        )))
    }

    async fn rollback(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<u64>, GatewayError> {
        RegionClient::rollback(&self.regions, start_ts, primary, keys)
            .await
            .map_err(unavailable)
    }

    async fn split_at(&self, key: &[u8]) -> Result<SplitOutcome, GatewayError> {
        let halves = RegionClient::split_at(&self.regions, key)
            .await
            .map_err(unavailable)?;
        Ok(SplitOutcome {
            left_region_id: halves.left.map(|left| left.region_id),
            right_region_id: halves.right.region_id,
        })
    }

    async fn unsplit_at(&self, key: &[u8]) -> Result<u64, GatewayError> {
        let region = crate::coordinator_admin::unsplit_at(&self.coordinators, key).await?;
        Ok(region.region_id)
    }
}

/// Each call its own transaction at a fresh timestamp (no snapshot across
/// calls): for work that is not part of a SQL transaction, such as the
/// range delete after DROP TABLE.
pub(crate) struct Autocommit<'a>(pub(crate) &'a dyn Storage);

#[async_trait]
impl KvStore for Autocommit<'_> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
        let read_ts = self.0.timestamp().await?;
        self.0.get_at(key, read_ts).await
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError> {
        let read_ts = self.0.timestamp().await?;
        self.0.scan_at(start, end, limit, read_ts).await
    }

    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError> {
        self.0.write(mutations).await
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
            let keep = match request.filter {
                Some(filter) => filter.matches(&row)?,
                None => true,
            };
            if keep {
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
