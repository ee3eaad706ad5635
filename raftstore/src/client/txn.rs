//! Transactions through the region client: the implicit transaction of
//! [`RegionClient::write`] and the explicit commit of
//! [`RegionClient::commit`].
//!
//! The protocol, per transaction at `start_ts` (first key = primary):
//! 1. prewrite the batch holding the primary first — as a one-phase commit
//!    when that one batch holds every mutation (one region, one raft
//!    entry: done);
//! 2. otherwise prewrite the other regions' batches, in parallel;
//! 3. take `commit_ts` from the TSO and commit the primary — the commit
//!    point;
//! 4. commit the secondaries (best effort: a reader resolves any left).
//!
//! A prewrite blocked by another transaction's lock resolves it like a read
//! ([`super::resolve`]). On a conflict, failed condition or abort, every
//! key that may hold this transaction's lock is rolled back (best effort)
//! and a typed error returned; a failure after the primary committed is
//! still success.

use std::collections::{BTreeMap, BTreeSet};

use arbor_proto::txn_error::Kind as TxnErrorKind;
use arbor_proto::{CommitRequest, Mutation, MutationCondition, MutationOp, PrewriteRequest};

use super::pessimistic::{lock_ttl_at, roll_back_keys};
use super::resolve::LockWait;
use super::{check_key, unexpected_reply, Call, RegionClient, Reply, Route, WriteOutcome};
use crate::command::mutation_from_proto;
use crate::config::{
    LOCK_TTL_MAX_MS, LOCK_TTL_MS, TXN_BYTES_MAX, TXN_MUTATIONS_MAX, VALUE_BYTES_MAX,
    WRITE_BATCH_BYTES_MAX, WRITE_MUTATIONS_MAX,
};
use crate::error::RaftstoreError;

/// Attempts of one implicit transaction ([`RegionClient::write`]) that lost
/// a write conflict or was aborted, each at a new timestamp.
pub const WRITE_CONFLICT_RETRIES_MAX: u32 = 3;

/// What a transaction does to one key when it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnMutationKind {
    Put(Vec<u8>),
    Delete,
    /// No change; the key takes part in conflict detection as if written
    /// (`SELECT ... FOR UPDATE`).
    Lock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMutation {
    pub kind: TxnMutationKind,
    pub key: Vec<u8>,
}

impl TxnMutation {
    fn to_proto(&self) -> Mutation {
        let (op, value) = match &self.kind {
            TxnMutationKind::Put(value) => (MutationOp::Put, value.clone()),
            TxnMutationKind::Delete => (MutationOp::Delete, Vec::new()),
            TxnMutationKind::Lock => (MutationOp::Lock, Vec::new()),
        };
        Mutation {
            op: op as i32,
            key: self.key.clone(),
            value,
            condition: MutationCondition::None as i32,
        }
    }
}

/// The typed error of a store's transaction error.
pub(crate) fn txn_error(start_ts: u64, error: arbor_proto::TxnError) -> RaftstoreError {
    match error.kind {
        Some(TxnErrorKind::WriteConflict(conflict)) => RaftstoreError::WriteConflict {
            key: conflict.key,
            start_ts,
            conflict_commit_ts: conflict.conflict_commit_ts,
        },
        Some(TxnErrorKind::KeyLocked(lock)) => RaftstoreError::LockWaitTimeout {
            key: lock.key,
            lock_start_ts: lock.start_ts,
        },
        Some(TxnErrorKind::Aborted(aborted)) => RaftstoreError::TxnAborted {
            start_ts,
            reason: format!("{} (key {:?})", aborted.reason, aborted.key),
        },
        Some(TxnErrorKind::ConditionFailed(failed)) => RaftstoreError::Transport {
            address: String::new(),
            hint: format!(
                "store reported failed condition {} where none was checked",
                failed.mutation_index
            ),
        },
        Some(TxnErrorKind::Committed(committed)) => RaftstoreError::TxnAborted {
            start_ts,
            reason: format!(
                "asked to roll back, but it committed at {} (key {:?})",
                committed.commit_ts, committed.key
            ),
        },
        None => RaftstoreError::Transport {
            address: String::new(),
            hint: "store answered a transaction error without a kind".into(),
        },
    }
}

