//! Root's storage: one RocksDB per peer holding the raft log, the raft
//! metadata, the applied state and the retained events.

pub mod keys;
pub mod log_store;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub use log_store::RootLogStore;
pub use state_machine::RootStateMachine;

use crate::error::RootError;

/// Memtable memory of a root peer across all its column families: root
/// writes about a kilobyte per event, and RocksDB's default (64 MiB per
/// column family, several families) would let a busy peer's memory climb
/// by hundreds of MiB before the first flush.
pub const ROOT_MEMTABLES_BYTES_MAX: usize = 16 << 20;

/// Opens (creating if missing) the RocksDB of one root peer.
pub fn open_db(path: &Path) -> Result<Arc<DB>, RootError> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_db_write_buffer_size(ROOT_MEMTABLES_BYTES_MAX);
    let families = keys::COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    let db =
        DB::open_cf_descriptors(&options, path, families).map_err(|source| RootError::Storage {
            path: path.display().to_string(),
            source,
        })?;
    Ok(Arc::new(db))
}

fn cf<'a>(db: &'a DB, name: &'static str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("column family is created by open_db before any use")
}

fn io_error(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

#[cfg(test)]
mod conformance {
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::*;
    use crate::types::{RootPeerId, RootTypeConfig};

    struct TempRootStore;

    impl StoreBuilder<RootTypeConfig, RootLogStore, RootStateMachine, tempfile::TempDir>
        for TempRootStore
    {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, RootLogStore, RootStateMachine), StorageError<RootPeerId>>
        {
            let dir = tempfile::tempdir().expect("temp dir for a storage test");
            let db = open_db(dir.path()).expect("open a fresh RocksDB");
            let (state_machine, _) =
                RootStateMachine::open(db.clone()).expect("empty state machine");
            Ok((dir, RootLogStore::new(db), state_machine))
        }
    }

    /// openraft's own storage conformance suite, against our RocksDB stores.
    #[test]
    fn root_storage_passes_openraft_conformance_suite() {
        Suite::test_all(TempRootStore).expect("openraft storage suite");
    }
}
