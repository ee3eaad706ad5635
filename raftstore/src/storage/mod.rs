//! A store's storage: one RocksDB holding the multi-version data (locks and
//! write records), raft logs, raft state and region descriptors of every
//! local region (layouts in [`crate::keys`]).
//!
//! **Invariant:** a region's log store and state machine only touch keys of
//! their own region (its log and state prefixes, its data range).
//!
//! **Invariant:** a store directory is opened only in the format this code
//! writes ([`keys::STORE_FORMAT_VERSION`], recorded at creation); an older
//! store is refused with the directory named, never converted in place.

pub mod gc;
pub mod log_store;
pub mod mvcc;
pub mod snapshot;
pub mod state_machine;

#[cfg(test)]
mod merge_tests;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use arbor_proto::RegionDescriptor;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

pub use log_store::RegionLogStore;
pub use state_machine::RegionStateMachine;

use crate::error::RaftstoreError;
use crate::keys::{self, StateKind};
use crate::types::RegionId;
use state_machine::KeyRange;

/// Opens (creating if missing) the RocksDB of one store, refusing a store
/// of another format.
pub fn open_db(path: &Path) -> Result<Arc<DB>, RaftstoreError> {
    std::fs::create_dir_all(path).map_err(|source| RaftstoreError::Io {
        context: format!("creating {}", path.display()),
        source,
    })?;
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // An existing store lists its column families; a fresh directory has
    // none to list.
    let existing = DB::list_cf(&options, path).unwrap_or_default();
    if existing.iter().any(|name| name == keys::CF_DATA_FORMAT_1) {
        return Err(incompatible(path, "1 (plain values, before MVCC)".into()));
    }
    let families = keys::COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    let db = DB::open_cf_descriptors(&options, path, families).map_err(|source| {
        RaftstoreError::Storage {
            context: format!("opening {}", path.display()),
            source,
        }
    })?;
    check_format(&db, path)?;
    Ok(Arc::new(db))
}

/// Opens a store's RocksDB read-only, beside the store process that has it
/// open (RocksDB allows this; the view is the data as of opening). For
/// tools and end-to-end tests that inspect versions; nothing is written.
pub fn open_read_only(path: &Path) -> Result<DB, RaftstoreError> {
    DB::open_cf_for_read_only(&Options::default(), path, keys::COLUMN_FAMILIES, false).map_err(
        |source| RaftstoreError::Storage {
            context: format!("opening {} read-only", path.display()),
            source,
        },
    )
}

fn incompatible(path: &Path, found: String) -> RaftstoreError {
    RaftstoreError::IncompatibleStoreFormat {
        data_dir: path.display().to_string(),
        found,
        expected: keys::STORE_FORMAT_VERSION,
    }
}

