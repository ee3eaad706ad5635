//! The applied state of one region: its key range in the data column family,
//! plus the applied log id, membership and live key count.
//!
//! **Invariant:** the data a batch writes and the applied log id that covers
//! it land in one RocksDB write batch, so a restart never re-applies or loses
//! half an entry.

// openraft's StorageError is large; it is openraft's type and contract.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::snapshot::{self, RegionSnapshot, SnapshotHeader};
use super::{cf, synced};
use crate::command::{MutationKind, RegionCommand, RegionResponse, COMMAND_FORMAT_VERSION};
use crate::error::RaftstoreError;
use crate::keys::{self, StateKind, CF_DATA, CF_RAFT_STATE};
use crate::operation::apply::{decide, ApplyDecision};
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

    /// Read options confining an iterator over the data CF to this range.
    pub fn read_options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(keys::data_key(&self.start).to_vec());
        if !self.end.is_empty() {
            options.set_iterate_upper_bound(keys::data_key(&self.end).to_vec());
        }
        options
    }
}

/// What is persisted with every apply, under `StateKind::Applied`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<StoreId>>,
    membership: StoredMembership<StoreId, BasicNode>,
    key_count: u64,
}

pub struct RegionStateMachine {
    db: Arc<DB>,
    region_id: RegionId,
    range: KeyRange,
    applied: AppliedState,
    /// Live key count, shared with the peer for heartbeats.
    key_count: Arc<AtomicU64>,
}

fn storage_error(context: String) -> impl FnOnce(rocksdb::Error) -> RaftstoreError {
    move |source| RaftstoreError::Storage { context, source }
}

impl RegionStateMachine {
    /// Loads the applied state of `region_id` (empty for a new region).
    pub fn open(
        db: Arc<DB>,
        region_id: RegionId,
        range: KeyRange,
        key_count: Arc<AtomicU64>,
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
        Ok(Self {
            db,
            region_id,
            range,
            applied,
            key_count,
        })
    }

    fn present(&self, overlay: &HashMap<Vec<u8>, bool>, key: &[u8]) -> StorageResult<bool> {
        if let Some(present) = overlay.get(key) {
            return Ok(*present);
        }
        let value = self
            .db
            .get_pinned_cf(cf(&self.db, CF_DATA), keys::data_key(key))
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
        Ok(value.is_some())
    }

    /// Decides one command and stages its writes in `batch`; `overlay` holds
    /// key presence as changed by earlier entries of the same apply call.
    fn apply_command(
        &mut self,
        command: &RegionCommand,
        overlay: &mut HashMap<Vec<u8>, bool>,
        batch: &mut WriteBatch,
    ) -> StorageResult<RegionResponse> {
        if command.format_version != COMMAND_FORMAT_VERSION {
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
        let mut present_before = BTreeMap::new();
        for mutation in &command.mutations {
            let present = self.present(overlay, &mutation.key)?;
            present_before.insert(mutation.key.clone(), present);
        }
        match decide(&command.mutations, &present_before) {
            ApplyDecision::Reject { mutation_index } => Ok(RegionResponse {
                applied: false,
                failed_mutation: u32::try_from(mutation_index).unwrap_or(u32::MAX),
                existed: Vec::new(),
                unsupported_format: false,
            }),
            ApplyDecision::Apply {
                existed,
                key_count_delta,
            } => {
                let data = cf(&self.db, CF_DATA);
                for mutation in &command.mutations {
                    let key = keys::data_key(&mutation.key);
                    match mutation.kind {
                        MutationKind::Put => batch.put_cf(data, key, &mutation.value),
                        MutationKind::Delete => batch.delete_cf(data, key),
                    }
                    overlay.insert(mutation.key.clone(), mutation.kind == MutationKind::Put);
                }
                self.applied.key_count = self
                    .applied
                    .key_count
                    .saturating_add_signed(key_count_delta);
                Ok(RegionResponse {
                    applied: true,
                    failed_mutation: 0,
                    existed,
                    unsupported_format: false,
                })
            }
        }
    }

    fn apply_entry(
        &mut self,
        entry: Entry<RegionTypeConfig>,
        overlay: &mut HashMap<Vec<u8>, bool>,
        batch: &mut WriteBatch,
    ) -> StorageResult<RegionResponse> {
        self.applied.last_applied = Some(entry.log_id);
        let response = match entry.payload {
            EntryPayload::Blank => RegionResponse {
                applied: true,
                ..Default::default()
            },
            EntryPayload::Membership(membership) => {
                self.applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                RegionResponse {
                    applied: true,
                    ..Default::default()
                }
            }
            EntryPayload::Normal(command) => self.apply_command(&command, overlay, batch)?,
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

    /// Every pair of the region's range, in key order.
    fn read_range(&self) -> Result<Pairs, rocksdb::Error> {
        let mut pairs = Vec::new();
        let iter = self.db.iterator_cf_opt(
            cf(&self.db, CF_DATA),
            self.range.read_options(),
            IteratorMode::Start,
        );
        for item in iter {
            let (key, value) = item?;
            pairs.push((key.to_vec(), value.to_vec()));
        }
        Ok(pairs)
    }

    /// Stages deletion of every pair in the region's range.
    fn stage_clear_range(&self, batch: &mut WriteBatch) -> Result<(), rocksdb::Error> {
        let data = cf(&self.db, CF_DATA);
        let start = keys::data_key(&self.range.start).to_vec();
        if !self.range.end.is_empty() {
            batch.delete_range_cf(data, start, keys::data_key(&self.range.end).to_vec());
            return Ok(());
        }
        // No finite end: delete up to just past the last key present.
        let mut iter = self
            .db
            .iterator_cf_opt(data, self.range.read_options(), IteratorMode::End);
        if let Some(item) = iter.next() {
            let (last, _) = item?;
            let mut end = last.to_vec();
            end.push(0);
            batch.delete_range_cf(data, start, end);
        }
        Ok(())
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
        let mut batch = WriteBatch::default();
        let mut overlay = HashMap::new();
        let mut responses = Vec::new();
        for entry in entries {
            responses.push(self.apply_entry(entry, &mut overlay, &mut batch)?);
        }
        self.stage_applied_state(&mut batch)?;
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_state_machine(AnyError::new(&e)))?;
        self.key_count
            .store(self.applied.key_count, Ordering::Relaxed);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The pairs are read now, while apply is paused, so the snapshot is
        // exactly the state at `last_applied` even if building runs later.
        // openraft gives this method no error path: a read failure is carried
        // to build_snapshot, which reports it.
        let snapshot = self
            .read_range()
            .map(|pairs| RegionSnapshot {
                header: SnapshotHeader {
                    region_id: self.region_id,
                    last_applied: self.applied.last_applied,
                    membership: self.applied.membership.clone(),
                    key_count: pairs.len() as u64,
                    start_key: self.range.start.clone(),
                    end_key: self.range.end.clone(),
                },
                pairs,
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
        let mut batch = WriteBatch::default();
        self.stage_clear_range(&mut batch).map_err(write_error)?;
        let data = cf(&self.db, CF_DATA);
        for (key, value) in &decoded.pairs {
            batch.put_cf(data, keys::data_key(key), value);
        }
        self.applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            key_count: decoded.pairs.len() as u64,
        };
        self.stage_applied_state(&mut batch)?;
        batch.put_cf(
            cf(&self.db, CF_RAFT_STATE),
            keys::state_key(self.region_id, StateKind::Snapshot),
            &bytes,
        );
        self.db.write_opt(batch, &synced()).map_err(write_error)?;
        self.key_count
            .store(self.applied.key_count, Ordering::Relaxed);
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
