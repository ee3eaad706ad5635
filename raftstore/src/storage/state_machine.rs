//! The applied state of one region: its key range in the lock and write
//! column families, plus the applied log id, membership and live key count;
//! and the region's descriptor as apply leaves it ([`SharedDescriptor`]).
//!
//! **Invariant:** the records an entry writes and the applied log id that
//! covers it land in one RocksDB write batch, so a restart never re-applies
//! or loses half an entry. Entries are written one batch each (a later
//! entry's decision reads what the earlier ones wrote), unsynced: every
//! entry applied is already synced in the region's raft log on this same
//! RocksDB, so a crash that loses unsynced batches only rewinds the applied
//! log id and openraft applies those entries again, to the same result
//! (apply is deterministic). A sync per apply call would add an fsync to
//! every write's latency. Splits, merges and peer changes, which start or
//! stop groups right after, and snapshots (after which the log is purged)
//! are synced. A split's effects (both descriptors, the new region's initial log and
//! applied state, both key counts) land in one batch too, and so does a
//! peer change's new descriptor.
//!
//! **Invariant:** only apply (and snapshot install) change a region's
//! descriptor on a store; what a coordinator says never does.

// openraft's StorageError is large; it is openraft's type and contract.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arbor_proto::RegionDescriptor;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, Membership, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::mvcc::{self, DbReader};
use super::snapshot::{self, RegionSnapshot, SnapshotHeader};
use super::{cf, synced};
use crate::command::{
    format_supported, AdminCommand, ChangePeersCommand, CommitMergeCommand, EpochRecord, GcCommand,
    PrepareMergeCommand, RegionCommand, RegionResponse, SplitCommand,
};
use crate::config::{MERGE_SOURCE_POLL_MS, MERGE_SOURCE_WARN_MS};
use crate::error::RaftstoreError;
use crate::keys::{self, StateKind, CF_LOCK, CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META, CF_WRITE};
use crate::operation::apply::command_fits_region;
use crate::operation::conf_change::{decide_apply, ApplyDecision};
use crate::operation::merge::{
    decide_commit, decide_prepare, CommitDecision, MergeState, MergedRecord, PrepareDecision,
};
use crate::operation::split::{decide_split, SplitDecision};
use crate::txn::{self, record, Effect};
use crate::types::{RegionId, RegionTypeConfig, StoreId};

type StorageResult<T> = Result<T, StorageError<StoreId>>;
/// Key/value pairs in key order.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
type AppliedLogAndMembership = (Option<LogId<StoreId>>, StoredMembership<StoreId, BasicNode>);

/// `[start, end)` of user keys; an empty `end` is the end of the key space.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// Read options confining an iterator over the write CF to the
    /// versions of this range's user keys.
    pub fn write_read_options(&self) -> ReadOptions {
        let (lower, upper) = keys::write_range_bounds(&self.start, &self.end);
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(lower);
        if let Some(upper) = upper {
            options.set_iterate_upper_bound(upper);
        }
        options
    }

    /// Read options confining an iterator over the lock CF to this range.
    pub fn lock_read_options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(keys::lock_key(&self.start).to_vec());
        if !self.end.is_empty() {
            options.set_iterate_upper_bound(keys::lock_key(&self.end).to_vec());
        }
        options
    }
}

/// A region's descriptor as this replica's apply left it, and the merge it
/// is frozen for, if any: the peer reads them to admit requests, apply
/// (split, peer change, merge) and snapshot install change them.
#[derive(Clone)]
pub struct SharedDescriptor(
    Arc<RwLock<RegionDescriptor>>,
    Arc<RwLock<Option<MergeState>>>,
);

impl SharedDescriptor {
    pub fn new(descriptor: RegionDescriptor) -> Self {
        Self(
            Arc::new(RwLock::new(descriptor)),
            Arc::new(RwLock::new(None)),
        )
    }