// ---------------------------------------------------------------------------
// Batching: which items go into one request
// ---------------------------------------------------------------------------

/// Items (mutations or keys) still to send, split into requests of one
/// region each, within the per-request limits.
pub(crate) struct Batches {
    /// `(key, bytes)` of every item, by item index.
    items: Vec<(Vec<u8>, usize)>,
    /// Send order: items of `first_key` first (in index order), then the
    /// rest by key (then index, so repeated keys keep their order).
    order: Vec<usize>,
    pending: Vec<bool>,
}

impl Batches {
    fn new(
        items: Vec<(Vec<u8>, usize)>,
        first_key: Option<&[u8]>,
        subset: Option<&[usize]>,
    ) -> Self {
        let mut order: Vec<usize> = match subset {
            Some(subset) => subset.to_vec(),
            None => (0..items.len()).collect(),
        };
        order.sort_by(|a, b| {
            let first = |index: &usize| Some(items[*index].0.as_slice()) != first_key;
            (first(a), &items[*a].0, *a).cmp(&(first(b), &items[*b].0, *b))
        });
        let mut pending = vec![false; items.len()];
        for index in &order {
            pending[*index] = true;
        }
        Self {
            items,
            order,
            pending,
        }
    }

    fn pending_count(&self) -> usize {
        self.pending.iter().filter(|pending| **pending).count()
    }

    /// The key the next request is routed by.
    pub(crate) fn first_key(&self) -> Option<Vec<u8>> {
        self.order
            .iter()
            .find(|index| self.pending[**index])
            .map(|index| self.items[*index].0.clone())
    }

    /// The items of the next request to `route`: pending ones inside it, in
    /// send order, as many as one request carries — never cutting a run of
    /// one key in two unless the run alone is the batch.
    fn next_in(&self, route: &Route) -> Vec<usize> {
        let mut batch: Vec<usize> = Vec::new();
        let mut bytes = 0usize;
        let candidates = self
            .order
            .iter()
            .copied()
            .filter(|index| self.pending[*index] && route.contains(&self.items[*index].0));
        for index in candidates {
            let size = self.items[index].1;
            let full = batch.len() >= WRITE_MUTATIONS_MAX || bytes + size > WRITE_BATCH_BYTES_MAX;
            if !batch.is_empty() && full {
                let cut_key = &self.items[index].0;
                let run_start = batch
                    .iter()
                    .rposition(|item| self.items[*item].0 != *cut_key)
                    .map_or(0, |last_other| last_other + 1);
                if run_start > 0 {
                    batch.truncate(run_start);
                }
                break;
            }
            bytes += size;
            batch.push(index);
        }
        batch
    }

    fn key(&self, index: usize) -> &[u8] {
        &self.items[index].0
    }

    fn mark_done(&mut self, batch: &[usize]) {
        for index in batch {
            self.pending[*index] = false;
        }
    }
}

/// Distinct keys to send region by region (commit, rollback, resolve).
pub(crate) struct KeyBatches {
    batches: Batches,
}

impl KeyBatches {
    pub(crate) fn new(keys: Vec<Vec<u8>>) -> Self {
        let distinct: BTreeSet<Vec<u8>> = keys.into_iter().collect();
        let items = distinct
            .into_iter()
            .map(|key| {
                let bytes = key.len();
                (key, bytes)
            })
            .collect();
        Self {
            batches: Batches::new(items, None, None),
        }
    }

    pub(crate) fn first_key(&self) -> Option<Vec<u8>> {
        self.batches.first_key()
    }

    pub(crate) fn keys_in(&self, route: &Route) -> Vec<Vec<u8>> {
        self.batches
            .next_in(route)
            .into_iter()
            .map(|index| self.batches.key(index).to_vec())
            .collect()
    }

