//! The applied state of a root peer: [`crate::apply`] driven by openraft,
//! persisted in RocksDB atomically with the events it accepted.
//!
//! **Invariant:** an apply batch is written without syncing the write-ahead
//! log: every entry it applies is already synced in this peer's raft log
//! (the same RocksDB; see `log_store`), and the image records the last log
//! id it covers, so a crash that loses unsynced batches only rewinds
//! `last_applied`, and openraft applies those entries again — to the same
//! state and the same event records, because apply is deterministic. A sync
//! here would double the fsyncs of every proposal on the leader. Installing
//! a snapshot is synced: the log it replaces may be purged right after.

use std::io::Cursor as IoCursor;
use std::sync::Arc;

use arbor_proto::{RootCommand, RootEventRecord, RootState};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use prost::Message;
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cf;
use super::keys::*;
use crate::apply::{apply_command, describe_event};
use crate::types::{RootPeerId, RootResponse, RootTypeConfig};

type StorageResult<T> = Result<T, StorageError<RootPeerId>>;

/// What is persisted after every apply batch, and what a snapshot carries:
/// the whole applied state (root's state is small by design).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedImage {
    last_applied: Option<LogId<RootPeerId>>,
    membership: StoredMembership<RootPeerId, BasicNode>,
    /// prost-encoded [`RootState`].
    state: Vec<u8>,
}

pub struct RootStateMachine {
    db: Arc<DB>,
    state: RootState,
    last_applied: Option<LogId<RootPeerId>>,
    membership: StoredMembership<RootPeerId, BasicNode>,
    publisher: watch::Sender<RootState>,
}

impl RootStateMachine {
    /// Loads the applied state from disk (empty on a new peer) and returns the
    /// state machine plus a receiver that sees every applied state.
    pub fn open(db: Arc<DB>) -> Result<(Self, watch::Receiver<RootState>), crate::RootError> {
        let image = match db.get_cf(cf(&db, CF_STATE), STATE_APPLIED) {
            Ok(None) => AppliedImage::default(),
            Ok(Some(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|e| crate::RootError::Corrupt {
                    context: "applied state",
                    hint: e.to_string(),
                })?
            }
            Err(source) => {
                return Err(crate::RootError::Storage {
                    path: db.path().display().to_string(),
                    source,
                })
            }
        };
        let state =
            RootState::decode(image.state.as_slice()).map_err(|e| crate::RootError::Corrupt {
                context: "applied root state",
                hint: e.to_string(),
            })?;
        let (publisher, receiver) = watch::channel(state.clone());
        Ok((
            Self {
                db,
                state,
                last_applied: image.last_applied,
                membership: image.membership,
                publisher,
            },
            receiver,
        ))
    }

    fn image(&self) -> AppliedImage {
        AppliedImage {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.encode_to_vec(),
        }
    }

    fn apply_one(&mut self, entry: Entry<RootTypeConfig>, batch: &mut WriteBatch) -> RootResponse {
        let cursor = entry.log_id.index;
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => {
                self.state.cursor = cursor;
                RootResponse {
                    accepted: true,
                    ..Default::default()
                }
            }
            EntryPayload::Membership(membership) => {
                self.state.cursor = cursor;
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                RootResponse {
                    accepted: true,
                    ..Default::default()
                }
            }
            EntryPayload::Normal(request) => {
                let command = match RootCommand::decode(request.command.as_slice()) {
                    Ok(command) => command,
                    Err(error) => {
                        self.state.cursor = cursor;
                        return RootResponse {
                            accepted: false,
                            rejection_code: arbor_proto::RejectionCode::Malformed as i32,
                            rejection_detail: format!("undecodable command: {error}"),
                        };
                    }
                };
                match apply_command(&mut self.state, &command, cursor) {
                    Ok(()) => {
                        let event = command.event.unwrap_or_default();
                        let (kind, detail) = describe_event(&event);
                        let record = RootEventRecord {
                            cursor,
                            stamp_ms: self.state.last_stamp_ms,
                            kind: kind.to_string(),
                            detail,
                        };
                        batch.put_cf(
                            cf(&self.db, CF_EVENTS),
                            index_key(cursor),
                            record.encode_to_vec(),
                        );
                        RootResponse {
                            accepted: true,
                            ..Default::default()
                        }
                    }
                    Err(rejection) => RootResponse {
                        accepted: false,
                        rejection_code: rejection.code() as i32,
                        rejection_detail: rejection.to_string(),
                    },
                }
            }
        }
    }

    fn persist(&self, batch: WriteBatch, snapshot: Option<&[u8]>) -> StorageResult<()> {
        self.persist_with_events_from(batch, snapshot, None)
    }

    fn persist_with_events_from(
        &self,
        mut batch: WriteBatch,
        snapshot: Option<&[u8]>,
        events_from: Option<u64>,
    ) -> StorageResult<()> {
        let image = serde_json::to_vec(&self.image())
            .map_err(|e| StorageIOError::write_state_machine(AnyError::new(&e)))?;
        batch.put_cf(cf(&self.db, CF_STATE), STATE_APPLIED, image);
        if let Some(snapshot) = snapshot {
            batch.put_cf(cf(&self.db, CF_STATE), STATE_SNAPSHOT, snapshot);
        }
        let trimmed_below = self.state.cursor.saturating_sub(EVENTS_RETAINED_MAX);
        if trimmed_below > 0 {
            batch.delete_range_cf(
                cf(&self.db, CF_EVENTS),
                index_key(0),
                index_key(trimmed_below),
            );
        }
        let complete_from = events_from.unwrap_or(0).max(trimmed_below);
        if complete_from > events_complete_from(&self.db).unwrap_or(0) {
            batch.put_cf(
                cf(&self.db, CF_STATE),
                STATE_EVENTS_FROM,
                index_key(complete_from),
            );
        }
        let mut options = WriteOptions::default();
        options.set_sync(snapshot.is_some());
        self.db
            .write_opt(batch, &options)
            .map_err(|e| StorageIOError::write_state_machine(AnyError::new(&e)).into())
    }
}

