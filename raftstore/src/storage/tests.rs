//! Storage tests: openraft's conformance suite over one region's log store
//! and state machine, plus the region-specific guarantees (atomic apply,
//! restart, snapshot install confined to the region's range).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError,
    StorageIOError,
};
use rocksdb::DB;

use super::state_machine::KeyRange;
use super::{cf, open_db, RegionLogStore, RegionStateMachine};
use crate::command::{CommandMutation, Condition, MutationKind, RegionCommand, RegionResponse};
use crate::keys::CF_DATA;
use crate::types::{RegionTypeConfig, StoreId};

const SUITE_REGION_ID: u64 = 1;

struct RegionStoreBuilder;

impl StoreBuilder<RegionTypeConfig, RegionLogStore, RegionStateMachine, tempfile::TempDir>
    for RegionStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, RegionLogStore, RegionStateMachine), StorageError<StoreId>>
    {
        let io = |hint: String| StorageError::from(StorageIOError::write(AnyError::error(hint)));
        let dir = tempfile::tempdir().map_err(|e| io(e.to_string()))?;
        let db = open_db(dir.path()).map_err(|e| io(e.to_string()))?;
        let log_store = RegionLogStore::new(db.clone(), SUITE_REGION_ID);
        let state_machine = RegionStateMachine::open(
            db,
            SUITE_REGION_ID,
            KeyRange::default(),
            Arc::new(AtomicU64::new(0)),
        )
        .map_err(|e| io(e.to_string()))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn region_storage_passes_the_openraft_conformance_suite() {
    if let Err(error) = Suite::test_all(RegionStoreBuilder) {
        panic!("openraft storage suite failed: {error}");
    }
}

fn put(key: &str, value: &str, condition: Condition) -> CommandMutation {
    CommandMutation {
        kind: MutationKind::Put,
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        condition,
    }
}

fn entry(index: u64, mutations: Vec<CommandMutation>) -> Entry<RegionTypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RegionCommand::new(mutations)),
    }
}

fn data(db: &DB, key: &str) -> Option<Vec<u8>> {
    db.get_cf(cf(db, CF_DATA), key.as_bytes())
        .expect("reading test data")
}

fn open_machine(
    db: &Arc<DB>,
    region_id: u64,
    range: KeyRange,
) -> (RegionStateMachine, Arc<AtomicU64>) {
    let key_count = Arc::new(AtomicU64::new(0));
    let machine = RegionStateMachine::open(db.clone(), region_id, range, key_count.clone())
        .expect("opening machine");
    (machine, key_count)
}

#[tokio::test]
async fn apply_is_all_or_nothing_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let (mut machine, key_count) = open_machine(&db, 7, KeyRange::default());

    let responses = machine
        .apply(vec![
            entry(
                1,
                vec![
                    put("a", "1", Condition::MustNotExist),
                    put("b", "2", Condition::None),
                ],
            ),
            // Sees "a" written by the entry before it in the same call.
            entry(
                2,
                vec![
                    put("c", "3", Condition::None),
                    put("a", "x", Condition::MustNotExist),
                ],
            ),
            entry(3, vec![put("a", "4", Condition::MustExist)]),
        ])
        .await
        .expect("apply");
    assert_eq!(
        responses,
        vec![
            RegionResponse {
                applied: true,
                existed: vec![false, false],
                ..Default::default()
            },
            RegionResponse {
                applied: false,
                failed_mutation: 1,
                ..Default::default()
            },
            RegionResponse {
                applied: true,
                existed: vec![true],
                ..Default::default()
            },
        ]
    );
    assert_eq!(data(&db, "a"), Some(b"4".to_vec()));
    assert_eq!(data(&db, "c"), None, "a rejected batch writes nothing");
    assert_eq!(key_count.load(Ordering::Relaxed), 2);
    drop(machine);

    let (mut reopened, key_count) = open_machine(&db, 7, KeyRange::default());
    let (applied, _) = reopened.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|log_id| log_id.index), Some(3));
    assert_eq!(key_count.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn snapshot_install_replaces_only_the_region_range() {
    let source_dir = tempfile::tempdir().expect("temp dir");
    let source_db = open_db(source_dir.path()).expect("open db");
    let range = KeyRange {
        start: b"b".to_vec(),
        end: b"d".to_vec(),
    };
    let (mut source, _) = open_machine(&source_db, 5, range.clone());
    source
        .apply(vec![entry(
            1,
            vec![
                put("b", "1", Condition::None),
                put("c", "2", Condition::None),
            ],
        )])
        .await
        .expect("apply");
    let snapshot = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");

    let target_dir = tempfile::tempdir().expect("temp dir");
    let target_db = open_db(target_dir.path()).expect("open db");
    for (key, value) in [("a", "outside"), ("bb", "stale"), ("z", "outside")] {
        target_db
            .put_cf(cf(&target_db, CF_DATA), key, value)
            .expect("seeding target");
    }
    let (mut target, key_count) = open_machine(&target_db, 5, range);
    target
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install snapshot");
    assert_eq!(data(&target_db, "a"), Some(b"outside".to_vec()));
    assert_eq!(data(&target_db, "z"), Some(b"outside".to_vec()));
    assert_eq!(
        data(&target_db, "bb"),
        None,
        "stale data inside the range is gone"
    );
    assert_eq!(data(&target_db, "b"), Some(b"1".to_vec()));
    assert_eq!(data(&target_db, "c"), Some(b"2".to_vec()));
    assert_eq!(key_count.load(Ordering::Relaxed), 2);
    let current = target
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("installed snapshot is current");
    assert_eq!(current.meta, snapshot.meta);
}

#[tokio::test]
async fn snapshot_install_with_open_end_clears_to_the_last_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let range = KeyRange {
        start: b"m".to_vec(),
        end: Vec::new(),
    };
    let (mut empty_source, _) = open_machine(&db, 8, range.clone());
    let snapshot = empty_source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");
    for key in ["a", "m", "zzzz"] {
        db.put_cf(cf(&db, CF_DATA), key, "v").expect("seeding");
    }
    let (mut machine, _) = open_machine(&db, 8, range);
    machine
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    assert_eq!(data(&db, "a"), Some(b"v".to_vec()));
    assert_eq!(data(&db, "m"), None);
    assert_eq!(data(&db, "zzzz"), None);
}
