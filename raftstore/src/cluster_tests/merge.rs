//! Region merge end to end at the stores: region 1 is split in two by
//! `Store.SplitRegion`, writers keep writing into both halves through the
//! region client, and the test drives the merge the way the coordinator
//! does (PrepareMerge at the source's leader, WaitApplied at every store,
//! CommitMerge at the target's leader). Checked: no acknowledged write is
//! lost, the writers never fail and keep writing into the source's range
//! after the merge (they met RegionMerging / RegionNotFound and re-routed),
//! every store holds exactly the merged region with root's epoch rule
//! (max version + 1, conf_ver kept), the source's group is gone from every
//! store, and a restart of the stores keeps all of it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::*;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    get_direct, put, spawn_writer, split_request, start_coordinator, start_full_store, start_roots,
    Cluster, FullStore, FIRST_SPLIT_REGION_ID, SETTLE_DEADLINE_SECS, SPLIT_KEY, STORE_COUNT,
    TEST_DEADLINE_SECS,
};
use crate::client::RegionClient;
use crate::storage;
use crate::storage::mvcc::DbReader;
use crate::store::StoreNode;

const WRITERS: usize = 3;
/// How long the writers run before the merge starts and after it is done.
const WRITE_PHASE_MS: u64 = 700;
/// How long one WaitApplied call may wait at the store.
const WAIT_APPLIED_CALL_MS: u64 = 2_000;
/// How long a `WaitApplied` at a cut-off store waits before answering "not
/// yet" (it cannot get there while cut off).
const LAGGING_WAIT_MS: u64 = 300;
/// How long the region client retries a write while a store is cut off (a
/// first attempt may meet a leader there).
const CUT_OFF_WRITE_DEADLINE_SECS: u64 = 30;
/// How long the cut-off store gets to apply the merge after healing.
const CONVERGE_DEADLINE_SECS: u64 = 30;
/// A region id no store ever hosts in this test.
const NEVER_HOSTED_REGION_ID: u64 = 999_999;
/// Pause between attempts of a merge step that met a region error.
const STEP_RETRY_MS: u64 = 50;

