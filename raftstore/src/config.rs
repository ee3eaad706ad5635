//! Every limit and timing of a store, named, with the relationships between
//! them checked at compile time.

use std::sync::Arc;

use openraft::SnapshotPolicy;

use crate::error::RaftstoreError;

/// Raft heartbeat of an awake region leader to its followers (idle regions
/// hibernate and send none: see `hibernate`).
pub const RAFT_HEARTBEAT_INTERVAL_MS: u64 = 250;
/// A follower that hears no leader for a random time in this window starts an
/// election. openraft adds the leader lease (= the maximum) first, and a
/// voter refuses candidates while its lease lasts; store liveness
/// (`liveness::STORE_DEAD_AFTER_MS`) must outlast it.
pub const RAFT_ELECTION_TIMEOUT_MIN_MS: u64 = 750;
pub const RAFT_ELECTION_TIMEOUT_MAX_MS: u64 = 1_000;
/// Build a snapshot after this many applied entries since the last one.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 1_000;
/// Log entries kept after a snapshot, so a briefly lagging follower catches
/// up from the log instead of a snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 100;
/// Snapshot bytes per `InstallSnapshot` message (JSON inflates them ~4x).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Entries per `AppendEntries` message.
pub const RAFT_PAYLOAD_ENTRIES_MAX: u64 = 16;
/// Largest gRPC message of the `StoreRaft` service, both directions.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 160 << 20;
/// Name of every region group (openraft checks peers agree on it).
pub const RAFT_CLUSTER_NAME: &str = "arbor-region";

/// Largest user key.
pub const KEY_BYTES_MAX: usize = 8 << 10;
/// Largest value.
pub const VALUE_BYTES_MAX: usize = 1 << 20;
/// Most mutations in one write batch.
pub const WRITE_MUTATIONS_MAX: usize = 10_000;
/// Largest sum of key and value bytes of one write batch.
pub const WRITE_BATCH_BYTES_MAX: usize = 4 << 20;
/// Most pairs one `Scan` returns.
pub const SCAN_ROWS_MAX: usize = 10_000;
/// A `Scan` stops adding pairs once its response holds this many bytes (it
/// always returns at least one pair, so it makes progress).
pub const SCAN_RESPONSE_BYTES_MAX: usize = 4 << 20;
/// Largest gRPC message of the `Store` service, both directions.
pub const STORE_MESSAGE_BYTES_MAX: usize = 8 << 20;
/// How long a store waits on raft for one client request before answering
/// `ServerBusy`.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// On shutdown, requests already in flight get this long to finish before
/// they are dropped: a `TransferLeader` or `ChangePeers` may wait seconds for
/// replicas that are going away too, and a stopping store must not wait for
/// them (dropping one is safe: raft state is durable and the coordinator
/// retries the step).
pub const SHUTDOWN_GRACE_MS: u64 = 1_000;
/// Most regions one store hosts.
pub const REGIONS_PER_STORE_MAX: usize = 100_000;
/// Most peers a region split may name for the new region.
pub const SPLIT_PEERS_MAX: usize = 16;
/// Most peers one `ChangePeers` may add and remove in all.
pub const PEER_CHANGES_MAX: usize = 16;
/// The `conf_ver` a region starts at (root bootstraps the first region at
/// epoch 1/1; splits keep `conf_ver`). Only at this `conf_ver` may a store
/// create a region's raft group by `Raft::initialize` (first-peer rule):
/// a region whose peers changed already has a group, and a new replica of
/// it must get its state from raft alone.
pub const BOOTSTRAP_CONF_VER: u64 = 1;
/// One administrative call from a region's leader to another store
/// (`OpenPeer`, `DestroyPeer`, `Campaign`) gives up after this long.
pub const PEER_ADMIN_CALL_TIMEOUT_MS: u64 = 3_000;
/// How long a `ChangePeers` leader waits for the snapshot it builds (and
/// the log purge after it) before a new replica joins.
pub const LEARNER_SNAPSHOT_WAIT_MS: u64 = 10_000;
/// How long a `ChangePeers` leader waits for new learners to reach its
/// log (by a snapshot, then the log) before answering `ServerBusy`.
pub const LEARNER_CATCH_UP_MS: u64 = 25_000;
/// How long a `ChangePeers` leader waits for the joint-consensus change
/// (joint, then uniform configuration) to commit.
pub const MEMBERSHIP_CHANGE_WAIT_MS: u64 = 10_000;
/// How long `TransferLeader` waits for the target replica to lead (below
/// the coordinators' 10 s store call timeout, so the store answers first).
pub const TRANSFER_LEADER_WAIT_MS: u64 = 8_000;
/// A transferring leader asks the target to campaign again after this
/// long without a new leader: past the leader lease (openraft's
/// `election_timeout_max`), so a leader elected only just before the
/// transfer has let its lease run out by the second attempt.
pub const CAMPAIGN_RETRY_MS: u64 = RAFT_ELECTION_TIMEOUT_MAX_MS + 250;
/// How often a waiting `ChangePeers`/`TransferLeader` looks at raft metrics.
pub const MEMBERSHIP_POLL_MS: u64 = 20;

