//! Storage tests of region merge (see `operation::merge`): a frozen source
//! applies later commands as refusals that write nothing; its frozen state
//! survives reopen and travels in its snapshot; a commit waits for the
//! local source to apply its PrepareMerge, then grows the target over the
//! source's range (the source's data readable through it) in one batch,
//! replacing the source's state by a tombstone and a merged record; a
//! target replica that missed the commit and is restored from a snapshot of
//! the merged target retires its frozen local source the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbor_proto::{RegionDescriptor, RegionEpoch, RegionPeer};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use rocksdb::DB;

use super::mvcc::DbReader;
use super::state_machine::{ignore_splits, SharedDescriptor};
use super::{open_db, RegionStateMachine};
use crate::command::{
    CommitMergeCommand, CommitMergeOutcome, EpochRecord, PrepareMergeCommand, PrepareMergeOutcome,
    RegionCommand, RegionResponse,
};
use crate::keys::{self, StateKind, CF_RAFT_STATE};
use crate::txn::prewrite::Prewrite;
use crate::txn::{CommandMutation, Condition, MutationKind, TxnCommand, TxnOutcome};
use crate::types::RegionTypeConfig;

/// How long a test waits for an apply that must finish.
const APPLY_DEADLINE_MS: u64 = 10_000;
/// How long the blocked-commit test lets a commit wait before freezing
/// the source (the commit must still be waiting then).
const COMMIT_BLOCKED_MS: u64 = 200;

const TARGET_ID: u64 = 1;
const SOURCE_ID: u64 = 2;

fn region(region_id: u64, start: &str, end: &str) -> RegionDescriptor {
    RegionDescriptor {
        region_id,
        start_key: start.as_bytes().to_vec(),
        end_key: end.as_bytes().to_vec(),
        epoch: Some(RegionEpoch {
            version: 2,
            conf_ver: 1,
        }),
        peers: (1..=3)
            .map(|store_id| RegionPeer {
                peer_id: region_id * 10 + store_id,
                store_id,
            })
            .collect(),
    }
}

fn epoch() -> EpochRecord {
    EpochRecord {
        version: 2,
        conf_ver: 1,
    }
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn normal(index: u64, command: RegionCommand) -> Entry<RegionTypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(command),
    }
}

/// A one-phase commit of `key = value` admitted at `epoch`.
fn write(index: u64, epoch: EpochRecord, start_ts: u64, key: &str) -> Entry<RegionTypeConfig> {
    let mutation = CommandMutation {
        kind: MutationKind::Put,
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        condition: Condition::None,
    };
    let prewrite = TxnCommand::Prewrite(Prewrite {
        start_ts,
        primary: mutation.key.clone(),
        lock_ttl_ms: 3_000,
        mutations: vec![mutation],
        one_pc_commit_ts: Some(start_ts + 1),
    });
    normal(index, RegionCommand::txn(prewrite, epoch))
}

fn prepare(index: u64, target: &RegionDescriptor) -> Entry<RegionTypeConfig> {
    normal(
        index,
        RegionCommand::prepare_merge(PrepareMergeCommand {
            expected_epoch: epoch(),
            target: target.clone(),
        }),
    )
}

fn commit(index: u64, source: &RegionDescriptor, prepare_index: u64) -> Entry<RegionTypeConfig> {
    normal(
        index,
        RegionCommand::commit_merge(CommitMergeCommand {
            expected_epoch: epoch(),
            source: source.clone(),
            prepare_index,
        }),
    )
}

fn latest(db: &DB, key: &str) -> Option<Vec<u8>> {
    DbReader { db }
        .value_at(key.as_bytes(), u64::MAX)
        .expect("reading test data")
}

fn has_state(db: &DB, region_id: u64, kind: StateKind) -> bool {
    db.get_cf(
        super::cf(db, CF_RAFT_STATE),
        keys::state_key(region_id, kind),
    )
    .expect("reading raft state")
    .is_some()
}

type Merges = Arc<Mutex<Vec<(RegionDescriptor, RegionDescriptor)>>>;

struct Machine {
    machine: RegionStateMachine,
    shared: SharedDescriptor,
    key_count: Arc<AtomicU64>,
    merges: Merges,
}

fn open_machine(db: &Arc<DB>, descriptor: &RegionDescriptor) -> Machine {
    let shared = SharedDescriptor::new(descriptor.clone());
    let key_count = Arc::new(AtomicU64::new(0));
    let merges: Merges = Arc::default();
    let observed = merges.clone();
    let machine = RegionStateMachine::open(
        db.clone(),
        descriptor.region_id,
        shared.clone(),
        key_count.clone(),
        ignore_splits(),
    )
    .expect("opening a state machine")
    .with_merge_observer(Arc::new(move |merged, source| {
        observed
            .lock()
            .expect("observer lock")
            .push((merged.clone(), source.clone()));
    }));
    Machine {
        machine,
        shared,
        key_count,
        merges,
    }
}

