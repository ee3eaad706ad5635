//! Memory locks: how a one-phase commit stays invisible-then-visible in the
//! right order for readers on the region leader.
//!
//! A one-phase commit gets its `commit_ts` from the TSO only after its
//! prewrite checks would pass, and applies in one raft entry. A reader whose
//! `read_ts` is above that `commit_ts` must not read the key's old value
//! before the entry applies and the new one after. So the leader takes a
//! memory lock on every key of the commit (this table, store-wide) *before*
//! fetching `commit_ts`, and drops it only after the entry applied here (or
//! its proposal failed). Readers take their `read_ts` before their request,
//! and after the read barrier look here before reading RocksDB:
//! - no memory lock on their keys: any one-phase commit not yet locked here
//!   will fetch its `commit_ts` after this moment, so above `read_ts`; and
//!   one already unlocked has applied here, so RocksDB shows it;
//! - a memory lock with `start_ts <= read_ts`: wait for it (bounded), then
//!   look again. (One with `start_ts > read_ts` commits above `read_ts`.)
//!
//! A new leader holds no memory locks of its predecessor's commits in
//! flight, and needs none: its read barrier applies everything its
//! predecessor committed (openraft's read index is at least the new term's
//! first entry), and an entry not in its log can never commit afterwards.
//!
//! **Invariant:** a memory lock is dropped only when the one-phase commit's
//! proposal has finished (applied, or refused by raft) — never on a timeout
//! or a cancelled request, since the entry could still apply afterwards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::MEMORY_LOCKS_MAX;
use crate::storage::state_machine::KeyRange;
use crate::txn::{LockInfo, MutationKind};

#[derive(Debug, Clone)]
struct MemoryLock {
    start_ts: u64,
    primary: Vec<u8>,
}

/// Every memory lock of one store.
#[derive(Default)]
pub struct MemoryLockTable {
    locks: Mutex<BTreeMap<Vec<u8>, MemoryLock>>,
    released: Notify,
}

/// Why memory locks could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryLockRefusal {
    /// Another one-phase commit in flight holds a key.
    Locked(LockInfo),
    /// The table is full.
    Full,
}

/// Holds memory locks; dropping it releases them and wakes waiting readers.
pub struct MemoryLockGuard {
    table: Arc<MemoryLockTable>,
    keys: Vec<Vec<u8>>,
}

impl Drop for MemoryLockGuard {
    fn drop(&mut self) {
        {
            let mut locks = self.table.lock();
            for key in &self.keys {
                locks.remove(key);
            }
        }
        self.table.released.notify_waiters();
    }
}

fn info(key: &[u8], lock: &MemoryLock) -> LockInfo {
    LockInfo {
        key: key.to_vec(),
        primary: lock.primary.clone(),
        start_ts: lock.start_ts,
        ttl_ms: 0,
        kind: MutationKind::Put,
        in_memory: true,
    }
}

impl MemoryLockTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, MemoryLock>> {
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes memory locks on every key for transaction `start_ts`, or none.
    pub fn lock_keys(
        self: &Arc<Self>,
        keys: &[Vec<u8>],
        start_ts: u64,
        primary: &[u8],
    ) -> Result<MemoryLockGuard, MemoryLockRefusal> {
        let mut distinct: Vec<Vec<u8>> = keys.to_vec();
        distinct.sort();
        distinct.dedup();
        let mut locks = self.lock();
        if let Some((key, held)) = distinct
            .iter()
            .find_map(|key| locks.get(key).map(|held| (key, held)))
        {
            return Err(MemoryLockRefusal::Locked(info(key, held)));
        }
        if locks.len() + distinct.len() > MEMORY_LOCKS_MAX {
            return Err(MemoryLockRefusal::Full);
        }
        for key in &distinct {
            let lock = MemoryLock {
                start_ts,
                primary: primary.to_vec(),
            };
            locks.insert(key.clone(), lock);
        }
        Ok(MemoryLockGuard {
            table: self.clone(),
            keys: distinct,
        })
    }

    /// The first memory lock in `range` that blocks a read at `read_ts`.
    pub fn blocking(&self, range: &KeyRange, read_ts: u64) -> Option<LockInfo> {
        let locks = self.lock();
        locks
            .range(range.start.clone()..)
            .take_while(|(key, _)| range.end.is_empty() || key.as_slice() < range.end.as_slice())
            .find(|(_, lock)| lock.start_ts <= read_ts)
            .map(|(key, lock)| info(key, lock))
    }

    /// Waits up to `wait` until no memory lock in `range` blocks a read at
    /// `read_ts`; the blocking lock if one is still there.
    pub async fn wait_unblocked(
        &self,
        range: &KeyRange,
        read_ts: u64,
        wait: Duration,
    ) -> Option<LockInfo> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a release in between wakes us.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let blocking = self.blocking(range, read_ts)?;
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Some(blocking);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The range holding exactly `key`.
pub fn key_range(key: &[u8]) -> KeyRange {
    let mut end = key.to_vec();
    end.push(0);
    KeyRange {
        start: key.to_vec(),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&str]) -> Vec<Vec<u8>> {
        keys.iter().map(|key| key.as_bytes().to_vec()).collect()
    }

    #[tokio::test]
    async fn memory_locks_block_older_readers_until_released() {
        let table = Arc::new(MemoryLockTable::default());
        let guard = table
            .lock_keys(&keys(&["b", "a"]), 10, b"a")
            .expect("free keys");
        assert_eq!(table.len(), 2);
        assert!(
            table.blocking(&key_range(b"a"), 10).is_some(),
            "read_ts >= start_ts waits"
        );
        assert!(
            table.blocking(&key_range(b"a"), 9).is_none(),
            "an older read commits below"
        );
        assert!(table.blocking(&key_range(b"c"), 99).is_none());
        let all = KeyRange::default();
        assert_eq!(
            table.blocking(&all, 99).map(|info| info.key),
            Some(b"a".to_vec())
        );
        assert!(matches!(
            table.lock_keys(&keys(&["b"]), 11, b"b"),
            Err(MemoryLockRefusal::Locked(info)) if info.start_ts == 10 && info.in_memory
        ));
        let waiting = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .wait_unblocked(&key_range(b"b"), 20, Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert_eq!(waiting.await.expect("waiter"), None, "woken by the release");
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn a_wait_for_a_memory_lock_is_bounded() {
        let table = Arc::new(MemoryLockTable::default());
        let _guard = table.lock_keys(&keys(&["k"]), 1, b"k").expect("free key");
        let still = table
            .wait_unblocked(&key_range(b"k"), 5, Duration::from_millis(30))
            .await;
        assert_eq!(still.map(|info| info.start_ts), Some(1));
    }
}