/// A client of the store at `address`, waiting (bounded) for it to listen.
async fn connect(address: &str) -> StoreClient {
    let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
    loop {
        match StoreClient::connect(format!("http://{address}")).await {
            Ok(client) => return client,
            Err(error) if Instant::now() >= deadline => {
                panic!("store at {address} does not listen: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(STEP_RETRY_MS)).await,
        }
    }
}

/// Asks every store of `addresses` in turn until one answers `call`
/// without a region error (the leader); panics after the settle deadline.
async fn on_leader<Reply, F, Fut>(addresses: &[String], what: &str, mut call: F) -> Reply
where
    F: FnMut(StoreClient) -> Fut,
    Fut: std::future::Future<Output = (Option<RegionError>, Reply)>,
{
    let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
    let mut last = None;
    while Instant::now() < deadline {
        for address in addresses {
            let (region_error, reply) = call(connect(address).await).await;
            match region_error {
                None => return reply,
                Some(error) => last = Some(error),
            }
        }
        tokio::time::sleep(Duration::from_millis(STEP_RETRY_MS)).await;
    }
    panic!("{what} found no leader; last answer {last:?}");
}

type StoreClient = arbor_proto::store_client::StoreClient<tonic::transport::Channel>;

/// Step 1: PrepareMerge at the source's leader among `addresses`; the
/// frozen source and the PrepareMerge index.
async fn prepare(
    addresses: &[String],
    source: &RegionDescriptor,
    target: &RegionDescriptor,
) -> (RegionDescriptor, u64) {
    let prepared = on_leader(addresses, "PrepareMerge", |mut client| {
        let request = PrepareMergeRequest {
            context: Some(RegionContext {
                region_id: source.region_id,
                epoch: source.epoch,
            }),
            target: Some(target.clone()),
        };
        async move {
            let reply = client
                .prepare_merge(request)
                .await
                .expect("PrepareMerge call")
                .into_inner();
            (reply.region_error.clone(), reply)
        }
    })
    .await;
    let frozen = prepared.source.expect("the frozen source");
    assert_eq!(
        frozen.epoch, source.epoch,
        "prepare keeps the source's epoch"
    );
    assert!(prepared.prepare_index > 0);

    // The same prepare again answers the same index (the coordinator may
    // retry after a takeover).
    let again = on_leader(addresses, "PrepareMerge again", |mut client| {
        let request = PrepareMergeRequest {
            context: Some(RegionContext {
                region_id: source.region_id,
                epoch: source.epoch,
            }),
            target: Some(target.clone()),
        };
        async move {
            let reply = client
                .prepare_merge(request)
                .await
                .expect("PrepareMerge call")
                .into_inner();
            // A replica frozen already answers from its own state.
            (reply.region_error.clone(), reply)
        }
    })
    .await;
    assert_eq!(again.prepare_index, prepared.prepare_index);
    (frozen, prepared.prepare_index)
}

/// One `WaitApplied` call at the store at `address`.
async fn wait_applied(
    address: &str,
    region_id: u64,
    index: u64,
    timeout_ms: u64,
) -> WaitAppliedResponse {
    connect(address)
        .await
        .wait_applied(WaitAppliedRequest {
            region_id,
            index,
            timeout_ms,
        })
        .await
        .expect("WaitApplied call")
        .into_inner()
}

/// Step 2: WaitApplied at every store of `addresses` until each reached
/// `index`.
async fn wait_applied_everywhere(addresses: &[String], region_id: u64, index: u64) {
    for address in addresses {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
        loop {
            let reply = wait_applied(address, region_id, index, WAIT_APPLIED_CALL_MS).await;
            assert!(reply.region_error.is_none(), "{reply:?}");
            if reply.reached {
                assert!(reply.applied_index >= index);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "store at {address} never applied the prepare"
            );
        }
    }
}

/// Step 3: CommitMerge at the target's leader among `addresses`; the
/// merged target.
async fn commit(
    addresses: &[String],
    frozen: &RegionDescriptor,
    prepare_index: u64,
    target: &RegionDescriptor,
) -> RegionDescriptor {
    let committed = on_leader(addresses, "CommitMerge", |mut client| {
        let request = CommitMergeRequest {
            context: Some(RegionContext {
                region_id: target.region_id,
                epoch: target.epoch,
            }),
            source: Some(frozen.clone()),
            prepare_index,
        };
        async move {
            let reply = client
                .commit_merge(request)
                .await
                .expect("CommitMerge call")
                .into_inner();
            (reply.region_error.clone(), reply)
        }
    })
    .await;
    committed.region.expect("the merged region")
}

/// The three merge steps, as the coordinator drives them, at the stores of
/// `addresses`; the merged target.
async fn merge(
    addresses: &[String],
    source: &RegionDescriptor,
    target: &RegionDescriptor,
) -> RegionDescriptor {
    let (frozen, prepare_index) = prepare(addresses, source, target).await;
    wait_applied_everywhere(addresses, source.region_id, prepare_index).await;
    commit(addresses, &frozen, prepare_index, target).await
}

/// Every store serves `merged` at its epoch (leader: an answer, follower:
/// NotLeader; never EpochNotMatch), on both sides of the old boundary, and
/// knows nothing of `source` any more (RegionNotFound; WaitApplied still
/// says it applied everything).
async fn check_stores_after_merge(
    cluster: &Cluster,
    merged: &RegionDescriptor,
    source: &RegionDescriptor,
) {
    let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
    for store_id in 1..=STORE_COUNT {
        for key in [&b"a"[..], SPLIT_KEY, b"z"] {
            loop {
                let reply = get_direct(cluster, store_id, merged, key).await;
                match reply.region_error.and_then(|error| error.kind) {
                    None | Some(RegionErrorKind::NotLeader(_)) => break,
                    // A store just restarted may not run the region yet.
                    Some(RegionErrorKind::RegionNotFound(_))
                    | Some(RegionErrorKind::ServerBusy(_))
                        if Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(STEP_RETRY_MS)).await
                    }
                    other => panic!(
                        "store {store_id} does not serve the merged region at {key:?}: {other:?}"
                    ),
                }
            }
        }
        let reply = get_direct(cluster, store_id, source, &source.start_key).await;
        assert!(
            matches!(
                reply.region_error.and_then(|error| error.kind),
                Some(RegionErrorKind::RegionNotFound(_))
            ),
            "store {store_id} still knows the source"
        );
        let waited = cluster
            .store_client(store_id)
            .await
            .wait_applied(WaitAppliedRequest {
                region_id: source.region_id,
                index: u64::MAX,
                timeout_ms: 0,
            })
            .await
            .expect("WaitApplied call")
            .into_inner();
        assert!(
            waited.region_error.is_none() && waited.reached,
            "a source merged away has applied everything: {waited:?}"
        );
        let never = cluster
            .store_client(store_id)
            .await
            .wait_applied(WaitAppliedRequest {
                region_id: NEVER_HOSTED_REGION_ID,
                index: 1,
                timeout_ms: 0,
            })
            .await
            .expect("WaitApplied call")
            .into_inner();
        assert!(
            matches!(
                never.region_error.and_then(|error| error.kind),
                Some(RegionErrorKind::RegionNotFound(_))
            ),
            "a region never hosted here is not found"
        );
    }
}