/// Longest a `WaitApplied` call waits for a replica's apply, whatever its
/// `timeout_ms` asks (below the coordinators' 10 s store call timeout, so
/// the store answers `reached = false` first and the caller asks again).
pub const WAIT_APPLIED_TIMEOUT_MAX_MS: u64 = 8_000;
/// How often `WaitApplied` looks at the replica's applied index.
pub const WAIT_APPLIED_POLL_MS: u64 = 10;
/// How long a `CommitMerge` leader waits for the merge to apply locally
/// (apply itself waits for the local source replica to catch up to the
/// PrepareMerge entry) before answering `ServerBusy`; below the
/// coordinators' 10 s store call timeout. A retry is idempotent.
pub const COMMIT_MERGE_WAIT_MS: u64 = 8_000;
/// How often a target replica applying a CommitMerge looks whether the
/// local source replica reached the PrepareMerge entry.
pub const MERGE_SOURCE_POLL_MS: u64 = 10;
/// A target replica still waiting for its local source replica logs a
/// warning this often (the wait itself is unbounded: apply must not skip
/// a committed entry, and the source's data is final only once it applied
/// the PrepareMerge entry).
pub const MERGE_SOURCE_WARN_MS: u64 = 5_000;

const _: () = assert!(WAIT_APPLIED_POLL_MS < WAIT_APPLIED_TIMEOUT_MAX_MS);
const _: () = assert!(MERGE_SOURCE_POLL_MS < MERGE_SOURCE_WARN_MS);

/// Most regions one `EpochNotMatch` answer lists.
pub const EPOCH_NOT_MATCH_REGIONS_MAX: usize = 8;

/// Lock TTL a transaction asks for when it prewrites right after it
/// started: a reader blocked by the lock of a client that died waits this
/// long before rolling the transaction back.
pub const LOCK_TTL_MS: u64 = 3_000;
/// Largest lock TTL a prewrite, pessimistic lock or heartbeat may ask for.
/// A TTL counts from the transaction's `start_ts` (a client locking long
/// after its start adds the time since), so this bounds how long a
/// transaction that holds locks can live: past it, its heartbeats are
/// refused and readers roll it back.
pub const LOCK_TTL_MAX_MS: u64 = 600_000;
/// How often a live transaction that holds locks raises its primary lock's
/// TTL ([`crate::txn::heartbeat`]): three heartbeats per TTL, so one lost
/// heartbeat does not let its locks expire.
pub const TXN_HEARTBEAT_INTERVAL_MS: u64 = LOCK_TTL_MS / 3;
/// Keys one store may hold memory locks on at once (one-phase commits in
/// flight); past it a one-phase commit answers `ServerBusy`.
pub const MEMORY_LOCKS_MAX: usize = 100_000;
/// How long a read blocked by a memory lock waits on the store for it to
/// go before answering the lock (the client then backs off and retries).
pub const MEMORY_LOCK_WAIT_MS: u64 = 200;
/// Most mutations of one transaction (spread over as many prewrite
/// batches of at most `WRITE_MUTATIONS_MAX` as it needs).
pub const TXN_MUTATIONS_MAX: usize = 100_000;
/// Largest sum of key and value bytes of one transaction.
pub const TXN_BYTES_MAX: usize = 64 << 20;