    pub(crate) fn done(&mut self, route: &Route) {
        let batch = self.batches.next_in(route);
        self.batches.mark_done(&batch);
    }
}

// ---------------------------------------------------------------------------
// The two entry points
// ---------------------------------------------------------------------------

/// Size limits of a whole transaction, then of each mutation.
fn validate(mutations: &[Mutation]) -> Result<(), RaftstoreError> {
    if mutations.len() > TXN_MUTATIONS_MAX {
        return Err(RaftstoreError::TxnTooLarge {
            mutations: mutations.len(),
            limit: TXN_MUTATIONS_MAX,
        });
    }
    let bytes: usize = mutations.iter().map(|m| m.key.len() + m.value.len()).sum();
    if bytes > TXN_BYTES_MAX {
        return Err(RaftstoreError::TxnBytesTooLarge {
            bytes,
            limit: TXN_BYTES_MAX,
        });
    }
    for mutation in mutations {
        check_key(&mutation.key)?;
        if mutation.value.len() > VALUE_BYTES_MAX {
            return Err(RaftstoreError::InvalidArgument {
                hint: format!(
                    "value of {} bytes exceeds the {VALUE_BYTES_MAX}-byte limit",
                    mutation.value.len()
                ),
            });
        }
        mutation_from_proto(mutation)?;
    }
    Ok(())
}

pub(crate) async fn write(
    client: &RegionClient,
    mutations: Vec<Mutation>,
) -> Result<WriteOutcome, RaftstoreError> {
    validate(&mutations)?;
    if mutations.is_empty() {
        return Ok(WriteOutcome::Applied {
            existed: Vec::new(),
        });
    }
    let mut attempt = 1;
    loop {
        let start_ts = client.timestamp().await?;
        let txn = Txn::new(client, start_ts, mutations.clone(), LOCK_TTL_MS);
        match txn.run().await {
            Ok(committed) => {
                return Ok(WriteOutcome::Applied {
                    existed: committed.existed,
                })
            }
            Err(Failure::Condition(mutation_index)) => {
                return Ok(WriteOutcome::ConditionFailed { mutation_index })
            }
            Err(Failure::Error(
                RaftstoreError::WriteConflict { .. } | RaftstoreError::TxnAborted { .. },
            )) if attempt < WRITE_CONFLICT_RETRIES_MAX => attempt += 1,
            Err(Failure::Error(error)) => return Err(error),
        }
    }
}

pub(crate) async fn commit(
    client: &RegionClient,
    start_ts: u64,
    mutations: Vec<TxnMutation>,
) -> Result<u64, RaftstoreError> {
    let mutations: Vec<Mutation> = mutations.iter().map(TxnMutation::to_proto).collect();
    validate(&mutations)?;
    if mutations.is_empty() {
        return Ok(start_ts);
    }
    let lock_ttl_ms = lock_ttl_ms(client, start_ts, &mutations).await?;
    match Txn::new(client, start_ts, mutations, lock_ttl_ms)
        .run()
        .await
    {
        Ok(committed) => Ok(committed.commit_ts),
        Err(Failure::Error(error)) => Err(error),
        Err(Failure::Condition(index)) => Err(RaftstoreError::Transport {
            address: String::new(),
            hint: format!("store reported failed condition {index} where none was checked"),
        }),
    }
}

/// The lock TTL of a transaction that started at `start_ts`: the default
/// plus the time since its start (a lock's life is counted from
/// `start_ts`). When every key is in one cached region (a one-phase commit,
/// which leaves no lock, is likely) the newest timestamp seen stands in for
/// "now"; otherwise the TSO is asked.
async fn lock_ttl_ms(
    client: &RegionClient,
    start_ts: u64,
    mutations: &[Mutation],
) -> Result<u64, RaftstoreError> {
    let one_region = client
        .cached_route(&mutations[0].key)
        .is_some_and(|route| mutations.iter().all(|m| route.contains(&m.key)));
    let now_ts = if one_region {
        client.newest_timestamp()
    } else {
        client.timestamp().await?
    };
    lock_ttl_at(start_ts, now_ts).ok_or_else(|| RaftstoreError::TxnAborted {
        start_ts,
        reason: format!(
            "the transaction is older than the {LOCK_TTL_MAX_MS} ms a transaction holding \
             locks may live"
        ),
    })
}

