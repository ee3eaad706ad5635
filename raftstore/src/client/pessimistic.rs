//! What a transaction that locks at read time needs from the client:
//! [`RegionClient::lock_keys`] (`SELECT ... FOR UPDATE`),
//! [`RegionClient::keep_alive`] (heartbeats that keep its primary lock
//! alive while the client lives) and [`RegionClient::rollback`] (drop its
//! locks, primary first).
//!
//! **Protocol:** the first key a transaction locks is its primary for the
//! rest of its life: every later lock names it, and its commit must list
//! it first ([`RegionClient::commit`] takes the first mutation as primary),
//! so whoever meets any of its locks asks the same key for its fate.

use std::time::Duration;

use arbor_proto::txn_error::Kind as TxnErrorKind;
use arbor_proto::{PessimisticLockRequest, RollbackRequest, TxnHeartbeatRequest};

use super::resolve::LockWait;
use super::txn::{txn_error, KeyBatches};
use super::{check_key, unexpected_reply, Call, RegionClient, Reply};
use crate::config::{LOCK_TTL_MAX_MS, LOCK_TTL_MS, TXN_HEARTBEAT_INTERVAL_MS, TXN_MUTATIONS_MAX};
use crate::error::RaftstoreError;
use crate::txn::physical_ms;

/// The TTL to ask for at `now_ts` by a transaction that started at
/// `start_ts`: one [`LOCK_TTL_MS`] from now (TTLs count from `start_ts`).
/// `None` once the transaction is older than a lock may live.
pub(crate) fn lock_ttl_at(start_ts: u64, now_ts: u64) -> Option<u64> {
    let elapsed_ms = physical_ms(now_ts).saturating_sub(physical_ms(start_ts));
    let ttl_ms = LOCK_TTL_MS.saturating_add(elapsed_ms);
    (ttl_ms <= LOCK_TTL_MAX_MS).then_some(ttl_ms)
}

fn too_old(start_ts: u64) -> RaftstoreError {
    RaftstoreError::TxnAborted {
        start_ts,
        reason: format!(
            "the transaction is older than the {LOCK_TTL_MAX_MS} ms a transaction holding \
             locks may live"
        ),
    }
}

