//! Test doubles: an in-memory [`KvStore`] and a fixed [`ClusterViewSource`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arbor_catalog::{encode_row, Datum, TableDescriptor};
use arbor_proto::{ClusterViewResponse, Mutation, MutationCondition, MutationOp};
use arbor_raftstore::WriteOutcome;
use async_trait::async_trait;

use crate::cluster_view::ClusterViewSource;
use crate::error::GatewayError;
use crate::executor::Executor;
use crate::statement::QueryResult;
use crate::store::{KeepAlive, SplitOutcome, Storage, WriteIntent};
use crate::transaction::Session;
use crate::value::Value;

/// Committed versions of one key, oldest first: `(commit_ts, value)`, a
/// `None` value for a delete.
type Versions = Vec<(u64, Option<Vec<u8>>)>;

/// A versioned sorted map with the cluster's transaction semantics:
/// timestamps from a counter, reads at a timestamp, commits that fail with
/// 40001 when a written key has a version newer than the start timestamp,
/// and `write` as a transaction of its own with conditions checked against
/// the newest versions. Row locks (`lock_keys`) refuse other transactions'
/// locks and writes at once with 40001 — where the cluster would make them
/// wait first — and never expire.
#[derive(Default)]
pub(crate) struct MemoryStore {
    data: Mutex<BTreeMap<Vec<u8>, Versions>>,
    clock: AtomicU64,
    /// The `limit` of every scan call, to check pushdown.
    pub(crate) scan_limits: Mutex<Vec<usize>>,
    /// Every `write` batch, in order.
    pub(crate) writes: Mutex<Vec<Vec<Mutation>>>,
    /// Every `commit`, in order.
    pub(crate) commits: Mutex<Vec<Vec<(Vec<u8>, WriteIntent)>>>,
    pub(crate) unavailable: AtomicBool,
    /// This many next commits fail with 40001, as if another transaction
    /// had written first.
    pub(crate) conflicting_commits: AtomicUsize,
    /// Row locks: key -> the start_ts of the transaction holding it.
    pub(crate) row_locks: Mutex<BTreeMap<Vec<u8>, u64>>,
    /// Every `rollback`, in order: `(start_ts, primary, keys)`.
    pub(crate) rollbacks: Mutex<Vec<(u64, Vec<u8>, Vec<Vec<u8>>)>>,
    /// Every `split_at` key, in order.
    pub(crate) split_keys: Mutex<Vec<Vec<u8>>>,
    /// Regions `split_at` made: start key -> region id. Region 1 starts the
    /// key space and is not listed.
    pub(crate) region_starts: Mutex<BTreeMap<Vec<u8>, u64>>,
    /// Every `unsplit_at` key, in order.
    pub(crate) unsplit_keys: Mutex<Vec<Vec<u8>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn visible(versions: &Versions, read_ts: u64) -> Option<&Vec<u8>> {
    versions
        .iter()
        .rev()
        .find(|(commit_ts, _)| *commit_ts <= read_ts)
        .and_then(|(_, value)| value.as_ref())
}

impl MemoryStore {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn put_kv(&self, k: &str, v: Option<&str>) {
        let row = [
            Datum::Text(k.to_owned()),
            v.map_or(Datum::Null, |v| Datum::Text(v.to_owned())),
        ];
        let (key, value) = encode_row(&TableDescriptor::kv(), &row).expect("test row encodes");
        let commit_ts = self.tick();
        lock(&self.data)
            .entry(key)
            .or_default()
            .push((commit_ts, Some(value)));
    }

    /// Live keys now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.data)
            .values()
            .filter(|versions| visible(versions, u64::MAX).is_some())
            .count()
    }