/// JSON bytes a write batch may take in a raft entry besides its hex data.
const ENTRY_OVERHEAD_BYTES_MAX: usize = WRITE_MUTATIONS_MAX * 128 + 4_096;

const _: () = assert!(RAFT_ELECTION_TIMEOUT_MIN_MS >= 3 * RAFT_HEARTBEAT_INTERVAL_MS);
const _: () = assert!(LOCK_TTL_MS <= LOCK_TTL_MAX_MS);
const _: () = assert!(TXN_HEARTBEAT_INTERVAL_MS > 0 && 2 * TXN_HEARTBEAT_INTERVAL_MS < LOCK_TTL_MS);
const _: () = assert!(MEMORY_LOCK_WAIT_MS < REQUEST_TIMEOUT_MS);
// One whole ChangePeers (snapshot, catch-up, membership change, descriptor
// entry, destroying removed replicas) stays below the coordinators' 60 s
// ChangePeers call timeout.
const _: () = assert!(
    3 * PEER_ADMIN_CALL_TIMEOUT_MS
        + LEARNER_SNAPSHOT_WAIT_MS
        + LEARNER_CATCH_UP_MS
        + MEMBERSHIP_CHANGE_WAIT_MS
        + REQUEST_TIMEOUT_MS
        < 60_000
);
const _: () = assert!(CAMPAIGN_RETRY_MS > RAFT_ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(2 * CAMPAIGN_RETRY_MS < TRANSFER_LEADER_WAIT_MS);
const _: () = assert!(WRITE_MUTATIONS_MAX <= TXN_MUTATIONS_MAX);
const _: () = assert!(WRITE_BATCH_BYTES_MAX <= TXN_BYTES_MAX);
const _: () = assert!(RAFT_ELECTION_TIMEOUT_MIN_MS < RAFT_ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(
    RAFT_PAYLOAD_ENTRIES_MAX as usize * (2 * WRITE_BATCH_BYTES_MAX + ENTRY_OVERHEAD_BYTES_MAX)
        <= RAFT_MESSAGE_BYTES_MAX
);
const _: () = assert!(5 * SNAPSHOT_CHUNK_BYTES as usize <= RAFT_MESSAGE_BYTES_MAX);
const _: () = assert!(KEY_BYTES_MAX + VALUE_BYTES_MAX <= WRITE_BATCH_BYTES_MAX);
const _: () = assert!(WRITE_BATCH_BYTES_MAX + WRITE_MUTATIONS_MAX * 16 <= STORE_MESSAGE_BYTES_MAX);
const _: () = assert!(
    SCAN_RESPONSE_BYTES_MAX + KEY_BYTES_MAX + VALUE_BYTES_MAX + 1_024 <= STORE_MESSAGE_BYTES_MAX
);

/// The openraft configuration every region group runs with.
pub fn raft_config() -> Result<Arc<openraft::Config>, RaftstoreError> {
    let config = openraft::Config {
        cluster_name: RAFT_CLUSTER_NAME.to_string(),
        heartbeat_interval: RAFT_HEARTBEAT_INTERVAL_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_LOGS_SINCE_LAST),
        max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        max_payload_entries: RAFT_PAYLOAD_ENTRIES_MAX,
        ..Default::default()
    };
    let config = config.validate().map_err(|e| RaftstoreError::Raft {
        region_id: 0,
        hint: format!("invalid raft config: {e}"),
    })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_raft_config_validates() {
        let config = super::raft_config().expect("the built-in raft config is valid");
        assert_eq!(config.cluster_name, super::RAFT_CLUSTER_NAME);
    }
}