    /// The merge this region is frozen for (PrepareMerge applied).
    pub fn merge_state(&self) -> Option<MergeState> {
        self.1
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_merge_state(&self, state: Option<MergeState>) {
        *self
            .1
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// A bare descriptor of `region_id` over `range` (storage tests).
    pub fn for_range(region_id: RegionId, range: KeyRange) -> Self {
        Self::new(RegionDescriptor {
            region_id,
            start_key: range.start,
            end_key: range.end,
            ..Default::default()
        })
    }

    pub fn get(&self) -> RegionDescriptor {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn range(&self) -> KeyRange {
        let descriptor = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        KeyRange {
            start: descriptor.start_key.clone(),
            end: descriptor.end_key.clone(),
        }
    }

    fn set(&self, descriptor: RegionDescriptor) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = descriptor;
    }
}

/// Told `(left, right)` after a split is on disk, so the store starts the
/// new region's raft group.
pub type SplitObserver = Arc<dyn Fn(&RegionDescriptor, &RegionDescriptor) + Send + Sync>;

/// A split observer that does nothing (storage tests).
pub fn ignore_splits() -> SplitObserver {
    Arc::new(|_, _| {})
}

/// Told `(target after the merge, source)` once a CommitMerge is on disk,
/// so the store stops the source's group and forgets it.
pub type MergeObserver = Arc<dyn Fn(&RegionDescriptor, &RegionDescriptor) + Send + Sync>;

/// A merge observer that does nothing (storage tests).
pub fn ignore_merges() -> MergeObserver {
    Arc::new(|_, _| {})
}

/// The log id of a new region's first entry on every replica: what
/// `Raft::initialize` uses (see `operation::split`).
pub fn initial_log_id() -> LogId<StoreId> {
    LogId::default()
}

/// What is persisted with every apply, under `StateKind::Applied`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<StoreId>>,
    membership: StoredMembership<StoreId, BasicNode>,
    key_count: u64,
    /// The highest GC safe point applied: versions below it may be gone,
    /// so reads below it are refused (absent in states written before GC
    /// existed: nothing was collected).
    #[serde(default)]
    gc_safe_point: u64,
}

/// Only the GC safe point of an [`AppliedState`] (the read path's view).
#[derive(Deserialize)]
struct AppliedGcSafePoint {
    #[serde(default)]
    gc_safe_point: u64,
}

/// The GC safe point `region_id`'s apply has reached on this store, read
/// from disk: apply raises it in the same write batch as its deletions, so
/// a reader that re-reads it after reading data knows whether anything it
/// read could have been collected.
pub fn applied_gc_safe_point(db: &DB, region_id: RegionId) -> Result<u64, RaftstoreError> {
    let stored = db
        .get_pinned_cf(
            cf(db, CF_RAFT_STATE),
            keys::state_key(region_id, StateKind::Applied),
        )
        .map_err(storage_error(format!(
            "loading the GC safe point of region {region_id}"
        )))?;
    let Some(bytes) = stored else {
        return Ok(0);
    };
    let state: AppliedGcSafePoint =
        serde_json::from_slice(&bytes).map_err(|e| RaftstoreError::Corrupt {
            context: format!("applied state of region {region_id}"),
            hint: e.to_string(),
        })?;
    Ok(state.gc_safe_point)
}

/// The merge `region_id` is frozen for on this store, if any.
pub fn load_merge_state(
    db: &DB,
    region_id: RegionId,
) -> Result<Option<MergeState>, RaftstoreError> {
    let stored = db
        .get_cf(
            cf(db, CF_RAFT_STATE),
            keys::state_key(region_id, StateKind::Merging),
        )
        .map_err(storage_error(format!(
            "loading the merge state of region {region_id}"
        )))?;
    let Some(bytes) = stored else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RaftstoreError::Corrupt {
            context: format!("merge state of region {region_id}"),
            hint: e.to_string(),
        })
}

/// What a target replica needs of the local source replica to commit a
/// merge: its applied index, key count and GC safe point, and the merge it
/// is frozen for (read from disk; apply writes them in one batch).
#[derive(Debug, Clone, PartialEq)]
struct SourceProgress {
    applied_index: Option<u64>,
    key_count: u64,
    gc_safe_point: u64,
    frozen: Option<MergeState>,
}

fn load_source_progress(db: &DB, region_id: RegionId) -> Result<SourceProgress, RaftstoreError> {
    let stored = db
        .get_cf(
            cf(db, CF_RAFT_STATE),
            keys::state_key(region_id, StateKind::Applied),
        )
        .map_err(storage_error(format!(
            "loading applied state of region {region_id}"
        )))?;
    let applied: Option<AppliedState> = match stored {
        None => None,
        Some(bytes) => {
            Some(
                serde_json::from_slice(&bytes).map_err(|e| RaftstoreError::Corrupt {
                    context: format!("applied state of region {region_id}"),
                    hint: e.to_string(),
                })?,
            )
        }
    };
    let frozen = load_merge_state(db, region_id)?;
    Ok(SourceProgress {
        applied_index: applied
            .as_ref()
            .and_then(|applied| applied.last_applied.map(|log_id| log_id.index)),
        key_count: applied.as_ref().map_or(0, |applied| applied.key_count),
        gc_safe_point: applied.as_ref().map_or(0, |applied| applied.gc_safe_point),
        frozen,
    })
}

pub struct RegionStateMachine {
    db: Arc<DB>,
    region_id: RegionId,
    descriptor: SharedDescriptor,
    applied: AppliedState,
    /// Live key count, shared with the peer for heartbeats.
    key_count: Arc<AtomicU64>,
    on_split: SplitObserver,
    on_merge: MergeObserver,
}

fn storage_error(context: String) -> impl FnOnce(rocksdb::Error) -> RaftstoreError {
    move |source| RaftstoreError::Storage { context, source }
}