/// Records the format in a new store; refuses a store of another format
/// (or one holding regions but no format record: written before formats
/// were recorded).
fn check_format(db: &DB, path: &Path) -> Result<(), RaftstoreError> {
    let storage = |context: &str| {
        let context = format!("{context} in {}", path.display());
        move |source| RaftstoreError::Storage { context, source }
    };
    let stored = db
        .get(keys::STORE_FORMAT_KEY)
        .map_err(storage("reading the store format"))?;
    match stored {
        Some(bytes) => {
            let version = <[u8; 4]>::try_from(bytes.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| incompatible(path, format!("an unreadable record {bytes:?}")))?;
            if version != keys::STORE_FORMAT_VERSION {
                return Err(incompatible(path, version.to_string()));
            }
            Ok(())
        }
        None => {
            let has_regions = db
                .iterator_cf(cf(db, keys::CF_REGION_META), IteratorMode::Start)
                .next()
                .is_some();
            if has_regions {
                return Err(incompatible(path, "an unrecorded (older) format".into()));
            }
            db.put_opt(
                keys::STORE_FORMAT_KEY,
                keys::STORE_FORMAT_VERSION.to_be_bytes(),
                &synced(),
            )
            .map_err(storage("recording the store format"))
        }
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("every column family is created by open_db before any use")
}

pub(crate) fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

/// Persists a region descriptor (synced: the store must find the region
/// again after a restart).
pub fn save_descriptor(db: &DB, descriptor: &RegionDescriptor) -> Result<(), RaftstoreError> {
    db.put_cf_opt(
        cf(db, keys::CF_REGION_META),
        keys::region_meta_key(descriptor.region_id),
        keys::encode_descriptor(descriptor),
        &synced(),
    )
    .map_err(|source| RaftstoreError::Storage {
        context: format!("saving descriptor of region {}", descriptor.region_id),
        source,
    })
}

/// Every region descriptor this store holds, in region id order.
pub fn load_descriptors(db: &DB) -> Result<Vec<RegionDescriptor>, RaftstoreError> {
    let mut descriptors = Vec::new();
    for item in db.iterator_cf(cf(db, keys::CF_REGION_META), IteratorMode::Start) {
        let (key, value) = item.map_err(|source| RaftstoreError::Storage {
            context: "reading region descriptors".into(),
            source,
        })?;
        let region_id: RegionId =
            keys::decode_region_meta_key(&key).ok_or_else(|| RaftstoreError::Corrupt {
                context: "region meta key".into(),
                hint: format!("{key:?}"),
            })?;
        let descriptor = keys::decode_descriptor(&value).map_err(|e| RaftstoreError::Corrupt {
            context: format!("descriptor of region {region_id}"),
            hint: e.to_string(),
        })?;
        descriptors.push(descriptor);
    }
    Ok(descriptors)
}

/// Stages deletion of every lock and write record of user keys in `range`.
/// Both data families are keyed by user key and shared by every region of
/// the store, so a region's data is exactly this range of each.
pub(crate) fn stage_clear_data_range(
    db: &DB,
    range: &KeyRange,
    batch: &mut WriteBatch,
) -> Result<(), rocksdb::Error> {
    let (write_start, write_end) = keys::write_range_bounds(&range.start, &range.end);
    let lock_end = (!range.end.is_empty()).then(|| keys::lock_key(&range.end).to_vec());
    let families = [
        (
            keys::CF_LOCK,
            keys::lock_key(&range.start).to_vec(),
            lock_end,
            range.lock_read_options(),
        ),
        (
            keys::CF_WRITE,
            write_start,
            write_end,
            range.write_read_options(),
        ),
    ];
    for (family, start, end, options) in families {
        let handle = cf(db, family);
        if let Some(end) = end {
            batch.delete_range_cf(handle, start, end);
            continue;
        }
        // No finite end: delete up to just past the last key present.
        let mut iter = db.iterator_cf_opt(handle, options, IteratorMode::End);
        if let Some(item) = iter.next() {
            let (last, _) = item?;
            let mut end = last.to_vec();
            end.push(0);
            batch.delete_range_cf(handle, start, end);
        }
    }
    Ok(())
}

/// Deletes everything of `region_id`'s replica on this store — raft log,
/// raft state, descriptor and the data of `range` — and records
/// `tombstone` (the descriptor that no longer lists this store), all in one
/// synced batch, so a crash leaves either the whole replica or its
/// tombstone.
pub fn destroy_region(
    db: &DB,
    region_id: RegionId,
    range: &KeyRange,
    tombstone: &RegionDescriptor,
) -> Result<(), RaftstoreError> {
    let storage = |source| RaftstoreError::Storage {
        context: format!("destroying the replica of region {region_id}"),
        source,
    };
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(
        cf(db, keys::CF_RAFT_LOG),
        keys::log_key(region_id, 0).to_vec(),
        keys::log_key_upper_bound(region_id),
    );
    let state = cf(db, keys::CF_RAFT_STATE);
    for kind in StateKind::ALL {
        batch.delete_cf(state, keys::state_key(region_id, kind));
    }
    batch.put_cf(
        state,
        keys::state_key(region_id, StateKind::Tombstone),
        keys::encode_descriptor(tombstone),
    );
    batch.delete_cf(
        cf(db, keys::CF_REGION_META),
        keys::region_meta_key(region_id),
    );
    stage_clear_data_range(db, range, &mut batch).map_err(storage)?;
    db.write_opt(batch, &synced()).map_err(storage)
}

/// The tombstone of `region_id`'s replica on this store, if it was removed.
pub fn load_tombstone(
    db: &DB,
    region_id: RegionId,
) -> Result<Option<RegionDescriptor>, RaftstoreError> {
    let bytes = db
        .get_cf(
            cf(db, keys::CF_RAFT_STATE),
            keys::state_key(region_id, StateKind::Tombstone),
        )
        .map_err(|source| RaftstoreError::Storage {
            context: format!("reading the tombstone of region {region_id}"),
            source,
        })?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    keys::decode_descriptor(&bytes)
        .map(Some)
        .map_err(|e| RaftstoreError::Corrupt {
            context: format!("tombstone of region {region_id}"),
            hint: e.to_string(),
        })
}

/// Records the tombstone of a replica that is not (or no longer) here.
pub fn save_tombstone(db: &DB, tombstone: &RegionDescriptor) -> Result<(), RaftstoreError> {
    db.put_cf_opt(
        cf(db, keys::CF_RAFT_STATE),
        keys::state_key(tombstone.region_id, StateKind::Tombstone),
        keys::encode_descriptor(tombstone),
        &synced(),
    )
    .map_err(|source| RaftstoreError::Storage {
        context: format!("saving the tombstone of region {}", tombstone.region_id),
        source,
    })
}

/// Persists the descriptor of a replica opened anew and drops the
/// tombstone an earlier removal left (synced, like [`save_descriptor`]).
pub fn save_reopened_descriptor(
    db: &DB,
    descriptor: &RegionDescriptor,
) -> Result<(), RaftstoreError> {
    let mut batch = WriteBatch::default();
    batch.put_cf(
        cf(db, keys::CF_REGION_META),
        keys::region_meta_key(descriptor.region_id),
        keys::encode_descriptor(descriptor),
    );
    batch.delete_cf(
        cf(db, keys::CF_RAFT_STATE),
        keys::state_key(descriptor.region_id, StateKind::Tombstone),
    );
    db.write_opt(batch, &synced())
        .map_err(|source| RaftstoreError::Storage {
            context: format!(
                "saving the descriptor of reopened region {}",
                descriptor.region_id
            ),
            source,
        })
}

/// The record of `region_id`'s replica merged away on this store, if it
/// was (see `operation::merge`).
pub fn load_merged(
    db: &DB,
    region_id: RegionId,
) -> Result<Option<crate::operation::merge::MergedRecord>, RaftstoreError> {
    let bytes = db
        .get_cf(
            cf(db, keys::CF_RAFT_STATE),
            keys::state_key(region_id, StateKind::Merged),
        )
        .map_err(|source| RaftstoreError::Storage {
            context: format!("reading the merged record of region {region_id}"),
            source,
        })?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RaftstoreError::Corrupt {
            context: format!("merged record of region {region_id}"),
            hint: e.to_string(),
        })
}

/// Deletes what a merged-away source's group may still have written after
/// the merge's batch removed its state (a refusal's applied index, a vote,
/// appended entries) once that group stopped: its log and every raft state
/// but the tombstone and the merged record. Its data range belongs to the
/// target now and is not touched.
pub fn clear_merged_source(db: &DB, region_id: RegionId) -> Result<(), RaftstoreError> {
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(
        cf(db, keys::CF_RAFT_LOG),
        keys::log_key(region_id, 0).to_vec(),
        keys::log_key_upper_bound(region_id),
    );
    let state = cf(db, keys::CF_RAFT_STATE);
    for kind in StateKind::ALL {
        if !matches!(kind, StateKind::Tombstone | StateKind::Merged) {
            batch.delete_cf(state, keys::state_key(region_id, kind));
        }
    }
    batch.delete_cf(
        cf(db, keys::CF_REGION_META),
        keys::region_meta_key(region_id),
    );
    db.write_opt(batch, &synced())
        .map_err(|source| RaftstoreError::Storage {
            context: format!("clearing the state of merged region {region_id}"),
            source,
        })
}
