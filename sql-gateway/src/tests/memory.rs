//! Test doubles: an in-memory [`KvStore`] and a fixed [`ClusterViewSource`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arbor_catalog::{encode_row, Datum, TableDescriptor};
use arbor_proto::{ClusterViewResponse, Mutation, MutationCondition, MutationOp};
use arbor_raftstore::WriteOutcome;
use async_trait::async_trait;

use crate::cluster_view::ClusterViewSource;
use crate::error::GatewayError;
use crate::executor::Executor;
use crate::statement::QueryResult;
use crate::store::KvStore;
use crate::value::Value;

/// A sorted map with the region client's write semantics: conditions are
/// checked against the state before the batch, all-or-nothing.
#[derive(Default)]
pub(crate) struct MemoryStore {
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// The `limit` of every scan call, to check pushdown.
    pub(crate) scan_limits: Mutex<Vec<usize>>,
    pub(crate) writes: Mutex<Vec<Vec<Mutation>>>,
    pub(crate) unavailable: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    pub(crate) fn put_kv(&self, k: &str, v: Option<&str>) {
        let row = [
            Datum::Text(k.to_owned()),
            v.map_or(Datum::Null, |v| Datum::Text(v.to_owned())),
        ];
        let (key, value) = encode_row(&TableDescriptor::kv(), &row).expect("test row encodes");
        lock(&self.data).insert(key, value);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.data).len()
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
impl KvStore for MemoryStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
        self.check_available()?;
        Ok(lock(&self.data).get(key).cloned())
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError> {
        self.check_available()?;
        lock(&self.scan_limits).push(limit);
        let data = lock(&self.data);
        Ok(data
            .range(start.to_vec()..)
            .take_while(|(key, _)| end.is_empty() || key.as_slice() < end)
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError> {
        self.check_available()?;
        lock(&self.writes).push(mutations.clone());
        let mut data = lock(&self.data);
        let existed: Vec<bool> = mutations
            .iter()
            .map(|mutation| data.contains_key(&mutation.key))
            .collect();
        for (index, (mutation, &existed)) in mutations.iter().zip(&existed).enumerate() {
            let failed = match MutationCondition::try_from(mutation.condition) {
                Ok(MutationCondition::MustNotExist) => existed,
                Ok(MutationCondition::MustExist) => !existed,
                _ => false,
            };
            if failed {
                return Ok(WriteOutcome::ConditionFailed {
                    mutation_index: index,
                });
            }
        }
        for mutation in mutations {
            if mutation.op == MutationOp::Delete as i32 {
                data.remove(&mutation.key);
            } else {
                data.insert(mutation.key, mutation.value);
            }
        }
        Ok(WriteOutcome::Applied { existed })
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

/// Runs SQL and returns the last statement's result.
pub(crate) async fn run(executor: &Executor, sql: &str) -> Result<QueryResult, GatewayError> {
    executor
        .execute_sql(sql)
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
    match run(executor, sql).await {
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