impl RegionStateMachine {
    /// Loads the applied state of `region_id` (empty for a new region).
    pub fn open(
        db: Arc<DB>,
        region_id: RegionId,
        descriptor: SharedDescriptor,
        key_count: Arc<AtomicU64>,
        on_split: SplitObserver,
    ) -> Result<Self, RaftstoreError> {
        let stored = db
            .get_cf(
                cf(&db, CF_RAFT_STATE),
                keys::state_key(region_id, StateKind::Applied),
            )
            .map_err(storage_error(format!(
                "loading applied state of region {region_id}"
            )))?;
        let applied: AppliedState = match stored {
            None => AppliedState::default(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| RaftstoreError::Corrupt {
                context: format!("applied state of region {region_id}"),
                hint: e.to_string(),
            })?,
        };
        key_count.store(applied.key_count, Ordering::Relaxed);
        descriptor.set_merge_state(load_merge_state(&db, region_id)?);
        Ok(Self {
            db,
            region_id,
            descriptor,
            applied,
            key_count,
            on_split,
            on_merge: ignore_merges(),
        })
    }

    /// Tells `on_merge` about every CommitMerge this region applies.
    pub fn with_merge_observer(mut self, on_merge: MergeObserver) -> Self {
        self.on_merge = on_merge;
        self
    }

    fn range(&self) -> KeyRange {
        self.descriptor.range()
    }

    /// Decides one command and stages its writes in `batch` (earlier
    /// entries of the same apply call are on disk already).
    fn apply_command(
        &mut self,
        command: &RegionCommand,
        batch: &mut WriteBatch,
    ) -> StorageResult<RegionResponse> {
        if !format_supported(command.format_version) {
            tracing::error!(
                region_id = self.region_id,
                format_version = command.format_version,
                "refusing to apply a command of an unknown format"
            );
            return Ok(RegionResponse {
                unsupported_format: true,
                ..Default::default()
            });
        }
        if let Some(AdminCommand::Gc(gc)) = &command.admin {
            return self.apply_gc(gc, batch);
        }
        let Some(txn) = &command.txn else {
            // Neither a transaction nor a split (handled before): nothing.
            return Ok(RegionResponse::default());
        };
        let descriptor = self.descriptor.get();
        let keys = txn.keys();
        let fits = command_fits_region(
            EpochRecord::of(descriptor.epoch.as_ref()),
            &self.range(),
            command.epoch,
            &keys,
        );
        if !fits {
            return Ok(RegionResponse {
                epoch_not_match: Some(descriptor),
                ..Default::default()
            });
        }
        if let Some(refused) =
            super::gc::refuse_txn_below_safe_point(txn, self.applied.gc_safe_point)
        {
            return Ok(RegionResponse {
                txn: Some(refused),
                ..Default::default()
            });
        }
        let reader = DbReader { db: &self.db };
        let states = txn::key_states(&reader, keys, txn.start_ts())
            .map_err(|e| StorageIOError::read_state_machine(AnyError::error(e.to_string())))?;
        let decision = txn::decide(txn, &states);
        self.stage_effects(&decision.effects, batch);
        self.applied.key_count = self
            .applied
            .key_count
            .saturating_add_signed(decision.key_count_delta);
        Ok(RegionResponse {
            txn: Some(decision.outcome),
            ..Default::default()
        })
    }

    /// Stages a GC batch's deletions and raises the applied safe point in
    /// the same batch (see `storage::gc`). The key count does not change:
    /// a key's newest data version is never deleted unless it is a Delete.
    fn apply_gc(
        &mut self,
        gc: &GcCommand,
        batch: &mut WriteBatch,
    ) -> StorageResult<RegionResponse> {
        let deleted = super::gc::stage(&self.db, &self.range(), gc, batch)
            .map_err(|e| StorageIOError::read_state_machine(AnyError::error(e.to_string())))?;
        self.applied.gc_safe_point = self.applied.gc_safe_point.max(gc.safe_point);
        Ok(RegionResponse {
            gc_deleted: Some(deleted),
            ..Default::default()
        })
    }

    fn stage_effects(&self, effects: &[Effect], batch: &mut WriteBatch) {
        let (locks, writes) = (cf(&self.db, CF_LOCK), cf(&self.db, CF_WRITE));
        for effect in effects {
            match effect {
                Effect::PutLock { key, lock } => {
                    batch.put_cf(locks, keys::lock_key(key), record::encode_lock(lock))
                }
                Effect::DeleteLock { key } => batch.delete_cf(locks, keys::lock_key(key)),
                Effect::PutWrite {
                    key,
                    commit_ts,
                    record,
                } => batch.put_cf(
                    writes,
                    keys::write_key(key, *commit_ts),
                    record::encode_write(record),
                ),
            }
        }
    }

    fn apply_entry(
        &mut self,
        entry: Entry<RegionTypeConfig>,
        batch: &mut WriteBatch,
    ) -> StorageResult<RegionResponse> {
        self.applied.last_applied = Some(entry.log_id);
        let response = match entry.payload {
            EntryPayload::Blank => RegionResponse::default(),
            EntryPayload::Membership(membership) => {
                self.applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                RegionResponse::default()
            }
            EntryPayload::Normal(command) => self.apply_command(&command, batch)?,
        };
        Ok(response)
    }

    fn stage_applied_state(&self, batch: &mut WriteBatch) -> StorageResult<()> {
        let bytes = serde_json::to_vec(&self.applied)
            .map_err(|e| StorageIOError::write_state_machine(AnyError::new(&e)))?;
        batch.put_cf(
            cf(&self.db, CF_RAFT_STATE),
            keys::state_key(self.region_id, StateKind::Applied),
            bytes,
        );
        Ok(())
    }

