//! Row locks a transaction took when it read (`SELECT ... FOR UPDATE`):
//! held in storage from that statement on, kept alive by heartbeats while
//! the transaction lives, and given back by its COMMIT (which lists them,
//! primary first) or its ROLLBACK — or, if the client vanished, by
//! dropping them, which rolls them back in the background (and failing
//! that, they expire one lock TTL after the last heartbeat).
//!
//! Locks stay held after `ROLLBACK TO SAVEPOINT` (Postgres would release
//! the ones taken after the savepoint): holding more than needed only
//! makes other writers wait longer; it never lets a write through.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::buffer::TXN_WRITES_MAX;
use crate::error::GatewayError;
use crate::store::{KeepAlive, Storage, WriteIntent};

pub(crate) struct HeldLocks {
    start_ts: u64,
    /// The first key locked: every lock of the transaction names it.
    primary: Vec<u8>,
    keys: BTreeSet<Vec<u8>>,
    storage: Arc<dyn Storage>,
    /// `None` until the first lock request answered.
    keep_alive: Option<KeepAlive>,
    /// Commit or rollback settled the locks; dropping does nothing more.
    settled: bool,
}

impl std::fmt::Debug for HeldLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLocks")
            .field("start_ts", &self.start_ts)
            .field("primary", &self.primary)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl HeldLocks {
    pub(crate) fn new(start_ts: u64, primary: Vec<u8>, storage: Arc<dyn Storage>) -> Self {
        Self {
            start_ts,
            primary,
            keys: BTreeSet::new(),
            storage,
            keep_alive: None,
            settled: false,
        }
    }

    pub(crate) fn primary(&self) -> &[u8] {
        &self.primary
    }

    /// Records `keys` as (maybe) locked before they are asked for, so a
    /// request whose answer is lost is still rolled back.
    pub(crate) fn record(&mut self, keys: &[Vec<u8>]) -> Result<(), GatewayError> {
        let new = keys.iter().filter(|key| !self.keys.contains(*key)).count();
        if self.keys.len() + new > TXN_WRITES_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: "rows locked by one transaction".to_owned(),
                limit: TXN_WRITES_MAX,
            });
        }
        self.keys.extend(keys.iter().cloned());
        Ok(())
    }

    /// Starts the heartbeats, once.
    pub(crate) fn keep_alive(&mut self) {
        if self.keep_alive.is_none() {
            let keep_alive = self.storage.keep_alive(self.start_ts, self.primary.clone());
            self.keep_alive = Some(keep_alive);
        }
    }

    /// The commit's writes: `writes` plus an unchanged-row `Lock` for every
    /// locked key not written, the primary first.
    pub(crate) fn commit_writes(
        &self,
        writes: Vec<(Vec<u8>, WriteIntent)>,
    ) -> Vec<(Vec<u8>, WriteIntent)> {
        let written: BTreeSet<&[u8]> = writes.iter().map(|(key, _)| key.as_slice()).collect();
        let unwritten: Vec<(Vec<u8>, WriteIntent)> = self
            .keys
            .iter()
            .filter(|key| !written.contains(key.as_slice()))
            .map(|key| (key.clone(), WriteIntent::Lock))
            .collect();
        let mut all: Vec<(Vec<u8>, WriteIntent)> = writes.into_iter().chain(unwritten).collect();
        if let Some(index) = all.iter().position(|(key, _)| *key == self.primary) {
            all[..=index].rotate_right(1);
        }
        all
    }

    /// The commit went through: nothing to give back.
    pub(crate) fn settle(mut self) {
        self.settled = true;
    }

    /// Rolls the locks back now; `Some(commit_ts)` if the transaction had
    /// committed after all (a commit whose answer was lost).
    pub(crate) async fn release(mut self) -> Result<Option<u64>, GatewayError> {
        self.settled = true;
        let keys = std::mem::take(&mut self.keys).into_iter().collect();
        self.storage
            .rollback(self.start_ts, &self.primary, keys)
            .await
    }
}

impl Drop for HeldLocks {
    /// The session ended without COMMIT or ROLLBACK (the client vanished):
    /// give the locks back in the background rather than make other writers
    /// wait out their TTL.
    fn drop(&mut self) {
        if self.settled || self.keys.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (storage, start_ts, primary) = (
            self.storage.clone(),
            self.start_ts,
            std::mem::take(&mut self.primary),
        );
        let keys: Vec<Vec<u8>> = std::mem::take(&mut self.keys).into_iter().collect();
        runtime.spawn(async move {
            if let Err(error) = storage.rollback(start_ts, &primary, keys).await {
                tracing::info!(start_ts, %error, "abandoned locks left to expire");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::memory::MemoryStore;

    fn held(primary: &str, keys: &[&str]) -> HeldLocks {
        let mut locks = HeldLocks::new(
            1,
            primary.as_bytes().to_vec(),
            Arc::new(MemoryStore::default()),
        );
        let keys: Vec<Vec<u8>> = keys.iter().map(|key| key.as_bytes().to_vec()).collect();
        locks.record(&keys).expect("under the limit");
        locks
    }

    #[test]
    fn commit_writes_list_the_primary_first_and_every_locked_row() {
        let locks = held("m", &["m", "a", "z"]);
        let writes = vec![
            (b"a".to_vec(), WriteIntent::Put(b"1".to_vec())),
            (b"b".to_vec(), WriteIntent::Delete),
            (b"m".to_vec(), WriteIntent::Put(b"2".to_vec())),
        ];
        let all = locks.commit_writes(writes);
        let keys: Vec<&[u8]> = all.iter().map(|(key, _)| key.as_slice()).collect();
        assert_eq!(keys, vec![&b"m"[..], b"a", b"b", b"z"]);
        assert_eq!(all[0].1, WriteIntent::Put(b"2".to_vec()));
        assert_eq!(all[3].1, WriteIntent::Lock, "locked, unchanged");
        locks.settle();
    }

    #[test]
    fn an_unwritten_primary_is_committed_as_a_lock_first() {
        let locks = held("p", &["p", "q"]);
        let all = locks.commit_writes(vec![(b"a".to_vec(), WriteIntent::Delete)]);
        let keys: Vec<&[u8]> = all.iter().map(|(key, _)| key.as_slice()).collect();
        assert_eq!(keys, vec![&b"p"[..], b"a", b"q"]);
        assert_eq!(all[0].1, WriteIntent::Lock);
        locks.settle();
    }

    #[test]
    fn locked_rows_are_bounded() {
        let mut locks = held("p", &["p"]);
        let many: Vec<Vec<u8>> = (0..TXN_WRITES_MAX)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        let error = locks.record(&many).expect_err("over the limit");
        assert_eq!(error.sqlstate(), "54000");
        locks.settle();
    }
}
