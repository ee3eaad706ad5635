//! The raft log of one region on the store's RocksDB. Appends and votes are
//! synced to disk before openraft is told they are durable.

// openraft's StorageError is large; it is openraft's type and contract.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{cf, synced};
use crate::keys::{self, StateKind, CF_RAFT_LOG, CF_RAFT_STATE};
use crate::types::{RegionId, RegionTypeConfig, StoreId};

type StorageResult<T> = Result<T, StorageError<StoreId>>;

#[derive(Clone)]
pub struct RegionLogStore {
    db: Arc<DB>,
    region_id: RegionId,
}

impl RegionLogStore {
    pub fn new(db: Arc<DB>, region_id: RegionId) -> Self {
        Self { db, region_id }
    }

    fn get_state<T: DeserializeOwned>(&self, kind: StateKind) -> StorageResult<Option<T>> {
        let bytes = self
            .db
            .get_cf(
                cf(&self.db, CF_RAFT_STATE),
                keys::state_key(self.region_id, kind),
            )
            .map_err(|e| StorageIOError::read(AnyError::new(&e)))?;
        match bytes {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageIOError::read(AnyError::new(&e)).into()),
        }
    }

    fn put_state<T: Serialize>(
        &self,
        kind: StateKind,
        value: &T,
        sync: bool,
    ) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(value).map_err(|e| AnyError::new(&e))?;
        let options = if sync { synced() } else { Default::default() };
        self.db
            .put_cf_opt(
                cf(&self.db, CF_RAFT_STATE),
                keys::state_key(self.region_id, kind),
                bytes,
                &options,
            )
            .map_err(|e| AnyError::new(&e))
    }

    /// Read options confining an iterator to this region's log keys.
    fn log_read_options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(keys::log_key(self.region_id, 0).to_vec());
        options.set_iterate_upper_bound(keys::log_key_upper_bound(self.region_id));
        options
    }

    fn last_entry_log_id(&self) -> StorageResult<Option<LogId<StoreId>>> {
        let mut iter = self.db.iterator_cf_opt(
            cf(&self.db, CF_RAFT_LOG),
            self.log_read_options(),
            IteratorMode::End,
        );
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                let entry: Entry<RegionTypeConfig> = serde_json::from_slice(&value)
                    .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                Ok(Some(entry.log_id))
            }
        }
    }

    /// True when this region has never logged an entry nor voted on this
    /// store: the only state in which `Raft::initialize` may be called.
    pub async fn is_pristine(&mut self) -> StorageResult<bool> {
        let state = self.get_log_state().await?;
        let vote = self.read_vote().await?;
        Ok(state.last_log_id.is_none() && vote.is_none())
    }
}

impl RaftLogReader<RegionTypeConfig> for RegionLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<RegionTypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let start_key = keys::log_key(self.region_id, start);
        let mode = IteratorMode::From(&start_key, Direction::Forward);
        let mut entries = Vec::new();
        for item in
            self.db
                .iterator_cf_opt(cf(&self.db, CF_RAFT_LOG), self.log_read_options(), mode)
        {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            let Some((_, index)) = keys::decode_log_key(&key) else {
                continue;
            };
            if !range.contains(&index) {
                break;
            }
            let entry = serde_json::from_slice(&value)
                .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<RegionTypeConfig> for RegionLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<RegionTypeConfig>> {
        let last_purged_log_id: Option<LogId<StoreId>> = self.get_state(StateKind::LastPurged)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<StoreId>) -> StorageResult<()> {
        self.put_state(StateKind::Vote, vote, true)
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<StoreId>>> {
        self.get_state(StateKind::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<StoreId>>) -> StorageResult<()> {
        // Not synced: losing it only makes a restart re-learn the commit
        // index from the leader.
        self.put_state(StateKind::Committed, &committed, false)
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<StoreId>>> {
        Ok(self
            .get_state::<Option<LogId<StoreId>>>(StateKind::Committed)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<RegionTypeConfig>,
    ) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<RegionTypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.put_cf(
                cf(&self.db, CF_RAFT_LOG),
                keys::log_key(self.region_id, entry.log_id.index),
                bytes,
            );
        }
        let result = self.db.write_opt(batch, &synced());
        let io_result = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io_result);
        result.map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn truncate(&mut self, log_id: LogId<StoreId>) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_RAFT_LOG),
            keys::log_key(self.region_id, log_id.index).to_vec(),
            keys::log_key_upper_bound(self.region_id),
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId<StoreId>) -> StorageResult<()> {
        // Record the purge point first: a crash in between leaves extra
        // entries below it, which are harmless, never a hole above it.
        self.put_state(StateKind::LastPurged, &log_id, true)
            .map_err(StorageIOError::write_logs)?;
        self.db
            .delete_range_cf(
                cf(&self.db, CF_RAFT_LOG),
                keys::log_key(self.region_id, 0),
                keys::log_key(self.region_id, log_id.index.saturating_add(1)),
            )
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }
}