    /// Writes `batch` with the applied state; `sync` also syncs the
    /// write-ahead log (and with it every unsynced batch before).
    fn flush(&self, mut batch: WriteBatch, sync: bool) -> StorageResult<()> {
        self.stage_applied_state(&mut batch)?;
        let options = if sync { synced() } else { Default::default() };
        self.db
            .write_opt(batch, &options)
            .map_err(|e| StorageIOError::write_state_machine(AnyError::new(&e)))?;
        self.key_count
            .store(self.applied.key_count, Ordering::Relaxed);
        Ok(())
    }

    /// The split command of an entry, if it carries one.
    fn split_of(entry: &Entry<RegionTypeConfig>) -> Option<&SplitCommand> {
        match &entry.payload {
            EntryPayload::Normal(RegionCommand {
                format_version,
                admin: Some(AdminCommand::Split(split)),
                ..
            }) if format_supported(*format_version) => Some(split),
            _ => None,
        }
    }

    /// The peer change command of an entry, if it carries one.
    fn change_peers_of(entry: &Entry<RegionTypeConfig>) -> Option<&ChangePeersCommand> {
        match &entry.payload {
            EntryPayload::Normal(RegionCommand {
                format_version,
                admin: Some(AdminCommand::ChangePeers(change)),
                ..
            }) if format_supported(*format_version) => Some(change),
            _ => None,
        }
    }

    /// Applies a peer change entry: the new descriptor and the applied
    /// state land in one synced batch, and only then does the shared
    /// descriptor (what requests are admitted against) move.
    fn apply_change_peers(
        &mut self,
        log_id: LogId<StoreId>,
        change: &ChangePeersCommand,
    ) -> StorageResult<RegionResponse> {
        self.applied.last_applied = Some(log_id);
        let current = self.descriptor.get();
        let voters = self
            .applied
            .membership
            .membership()
            .get_joint_config()
            .clone();
        let decision = decide_apply(&current, change, &voters);
        let mut batch = WriteBatch::default();
        if let ApplyDecision::Change { region } = &decision {
            batch.put_cf(
                cf(&self.db, CF_REGION_META),
                keys::region_meta_key(self.region_id),
                keys::encode_descriptor(region),
            );
        }
        self.flush(batch, true)?;
        if let ApplyDecision::Change { region } = &decision {
            self.descriptor.set(region.clone());
            tracing::info!(
                region_id = self.region_id,
                index = log_id.index,
                conf_ver = region.epoch.unwrap_or_default().conf_ver,
                peers = ?region.peers.iter().map(|peer| peer.store_id).collect::<Vec<_>>(),
                "peer change applied"
            );
        }
        Ok(RegionResponse {
            change_peers: Some(decision.outcome()),
            ..Default::default()
        })
    }

    /// The merge target this frozen region refuses `entry` for: every
    /// command but a PrepareMerge, which decides for itself (the same
    /// target again is answered, not refused). Blank and membership
    /// entries are raft's own and apply as usual.
    fn frozen_refusal(&self, entry: &Entry<RegionTypeConfig>) -> Option<u64> {
        let state = self.descriptor.merge_state()?;
        match &entry.payload {
            EntryPayload::Normal(_) if Self::prepare_merge_of(entry).is_some() => None,
            EntryPayload::Normal(_) => Some(state.target_region_id),
            EntryPayload::Blank | EntryPayload::Membership(_) => None,
        }
    }

    fn prepare_merge_of(entry: &Entry<RegionTypeConfig>) -> Option<&PrepareMergeCommand> {
        match &entry.payload {
            EntryPayload::Normal(RegionCommand {
                format_version,
                admin: Some(AdminCommand::PrepareMerge(prepare)),
                ..
            }) if format_supported(*format_version) => Some(prepare),
            _ => None,
        }
    }

    fn commit_merge_of(entry: &Entry<RegionTypeConfig>) -> Option<&CommitMergeCommand> {
        match &entry.payload {
            EntryPayload::Normal(RegionCommand {
                format_version,
                admin: Some(AdminCommand::CommitMerge(commit)),
                ..
            }) if format_supported(*format_version) => Some(commit),
            _ => None,
        }
    }

    /// Applies a PrepareMerge entry: the merge state lands in the batch of
    /// the applied state; only then is the region frozen for requests.
    fn apply_prepare_merge(
        &mut self,
        log_id: LogId<StoreId>,
        prepare: &PrepareMergeCommand,
    ) -> StorageResult<RegionResponse> {
        self.applied.last_applied = Some(log_id);
        let current = self.descriptor.get();
        let frozen = self.descriptor.merge_state();
        let decision = decide_prepare(&current, frozen.as_ref(), prepare, log_id.index);
        let mut batch = WriteBatch::default();
        if let PrepareDecision::Freeze { state } = &decision {
            let bytes = serde_json::to_vec(state)
                .map_err(|e| StorageIOError::write_state_machine(AnyError::new(&e)))?;
            batch.put_cf(
                cf(&self.db, CF_RAFT_STATE),
                keys::state_key(self.region_id, StateKind::Merging),
                bytes,
            );
        }
        self.flush(batch, true)?;
        if let PrepareDecision::Freeze { state } = &decision {
            self.descriptor.set_merge_state(Some(state.clone()));
            tracing::info!(
                region_id = self.region_id,
                target_region_id = state.target_region_id,
                index = log_id.index,
                "region frozen for a merge"
            );
        }
        let merging = match &decision {
            PrepareDecision::Merging { target_region_id } => Some(*target_region_id),
            _ => None,
        };
        Ok(RegionResponse {
            merging,
            prepare_merge: decision.outcome(&current),
            ..Default::default()
        })
    }