// ---------------------------------------------------------------------------
// One attempt
// ---------------------------------------------------------------------------

enum Failure {
    /// The condition of this mutation (caller's index) failed.
    Condition(usize),
    Error(RaftstoreError),
}

impl From<RaftstoreError> for Failure {
    fn from(error: RaftstoreError) -> Self {
        Failure::Error(error)
    }
}

struct Committed {
    commit_ts: u64,
    existed: Vec<bool>,
}

/// What prewriting one group of batches did.
#[derive(Default)]
struct GroupOutcome {
    existed: Vec<(usize, bool)>,
    /// Keys this transaction locked.
    locked: Vec<Vec<u8>>,
    /// Keys of batches sent more than once that failed: an earlier attempt
    /// may have locked (or one-phase committed) them.
    maybe_written: Vec<Vec<u8>>,
    one_pc_commit_ts: Option<u64>,
    failure: Option<Failure>,
}

struct Txn<'a> {
    client: &'a RegionClient,
    start_ts: u64,
    primary: Vec<u8>,
    mutations: Vec<Mutation>,
    lock_ttl_ms: u64,
}

impl<'a> Txn<'a> {
    fn new(
        client: &'a RegionClient,
        start_ts: u64,
        mutations: Vec<Mutation>,
        lock_ttl_ms: u64,
    ) -> Self {
        let primary = mutations[0].key.clone();
        Self {
            client,
            start_ts,
            primary,
            mutations,
            lock_ttl_ms,
        }
    }

    fn batches(&self, subset: Option<&[usize]>) -> Batches {
        let items = self
            .mutations
            .iter()
            .map(|m| (m.key.clone(), m.key.len() + m.value.len()))
            .collect();
        Batches::new(items, Some(&self.primary), subset)
    }

    async fn run(self) -> Result<Committed, Failure> {
        let mut existed = vec![false; self.mutations.len()];
        // The primary's batch first: a reader that meets a secondary lock
        // then always finds the primary's lock (or its fate).
        let mut all = self.batches(None);
        let first = self.prewrite_next(&mut all, true).await;
        let (failed, one_pc_commit_ts) = (first.failure.is_some(), first.one_pc_commit_ts);
        let mut outcomes = vec![first];
        if let (false, Some(commit_ts)) = (failed, one_pc_commit_ts) {
            fill(&mut existed, &outcomes);
            return Ok(Committed { commit_ts, existed });
        }
        // The primary is locked: keep it alive however long the other
        // regions' prewrites and the commit take.
        let _keep_alive =
            (!failed).then(|| self.client.keep_alive(self.start_ts, self.primary.clone()));
        if !failed {
            outcomes.extend(self.prewrite_rest(&all).await);
        }
        fill(&mut existed, &outcomes);
        let locked: Vec<Vec<u8>> = outcomes.iter().flat_map(|o| o.locked.clone()).collect();
        let maybe: Vec<Vec<u8>> = outcomes
            .iter()
            .flat_map(|o| o.maybe_written.clone())
            .collect();
        if let Some(failure) = outcomes.into_iter().find_map(|o| o.failure) {
            return match self
                .roll_back(locked.into_iter().chain(maybe).collect())
                .await
            {
                // A duplicate of a request that failed here applied after
                // all: the transaction committed.
                Some(commit_ts) => Ok(Committed { commit_ts, existed }),
                None => Err(failure),
            };
        }
        let commit_ts = match self.client.timestamp().await {
            Ok(commit_ts) => commit_ts,
            Err(error) => {
                self.roll_back(locked).await;
                return Err(error.into());
            }
        };
        self.commit_primary(commit_ts, &locked).await?;
        let secondaries = locked
            .into_iter()
            .filter(|key| *key != self.primary)
            .collect();
        self.commit_secondaries(commit_ts, secondaries).await;
        Ok(Committed { commit_ts, existed })
    }

