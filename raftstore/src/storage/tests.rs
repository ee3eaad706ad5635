//! Storage tests: openraft's conformance suite over one region's log store
//! and state machine, plus the region-specific guarantees (atomic apply of
//! transaction commands, restart, snapshot install confined to the region's
//! range, key counts over versions, refusing an old store format).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::collections::BTreeMap;

use arbor_proto::{RegionDescriptor, RegionEpoch, RegionPeer};
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, StorageIOError,
};
use rocksdb::DB;

use super::mvcc::DbReader;
use super::state_machine::{ignore_splits, KeyRange, SharedDescriptor};
use super::{cf, open_db, RegionLogStore, RegionStateMachine};
use crate::command::{
    EpochRecord, PeerRecord, RegionCommand, RegionResponse, SplitCommand, SplitOutcome,
};
use crate::keys::{self, CF_WRITE};
use crate::txn::commit::Commit;
use crate::txn::prewrite::Prewrite;
use crate::txn::{
    record, CommandMutation, Condition, MutationKind, TxnCommand, TxnError, TxnOutcome, WriteKind,
    WriteRecord,
};
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
            SharedDescriptor::for_range(SUITE_REGION_ID, KeyRange::default()),
            Arc::new(AtomicU64::new(0)),
            ignore_splits(),
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

const EPOCH: EpochRecord = EpochRecord {
    version: 1,
    conf_ver: 1,
};

fn txn_entry(index: u64, version: u64, command: TxnCommand) -> Entry<RegionTypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RegionCommand::txn(
            command,
            EpochRecord { version, ..EPOCH },
        )),
    }
}

fn prewrite(
    start_ts: u64,
    one_pc_commit_ts: Option<u64>,
    mutations: Vec<CommandMutation>,
) -> TxnCommand {
    TxnCommand::Prewrite(Prewrite {
        start_ts,
        primary: mutations[0].key.clone(),
        lock_ttl_ms: 3_000,
        mutations,
        one_pc_commit_ts,
    })
}

/// The epoch version of a region made by `SharedDescriptor::for_range`.
const UNSPLIT: u64 = 0;

/// An entry committing `mutations` in one step (a one-phase commit) in an
/// unsplit region.
fn entry(index: u64, start_ts: u64, mutations: Vec<CommandMutation>) -> Entry<RegionTypeConfig> {
    txn_entry(
        index,
        UNSPLIT,
        prewrite(start_ts, Some(start_ts + 1), mutations),
    )
}

fn value(db: &DB, key: &str, read_ts: u64) -> Option<Vec<u8>> {
    DbReader { db }
        .value_at(key.as_bytes(), read_ts)
        .expect("reading test data")
}

fn latest(db: &DB, key: &str) -> Option<Vec<u8>> {
    value(db, key, u64::MAX)
}

/// Writes a committed Put of `key` straight into the write column family.
fn seed(db: &DB, key: &str, commit_ts: u64) {
    let record = WriteRecord {
        kind: WriteKind::Put,
        start_ts: commit_ts - 1,
        value: b"seeded".to_vec(),
    };
    db.put_cf(
        cf(db, CF_WRITE),
        keys::write_key(key.as_bytes(), commit_ts),
        record::encode_write(&record),
    )
    .expect("seeding");
}

fn open_machine(
    db: &Arc<DB>,
    region_id: u64,
    range: KeyRange,
) -> (RegionStateMachine, Arc<AtomicU64>) {
    let key_count = Arc::new(AtomicU64::new(0));
    let machine = RegionStateMachine::open(
        db.clone(),
        region_id,
        SharedDescriptor::for_range(region_id, range),
        key_count.clone(),
        ignore_splits(),
    )
    .expect("opening machine");
    (machine, key_count)
}

fn outcome(response: &RegionResponse) -> TxnOutcome {
    response.txn.clone().expect("a transaction outcome")
}