async fn apply(
    machine: &mut RegionStateMachine,
    entries: Vec<Entry<RegionTypeConfig>>,
) -> Vec<RegionResponse> {
    tokio::time::timeout(
        Duration::from_millis(APPLY_DEADLINE_MS),
        machine.apply(entries),
    )
    .await
    .expect("apply finished in time")
    .expect("apply")
}

fn left() -> RegionDescriptor {
    region(TARGET_ID, "", "m")
}

fn right() -> RegionDescriptor {
    region(SOURCE_ID, "m", "")
}

#[tokio::test]
async fn a_frozen_source_refuses_every_later_command_and_stays_frozen_after_reopen_and_in_its_snapshot(
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let (target, source) = (left(), right());
    crate::storage::save_descriptor(&db, &source).expect("save source");
    let mut opened = open_machine(&db, &source);
    let other = region(3, "", "m");
    let responses = apply(
        &mut opened.machine,
        vec![
            write(1, epoch(), 10, "n"),
            prepare(2, &target),
            write(3, epoch(), 20, "p"),
            prepare(4, &target),
            prepare(5, &other),
        ],
    )
    .await;
    assert!(matches!(
        responses[0].txn,
        Some(TxnOutcome::Prewritten { .. })
    ));
    assert_eq!(
        responses[1].prepare_merge,
        Some(PrepareMergeOutcome::Frozen {
            source: source.clone(),
            prepare_index: 2
        }),
        "the epoch does not move"
    );
    assert_eq!(responses[2].merging, Some(TARGET_ID));
    assert_eq!(responses[2].txn, None);
    assert_eq!(latest(&db, "p"), None, "a refused write writes nothing");
    assert_eq!(
        responses[3].prepare_merge,
        Some(PrepareMergeOutcome::Frozen {
            source: source.clone(),
            prepare_index: 2
        }),
        "the same prepare again answers the first index"
    );
    assert_eq!(responses[4].merging, Some(TARGET_ID));
    assert_eq!(responses[4].prepare_merge, None);
    assert_eq!(opened.key_count.load(Ordering::Relaxed), 1);
    let (applied, _) = opened.machine.applied_state().await.expect("applied");
    assert_eq!(
        applied.map(|id| id.index),
        Some(5),
        "the applied index moves"
    );
    assert_eq!(
        opened.shared.merge_state().map(|state| state.prepare_index),
        Some(2)
    );
    let snapshot = opened
        .machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    drop(opened);

    let reopened = open_machine(&db, &source);
    let state = reopened.shared.merge_state().expect("frozen after reopen");
    assert_eq!(
        (state.target_region_id, state.prepare_index),
        (TARGET_ID, 2)
    );

    let other_dir = tempfile::tempdir().expect("temp dir");
    let other_db = open_db(other_dir.path()).expect("open db");
    let mut restored = open_machine(&other_db, &source);
    assert_eq!(restored.shared.merge_state(), None);
    restored
        .machine
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    assert_eq!(
        restored.shared.merge_state(),
        Some(state),
        "a replica restored from the snapshot is frozen too"
    );
    assert!(has_state(&other_db, SOURCE_ID, StateKind::Merging));
    let responses = apply(&mut restored.machine, vec![write(6, epoch(), 30, "q")]).await;
    assert_eq!(responses[0].merging, Some(TARGET_ID));
    assert_eq!(latest(&other_db, "q"), None);
}

