//! The one error type of the crate, and its single mapping to gRPC status.
//!
//! Region errors a store answers (`NotLeader`, `EpochNotMatch`, ...) are not
//! here: they travel inside the response (`arbor_proto::RegionError`) and the
//! region client retries them. This enum is what is left when retrying is
//! over, plus local failures (disk, bind, bad input), plus the transaction
//! outcomes a caller must act on (`WriteConflict`, `TxnAborted`,
//! `LockWaitTimeout`: retry the transaction; `TxnTooLarge`,
//! `TxnBytesTooLarge`: make it smaller).

use crate::types::RegionId;

#[derive(Debug, thiserror::Error)]
pub enum RaftstoreError {
    #[error("store storage ({context}): {source}")]
    Storage {
        context: String,
        #[source]
        source: rocksdb::Error,
    },
    #[error("store file system ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store data corrupt ({context}): {hint}")]
    Corrupt { context: String, hint: String },
    #[error("bad request: {hint}")]
    InvalidArgument { hint: String },
    #[error("region {region_id} is not on this store")]
    RegionNotFound { region_id: RegionId },
    #[error("raft message for store {addressed} reached store {actual} (the address now belongs to another store); refused")]
    WrongStore { addressed: u64, actual: u64 },
    #[error("region {region_id} unavailable after {attempts} attempts: {last_error}")]
    RegionUnavailable {
        region_id: RegionId,
        attempts: u32,
        last_error: String,
    },
    #[error("no route for key {key:?} after {attempts} attempts: {last_error}")]
    RouteUnavailable {
        key: Vec<u8>,
        attempts: u32,
        last_error: String,
    },
    #[error("no coordinator reachable at {addresses:?}: {last_error}")]
    NoCoordinatorReachable {
        addresses: Vec<String>,
        last_error: String,
    },
    #[error("raft of region {region_id}: {hint}")]
    Raft { region_id: RegionId, hint: String },
    #[error("could not bind {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("transport to {address}: {hint}")]
    Transport { address: String, hint: String },
    #[error("the store in {data_dir} has format {found}, this version reads only format {expected}; remove the directory {data_dir} to start this store empty (its regions are re-replicated from the other stores)")]
    IncompatibleStoreFormat {
        data_dir: String,
        found: String,
        expected: u32,
    },
    #[error("write conflict on key {key:?}: transaction {start_ts} lost to a write committed at {conflict_commit_ts}; retry the transaction")]
    WriteConflict {
        key: Vec<u8>,
        start_ts: u64,
        conflict_commit_ts: u64,
    },
    #[error("key {key:?} stayed locked by transaction {lock_start_ts} past the lock wait deadline; retry the transaction")]
    LockWaitTimeout { key: Vec<u8>, lock_start_ts: u64 },
    #[error("transaction {start_ts} was aborted: {reason}; retry the transaction")]
    TxnAborted { start_ts: u64, reason: String },
    #[error("transaction of {mutations} mutations exceeds the limit of {limit}; split it")]
    TxnTooLarge { mutations: usize, limit: usize },
    #[error("transaction of {bytes} bytes exceeds the limit of {limit} bytes; split it")]
    TxnBytesTooLarge { bytes: usize, limit: usize },
    #[error("snapshot too old: read at {read_ts} is below the GC safe point {safe_point}; versions it needs may be collected, start a new transaction")]
    SnapshotTooOld { read_ts: u64, safe_point: u64 },
}

impl RaftstoreError {
    /// The single place a raftstore error becomes a gRPC status.
    pub fn to_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            RaftstoreError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            RaftstoreError::RegionNotFound { .. } => tonic::Status::not_found(message),
            RaftstoreError::RegionUnavailable { .. }
            | RaftstoreError::RouteUnavailable { .. }
            | RaftstoreError::NoCoordinatorReachable { .. }
            | RaftstoreError::Transport { .. } => tonic::Status::unavailable(message),
            RaftstoreError::Corrupt { .. } => tonic::Status::data_loss(message),
            RaftstoreError::Storage { .. }
            | RaftstoreError::Io { .. }
            | RaftstoreError::Raft { .. }
            | RaftstoreError::Bind { .. } => tonic::Status::internal(message),
            RaftstoreError::IncompatibleStoreFormat { .. }
            | RaftstoreError::WrongStore { .. }
            | RaftstoreError::SnapshotTooOld { .. } => tonic::Status::failed_precondition(message),
            RaftstoreError::WriteConflict { .. }
            | RaftstoreError::LockWaitTimeout { .. }
            | RaftstoreError::TxnAborted { .. } => tonic::Status::aborted(message),
            RaftstoreError::TxnTooLarge { .. } | RaftstoreError::TxnBytesTooLarge { .. } => {
                tonic::Status::resource_exhausted(message)
            }
        }
    }
}