    /// 40001 when another transaction than `start_ts` locks one of `keys`.
    fn check_unlocked<'k>(
        &self,
        start_ts: Option<u64>,
        keys: impl IntoIterator<Item = &'k Vec<u8>>,
    ) -> Result<(), GatewayError> {
        let locks = lock(&self.row_locks);
        for key in keys {
            if let Some(holder) = locks.get(key).filter(|holder| Some(**holder) != start_ts) {
                return Err(GatewayError::SerializationFailure {
                    reason: format!("key {key:?} is locked by transaction {holder}"),
                });
            }
        }
        Ok(())
    }

    fn check_available(&self) -> Result<(), GatewayError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(GatewayError::StorageUnavailable {
                reason: "test store is down".to_owned(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Storage for MemoryStore {
    async fn timestamp(&self) -> Result<u64, GatewayError> {
        self.check_available()?;
        Ok(self.tick())
    }

    async fn get_at(&self, key: &[u8], read_ts: u64) -> Result<Option<Vec<u8>>, GatewayError> {
        self.check_available()?;
        Ok(lock(&self.data)
            .get(key)
            .and_then(|versions| visible(versions, read_ts))
            .cloned())
    }

    async fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        read_ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError> {
        self.check_available()?;
        lock(&self.scan_limits).push(limit);
        let data = lock(&self.data);
        Ok(data
            .range(start.to_vec()..)
            .take_while(|(key, _)| end.is_empty() || key.as_slice() < end)
            .filter_map(|(key, versions)| {
                visible(versions, read_ts).map(|value| (key.clone(), value.clone()))
            })
            .take(limit)
            .collect())
    }

    async fn commit(
        &self,
        start_ts: u64,
        writes: Vec<(Vec<u8>, WriteIntent)>,
    ) -> Result<u64, GatewayError> {
        self.check_available()?;
        lock(&self.commits).push(writes.clone());
        let injected =
            self.conflicting_commits
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(GatewayError::SerializationFailure {
                reason: "injected conflict".to_owned(),
            });
        }
        self.check_unlocked(Some(start_ts), writes.iter().map(|(key, _)| key))?;
        let mut data = lock(&self.data);
        for (key, _) in &writes {
            let newest = data
                .get(key)
                .and_then(|versions| versions.last())
                .map(|(commit_ts, _)| *commit_ts);
            if newest.is_some_and(|newest| newest > start_ts) {
                return Err(GatewayError::SerializationFailure {
                    reason: format!("key {key:?} was written after the transaction started"),
                });
            }
        }
        let commit_ts = self.tick();
        for (key, intent) in writes {
            let value = match intent {
                WriteIntent::Put(value) => Some(value),
                WriteIntent::Delete => None,
                WriteIntent::Lock => {
                    // A lock record: same value, new version.
                    let current = data
                        .get(&key)
                        .and_then(|versions| visible(versions, u64::MAX))
                        .cloned();
                    match current {
                        Some(value) => Some(value),
                        None => continue,
                    }
                }
            };
            data.entry(key).or_default().push((commit_ts, value));
        }
        lock(&self.row_locks).retain(|_, holder| *holder != start_ts);
        Ok(commit_ts)
    }

    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError> {
        self.check_available()?;
        lock(&self.writes).push(mutations.clone());
        self.check_unlocked(None, mutations.iter().map(|m| &m.key))?;
        let mut data = lock(&self.data);
        let mut present: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        let mut existed = Vec::with_capacity(mutations.len());
        for (index, mutation) in mutations.iter().enumerate() {
            let exists = *present.entry(mutation.key.clone()).or_insert_with(|| {
                data.get(&mutation.key)
                    .and_then(|versions| visible(versions, u64::MAX))
                    .is_some()
            });
            let failed = match MutationCondition::try_from(mutation.condition) {
                Ok(MutationCondition::MustNotExist) => exists,
                Ok(MutationCondition::MustExist) => !exists,
                _ => false,
            };
            if failed {
                return Ok(WriteOutcome::ConditionFailed {
                    mutation_index: index,
                });
            }
            existed.push(exists);
            present.insert(
                mutation.key.clone(),
                mutation.op != MutationOp::Delete as i32,
            );
        }
        let commit_ts = self.tick();
        for mutation in mutations {
            let value = (mutation.op != MutationOp::Delete as i32).then_some(mutation.value);
            data.entry(mutation.key)
                .or_default()
                .push((commit_ts, value));
        }
        Ok(WriteOutcome::Applied { existed })
    }

    async fn lock_keys(
        &self,
        start_ts: u64,
        _primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<(), GatewayError> {
        self.check_available()?;
        self.check_unlocked(Some(start_ts), &keys)?;
        let data = lock(&self.data);
        for key in &keys {
            let newest = data
                .get(key)
                .and_then(|versions| versions.last())
                .map(|(commit_ts, _)| *commit_ts);
            if newest.is_some_and(|newest| newest > start_ts) {
                return Err(GatewayError::SerializationFailure {
                    reason: format!("key {key:?} was written after the transaction started"),
                });
            }
        }
        let mut locks = lock(&self.row_locks);
        for key in keys {
            locks.insert(key, start_ts);
        }
        Ok(())
    }

    fn keep_alive(&self, _start_ts: u64, _primary: Vec<u8>) -> KeepAlive {
        KeepAlive::none()
    }

    async fn rollback(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<u64>, GatewayError> {
        self.check_available()?;
        lock(&self.rollbacks).push((start_ts, primary.to_vec(), keys));
        lock(&self.row_locks).retain(|_, holder| *holder != start_ts);
        Ok(None)
    }

    /// Like the cluster: the region holding `key` keeps its id left of the
    /// key, a new id starts at it; a key that starts a region answers at once.
    async fn split_at(&self, key: &[u8]) -> Result<SplitOutcome, GatewayError> {
        self.check_available()?;
        lock(&self.split_keys).push(key.to_vec());
        let mut starts = lock(&self.region_starts);
        let holding = |starts: &BTreeMap<Vec<u8>, u64>, key: &[u8]| {
            starts
                .range(..key.to_vec())
                .next_back()
                .map_or(1, |(_, region_id)| *region_id)
        };
        if let Some(&right_region_id) = starts.get(key) {
            return Ok(SplitOutcome {
                left_region_id: Some(holding(&starts, key)),
                right_region_id,
            });
        }
        let left_region_id = holding(&starts, key);
        let right_region_id = starts.len() as u64 + 2;
        starts.insert(key.to_vec(), right_region_id);
        Ok(SplitOutcome {
            left_region_id: Some(left_region_id),
            right_region_id,
        })
    }

    /// Like the cluster: the region starting at `key` goes, its left
    /// neighbour now holds the key; a key no region starts at answers the
    /// region holding it at once.
    async fn unsplit_at(&self, key: &[u8]) -> Result<u64, GatewayError> {
        self.check_available()?;
        lock(&self.unsplit_keys).push(key.to_vec());
        let mut starts = lock(&self.region_starts);
        starts.remove(key);
        Ok(starts
            .range(..=key.to_vec())
            .next_back()
            .map_or(1, |(_, region_id)| *region_id))
    }
}

pub(crate) struct FixedViews(pub(crate) Option<ClusterViewResponse>);

#[async_trait]
impl ClusterViewSource for FixedViews {
    async fn cluster_view(&self) -> Result<ClusterViewResponse, GatewayError> {
        self.0
            .clone()
            .ok_or_else(|| GatewayError::CoordinatorUnavailable {
                addresses: "127.0.0.1:1".to_owned(),
                reason: "test coordinator is down".to_owned(),
            })
    }
}

pub(crate) fn executor_with(view: Option<ClusterViewResponse>) -> (Executor, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let executor = Executor::new(
        store.clone(),
        Arc::new(FixedViews(view)),
        Arc::new(crate::catalog_source::MemoryCatalog::default()),
    );
    (executor, store)
}

pub(crate) fn executor() -> (Executor, Arc<MemoryStore>) {
    executor_with(Some(crate::system_tables::tests::sample_view()))
}

/// Runs SQL in a fresh session and returns the last statement's result.
pub(crate) async fn run(executor: &Executor, sql: &str) -> Result<QueryResult, GatewayError> {
    run_in(executor, &Session::default(), sql).await
}

/// Runs SQL in `session` and returns the last statement's result.
pub(crate) async fn run_in(
    executor: &Executor,
    session: &Session,
    sql: &str,
) -> Result<QueryResult, GatewayError> {
    executor
        .execute_sql(session, sql)
        .await
        .pop()
        .unwrap_or_else(|| Err(GatewayError::internal("no statement")))
}

/// The command tag Postgres would send.
pub(crate) fn tag(result: &QueryResult) -> String {
    match result {
        QueryResult::Command {
            tag: "INSERT",
            rows,
        } => format!("INSERT 0 {}", rows.unwrap_or(0)),
        QueryResult::Command {
            tag,
            rows: Some(rows),
        } => format!("{tag} {rows}"),
        QueryResult::Command { tag, rows: None } => (*tag).to_owned(),
        QueryResult::Rows { rows, .. } => format!("SELECT {}", rows.len()),
        QueryResult::Returning {
            tag: "INSERT",
            rows,
            ..
        } => format!("INSERT 0 {}", rows.len()),
        QueryResult::Returning { tag, rows, .. } => format!("{tag} {}", rows.len()),
        QueryResult::TransactionStart => "BEGIN".to_owned(),
        QueryResult::TransactionEnd { tag } => (*tag).to_owned(),
    }
}

/// The statement as shown in a failure message (tests use huge literals).
fn shown(sql: &str) -> String {
    sql.chars().take(120).collect()
}

pub(crate) async fn ok_tag(executor: &Executor, sql: &str) -> String {
    match run(executor, sql).await {
        Ok(result) => tag(&result),
        Err(error) => panic!("{}: {error} ({})", shown(sql), error.sqlstate()),
    }
}

pub(crate) async fn error_state(executor: &Executor, sql: &str) -> &'static str {
    match run(executor, sql).await {
        Ok(result) => panic!("{}: expected an error, got {}", shown(sql), tag(&result)),
        Err(error) => error.sqlstate(),
    }
}

/// Rows as Postgres text (None = NULL), and the column names.
pub(crate) async fn query(
    executor: &Executor,
    sql: &str,
) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    query_in(executor, &Session::default(), sql).await
}

/// Like [`query`], in `session`.
pub(crate) async fn query_in(
    executor: &Executor,
    session: &Session,
    sql: &str,
) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    match run_in(executor, session, sql).await {
        Ok(QueryResult::Rows { columns, rows } | QueryResult::Returning { columns, rows, .. }) => (
            columns.into_iter().map(|column| column.name).collect(),
            rows.into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|value| match value {
                            Value::Null => None,
                            other => Some(other.to_text()),
                        })
                        .collect()
                })
                .collect(),
        ),
        Ok(other) => panic!("{}: expected rows, got {}", shown(sql), tag(&other)),
        Err(error) => panic!("{}: {error} ({})", shown(sql), error.sqlstate()),
    }
}

/// Shorthand for expected rows.
pub(crate) fn rows(expected: &[&[Option<&str>]]) -> Vec<Vec<Option<String>>> {
    expected
        .iter()
        .map(|row| row.iter().map(|value| value.map(str::to_owned)).collect())
        .collect()
}