#[tokio::test]
async fn commit_waits_for_the_source_then_grows_the_target_over_its_data_in_one_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    let (target, source) = (left(), right());
    crate::storage::save_descriptor(&db, &target).expect("save target");
    crate::storage::save_descriptor(&db, &source).expect("save source");
    let mut source_machine = open_machine(&db, &source);
    let mut target_machine = open_machine(&db, &target);
    apply(
        &mut target_machine.machine,
        vec![write(1, epoch(), 10, "a")],
    )
    .await;
    apply(
        &mut source_machine.machine,
        vec![write(1, epoch(), 20, "n"), write(2, epoch(), 30, "x")],
    )
    .await;

    // The commit applies before the source froze here: it must wait.
    let Machine {
        machine: mut target_sm,
        shared: target_shared,
        key_count: target_keys,
        merges,
    } = target_machine;
    let source_for_commit = source.clone();
    let committing = tokio::spawn(async move {
        let responses = apply(&mut target_sm, vec![commit(2, &source_for_commit, 3)]).await;
        (target_sm, responses)
    });
    tokio::time::sleep(Duration::from_millis(COMMIT_BLOCKED_MS)).await;
    assert!(!committing.is_finished(), "the commit waits for the source");
    assert_eq!(target_shared.get(), target, "nothing merged yet");
    apply(&mut source_machine.machine, vec![prepare(3, &target)]).await;
    let (mut target_sm, responses) =
        tokio::time::timeout(Duration::from_millis(APPLY_DEADLINE_MS), committing)
            .await
            .expect("the commit finished once the source froze")
            .expect("the commit task");

    let Some(CommitMergeOutcome::Merged { region: merged }) = responses[0].commit_merge.clone()
    else {
        panic!("the merge applied: {:?}", responses[0]);
    };
    assert_eq!(merged.region_id, TARGET_ID);
    assert_eq!(
        (merged.start_key.as_slice(), merged.end_key.as_slice()),
        (&b""[..], &b""[..])
    );
    assert_eq!(
        merged.epoch,
        Some(RegionEpoch {
            version: 3,
            conf_ver: 1
        }),
        "max(2, 2) + 1, conf_ver kept"
    );
    assert_eq!(target_shared.get(), merged);
    assert_eq!(target_keys.load(Ordering::Relaxed), 3, "a + n, x");
    assert_eq!(
        merges.lock().expect("observer lock").clone(),
        vec![(merged.clone(), source.clone())],
        "the store is told to stop the source"
    );
    assert_eq!(
        crate::storage::load_descriptors(&db).expect("descriptors"),
        vec![merged.clone()],
        "the source's descriptor is gone"
    );
    for (kind, present) in [
        (StateKind::Applied, false),
        (StateKind::Merging, false),
        (StateKind::Tombstone, true),
        (StateKind::Merged, true),
    ] {
        assert_eq!(has_state(&db, SOURCE_ID, kind), present, "{kind:?}");
    }
    let record = crate::storage::load_merged(&db, SOURCE_ID)
        .expect("merged record")
        .expect("present");
    assert_eq!(record.target_region_id, TARGET_ID);

    // The source's keys are the target's now: writable at the new epoch,
    // and the same commit again answers the merged region.
    let new_epoch = EpochRecord {
        version: 3,
        conf_ver: 1,
    };
    let responses = apply(
        &mut target_sm,
        vec![write(3, new_epoch, 40, "y"), commit(4, &source, 3)],
    )
    .await;
    assert!(matches!(
        responses[0].txn,
        Some(TxnOutcome::Prewritten { .. })
    ));
    assert_eq!(
        responses[1].commit_merge,
        Some(CommitMergeOutcome::Merged {
            region: merged.clone()
        })
    );
    assert_eq!(merges.lock().expect("observer lock").len(), 1);
    for key in ["a", "n", "x", "y"] {
        assert!(latest(&db, key).is_some(), "{key} readable");
    }
    drop(target_sm);
    drop(source_machine);

    let reopened = open_machine(&db, &merged);
    assert_eq!(
        reopened.key_count.load(Ordering::Relaxed),
        4,
        "survives reopen"
    );
    assert_eq!(
        crate::storage::load_descriptors(&db).expect("descriptors"),
        vec![merged]
    );
}

#[tokio::test]
async fn a_snapshot_taken_after_the_merge_absorbs_the_frozen_local_source() {
    let (target, source) = (left(), right());
    // A store where the merge applied: the snapshot of the merged target.
    let merged_dir = tempfile::tempdir().expect("temp dir");
    let merged_db = open_db(merged_dir.path()).expect("open db");
    crate::storage::save_descriptor(&merged_db, &target).expect("save target");
    crate::storage::save_descriptor(&merged_db, &source).expect("save source");
    let mut merged_source = open_machine(&merged_db, &source);
    let mut merged_target = open_machine(&merged_db, &target);
    apply(
        &mut merged_source.machine,
        vec![write(1, epoch(), 10, "n"), prepare(2, &target)],
    )
    .await;
    let responses = apply(
        &mut merged_target.machine,
        vec![write(1, epoch(), 20, "a"), commit(2, &source, 2)],
    )
    .await;
    let Some(CommitMergeOutcome::Merged { region: merged }) = responses[1].commit_merge.clone()
    else {
        panic!("the merge applied: {:?}", responses[1]);
    };
    let snapshot = merged_target
        .machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot of the merged target");

    // A store whose source froze but whose target never saw the commit.
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).expect("open db");
    crate::storage::save_descriptor(&db, &target).expect("save target");
    crate::storage::save_descriptor(&db, &source).expect("save source");
    let mut lagging_source = open_machine(&db, &source);
    apply(
        &mut lagging_source.machine,
        vec![write(1, epoch(), 10, "n"), prepare(2, &target)],
    )
    .await;
    let mut lagging_target = open_machine(&db, &target);
    lagging_target
        .machine
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install the merged target's snapshot");

    assert_eq!(lagging_target.shared.get(), merged);
    assert_eq!(
        lagging_target.merges.lock().expect("observer lock").clone(),
        vec![(merged.clone(), source.clone())],
        "the store is told to stop the absorbed source"
    );
    assert_eq!(
        crate::storage::load_descriptors(&db).expect("descriptors"),
        vec![merged],
        "no overlapping source is left behind"
    );
    assert!(crate::storage::load_merged(&db, SOURCE_ID)
        .expect("merged record")
        .is_some());
    assert!(!has_state(&db, SOURCE_ID, StateKind::Merging));
    assert!(!has_state(&db, SOURCE_ID, StateKind::Applied));
    assert_eq!(lagging_target.key_count.load(Ordering::Relaxed), 2);
    for key in ["a", "n"] {
        assert!(latest(&db, key).is_some(), "{key} readable");
    }
}