#[tokio::test]
async fn each_entry_is_decided_over_the_ones_before_it_all_or_nothing_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let (mut machine, key_count) = open_machine(&db, 7, KeyRange::default());

    let responses = machine
        .apply(vec![
            entry(
                1,
                10,
                vec![
                    put("a", "1", Condition::MustNotExist),
                    put("b", "2", Condition::None),
                ],
            ),
            // Sees "a" written by the entry before it in the same call.
            entry(
                2,
                20,
                vec![
                    put("c", "3", Condition::None),
                    put("a", "x", Condition::MustNotExist),
                ],
            ),
            txn_entry(
                3,
                UNSPLIT,
                prewrite(30, None, vec![put("a", "4", Condition::MustExist)]),
            ),
            txn_entry(
                4,
                UNSPLIT,
                TxnCommand::Commit(Commit {
                    start_ts: 30,
                    commit_ts: 31,
                    keys: vec![b"a".to_vec()],
                }),
            ),
        ])
        .await
        .expect("apply");
    let outcomes: Vec<TxnOutcome> = responses.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            TxnOutcome::Prewritten {
                existed: vec![false, false],
                one_pc_commit_ts: Some(11),
            },
            TxnOutcome::Failed(TxnError::ConditionFailed { mutation_index: 1 }),
            TxnOutcome::Prewritten {
                existed: vec![true],
                one_pc_commit_ts: None,
            },
            TxnOutcome::Done,
        ]
    );
    assert_eq!(latest(&db, "a"), Some(b"4".to_vec()));
    assert_eq!(
        value(&db, "a", 30),
        Some(b"1".to_vec()),
        "the old version stays"
    );
    assert_eq!(value(&db, "a", 10), None, "before the first commit");
    assert_eq!(latest(&db, "c"), None, "a refused entry writes nothing");
    assert_eq!(key_count.load(Ordering::Relaxed), 2);
    drop(machine);

    let (mut reopened, key_count) = open_machine(&db, 7, KeyRange::default());
    let (applied, _) = reopened.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|log_id| log_id.index), Some(4));
    assert_eq!(key_count.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn entries_of_the_plain_formats_are_refused_writing_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let (mut machine, _) = open_machine(&db, 7, KeyRange::default());
    for format_version in [1, 2] {
        let old = format!(
            r#"{{"format_version":{format_version},"mutations":[{{"kind":"Put","key":"6b","value":"76","condition":"None"}}]}}"#
        );
        let command: RegionCommand = serde_json::from_str(&old).expect("an old entry decodes");
        let responses = machine
            .apply(vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), format_version),
                payload: EntryPayload::Normal(command),
            }])
            .await
            .expect("apply");
        assert!(responses[0].unsupported_format);
    }
    assert_eq!(latest(&db, "k"), None);
}

#[test]
fn a_store_of_the_plain_format_is_refused_naming_its_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        // What a format-1 store looks like: a `data` column family.
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        DB::open_cf(&options, dir.path(), ["data"]).expect("an old store");
    }
    let error = open_db(dir.path()).expect_err("an old store is refused");
    assert!(
        matches!(
            error,
            crate::error::RaftstoreError::IncompatibleStoreFormat { .. }
        ),
        "{error}"
    );
    assert!(error
        .to_string()
        .contains(&dir.path().display().to_string()));

    let fresh = tempfile::tempdir().expect("temp dir");
    drop(open_db(fresh.path()).expect("a new store opens"));
    let db = open_db(fresh.path()).expect("and opens again");
    assert_eq!(
        db.get(keys::STORE_FORMAT_KEY).expect("format record"),
        Some(keys::STORE_FORMAT_VERSION.to_be_bytes().to_vec())
    );
    db.put(keys::STORE_FORMAT_KEY, 9u32.to_be_bytes())
        .expect("tamper");
    drop(db);
    assert!(matches!(
        open_db(fresh.path()),
        Err(crate::error::RaftstoreError::IncompatibleStoreFormat { .. })
    ));
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
        .apply(vec![
            entry(
                1,
                10,
                vec![
                    put("b", "1", Condition::None),
                    put("c", "2", Condition::None),
                ],
            ),
            entry(2, 20, vec![put("c", "3", Condition::None)]),
            // A lock left in the range travels with the snapshot.
            txn_entry(
                3,
                UNSPLIT,
                prewrite(30, None, vec![put("bz", "locked", Condition::None)]),
            ),
        ])
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
    for key in ["a", "bb", "z"] {
        seed(&target_db, key, 5);
    }
    let (mut target, key_count) = open_machine(&target_db, 5, range);
    target
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install snapshot");
    assert_eq!(latest(&target_db, "a"), Some(b"seeded".to_vec()));
    assert_eq!(latest(&target_db, "z"), Some(b"seeded".to_vec()));
    assert_eq!(
        latest(&target_db, "bb"),
        None,
        "stale data inside the range is gone"
    );
    assert_eq!(latest(&target_db, "b"), Some(b"1".to_vec()));
    assert_eq!(latest(&target_db, "c"), Some(b"3".to_vec()));
    assert_eq!(
        value(&target_db, "c", 15),
        Some(b"2".to_vec()),
        "versions travel"
    );
    let lock = crate::txn::TxnReader::lock(&DbReader { db: &target_db }, b"bz").expect("lock");
    assert_eq!(lock.map(|lock| lock.start_ts), Some(30));
    assert_eq!(
        key_count.load(Ordering::Relaxed),
        2,
        "b and c; bz is only locked"
    );
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
        seed(&db, key, 5);
    }
    let (mut machine, _) = open_machine(&db, 8, range);
    machine
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    assert_eq!(latest(&db, "a"), Some(b"seeded".to_vec()));
    assert_eq!(latest(&db, "m"), None);
    assert_eq!(latest(&db, "zzzz"), None);
}

fn split_entry(index: u64, version: u64, key: &str) -> Entry<RegionTypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RegionCommand::split(SplitCommand {
            expected_epoch: EpochRecord {
                version,
                conf_ver: 1,
            },
            split_key: key.as_bytes().to_vec(),
            new_region_id: 9,
            new_peers: (1..=3)
                .map(|store_id| PeerRecord {
                    peer_id: 90 + store_id,
                    store_id,
                })
                .collect(),
        })),
    }
}