    /// Waits until the local replica of the merge's source applied the
    /// PrepareMerge entry and is frozen for this region; its progress then,
    /// or why the merge can never apply (frozen for another target: every
    /// replica's source log says the same).
    async fn wait_for_source(
        &self,
        commit: &CommitMergeCommand,
    ) -> StorageResult<Result<SourceProgress, String>> {
        let source_id = commit.source.region_id;
        let started = std::time::Instant::now();
        let mut warned_at = started;
        loop {
            let progress = load_source_progress(&self.db, source_id)
                .map_err(|e| StorageIOError::read_state_machine(AnyError::error(e.to_string())))?;
            if let Some(frozen) = &progress.frozen {
                if frozen.target_region_id != self.region_id {
                    return Ok(Err(format!(
                        "region {source_id} is frozen for a merge into region {}",
                        frozen.target_region_id
                    )));
                }
                let needed = commit.prepare_index.max(frozen.prepare_index);
                if progress.applied_index.is_some_and(|index| index >= needed) {
                    return Ok(Ok(progress));
                }
            }
            if warned_at.elapsed().as_millis() as u64 >= MERGE_SOURCE_WARN_MS {
                warned_at = std::time::Instant::now();
                tracing::warn!(
                    region_id = self.region_id,
                    source_region_id = source_id,
                    prepare_index = commit.prepare_index,
                    source_applied_index = ?progress.applied_index,
                    source_frozen = progress.frozen.is_some(),
                    waited_ms = started.elapsed().as_millis() as u64,
                    "merge waits for the local source replica to apply its PrepareMerge"
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(MERGE_SOURCE_POLL_MS)).await;
        }
    }

    /// Stages everything a merge writes besides the target's applied state:
    /// the grown descriptor, and the source's descriptor, log and raft
    /// state replaced by its tombstone and merged record. The source's data
    /// stays: it is the target's now.
    fn stage_commit_merge(
        &mut self,
        merged: &RegionDescriptor,
        source: &RegionDescriptor,
        progress: &SourceProgress,
        batch: &mut WriteBatch,
    ) -> StorageResult<()> {
        batch.put_cf(
            cf(&self.db, CF_REGION_META),
            keys::region_meta_key(self.region_id),
            keys::encode_descriptor(merged),
        );
        self.stage_retire_source(source, batch)
            .map_err(|e| StorageIOError::write_state_machine(AnyError::new(&e)))?;
        self.applied.key_count = self.applied.key_count.saturating_add(progress.key_count);
        // The source's versions were collected up to its safe point: the
        // merged region refuses reads below either.
        self.applied.gc_safe_point = self.applied.gc_safe_point.max(progress.gc_safe_point);
        Ok(())
    }

    /// Stages the retirement of a source merged into this region: its
    /// descriptor, raft log and state replaced by its tombstone and merged
    /// record. Its data stays (it is this region's now).
    fn stage_retire_source(
        &self,
        source: &RegionDescriptor,
        batch: &mut WriteBatch,
    ) -> Result<(), serde_json::Error> {
        let source_id = source.region_id;
        let record = serde_json::to_vec(&MergedRecord {
            target_region_id: self.region_id,
            source: source.clone(),
        })?;
        batch.delete_cf(
            cf(&self.db, CF_REGION_META),
            keys::region_meta_key(source_id),
        );
        batch.delete_range_cf(
            cf(&self.db, CF_RAFT_LOG),
            keys::log_key(source_id, 0).to_vec(),
            keys::log_key_upper_bound(source_id),
        );
        let state = cf(&self.db, CF_RAFT_STATE);
        for kind in StateKind::ALL {
            batch.delete_cf(state, keys::state_key(source_id, kind));
        }
        batch.put_cf(
            state,
            keys::state_key(source_id, StateKind::Tombstone),
            keys::encode_descriptor(source),
        );
        batch.put_cf(state, keys::state_key(source_id, StateKind::Merged), record);
        Ok(())
    }

    /// The local regions a snapshot of this region at `installed` absorbs:
    /// sources frozen for a merge into this region whose range it now
    /// covers (the snapshot was taken after the CommitMerge this replica
    /// never applied). Others are left alone.
    fn sources_absorbed_by(
        &self,
        installed: &RegionDescriptor,
    ) -> Result<Vec<RegionDescriptor>, RaftstoreError> {
        let current = self.range();
        let wider = installed.start_key < current.start
            || (!current.end.is_empty()
                && (installed.end_key.is_empty() || installed.end_key > current.end));
        if !wider {
            return Ok(Vec::new());
        }
        let range = KeyRange {
            start: installed.start_key.clone(),
            end: installed.end_key.clone(),
        };
        let mut absorbed = Vec::new();
        for local in super::load_descriptors(&self.db)? {
            let inside = range.contains(&local.start_key)
                && (range.end.is_empty()
                    || (!local.end_key.is_empty() && local.end_key <= range.end));
            if local.region_id == self.region_id || !inside {
                continue;
            }
            let frozen_for_us = load_merge_state(&self.db, local.region_id)?
                .is_some_and(|state| state.target_region_id == self.region_id);
            if frozen_for_us {
                absorbed.push(local);
            }
        }
        Ok(absorbed)
    }

    /// Applies a CommitMerge entry on its own batch, after the local source
    /// replica is final (see `operation::merge`).
    async fn apply_commit_merge(
        &mut self,
        log_id: LogId<StoreId>,
        commit: &CommitMergeCommand,
    ) -> StorageResult<RegionResponse> {
        self.applied.last_applied = Some(log_id);
        let current = self.descriptor.get();
        let mut decision = decide_commit(&current, commit);
        let mut progress = None;
        if matches!(decision, CommitDecision::Merge { .. }) {
            match self.wait_for_source(commit).await? {
                Ok(source) => progress = Some(source),
                Err(hint) => decision = CommitDecision::Invalid { hint },
            }
        }
        let mut batch = WriteBatch::default();
        if let (CommitDecision::Merge { region }, Some(progress)) = (&decision, &progress) {
            self.stage_commit_merge(region, &commit.source, progress, &mut batch)?;
        }
        // Synced: the source's group stops right after.
        self.flush(batch, true)?;
        if let CommitDecision::Merge { region } = &decision {
            self.descriptor.set(region.clone());
            tracing::info!(
                region_id = self.region_id,
                source_region_id = commit.source.region_id,
                index = log_id.index,
                version = region.epoch.unwrap_or_default().version,
                "merge applied"
            );
            (self.on_merge)(region, &commit.source);
        }
        Ok(RegionResponse {
            commit_merge: Some(decision.outcome()),
            ..Default::default()
        })
    }

    fn load_descriptor(&self, region_id: RegionId) -> StorageResult<Option<RegionDescriptor>> {
        let bytes = self
            .db
            .get_cf(
                cf(&self.db, CF_REGION_META),
                keys::region_meta_key(region_id),
            )
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        keys::decode_descriptor(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read_state_machine(AnyError::error(e.to_string())).into())
    }

    /// Live keys in `range` (read from disk: callers flush staged writes
    /// first).
    fn count_keys(&self, range: &KeyRange) -> StorageResult<u64> {
        mvcc::count_live_keys(&self.db, range)
            .map_err(|e| StorageIOError::read_state_machine(AnyError::error(e.to_string())).into())
    }

    /// The new region's membership: its peers as voters, with the node
    /// records the parent's membership holds for those stores (identical on
    /// every replica, unlike a local address book).
    fn child_membership(&self, right: &RegionDescriptor) -> Membership<StoreId, BasicNode> {
        let parent = self.applied.membership.membership();
        let voters: BTreeSet<StoreId> = right.peers.iter().map(|peer| peer.store_id).collect();
        let nodes: BTreeMap<StoreId, BasicNode> = voters
            .iter()
            .map(|store_id| {
                let node = parent.get_node(store_id).cloned().unwrap_or_default();
                (*store_id, node)
            })
            .collect();
        Membership::new(vec![voters], nodes)
    }

    /// Stages everything a split writes besides the parent's applied state.
    fn stage_split(
        &mut self,
        left: &RegionDescriptor,
        right: &RegionDescriptor,
        batch: &mut WriteBatch,
    ) -> StorageResult<()> {
        let write_error = |e: String| StorageIOError::write_state_machine(AnyError::error(e));
        let right_range = KeyRange {
            start: right.start_key.clone(),
            end: right.end_key.clone(),
        };
        let right_keys = self.count_keys(&right_range)?;
        let meta = cf(&self.db, CF_REGION_META);
        batch.put_cf(
            meta,
            keys::region_meta_key(left.region_id),
            keys::encode_descriptor(left),
        );
        batch.put_cf(
            meta,
            keys::region_meta_key(right.region_id),
            keys::encode_descriptor(right),
        );
        let first_entry = Entry::<RegionTypeConfig> {
            log_id: initial_log_id(),
            payload: EntryPayload::Membership(self.child_membership(right)),
        };
        let entry_bytes =
            serde_json::to_vec(&first_entry).map_err(|e| write_error(e.to_string()))?;
        batch.put_cf(
            cf(&self.db, CF_RAFT_LOG),
            keys::log_key(right.region_id, initial_log_id().index),
            entry_bytes,
        );
        let child_applied = AppliedState {
            last_applied: None,
            membership: StoredMembership::default(),
            key_count: right_keys,
            // The child's versions were collected up to the parent's safe
            // point: it refuses the same reads.
            gc_safe_point: self.applied.gc_safe_point,
        };
        let applied_bytes =
            serde_json::to_vec(&child_applied).map_err(|e| write_error(e.to_string()))?;
        batch.put_cf(
            cf(&self.db, CF_RAFT_STATE),
            keys::state_key(right.region_id, StateKind::Applied),
            applied_bytes,
        );
        self.applied.key_count = self.applied.key_count.saturating_sub(right_keys);
        Ok(())
    }

    /// Applies a split entry on its own batch (everything before it is on
    /// disk already, so key counts read from disk are exact).
    fn apply_split(
        &mut self,
        log_id: LogId<StoreId>,
        split: &SplitCommand,
    ) -> StorageResult<RegionResponse> {
        self.applied.last_applied = Some(log_id);
        let current = self.descriptor.get();
        let existing = self.load_descriptor(split.new_region_id)?;
        let decision = decide_split(&current, split, existing.as_ref());
        let mut batch = WriteBatch::default();
        if let SplitDecision::Split { left, right } = &decision {
            self.stage_split(left, right, &mut batch)?;
        }
        // Synced: the new region's group starts right after.
        self.flush(batch, true)?;
        if let SplitDecision::Split { left, right } = &decision {
            self.descriptor.set(left.clone());
            tracing::info!(
                region_id = self.region_id,
                new_region_id = right.region_id,
                index = log_id.index,
                "split applied"
            );
            (self.on_split)(left, right);
        }
        Ok(RegionResponse {
            split: Some(decision.outcome()),
            ..Default::default()
        })
    }

    /// Every lock and write record of the region's range, in key order.
    fn read_range(&self) -> Result<(Pairs, Pairs), rocksdb::Error> {
        let range = self.range();
        let read = |family: &'static str, options: ReadOptions| -> Result<Pairs, rocksdb::Error> {
            let mut pairs = Vec::new();
            for item in self
                .db
                .iterator_cf_opt(cf(&self.db, family), options, IteratorMode::Start)
            {
                let (key, value) = item?;
                pairs.push((key.to_vec(), value.to_vec()));
            }
            Ok(pairs)
        };
        let locks = read(CF_LOCK, range.lock_read_options())?;
        let writes = read(CF_WRITE, range.write_read_options())?;
        Ok((locks, writes))
    }