/// Heartbeats for one transaction's primary lock, every
/// [`TXN_HEARTBEAT_INTERVAL_MS`], until dropped or the lock is gone.
#[must_use = "the heartbeats stop when this is dropped"]
pub struct TxnKeepAlive {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TxnKeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RegionClient {
    /// Locks `keys` for transaction `start_ts` whose primary is `primary`
    /// (`SELECT ... FOR UPDATE`), region by region. Another transaction's
    /// lock is resolved or waited for ([`LockWait`]); a write committed
    /// after `start_ts` fails with `WriteConflict`. On an error some keys
    /// may be locked already: the caller rolls back every key it asked for.
    pub async fn lock_keys(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<(), RaftstoreError> {
        if keys.len() > TXN_MUTATIONS_MAX {
            return Err(RaftstoreError::TxnTooLarge {
                mutations: keys.len(),
                limit: TXN_MUTATIONS_MAX,
            });
        }
        check_key(primary)?;
        for key in &keys {
            check_key(key)?;
        }
        // The primary's own lock first, so a lock that names it never
        // exists without it.
        let (first, rest): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            keys.into_iter().partition(|key| key.as_slice() == primary);
        for group in [first, rest] {
            let mut batches = KeyBatches::new(group);
            let mut wait = LockWait::new();
            while let Some(route_key) = batches.first_key() {
                // Fresh for every request: one that waited on other locks
                // must not arrive with a TTL that ran out meanwhile.
                let now_ts = self.timestamp().await?;
                let lock_ttl_ms = lock_ttl_at(start_ts, now_ts).ok_or_else(|| too_old(start_ts))?;
                let executed = self
                    .execute(&route_key, |route| {
                        Call::PessimisticLock(PessimisticLockRequest {
                            context: Some(route.context()),
                            start_ts,
                            primary_key: primary.to_vec(),
                            lock_ttl_ms,
                            keys: batches.keys_in(route),
                        })
                    })
                    .await?;
                let Reply::PessimisticLock(reply) = executed.reply else {
                    return Err(unexpected_reply("pessimistic_lock"));
                };
                match reply.error.and_then(|error| error.kind) {
                    None => batches.done(&executed.route),
                    Some(TxnErrorKind::KeyLocked(lock)) => {
                        self.handle_lock(&lock, &mut wait).await?
                    }
                    Some(kind) => {
                        return Err(txn_error(
                            start_ts,
                            arbor_proto::TxnError { kind: Some(kind) },
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts heartbeats that keep transaction `start_ts`'s primary lock
    /// alive one [`LOCK_TTL_MS`] past the latest one, until the returned
    /// handle is dropped, the lock is gone (committed or rolled back), or
    /// the transaction outlived [`LOCK_TTL_MAX_MS`]. A heartbeat that fails
    /// is tried again at the next tick: three fit in one TTL.
    pub fn keep_alive(&self, start_ts: u64, primary: Vec<u8>) -> TxnKeepAlive {
        let client = self.clone();
        let task = tokio::spawn(async move {
            let interval = Duration::from_millis(TXN_HEARTBEAT_INTERVAL_MS);
            loop {
                tokio::time::sleep(interval).await;
                match client.heartbeat(start_ts, &primary).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::info!(start_ts, %error, "transaction heartbeat failed");
                    }
                }
            }
        });
        TxnKeepAlive { task }
    }

    /// One heartbeat: `Ok(false)` when there is nothing left to keep alive.
    async fn heartbeat(&self, start_ts: u64, primary: &[u8]) -> Result<bool, RaftstoreError> {
        let now_ts = self.timestamp().await?;
        let Some(lock_ttl_ms) = lock_ttl_at(start_ts, now_ts) else {
            tracing::warn!(
                start_ts,
                "transaction outlived the lock TTL limit; its locks expire"
            );
            return Ok(false);
        };
        let executed = self
            .execute(primary, |route| {
                Call::TxnHeartbeat(TxnHeartbeatRequest {
                    context: Some(route.context()),
                    start_ts,
                    primary_key: primary.to_vec(),
                    lock_ttl_ms,
                })
            })
            .await?;
        let Reply::TxnHeartbeat(reply) = executed.reply else {
            return Err(unexpected_reply("txn_heartbeat"));
        };
        Ok(reply.error.is_none())
    }

    /// Rolls back transaction `start_ts` on `keys`: its primary first —
    /// after which it can never commit — then the rest, region by region.
    /// `Ok(Some(commit_ts))` when the primary says it committed after all
    /// (then nothing is rolled back); `Ok(None)` once every key is rolled
    /// back.
    pub async fn rollback(
        &self,
        start_ts: u64,
        primary: &[u8],
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<u64>, RaftstoreError> {
        if let Some(commit_ts) = roll_back_keys(self, start_ts, vec![primary.to_vec()]).await? {
            return Ok(Some(commit_ts));
        }
        let rest = keys.into_iter().filter(|key| key != primary).collect();
        roll_back_keys(self, start_ts, rest).await
    }
}

/// Rolls back `keys` of transaction `start_ts`, region by region; the
/// commit timestamp if a region says the transaction committed (that batch
/// and later ones are left alone).
pub(crate) async fn roll_back_keys(
    client: &RegionClient,
    start_ts: u64,
    keys: Vec<Vec<u8>>,
) -> Result<Option<u64>, RaftstoreError> {
    let mut batches = KeyBatches::new(keys);
    while let Some(first) = batches.first_key() {
        let executed = client
            .execute(&first, |route| {
                Call::Rollback(RollbackRequest {
                    context: Some(route.context()),
                    start_ts,
                    keys: batches.keys_in(route),
                })
            })
            .await?;
        let Reply::Rollback(reply) = executed.reply else {
            return Err(unexpected_reply("rollback"));
        };
        if let Some(TxnErrorKind::Committed(committed)) = reply.error.and_then(|e| e.kind) {
            return Ok(Some(committed.commit_ts));
        }
        batches.done(&executed.route);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::LOGICAL_BITS;

    fn at_ms(physical_ms: u64) -> u64 {
        physical_ms << LOGICAL_BITS
    }

    #[test]
    fn lock_ttls_run_one_ttl_past_now_and_stop_at_the_lifetime_limit() {
        assert_eq!(lock_ttl_at(at_ms(1_000), at_ms(1_000)), Some(LOCK_TTL_MS));
        assert_eq!(
            lock_ttl_at(at_ms(1_000), at_ms(11_000)),
            Some(LOCK_TTL_MS + 10_000)
        );
        assert_eq!(
            lock_ttl_at(at_ms(1_000), at_ms(900)),
            Some(LOCK_TTL_MS),
            "a clock behind the start counts as no time"
        );
        let limit = at_ms(1_000 + LOCK_TTL_MAX_MS - LOCK_TTL_MS);
        assert_eq!(lock_ttl_at(at_ms(1_000), limit), Some(LOCK_TTL_MAX_MS));
        assert_eq!(lock_ttl_at(at_ms(1_000), limit + at_ms(1)), None);
    }
}