    /// Prewrites the batches of the other regions, one task per region (by
    /// the routes cached now; each task follows splits on its own).
    async fn prewrite_rest(&self, all: &Batches) -> Vec<GroupOutcome> {
        let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for index in all
            .order
            .iter()
            .copied()
            .filter(|index| all.pending[*index])
        {
            let region_id = self
                .client
                .cached_route(all.key(index))
                .map_or(0, |route| route.region.region_id);
            groups.entry(region_id).or_default().push(index);
        }
        let tasks = groups.into_values().map(|indexes| async move {
            let mut batches = self.batches(Some(&indexes));
            let mut total = GroupOutcome::default();
            while batches.first_key().is_some() && total.failure.is_none() {
                let outcome = self.prewrite_next(&mut batches, false).await;
                merge(&mut total, outcome);
            }
            total
        });
        futures::future::join_all(tasks).await
    }

    /// Prewrites the next batch of `batches` (resolving locks it meets):
    /// one request to one region. With `first`, as a one-phase commit when
    /// that batch is the whole transaction.
    async fn prewrite_next(&self, batches: &mut Batches, first: bool) -> GroupOutcome {
        let mut outcome = GroupOutcome::default();
        let mut wait = LockWait::new();
        let total = self.mutations.len();
        let Some(route_key) = batches.first_key() else {
            return outcome;
        };
        loop {
            let pending = batches.pending_count();
            let build = |route: &Route| {
                let batch = batches.next_in(route);
                let one_pc = first && pending == total && batch.len() == total;
                Call::Prewrite(PrewriteRequest {
                    context: Some(route.context()),
                    start_ts: self.start_ts,
                    primary_key: self.primary.clone(),
                    lock_ttl_ms: self.lock_ttl_ms,
                    mutations: batch.iter().map(|i| self.mutations[*i].clone()).collect(),
                    one_pc,
                })
            };
            let executed = match self.client.execute(&route_key, build).await {
                Ok(executed) => executed,
                Err(error) => {
                    // Unknown whether it applied: treat it as written.
                    outcome
                        .maybe_written
                        .extend(self.keys_of(batches, &batches.next_in_any()));
                    outcome.failure = Some(error.into());
                    return outcome;
                }
            };
            let batch = batches.next_in(&executed.route);
            let one_pc = first && pending == total && batch.len() == total;
            let Reply::Prewrite(reply) = executed.reply else {
                outcome.failure = Some(unexpected_reply("prewrite").into());
                return outcome;
            };
            let keys = self.keys_of(batches, &batch);
            let Some(error) = reply.error else {
                outcome
                    .existed
                    .extend(batch.iter().copied().zip(reply.existed.iter().copied()));
                batches.mark_done(&batch);
                if one_pc {
                    outcome.one_pc_commit_ts = Some(reply.one_pc_commit_ts);
                } else {
                    outcome.locked = keys;
                }
                return outcome;
            };
            if executed.sends > 1 {
                outcome.maybe_written.extend(keys);
            }
            match error.kind {
                Some(TxnErrorKind::KeyLocked(lock)) => {
                    if let Err(error) = self.client.handle_lock(&lock, &mut wait).await {
                        outcome.failure = Some(error.into());
                        return outcome;
                    }
                }
                Some(TxnErrorKind::ConditionFailed(failed)) => {
                    let index = batch.get(failed.mutation_index as usize).copied();
                    outcome.failure = Some(match index {
                        Some(index) => Failure::Condition(index),
                        None => Failure::Error(RaftstoreError::Transport {
                            address: String::new(),
                            hint: format!(
                                "store reported failed mutation {} of a batch of {}",
                                failed.mutation_index,
                                batch.len()
                            ),
                        }),
                    });
                    return outcome;
                }
                kind => {
                    let error = arbor_proto::TxnError { kind };
                    outcome.failure = Some(txn_error(self.start_ts, error).into());
                    return outcome;
                }
            }
        }
    }