fn snapshot_meta(image: &AppliedImage) -> SnapshotMeta<RootPeerId, BasicNode> {
    let snapshot_id = match image.last_applied {
        Some(log_id) => format!("{}-{}", log_id.leader_id.term, log_id.index),
        None => "empty".to_string(),
    };
    SnapshotMeta {
        last_log_id: image.last_applied,
        last_membership: image.membership.clone(),
        snapshot_id,
    }
}

pub struct RootSnapshotBuilder {
    db: Arc<DB>,
    image: AppliedImage,
}

impl RaftSnapshotBuilder<RootTypeConfig> for RootSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<RootTypeConfig>> {
        let bytes = serde_json::to_vec(&self.image)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        self.db
            .put_cf(cf(&self.db, CF_STATE), STATE_SNAPSHOT, &bytes)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        Ok(Snapshot {
            meta: snapshot_meta(&self.image),
            snapshot: Box::new(IoCursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<RootTypeConfig> for RootStateMachine {
    type SnapshotBuilder = RootSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<RootPeerId>>,
        StoredMembership<RootPeerId, BasicNode>,
    )> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<RootResponse>>
    where
        I: IntoIterator<Item = Entry<RootTypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let responses: Vec<RootResponse> = entries
            .into_iter()
            .map(|entry| self.apply_one(entry, &mut batch))
            .collect();
        self.persist(batch, None)?;
        self.publisher.send_replace(self.state.clone());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        RootSnapshotBuilder {
            db: self.db.clone(),
            image: self.image(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<IoCursor<Vec<u8>>>> {
        Ok(Box::new(IoCursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RootPeerId, BasicNode>,
        snapshot: Box<IoCursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let read_error = |e: &dyn std::error::Error| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
        };
        let image: AppliedImage = serde_json::from_slice(&bytes).map_err(|e| read_error(&e))?;
        let state = RootState::decode(image.state.as_slice()).map_err(|e| read_error(&e))?;
        self.state = state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        // Events up to the snapshot never reached this peer one by one.
        let mut batch = WriteBatch::default();
        let after_snapshot = meta.last_log_id.map_or(0, |id| id.index + 1);
        batch.delete_range_cf(
            cf(&self.db, CF_EVENTS),
            index_key(0),
            index_key(after_snapshot),
        );
        self.persist_with_events_from(batch, Some(&bytes), Some(after_snapshot))?;
        self.publisher.send_replace(self.state.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<RootTypeConfig>>> {
        let bytes = self
            .db
            .get_cf(cf(&self.db, CF_STATE), STATE_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let image: AppliedImage = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(Some(Snapshot {
            meta: snapshot_meta(&image),
            snapshot: Box::new(IoCursor::new(bytes)),
        }))
    }
}

/// Reads retained events, newest first, with cursor <= `before` (0 = newest).
pub fn list_events(
    db: &DB,
    before: u64,
    limit: usize,
) -> Result<Vec<RootEventRecord>, crate::RootError> {
    let start = if before == 0 { u64::MAX } else { before };
    let mode = rocksdb::IteratorMode::From(&index_key(start), rocksdb::Direction::Reverse);
    let mut events = Vec::new();
    for item in db.iterator_cf(cf(db, CF_EVENTS), mode).take(limit) {
        let (_, value) = item.map_err(|source| crate::RootError::Storage {
            path: db.path().display().to_string(),
            source,
        })?;
        let record =
            RootEventRecord::decode(value.as_ref()).map_err(|e| crate::RootError::Corrupt {
                context: "root event record",
                hint: e.to_string(),
            })?;
        events.push(record);
    }
    Ok(events)
}

/// Retained events with `from <= cursor <= through`, oldest first, at most
/// `limit`. Also answers whether events before `from` may have been trimmed.
pub fn events_between(
    db: &DB,
    from: u64,
    through: u64,
    limit: usize,
) -> Result<Vec<RootEventRecord>, crate::RootError> {
    let mode = rocksdb::IteratorMode::From(&index_key(from), rocksdb::Direction::Forward);
    let mut events = Vec::new();
    for item in db.iterator_cf(cf(db, CF_EVENTS), mode) {
        if events.len() >= limit {
            break;
        }
        let (key, value) = item.map_err(|source| crate::RootError::Storage {
            path: db.path().display().to_string(),
            source,
        })?;
        if index_from_key(&key).is_none_or(|cursor| cursor > through) {
            break;
        }
        let record =
            RootEventRecord::decode(value.as_ref()).map_err(|e| crate::RootError::Corrupt {
                context: "root event record",
                hint: e.to_string(),
            })?;
        events.push(record);
    }
    Ok(events)
}

/// The cursor from which this peer holds every accepted event.
pub fn events_complete_from(db: &DB) -> Result<u64, crate::RootError> {
    let value = db
        .get_cf(cf(db, CF_STATE), STATE_EVENTS_FROM)
        .map_err(|source| crate::RootError::Storage {
            path: db.path().display().to_string(),
            source,
        })?;
    Ok(value.as_deref().and_then(index_from_key).unwrap_or(0))
}