fn versioned_entry(
    index: u64,
    version: u64,
    start_ts: u64,
    mutations: Vec<CommandMutation>,
) -> Entry<RegionTypeConfig> {
    txn_entry(
        index,
        version,
        prewrite(start_ts, Some(start_ts + 1), mutations),
    )
}

#[tokio::test]
async fn split_apply_hands_the_upper_keys_and_their_count_to_the_new_region_atomically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let parent = RegionDescriptor {
        region_id: 1,
        start_key: Vec::new(),
        end_key: Vec::new(),
        epoch: Some(RegionEpoch {
            version: 1,
            conf_ver: 1,
        }),
        peers: (1..=3)
            .map(|store_id| RegionPeer {
                peer_id: 10 + store_id,
                store_id,
            })
            .collect(),
    };
    crate::storage::save_descriptor(&db, &parent).expect("save parent");
    let shared = SharedDescriptor::new(parent.clone());
    let observed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observer = {
        let observed = observed.clone();
        Arc::new(move |left: &RegionDescriptor, right: &RegionDescriptor| {
            observed
                .lock()
                .expect("observer lock")
                .push((left.clone(), right.clone()));
        })
    };
    let key_count = Arc::new(AtomicU64::new(0));
    let mut machine =
        RegionStateMachine::open(db.clone(), 1, shared.clone(), key_count.clone(), observer)
            .expect("open parent");
    let members: BTreeMap<StoreId, BasicNode> = (1..=3)
        .map(|store_id| (store_id, BasicNode::new(format!("store-{store_id}"))))
        .collect();
    let membership = Membership::new(vec![members.keys().copied().collect()], members);
    let responses = machine
        .apply(vec![
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
                payload: EntryPayload::Membership(membership),
            },
            // Applied in the same apply call as the split: it must count.
            versioned_entry(
                2,
                1,
                10,
                ["a", "b", "m", "x", "z"]
                    .iter()
                    .map(|key| put(key, "v", Condition::None))
                    .collect(),
            ),
            split_entry(3, 1, "m"),
            // Admitted before the split, applied after it: refused whole.
            versioned_entry(4, 1, 20, vec![put("c", "late", Condition::None)]),
            // Admitted at the new epoch, but its key left the range.
            versioned_entry(5, 2, 30, vec![put("y", "late", Condition::None)]),
            versioned_entry(6, 2, 40, vec![put("c", "new", Condition::None)]),
            // The same split again (old epoch): answered as done, no change.
            split_entry(7, 1, "m"),
        ])
        .await
        .expect("apply");
    let Some(SplitOutcome::Split { left, right }) = responses[2].split.clone() else {
        panic!("the split applied: {:?}", responses[2]);
    };
    assert_eq!(left.end_key, b"m");
    assert_eq!(right.start_key, b"m");
    assert_eq!(right.region_id, 9);
    assert_eq!(
        shared.get(),
        left,
        "the peer sees the shrunk region at once"
    );
    assert!(responses[3].epoch_not_match.is_some() && responses[3].txn.is_none());
    assert!(responses[4].epoch_not_match.is_some() && responses[4].txn.is_none());
    assert_eq!(latest(&db, "c"), Some(b"new".to_vec()));
    assert_eq!(latest(&db, "y"), None);
    assert_eq!(
        responses[6].split,
        Some(SplitOutcome::Split {
            left: left.clone(),
            right: right.clone()
        })
    );
    assert_eq!(observed.lock().expect("observer lock").len(), 1);
    assert_eq!(key_count.load(Ordering::Relaxed), 3, "a, b, c stay left");

    let descriptors = crate::storage::load_descriptors(&db).expect("descriptors");
    assert_eq!(descriptors, vec![left.clone(), right.clone()]);
    let child_count = Arc::new(AtomicU64::new(0));
    let mut child = RegionStateMachine::open(
        db.clone(),
        9,
        SharedDescriptor::new(right.clone()),
        child_count.clone(),
        ignore_splits(),
    )
    .expect("open child");
    assert_eq!(
        child_count.load(Ordering::Relaxed),
        3,
        "m, x, z moved right"
    );
    let (applied, _) = child.applied_state().await.expect("child applied state");
    assert_eq!(applied, None, "the child applies its first entry itself");
    let mut child_log = RegionLogStore::new(db.clone(), 9);
    let first = child_log
        .try_get_log_entries(0..1)
        .await
        .expect("child log");
    let [first] = first.as_slice() else {
        panic!("exactly the initial entry: {first:?}");
    };
    assert_eq!(
        first.log_id,
        LogId::default(),
        "what Raft::initialize writes"
    );
    let EntryPayload::Membership(membership) = &first.payload else {
        panic!("the initial entry is a membership");
    };
    let voters: Vec<StoreId> = membership.voter_ids().collect();
    assert_eq!(voters, vec![1, 2, 3]);
    assert_eq!(
        membership.get_node(&2).map(|node| node.addr.clone()),
        Some("store-2".to_string()),
        "node records come from the parent's membership"
    );
}