    fn keys_of(&self, batches: &Batches, batch: &[usize]) -> Vec<Vec<u8>> {
        batch.iter().map(|i| batches.key(*i).to_vec()).collect()
    }

    /// Commits the primary: the transaction's commit point. An error here
    /// leaves the outcome unknown unless the store said it was aborted.
    async fn commit_primary(&self, commit_ts: u64, locked: &[Vec<u8>]) -> Result<(), Failure> {
        let executed = self
            .client
            .execute(&self.primary, |route| {
                Call::Commit(CommitRequest {
                    context: Some(route.context()),
                    start_ts: self.start_ts,
                    commit_ts,
                    keys: vec![self.primary.clone()],
                })
            })
            .await?;
        let Reply::Commit(reply) = executed.reply else {
            return Err(unexpected_reply("commit").into());
        };
        if let Some(error) = reply.error {
            // Rolled back by a reader (the lock outlived its TTL): clean up.
            self.roll_back(locked.to_vec()).await;
            return Err(txn_error(self.start_ts, error).into());
        }
        Ok(())
    }

    /// Best effort: a secondary left locked is committed by the first reader
    /// that meets it (the primary says committed).
    async fn commit_secondaries(&self, commit_ts: u64, keys: Vec<Vec<u8>>) {
        let mut batches = KeyBatches::new(keys);
        while let Some(first) = batches.first_key() {
            let executed = self
                .client
                .execute(&first, |route| {
                    Call::Commit(CommitRequest {
                        context: Some(route.context()),
                        start_ts: self.start_ts,
                        commit_ts,
                        keys: batches.keys_in(route),
                    })
                })
                .await;
            match executed {
                Ok(executed) => {
                    if let Reply::Commit(reply) = &executed.reply {
                        if let Some(error) = &reply.error {
                            tracing::warn!(
                                start_ts = self.start_ts,
                                ?error,
                                "a secondary did not commit"
                            );
                        }
                    }
                    batches.done(&executed.route);
                }
                Err(error) => {
                    tracing::info!(start_ts = self.start_ts, %error, "secondaries left for readers to resolve");
                    return;
                }
            }
        }
    }

    /// Best effort rollback of `keys`; the commit timestamp if the store
    /// says this transaction committed after all.
    async fn roll_back(&self, keys: Vec<Vec<u8>>) -> Option<u64> {
        match roll_back_keys(self.client, self.start_ts, keys).await {
            Ok(committed) => committed,
            Err(error) => {
                tracing::info!(start_ts = self.start_ts, %error, "rollback left for readers");
                None
            }
        }
    }
}

impl Batches {
    /// Every pending item (when the route is unknown).
    fn next_in_any(&self) -> Vec<usize> {
        self.order
            .iter()
            .copied()
            .filter(|index| self.pending[*index])
            .collect()
    }
}

fn merge(total: &mut GroupOutcome, outcome: GroupOutcome) {
    total.existed.extend(outcome.existed);
    total.locked.extend(outcome.locked);
    total.maybe_written.extend(outcome.maybe_written);
    total.failure = outcome.failure;
}

fn fill(existed: &mut [bool], outcomes: &[GroupOutcome]) {
    for (index, value) in outcomes.iter().flat_map(|o| o.existed.iter()) {
        if let Some(slot) = existed.get_mut(*index) {
            *slot = *value;
        }
    }
}

#[cfg(test)]
mod tests {
    use arbor_proto::{RegionDescriptor, RegionEpoch};

    use super::*;

    fn route(start: &str, end: &str) -> Route {
        Route {
            region: RegionDescriptor {
                region_id: 1,
                start_key: start.as_bytes().to_vec(),
                end_key: end.as_bytes().to_vec(),
                epoch: Some(RegionEpoch {
                    version: 1,
                    conf_ver: 1,
                }),
                peers: Vec::new(),
            },
            leader_store_id: 0,
            addresses: Default::default(),
        }
    }

