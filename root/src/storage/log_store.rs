//! The raft log of a root peer, on RocksDB. Appends, votes and purge points
//! are synced to disk before openraft is told they are durable; the
//! committed log id is not (openraft learns it again from a quorum).
//! (openraft 0.9 waits for each append's flush before it goes on, so an
//! asynchronous flush would not batch fsyncs; RocksDB already groups the
//! syncs of concurrent writers.)

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use super::keys::*;
use super::{cf, io_error};
use crate::types::{RootPeerId, RootTypeConfig};

type StorageResult<T> = Result<T, StorageError<RootPeerId>>;

#[derive(Clone)]
pub struct RootLogStore {
    db: Arc<DB>,
}

impl RootLogStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn synced() -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        options
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        let bytes = self
            .db
            .get_cf(cf(&self.db, CF_META), key)
            .map_err(|e| StorageIOError::read(AnyError::new(&e)))?;
        match bytes {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageIOError::read(AnyError::new(&e)).into()),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), std::io::Error> {
        let bytes = serde_json::to_vec(value).map_err(io_error)?;
        let options = if sync {
            Self::synced()
        } else {
            WriteOptions::default()
        };
        self.db
            .put_cf_opt(cf(&self.db, CF_META), key, bytes, &options)
            .map_err(io_error)
    }

    fn last_entry_log_id(&self) -> StorageResult<Option<LogId<RootPeerId>>> {
        let mut iter = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                let entry: Entry<RootTypeConfig> = serde_json::from_slice(&value)
                    .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<RootTypeConfig> for RootLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<RootTypeConfig>>> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(x) => *x,
            std::ops::Bound::Excluded(x) => *x + 1,
            std::ops::Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        let mode = IteratorMode::From(&index_key(start), Direction::Forward);
        for item in self.db.iterator_cf(cf(&self.db, CF_LOG), mode) {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            let Some(index) = index_from_key(&key) else {
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

impl RaftLogStorage<RootTypeConfig> for RootLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<RootTypeConfig>> {
        let last_purged_log_id: Option<LogId<RootPeerId>> = self.get_meta(META_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RootPeerId>) -> StorageResult<()> {
        self.put_meta(META_VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RootPeerId>>> {
        self.get_meta(META_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<RootPeerId>>) -> StorageResult<()> {
        // Not synced: a lost committed id only means openraft learns the
        // commit point again from the leader (or, leading, from a quorum);
        // a sync here would cost the raft core an fsync per commit advance.
        self.put_meta(META_COMMITTED, &committed, false)
            .map_err(|e| StorageIOError::write(AnyError::new(&e)).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<RootPeerId>>> {
        Ok(self
            .get_meta::<Option<LogId<RootPeerId>>>(META_COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<RootTypeConfig>,
    ) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<RootTypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.put_cf(cf(&self.db, CF_LOG), index_key(entry.log_id.index), bytes);
        }
        let result = self.db.write_opt(batch, &Self::synced()).map_err(io_error);
        let failed = result
            .as_ref()
            .err()
            .map(|e| StorageIOError::write_logs(AnyError::new(e)));
        callback.log_io_completed(result);
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<RootPeerId>) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        batch.delete_cf(cf(&self.db, CF_LOG), index_key(u64::MAX));
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId<RootPeerId>) -> StorageResult<()> {
        // Record the purge point first: a crash in between leaves extra log
        // entries below it, which are harmless, never a hole above it.
        self.put_meta(META_LAST_PURGED, &log_id, true)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.db
            .delete_range_cf(
                cf(&self.db, CF_LOG),
                index_key(0),
                index_key(log_id.index + 1),
            )
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }
}