/// Every store's disk holds exactly the merged region (the stores are
/// stopped; read-only opens see their final state).
fn check_disks(cluster: &Cluster, merged: &RegionDescriptor) {
    for (index, data_dir) in cluster.data_dirs.iter().enumerate() {
        let db = storage::open_read_only(data_dir).expect("open a store read-only");
        let descriptors = storage::load_descriptors(&db).expect("descriptors");
        assert_eq!(
            descriptors,
            vec![merged.clone()],
            "store {} holds exactly the merged region",
            index + 1
        );
    }
}

async fn merge_under_writes(dir: &Path) {
    let mut cluster = Cluster::start(dir).await;
    let region_one = cluster.bootstrapped_region().await;
    let (left, right) = cluster
        .split(&region_one, SPLIT_KEY, FIRST_SPLIT_REGION_ID)
        .await;
    cluster.wait_hosted_everywhere(&right).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let client = cluster.client();
    let writers: Vec<JoinHandle<()>> = (0..WRITERS)
        .map(|writer| {
            spawn_writer(
                client.clone(),
                writer,
                stop.clone(),
                acknowledged.clone(),
                errors.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(WRITE_PHASE_MS)).await;
    let addresses: Vec<String> = cluster
        .store_addresses
        .iter()
        .map(|address| address.to_string())
        .collect();
    let merged = merge(&addresses, &right, &left).await;
    let in_source = |keys: &BTreeSet<String>| {
        keys.iter()
            .filter(|key| key.as_bytes() >= SPLIT_KEY)
            .count()
    };
    let source_writes_at_merge = in_source(&acknowledged.lock().expect("ack lock"));
    tokio::time::sleep(Duration::from_millis(WRITE_PHASE_MS)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("writer task");
    }

    let left_epoch = left.epoch.unwrap_or_default();
    let right_epoch = right.epoch.unwrap_or_default();
    assert_eq!(merged.region_id, left.region_id);
    assert_eq!(merged.start_key, left.start_key);
    assert_eq!(merged.end_key, right.end_key);
    assert_eq!(merged.peers, left.peers);
    assert_eq!(
        merged.epoch,
        Some(RegionEpoch {
            version: left_epoch.version.max(right_epoch.version) + 1,
            conf_ver: left_epoch.conf_ver,
        }),
        "root's commit_merge epoch rule"
    );

    let errors = errors.lock().expect("error lock").clone();
    assert!(
        errors.is_empty(),
        "writes failed through the merge: {errors:?}"
    );
    let acknowledged = acknowledged.lock().expect("ack lock").clone();
    let source_writes = in_source(&acknowledged);
    println!(
        "{} writes acknowledged; {source_writes_at_merge} into the source's range before the \
         merge answered, {source_writes} by the end",
        acknowledged.len()
    );
    assert!(
        source_writes > source_writes_at_merge,
        "writers kept writing into the source's range after the merge"
    );
    assert!(acknowledged.iter().any(|key| key.as_bytes() < SPLIT_KEY));

    let check_data = |client: crate::client::RegionClient| {
        let acknowledged = acknowledged.clone();
        async move {
            let scanned = client.scan(b"a", b"", usize::MAX).await.expect("scan all");
            let keys: BTreeSet<String> = scanned
                .iter()
                .filter(|(key, _)| key.as_slice() != b"bootstrap")
                .map(|(key, value)| {
                    assert_eq!(key, value, "each key holds itself");
                    String::from_utf8(key.clone()).expect("utf-8 keys")
                })
                .collect();
            assert_eq!(keys, acknowledged, "exactly the acknowledged writes");
        }
    };
    check_data(cluster.client()).await;
    check_stores_after_merge(&cluster, &merged, &right).await;

    cluster.stop_stores().await;
    check_disks(&cluster, &merged);
    cluster.start_stores();
    check_stores_after_merge(&cluster, &merged, &right).await;
    check_data(cluster.client()).await;
    let after_restart = cluster.client();
    after_restart
        .write(vec![
            put("apple-after", "1", MutationCondition::None),
            put("zebra-after", "2", MutationCondition::None),
        ])
        .await
        .expect("a write across the old boundary after restart");
    assert_eq!(
        after_restart.get(b"zebra-after").await.expect("get"),
        Some(b"2".to_vec())
    );
    cluster.stop_stores().await;
    check_disks(&cluster, &merged);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_under_concurrent_writes_loses_nothing_and_leaves_one_region_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        merge_under_writes(dir.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "merge test exceeded {TEST_DEADLINE_SECS}s"
    );
}

/// A store's own newest value of `key`, whatever its role.
fn local_value(node: &StoreNode, key: &str) -> Option<Vec<u8>> {
    DbReader { db: node.db() }
        .value_at(key.as_bytes(), u64::MAX)
        .expect("read the store's own data")
}

/// Cuts `minority` off from `majority` both ways.
fn cut_off(minority: &FullStore, majority: &[&FullStore]) {
    let majority_ids: Vec<u64> = majority.iter().map(|store| store.node.store_id()).collect();
    minority.node.transport().partition().block(&majority_ids);
    for store in majority {
        store
            .node
            .transport()
            .partition()
            .block(&[minority.node.store_id()]);
    }
}

fn heal(stores: &[FullStore]) {
    for store in stores {
        store.node.transport().partition().heal();
    }
}

/// Keys written into the source's range while one store is cut off.
const CUT_OFF_KEYS: [&str; 4] = ["n-cut-off", "p-cut-off", "t-cut-off", "x-cut-off"];

/// One store is cut off from the others across the whole merge: while the
/// source takes writes and its PrepareMerge, `WaitApplied` there says "not
/// yet"; once healed it catches up and says "reached"; cut off again for the
/// CommitMerge, its target replica applies the commit only after healing,
/// and the store ends with exactly the merged region holding every write.
async fn merge_with_a_store_cut_off(dir: &Path) {
    let (roots, root_addresses) = start_roots(dir).await;
    let coordinator_listen = super::free_address().await;
    let coordinator_address = coordinator_listen.to_string();
    let coordinator = start_coordinator(coordinator_listen, root_addresses);
    let mut stores = Vec::new();
    for store_id in 1..=STORE_COUNT {
        stores.push(start_full_store(store_id, dir, &coordinator_address).await);
    }
    let client = RegionClient::with_retry_deadline(
        vec![coordinator_address.clone()],
        Duration::from_secs(CUT_OFF_WRITE_DEADLINE_SECS),
    );
    client
        .write(vec![put("bootstrap", "done", MutationCondition::None)])
        .await
        .expect("the cluster takes a first write");
    let addresses: Vec<String> = stores.iter().map(|store| store.address.clone()).collect();
    let region_one = stores[0]
        .node
        .peer(1)
        .expect("region 1 on store 1")
        .descriptor();
    let split = on_leader(&addresses, "SplitRegion", |mut client| {
        let request = split_request(&region_one, SPLIT_KEY, FIRST_SPLIT_REGION_ID);
        async move {
            let reply = client
                .split_region(request)
                .await
                .expect("SplitRegion call")
                .into_inner();
            (reply.region_error.clone(), reply)
        }
    })
    .await;
    let (target, source) = (
        split.left.expect("left half"),
        split.right.expect("right half"),
    );
    let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
    while !stores
        .iter()
        .all(|store| store.node.peer(source.region_id).is_some())
    {
        assert!(
            Instant::now() < deadline,
            "the split region did not start everywhere"
        );
        tokio::time::sleep(Duration::from_millis(STEP_RETRY_MS)).await;
    }

    let lagging = &stores[stores.len() - 1];
    let majority: Vec<&FullStore> = stores[..stores.len() - 1].iter().collect();
    let majority_addresses: Vec<String> =
        majority.iter().map(|store| store.address.clone()).collect();
    cut_off(lagging, &majority);
    client
        .write(
            CUT_OFF_KEYS
                .iter()
                .map(|key| put(key, key, MutationCondition::None))
                .collect(),
        )
        .await
        .expect("the majority takes writes into the source");
    let (frozen, prepare_index) = prepare(&majority_addresses, &source, &target).await;
    wait_applied_everywhere(&majority_addresses, source.region_id, prepare_index).await;
    let lagging_reply = wait_applied(
        &lagging.address,
        source.region_id,
        prepare_index,
        LAGGING_WAIT_MS,
    )
    .await;
    assert!(
        lagging_reply.region_error.is_none() && !lagging_reply.reached,
        "the cut-off store cannot have applied the prepare: {lagging_reply:?}"
    );
    assert_eq!(local_value(&lagging.node, CUT_OFF_KEYS[0]), None);

    heal(&stores);
    wait_applied_everywhere(&addresses, source.region_id, prepare_index).await;
    for key in CUT_OFF_KEYS {
        assert!(
            local_value(&lagging.node, key).is_some(),
            "the caught-up source replica holds {key}"
        );
    }

    cut_off(lagging, &majority);
    let merged = commit(&majority_addresses, &frozen, prepare_index, &target).await;
    assert!(
        lagging.node.peer(source.region_id).is_some(),
        "the cut-off store has not applied the commit"
    );
    assert_eq!(
        lagging
            .node
            .peer(target.region_id)
            .expect("target on the cut-off store")
            .descriptor(),
        target
    );
    client
        .write(vec![put("z-after-merge", "1", MutationCondition::None)])
        .await
        .expect("the merged region takes a write in the old source range");

    heal(&stores);
    let deadline = Instant::now() + Duration::from_secs(CONVERGE_DEADLINE_SECS);
    loop {
        let merged_here = lagging
            .node
            .peer(target.region_id)
            .is_some_and(|peer| peer.descriptor() == merged);
        let source_gone = lagging.node.peer(source.region_id).is_none();
        let caught_up = local_value(&lagging.node, "z-after-merge").is_some();
        if merged_here && source_gone && caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut-off store did not converge: merged {merged_here}, source gone \
             {source_gone}, caught up {caught_up}"
        );
        tokio::time::sleep(Duration::from_millis(STEP_RETRY_MS)).await;
    }
    for store in &stores {
        let deadline = Instant::now() + Duration::from_secs(SETTLE_DEADLINE_SECS);
        while store.node.peer(source.region_id).is_some() {
            assert!(Instant::now() < deadline, "the source's group still runs");
            tokio::time::sleep(Duration::from_millis(STEP_RETRY_MS)).await;
        }
        assert_eq!(
            storage::load_descriptors(store.node.db()).expect("descriptors"),
            vec![merged.clone()],
            "store {} holds exactly the merged region",
            store.node.store_id()
        );
        assert!(storage::load_merged(store.node.db(), source.region_id)
            .expect("merged record")
            .is_some());
    }
    let reader = RegionClient::with_retry_deadline(
        vec![coordinator_address.clone()],
        Duration::from_secs(CUT_OFF_WRITE_DEADLINE_SECS),
    );
    for key in CUT_OFF_KEYS {
        assert_eq!(
            reader.get(key.as_bytes()).await.expect("get"),
            Some(key.as_bytes().to_vec())
        );
    }

    for store in stores {
        store.server.stop().await;
    }
    coordinator.stop().await;
    for root in roots {
        root.stop().await.expect("root peer stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_cut_off_during_a_merge_catches_up_and_ends_with_the_merged_region() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        merge_with_a_store_cut_off(dir.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "merge fault test exceeded {TEST_DEADLINE_SECS}s"
    );
}
