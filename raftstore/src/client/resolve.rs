//! What a request does about a lock it meets: ask the lock's primary key
//! whether its transaction committed (`CheckTxnStatus`, which also rolls
//! back a transaction whose lock outlived its TTL), then commit or roll back
//! the lock met (`ResolveLock`) and retry; while the transaction is alive,
//! back off and retry — until [`LOCK_WAIT_DEADLINE_MS`], then
//! `LockWaitTimeout`. A memory lock (a one-phase commit in flight on the
//! leader) is only waited out: it goes within one raft round.

use std::time::Duration;

use arbor_proto::{CheckTxnStatusRequest, LockInfo, ResolveLockRequest, TxnStatus as WireStatus};
use tokio::time::Instant;

use super::txn::{txn_error, KeyBatches};
use super::{unexpected_reply, Call, RegionClient, Reply};
use crate::config::LOCK_TTL_MS;
use crate::error::RaftstoreError;
use crate::txn::TxnStatus;

/// A request blocked by locks gives up after this long.
pub const LOCK_WAIT_DEADLINE_MS: u64 = 8_000;
/// First and largest pause while a lock's transaction is alive.
pub const LOCK_BACKOFF_MIN_MS: u64 = 10;
pub const LOCK_BACKOFF_MAX_MS: u64 = 200;

// A reader must be able to outwait the lock of a client that died right
// after prewriting.
const _: () = assert!(LOCK_WAIT_DEADLINE_MS > 2 * LOCK_TTL_MS);
const _: () = assert!(LOCK_BACKOFF_MIN_MS <= LOCK_BACKOFF_MAX_MS);

/// One request's patience with locks.
pub struct LockWait {
    deadline: Instant,
    backoff_ms: u64,
}

impl LockWait {
    pub fn new() -> Self {
        Self::with_deadline(Duration::from_millis(LOCK_WAIT_DEADLINE_MS))
    }

    pub fn with_deadline(wait: Duration) -> Self {
        Self {
            deadline: Instant::now() + wait,
            backoff_ms: LOCK_BACKOFF_MIN_MS,
        }
    }

    /// Sleeps the next backoff (at most `cap_ms`, never past the deadline).
    async fn pause(&mut self, cap_ms: u64) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let pause = Duration::from_millis(self.backoff_ms.min(cap_ms.max(1))).min(left);
        tokio::time::sleep(pause).await;
        self.backoff_ms = (self.backoff_ms * 2).min(LOCK_BACKOFF_MAX_MS);
    }
}

impl Default for LockWait {
    fn default() -> Self {
        Self::new()
    }
}

impl RegionClient {
    /// Resolves `lock`, or waits a little while its transaction lives;
    /// `LockWaitTimeout` once `wait`'s deadline passed.
    pub(crate) async fn handle_lock(
        &self,
        lock: &LockInfo,
        wait: &mut LockWait,
    ) -> Result<(), RaftstoreError> {
        if Instant::now() >= wait.deadline {
            return Err(RaftstoreError::LockWaitTimeout {
                key: lock.key.clone(),
                lock_start_ts: lock.start_ts,
            });
        }
        if lock.in_memory {
            wait.pause(LOCK_BACKOFF_MAX_MS).await;
            return Ok(());
        }
        let current_ts = self.timestamp().await?;
        let status = self
            .check_txn_status(&lock.primary_key, lock.start_ts, current_ts)
            .await?;
        let commit_ts = match status {
            TxnStatus::Committed { commit_ts } => commit_ts,
            TxnStatus::RolledBack => 0,
            TxnStatus::Locked { ttl_remaining_ms } => {
                wait.pause(ttl_remaining_ms).await;
                return Ok(());
            }
        };
        self.resolve_locks(lock.start_ts, commit_ts, vec![lock.key.clone()])
            .await
    }

    /// The fate of transaction `start_ts`, asked of its primary key's region
    /// (rolling it back there if its lock expired or never arrived).
    pub(crate) async fn check_txn_status(
        &self,
        primary_key: &[u8],
        start_ts: u64,
        current_ts: u64,
    ) -> Result<TxnStatus, RaftstoreError> {
        let executed = self
            .execute(primary_key, |route| {
                Call::CheckTxnStatus(CheckTxnStatusRequest {
                    context: Some(route.context()),
                    primary_key: primary_key.to_vec(),
                    start_ts,
                    current_ts,
                })
            })
            .await?;
        let Reply::CheckTxnStatus(reply) = executed.reply else {
            return Err(unexpected_reply("check_txn_status"));
        };
        if let Some(error) = reply.error {
            return Err(txn_error(start_ts, error));
        }
        match WireStatus::try_from(reply.status) {
            Ok(WireStatus::Committed) => Ok(TxnStatus::Committed {
                commit_ts: reply.commit_ts,
            }),
            Ok(WireStatus::Locked) => Ok(TxnStatus::Locked {
                ttl_remaining_ms: reply.lock_ttl_remaining_ms,
            }),
            Ok(WireStatus::RolledBack) => Ok(TxnStatus::RolledBack),
            _ => Err(RaftstoreError::Transport {
                address: String::new(),
                hint: format!(
                    "store answered an unknown transaction status {}",
                    reply.status
                ),
            }),
        }
    }

    /// Commits (`commit_ts > 0`) or rolls back (`0`) the locks transaction
    /// `start_ts` holds on `keys`, region by region.
    pub(crate) async fn resolve_locks(
        &self,
        start_ts: u64,
        commit_ts: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<(), RaftstoreError> {
        let mut batches = KeyBatches::new(keys);
        while let Some(first) = batches.first_key() {
            let executed = self
                .execute(&first, |route| {
                    Call::ResolveLock(ResolveLockRequest {
                        context: Some(route.context()),
                        start_ts,
                        commit_ts,
                        keys: batches.keys_in(route),
                    })
                })
                .await?;
            let Reply::ResolveLock(reply) = executed.reply else {
                return Err(unexpected_reply("resolve_lock"));
            };
            if let Some(error) = reply.error {
                return Err(txn_error(start_ts, error));
            }
            batches.done(&executed.route);
        }
        Ok(())
    }
}