impl From<RaftstoreError> for tonic::Status {
    fn from(error: RaftstoreError) -> Self {
        error.to_status()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn every_variant() -> Vec<(RaftstoreError, Code)> {
        let rocksdb_error = || {
            // A real rocksdb::Error: opening a DB under a path that is a file.
            let file = tempfile::NamedTempFile::new().expect("temp file");
            rocksdb::DB::open_default(file.path().join("db"))
                .expect_err("opening a DB below a plain file fails")
        };
        let io_error = || std::io::Error::other("disk on fire");
        vec![
            (
                RaftstoreError::Storage {
                    context: "append".into(),
                    source: rocksdb_error(),
                },
                Code::Internal,
            ),
            (
                RaftstoreError::Io {
                    context: "create dir".into(),
                    source: io_error(),
                },
                Code::Internal,
            ),
            (
                RaftstoreError::Corrupt {
                    context: "descriptor".into(),
                    hint: "bad".into(),
                },
                Code::DataLoss,
            ),
            (
                RaftstoreError::InvalidArgument {
                    hint: "key too long".into(),
                },
                Code::InvalidArgument,
            ),
            (
                RaftstoreError::WrongStore {
                    addressed: 1,
                    actual: 4,
                },
                Code::FailedPrecondition,
            ),
            (
                RaftstoreError::RegionNotFound { region_id: 4 },
                Code::NotFound,
            ),
            (
                RaftstoreError::RegionUnavailable {
                    region_id: 4,
                    attempts: 3,
                    last_error: "no leader".into(),
                },
                Code::Unavailable,
            ),
            (
                RaftstoreError::RouteUnavailable {
                    key: b"k".to_vec(),
                    attempts: 2,
                    last_error: "no route".into(),
                },
                Code::Unavailable,
            ),
            (
                RaftstoreError::NoCoordinatorReachable {
                    addresses: vec!["127.0.0.1:1".into()],
                    last_error: "refused".into(),
                },
                Code::Unavailable,
            ),
            (
                RaftstoreError::Raft {
                    region_id: 4,
                    hint: "stopped".into(),
                },
                Code::Internal,
            ),
            (
                RaftstoreError::Bind {
                    address: "127.0.0.1:1".into(),
                    source: io_error(),
                },
                Code::Internal,
            ),
            (
                RaftstoreError::Transport {
                    address: "x".into(),
                    hint: "bad uri".into(),
                },
                Code::Unavailable,
            ),
            (
                RaftstoreError::IncompatibleStoreFormat {
                    data_dir: "/data/store-1".into(),
                    found: "1".into(),
                    expected: 2,
                },
                Code::FailedPrecondition,
            ),
            (
                RaftstoreError::WriteConflict {
                    key: b"k".to_vec(),
                    start_ts: 1,
                    conflict_commit_ts: 2,
                },
                Code::Aborted,
            ),
            (
                RaftstoreError::LockWaitTimeout {
                    key: b"k".to_vec(),
                    lock_start_ts: 1,
                },
                Code::Aborted,
            ),
            (
                RaftstoreError::TxnAborted {
                    start_ts: 1,
                    reason: "rolled back".into(),
                },
                Code::Aborted,
            ),
            (
                RaftstoreError::TxnTooLarge {
                    mutations: 100_001,
                    limit: 100_000,
                },
                Code::ResourceExhausted,
            ),
            (
                RaftstoreError::TxnBytesTooLarge {
                    bytes: 1 << 30,
                    limit: 1 << 26,
                },
                Code::ResourceExhausted,
            ),
            (
                RaftstoreError::SnapshotTooOld {
                    read_ts: 1,
                    safe_point: 2,
                },
                Code::FailedPrecondition,
            ),
        ]
    }

    #[test]
    fn every_variant_maps_to_its_status_code_with_its_message() {
        let cases = every_variant();
        for (error, code) in cases {
            let status = error.to_status();
            assert_eq!(status.code(), code, "{error}");
            assert_eq!(status.message(), error.to_string());
        }
    }

    #[test]
    fn the_store_format_error_names_the_directory_and_says_to_remove_it() {
        let error = RaftstoreError::IncompatibleStoreFormat {
            data_dir: "/data/store-1".into(),
            found: "1".into(),
            expected: 2,
        };
        let message = error.to_string();
        assert!(message.contains("/data/store-1"), "{message}");
        assert!(message.contains("remove the directory"), "{message}");
    }

    #[test]
    fn the_variant_list_is_complete() {
        // Adding a variant breaks this match until the case list above is
        // extended too.
        for (error, _) in every_variant() {
            match error {
                RaftstoreError::Storage { .. }
                | RaftstoreError::Io { .. }
                | RaftstoreError::Corrupt { .. }
                | RaftstoreError::InvalidArgument { .. }
                | RaftstoreError::RegionNotFound { .. }
                | RaftstoreError::WrongStore { .. }
                | RaftstoreError::RegionUnavailable { .. }
                | RaftstoreError::RouteUnavailable { .. }
                | RaftstoreError::NoCoordinatorReachable { .. }
                | RaftstoreError::Raft { .. }
                | RaftstoreError::Bind { .. }
                | RaftstoreError::Transport { .. }
                | RaftstoreError::IncompatibleStoreFormat { .. }
                | RaftstoreError::WriteConflict { .. }
                | RaftstoreError::LockWaitTimeout { .. }
                | RaftstoreError::TxnAborted { .. }
                | RaftstoreError::TxnTooLarge { .. }
                | RaftstoreError::TxnBytesTooLarge { .. }
                | RaftstoreError::SnapshotTooOld { .. } => {}
            }
        }
        assert_eq!(every_variant().len(), 19);
    }
}