    fn snapshot_meta(header: &SnapshotHeader) -> SnapshotMeta<StoreId, BasicNode> {
        let snapshot_id = match header.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                header.region_id, log_id.leader_id.term, log_id.index
            ),
            None => format!("{}-empty", header.region_id),
        };
        SnapshotMeta {
            last_log_id: header.last_applied,
            last_membership: header.membership.clone(),
            snapshot_id,
        }
    }
}

pub struct RegionSnapshotBuilder {
    db: Arc<DB>,
    /// The state to snapshot, or why it could not be read.
    snapshot: Result<RegionSnapshot, String>,
}

impl RaftSnapshotBuilder<RegionTypeConfig> for RegionSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<RegionTypeConfig>> {
        let snapshot = self
            .snapshot
            .as_ref()
            .map_err(|hint| StorageIOError::read_state_machine(AnyError::error(hint)))?;
        let bytes = snapshot::encode(snapshot);
        let meta = RegionStateMachine::snapshot_meta(&snapshot.header);
        self.db
            .put_cf_opt(
                cf(&self.db, CF_RAFT_STATE),
                keys::state_key(snapshot.header.region_id, StateKind::Snapshot),
                &bytes,
                &synced(),
            )
            .map_err(|e| {
                StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
            })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<RegionTypeConfig> for RegionStateMachine {
    type SnapshotBuilder = RegionSnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<AppliedLogAndMembership> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<RegionResponse>>
    where
        I: IntoIterator<Item = Entry<RegionTypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            if let Some(target_region_id) = self.frozen_refusal(&entry) {
                // Frozen for a merge: only the applied index moves.
                self.applied.last_applied = Some(entry.log_id);
                responses.push(RegionResponse {
                    merging: Some(target_region_id),
                    ..Default::default()
                });
                self.flush(WriteBatch::default(), false)?;
                continue;
            }
            if let Some(prepare) = Self::prepare_merge_of(&entry) {
                let prepare = prepare.clone();
                responses.push(self.apply_prepare_merge(entry.log_id, &prepare)?);
                continue;
            }
            if let Some(commit) = Self::commit_merge_of(&entry) {
                let commit = commit.clone();
                responses.push(self.apply_commit_merge(entry.log_id, &commit).await?);
                continue;
            }
            if let Some(split) = Self::split_of(&entry) {
                let split = split.clone();
                responses.push(self.apply_split(entry.log_id, &split)?);
                continue;
            }
            if let Some(change) = Self::change_peers_of(&entry) {
                let change = change.clone();
                responses.push(self.apply_change_peers(entry.log_id, &change)?);
                continue;
            }
            let mut batch = WriteBatch::default();
            responses.push(self.apply_entry(entry, &mut batch)?);
            self.flush(batch, false)?;
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The pairs are read now, while apply is paused, so the snapshot is
        // exactly the state at `last_applied` even if building runs later.
        // openraft gives this method no error path: a read failure is carried
        // to build_snapshot, which reports it.
        let descriptor = self.descriptor.get();
        let snapshot = self
            .read_range()
            .map(|(locks, writes)| RegionSnapshot {
                header: SnapshotHeader {
                    region_id: self.region_id,
                    last_applied: self.applied.last_applied,
                    membership: self.applied.membership.clone(),
                    key_count: self.applied.key_count,
                    gc_safe_point: self.applied.gc_safe_point,
                    start_key: descriptor.start_key.clone(),
                    end_key: descriptor.end_key.clone(),
                    descriptor: Some(keys::encode_descriptor(&descriptor)),
                    merge: self.descriptor.merge_state(),
                },
                locks,
                writes,
            })
            .map_err(|error| {
                format!(
                    "region {}: reading data for a snapshot: {error}",
                    self.region_id
                )
            });
        RegionSnapshotBuilder {
            db: self.db.clone(),
            snapshot,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<StoreId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let read_error = |hint: String| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(hint))
        };
        let decoded = snapshot::decode(&bytes).map_err(|e| read_error(e.to_string()))?;
        if decoded.header.region_id != self.region_id {
            return Err(read_error(format!(
                "snapshot of region {} offered to region {}",
                decoded.header.region_id, self.region_id
            ))
            .into());
        }
        let write_error = |e: rocksdb::Error| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
        };
        // The snapshot's region may be narrower than ours (it was taken
        // after a split this replica never applied): it then replaces our
        // descriptor, and only its range is cleared.
        let installed = match &decoded.header.descriptor {
            None => None,
            Some(bytes) => {
                Some(keys::decode_descriptor(bytes).map_err(|e| read_error(e.to_string()))?)
            }
        };
        let range = match &installed {
            Some(descriptor) => KeyRange {
                start: descriptor.start_key.clone(),
                end: descriptor.end_key.clone(),
            },
            None => self.range(),
        };
        let absorbed = match &installed {
            Some(descriptor) => self
                .sources_absorbed_by(descriptor)
                .map_err(|e| read_error(e.to_string()))?,
            None => Vec::new(),
        };
        let mut batch = WriteBatch::default();
        super::stage_clear_data_range(&self.db, &range, &mut batch).map_err(write_error)?;
        for source in &absorbed {
            self.stage_retire_source(source, &mut batch)
                .map_err(|e| read_error(format!("encoding a merged record: {e}")))?;
        }
        if let Some(descriptor) = &installed {
            batch.put_cf(
                cf(&self.db, CF_REGION_META),
                keys::region_meta_key(self.region_id),
                keys::encode_descriptor(descriptor),
            );
        }
        for (family, pairs) in [(CF_LOCK, &decoded.locks), (CF_WRITE, &decoded.writes)] {
            let handle = cf(&self.db, family);
            for (key, value) in pairs {
                batch.put_cf(handle, key, value);
            }
        }
        let key_count = mvcc::count_live_pairs(decoded.writes.iter().map(|(k, v)| Ok((k, v))))
            .map_err(|e| read_error(e.to_string()))?;
        self.applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            key_count,
            // The snapshot's data was collected up to its safe point.
            gc_safe_point: decoded.header.gc_safe_point,
        };
        self.stage_applied_state(&mut batch)?;
        batch.put_cf(
            cf(&self.db, CF_RAFT_STATE),
            keys::state_key(self.region_id, StateKind::Snapshot),
            &bytes,
        );
        // A snapshot taken after the PrepareMerge entry freezes this
        // replica too (one taken before cannot unfreeze one: snapshots only
        // move a replica forward, past the entry that froze it).
        let merging_key = keys::state_key(self.region_id, StateKind::Merging);
        match &decoded.header.merge {
            Some(state) => {
                let state_bytes = serde_json::to_vec(state)
                    .map_err(|e| read_error(format!("encoding the merge state: {e}")))?;
                batch.put_cf(cf(&self.db, CF_RAFT_STATE), merging_key, state_bytes);
            }
            None => batch.delete_cf(cf(&self.db, CF_RAFT_STATE), merging_key),
        }
        self.db.write_opt(batch, &synced()).map_err(write_error)?;
        self.key_count
            .store(self.applied.key_count, Ordering::Relaxed);
        self.descriptor
            .set_merge_state(decoded.header.merge.clone());
        if let Some(descriptor) = installed {
            self.descriptor.set(descriptor.clone());
            for source in &absorbed {
                tracing::info!(
                    region_id = self.region_id,
                    source_region_id = source.region_id,
                    "a snapshot taken after a merge absorbed the local source"
                );
                (self.on_merge)(&descriptor, source);
            }
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<RegionTypeConfig>>> {
        let bytes = self
            .db
            .get_cf(
                cf(&self.db, CF_RAFT_STATE),
                keys::state_key(self.region_id, StateKind::Snapshot),
            )
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let decoded = snapshot::decode(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(Some(Snapshot {
            meta: Self::snapshot_meta(&decoded.header),
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
