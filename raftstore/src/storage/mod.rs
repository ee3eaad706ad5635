//! A store's storage: one RocksDB holding the data, raft logs, raft state and
//! region descriptors of every local region (layouts in [`crate::keys`]).
//!
//! **Invariant:** a region's log store and state machine only touch keys of
//! their own region (its log and state prefixes, its data range).

pub mod log_store;
pub mod snapshot;
pub mod state_machine;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use arbor_proto::RegionDescriptor;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteOptions, DB};

pub use log_store::RegionLogStore;
pub use state_machine::RegionStateMachine;

use crate::error::RaftstoreError;
use crate::keys;
use crate::types::RegionId;

/// Opens (creating if missing) the RocksDB of one store.
pub fn open_db(path: &Path) -> Result<Arc<DB>, RaftstoreError> {
    std::fs::create_dir_all(path).map_err(|source| RaftstoreError::Io {
        context: format!("creating {}", path.display()),
        source,
    })?;
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let families = keys::COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    let db = DB::open_cf_descriptors(&options, path, families).map_err(|source| {
        RaftstoreError::Storage {
            context: format!("opening {}", path.display()),
            source,
        }
    })?;
    Ok(Arc::new(db))
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
