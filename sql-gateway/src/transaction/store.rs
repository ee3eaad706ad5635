//! [`TxnStore`]: what a statement inside a transaction reads and writes
//! through — the snapshot at the transaction's start timestamp, with the
//! transaction's own buffered writes laid over it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use arbor_catalog::key_successor;
use arbor_proto::{Mutation, MutationCondition, MutationOp};
use arbor_raftstore::WriteOutcome;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::buffer::Buffered;
use super::{HeldLocks, Transaction};
use crate::error::GatewayError;
use crate::store::{KvStore, Storage, WriteIntent};

/// Point reads in flight at once while checking a statement's conditions.
const CONDITION_READS_IN_FLIGHT_MAX: usize = 32;

pub(crate) struct TxnStore<'a> {
    storage: &'a Arc<dyn Storage>,
    transaction: Mutex<&'a mut Transaction>,
    /// An implicit transaction: a statement whose first storage call is a
    /// write (a plain INSERT, a blind point UPDATE) sends it straight to
    /// [`Storage::write`], which is a transaction of its own with the same
    /// conditions, instead of reading each key first.
    autocommit: bool,
}

impl<'a> TxnStore<'a> {
    pub(crate) fn new(
        storage: &'a Arc<dyn Storage>,
        transaction: &'a mut Transaction,
        autocommit: bool,
    ) -> Self {
        TxnStore {
            storage,
            transaction: Mutex::new(transaction),
            autocommit,
        }
    }

    /// Never held across an await.
    fn transaction(&self) -> MutexGuard<'_, &'a mut Transaction> {
        self.transaction
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn read_ts(&self) -> Result<u64, GatewayError> {
        if let Some(start_ts) = self.transaction().start_ts {
            return Ok(start_ts);
        }
        let start_ts = self.storage.timestamp().await?;
        Ok(*self.transaction().start_ts.get_or_insert(start_ts))
    }

    /// Whether each key exists for this transaction (own writes, else the
    /// snapshot), reading the snapshot for the keys it has not written.
    async fn presence(&self, keys: Vec<&[u8]>) -> Result<HashMap<Vec<u8>, bool>, GatewayError> {
        let read_ts = self.read_ts().await?;
        let mut present = HashMap::with_capacity(keys.len());
        let mut unknown = Vec::new();
        {
            let transaction = self.transaction();
            for key in keys {
                match transaction.buffer.lookup(key) {
                    Buffered::Put(_) => {
                        present.insert(key.to_vec(), true);
                    }
                    Buffered::Deleted => {
                        present.insert(key.to_vec(), false);
                    }
                    Buffered::Unchanged => {
                        if !present.contains_key(key) {
                            present.insert(key.to_vec(), false);
                            unknown.push(key.to_vec());
                        }
                    }
                }
            }
        }
        let found: Vec<(Vec<u8>, bool)> = futures::stream::iter(unknown)
            .map(|key| async move {
                let value = self.storage.get_at(&key, read_ts).await?;
                Ok::<_, GatewayError>((key, value.is_some()))
            })
            .buffered(CONDITION_READS_IN_FLIGHT_MAX)
            .try_collect()
            .await?;
        present.extend(found);
        Ok(present)
    }
}

#[async_trait]
impl KvStore for TxnStore<'_> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
        match self.transaction().buffer.lookup(key) {
            Buffered::Put(value) => return Ok(Some(value.to_vec())),
            Buffered::Deleted => return Ok(None),
            Buffered::Unchanged => {}
        }
        let read_ts = self.read_ts().await?;
        self.storage.get_at(key, read_ts).await
    }

    /// Pages the snapshot and merges the transaction's writes into each
    /// page; a page whose pairs were deleted by this transaction is followed
    /// by the next, so a short answer always means the range is exhausted.
    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, GatewayError> {
        let read_ts = self.read_ts().await?;
        let mut pairs = Vec::new();
        let mut cursor = start.to_vec();
        while pairs.len() < limit {
            let wanted = limit - pairs.len();
            let page = self.storage.scan_at(&cursor, end, wanted, read_ts).await?;
            let exhausted = page.len() < wanted;
            // A full page covers the range only up to its last key.
            let upper = match page.last() {
                Some((last, _)) if !exhausted => key_successor(last),
                _ => end.to_vec(),
            };
            let merged = self.transaction().buffer.merge(page, &cursor, &upper);
            pairs.extend(merged.into_iter().take(limit - pairs.len()));
            if exhausted {
                break;
            }
            cursor = upper;
        }
        Ok(pairs)
    }

    /// Checks conditions against this transaction's view, in order, each
    /// against the state left by the mutations before it; then buffers all
    /// of them, or none.
    async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, GatewayError> {
        let untouched = {
            let transaction = self.transaction();
            transaction.start_ts.is_none() && transaction.buffer.is_empty()
        };
        if self.autocommit && untouched {
            return self.storage.write(mutations).await;
        }
        let keys = mutations.iter().map(|m| m.key.as_slice()).collect();
        let mut present = self.presence(keys).await?;
        let mut existed = Vec::with_capacity(mutations.len());
        let mut writes = Vec::with_capacity(mutations.len());
        for (index, mutation) in mutations.into_iter().enumerate() {
            let exists = present.get(&mutation.key).copied().unwrap_or(false);
            let holds = match MutationCondition::try_from(mutation.condition) {
                Ok(MutationCondition::None) => true,
                Ok(MutationCondition::MustNotExist) => !exists,
                Ok(MutationCondition::MustExist) => exists,
                Err(_) => {
                    return Err(GatewayError::internal(format!(
                        "mutation condition {} is unknown",
                        mutation.condition
                    )))
                }
            };
            if !holds {
                return Ok(WriteOutcome::ConditionFailed {
                    mutation_index: index,
                });
            }
            existed.push(exists);
            let intent = match MutationOp::try_from(mutation.op) {
                Ok(MutationOp::Put) => WriteIntent::Put(mutation.value),
                Ok(MutationOp::Delete) => WriteIntent::Delete,
                Ok(MutationOp::Lock) => WriteIntent::Lock,
                Ok(MutationOp::PessimisticLock) | Err(_) => {
                    return Err(GatewayError::internal(format!(
                        "mutation op {} is unknown",
                        mutation.op
                    )))
                }
            };
            match intent {
                WriteIntent::Put(_) => present.insert(mutation.key.clone(), true),
                WriteIntent::Delete => present.insert(mutation.key.clone(), false),
                WriteIntent::Lock => None,
            };
            writes.push((mutation.key, intent));
        }
        self.transaction().buffer.write_all(writes)?;
        Ok(WriteOutcome::Applied { existed })
    }

    /// Locks the rows in storage now, as this transaction (its first
    /// locked key becomes the primary of all its locks). Outside a block
    /// the lock would end with the statement, so only a block takes it.
    async fn lock_keys(&self, keys: Vec<Vec<u8>>) -> Result<(), GatewayError> {
        if self.autocommit || keys.is_empty() {
            return Ok(());
        }
        let start_ts = self.read_ts().await?;
        let primary = {
            let mut transaction = self.transaction();
            let locks = transaction.locks.get_or_insert_with(|| {
                HeldLocks::new(start_ts, keys[0].clone(), self.storage.clone())
            });
            locks.record(&keys)?;
            locks.primary().to_vec()
        };
        self.storage.lock_keys(start_ts, &primary, keys).await?;
        if let Some(locks) = self.transaction().locks.as_mut() {
            locks.keep_alive();
        }
        Ok(())
    }
}
