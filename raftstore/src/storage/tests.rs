//! Storage tests: openraft's conformance suite over one region's log store
//! and state machine, plus the region-specific guarantees (atomic apply,
//! restart, snapshot install confined to the region's range).

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

use super::state_machine::{ignore_splits, KeyRange, SharedDescriptor};
use super::{cf, open_db, RegionLogStore, RegionStateMachine};
use crate::command::{
    CommandMutation, Condition, EpochRecord, MutationKind, PeerRecord, RegionCommand,
    RegionResponse, SplitCommand, SplitOutcome,
};
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

fn entry(index: u64, mutations: Vec<CommandMutation>) -> Entry<RegionTypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RegionCommand {
            format_version: 1,
            mutations,
            epoch: None,
            admin: None,
        }),
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
    mutations: Vec<CommandMutation>,
) -> Entry<RegionTypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RegionCommand::write(
            mutations,
            EpochRecord {
                version,
                conf_ver: 1,
            },
        )),
    }
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
            // Staged in the same apply call as the split: it must count.
            versioned_entry(
                2,
                1,
                ["a", "b", "m", "x", "z"]
                    .iter()
                    .map(|key| put(key, "v", Condition::None))
                    .collect(),
            ),
            split_entry(3, 1, "m"),
            // Admitted before the split, applied after it: refused whole.
            versioned_entry(4, 1, vec![put("c", "late", Condition::None)]),
            // A version-1 batch has no epoch, but its key left the range.
            entry(5, vec![put("y", "late", Condition::None)]),
            versioned_entry(6, 2, vec![put("c", "new", Condition::None)]),
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
    assert!(responses[3].epoch_not_match.is_some() && !responses[3].applied);
    assert!(responses[4].epoch_not_match.is_some() && !responses[4].applied);
    assert_eq!(data(&db, "c"), Some(b"new".to_vec()));
    assert_eq!(data(&db, "y"), None);
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