    fn items(keys: &[&str]) -> Vec<(Vec<u8>, usize)> {
        keys.iter()
            .map(|key| (key.as_bytes().to_vec(), 1))
            .collect()
    }

    #[test]
    fn batches_send_the_primary_first_then_keys_in_order_region_by_region() {
        let mut batches = Batches::new(items(&["q", "b", "z", "a", "q"]), Some(b"q"), None);
        assert_eq!(batches.first_key(), Some(b"q".to_vec()));
        let left = route("", "m");
        let right = route("m", "");
        assert_eq!(
            batches.next_in(&right),
            vec![0, 4, 2],
            "primary's run, then by key"
        );
        assert_eq!(batches.next_in(&left), vec![3, 1]);
        let batch = batches.next_in(&right);
        batches.mark_done(&batch);
        assert_eq!(batches.first_key(), Some(b"a".to_vec()));
        assert_eq!(batches.pending_count(), 2);
    }

    #[test]
    fn batches_respect_the_request_limits_without_splitting_a_key() {
        let mut keys: Vec<(Vec<u8>, usize)> = (0..WRITE_MUTATIONS_MAX - 1)
            .map(|i| (format!("k{i:08}").into_bytes(), 1))
            .collect();
        keys.push((b"z".to_vec(), 1));
        keys.push((b"z".to_vec(), 1));
        let batches = Batches::new(keys, None, None);
        let batch = batches.next_in(&route("", ""));
        assert_eq!(
            batch.len(),
            WRITE_MUTATIONS_MAX - 1,
            "both z's wait for the next batch"
        );
        let heavy = vec![(b"a".to_vec(), WRITE_BATCH_BYTES_MAX), (b"b".to_vec(), 1)];
        let batches = Batches::new(heavy, None, None);
        assert_eq!(
            batches.next_in(&route("", "")),
            vec![0],
            "bytes cap, one at least"
        );
    }

    #[test]
    fn transactions_over_the_limits_are_refused_typed() {
        let mutation = |key: &str| Mutation {
            op: MutationOp::Put as i32,
            key: key.as_bytes().to_vec(),
            value: Vec::new(),
            condition: MutationCondition::None as i32,
        };
        let many = vec![mutation("k"); TXN_MUTATIONS_MAX + 1];
        assert!(matches!(
            validate(&many),
            Err(RaftstoreError::TxnTooLarge {
                limit: TXN_MUTATIONS_MAX,
                ..
            })
        ));
        let heavy_count = TXN_BYTES_MAX / VALUE_BYTES_MAX + 1;
        let heavy = vec![
            Mutation {
                value: vec![0; VALUE_BYTES_MAX],
                ..mutation("k")
            };
            heavy_count
        ];
        assert!(matches!(
            validate(&heavy),
            Err(RaftstoreError::TxnBytesTooLarge { .. })
        ));
        let bad_op = Mutation {
            op: 99,
            ..mutation("k")
        };
        assert!(matches!(
            validate(&[bad_op]),
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        assert!(validate(&[mutation("a"), mutation("b")]).is_ok());
    }

    #[test]
    fn store_transaction_errors_map_to_typed_errors() {
        let conflict = arbor_proto::TxnError {
            kind: Some(TxnErrorKind::WriteConflict(arbor_proto::WriteConflict {
                key: b"k".to_vec(),
                start_ts: 5,
                conflict_start_ts: 6,
                conflict_commit_ts: 7,
            })),
        };
        assert!(matches!(
            txn_error(5, conflict),
            RaftstoreError::WriteConflict {
                start_ts: 5,
                conflict_commit_ts: 7,
                ..
            }
        ));
        let aborted = arbor_proto::TxnError {
            kind: Some(TxnErrorKind::Aborted(arbor_proto::TxnAborted {
                key: b"k".to_vec(),
                start_ts: 5,
                reason: "rolled back".into(),
            })),
        };
        assert!(matches!(
            txn_error(5, aborted),
            RaftstoreError::TxnAborted { start_ts: 5, .. }
        ));
    }
}
