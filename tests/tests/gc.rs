//! End to end: MVCC garbage collection below the GC safe point. With the
//! coordinators' GC lifetime at 2 s, a key written many times keeps, on
//! every store, only its newest version (read from each store's RocksDB,
//! opened read-only beside the running store), the newest value still
//! reads, and a read at a timestamp from before the writes is refused as
//! snapshot too old — through the region client (typed error), through
//! SQL (a transaction block opened before the writes and kept open past
//! the lifetime gets SQLSTATE 72000 on its next SELECT), and again after
//! every process restarted (the region's safe point is durable).

use std::path::Path;
use std::time::{Duration, Instant};

use arbor_raftstore::storage::mvcc::DbReader;
use arbor_raftstore::{RaftstoreError, RegionClient};
use arbor_tests::{rows, Cluster, ClusterOptions};

/// The coordinators' `--gc-lifetime-ms` in this test.
const GC_LIFETIME_MS: u64 = 2_000;
/// Versions written to the raw key (and updates of the SQL row).
const VERSIONS: usize = 20;
/// Longest wait for GC to catch up with the lifetime (proposal interval,
/// heartbeat, GC tick and apply on every replica are each well under 1 s).
const GC_DEADLINE_MS: u64 = 60_000;
/// Pause between polls.
const POLL_MS: u64 = 200;
/// A raw key outside the SQL tables' key space (those start with `t`).
const RAW_KEY: &[u8] = b"gc-test-key";

/// A cluster whose coordinators collect versions older than
/// [`GC_LIFETIME_MS`].
fn gc_cluster(dir: &Path) -> Cluster {
    Cluster::start_with(
        dir,
        ClusterOptions {
            coordinator_args: vec!["--gc-lifetime-ms".into(), GC_LIFETIME_MS.to_string()],
            ..Default::default()
        },
    )
}

/// Stops every node; fails if the test body ran out of time (`what` names
/// it and its bound) or a node did not stop cleanly.
fn stop_checked(mut cluster: Cluster, finished_in_time: bool, what: &str) {
    let stopped = cluster.stop();
    assert!(
        finished_in_time,
        "{what} timed out\n{}",
        cluster.logs_tail()
    );
    assert!(
        stopped.is_empty(),
        "nodes that did not stop cleanly: {stopped:?}"
    );
}

fn coordinators(cluster: &Cluster) -> Vec<String> {
    cluster.listen_addresses("coordinator-")
}

/// Versions of `RAW_KEY` (any kind) in the store under `dir`, or why they
/// could not be read this time (a store may be mid-compaction).
fn versions_on_disk(dir: &Path) -> Result<usize, String> {
    let db = arbor_raftstore::storage::open_read_only(dir).map_err(|e| e.to_string())?;
    let reader = DbReader { db: &db };
    let versions: Result<Vec<_>, _> = reader.versions_at(RAW_KEY, u64::MAX).collect();
    versions.map(|list| list.len()).map_err(|e| e.to_string())
}

/// Polls until every store holds exactly one version of `RAW_KEY`; the
/// counts seen last otherwise.
async fn wait_for_one_version_everywhere(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_millis(GC_DEADLINE_MS);
    let stores: Vec<_> = cluster
        .nodes
        .iter()
        .filter(|node| node.name.starts_with("store-"))
        .map(|node| cluster.data_dir.join(&node.name))
        .collect();
    assert!(!stores.is_empty(), "no store directories");
    loop {
        let counts: Vec<Result<usize, String>> =
            stores.iter().map(|dir| versions_on_disk(dir)).collect();
        if counts.iter().all(|count| count.as_ref() == Ok(&1)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "old versions still on disk after {GC_DEADLINE_MS} ms: {counts:?}\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

fn assert_snapshot_too_old(answer: Result<Option<Vec<u8>>, RaftstoreError>, read_ts: u64) {
    match answer {
        Err(RaftstoreError::SnapshotTooOld {
            read_ts: refused_ts,
            safe_point,
        }) => {
            assert_eq!(refused_ts, read_ts);
            assert!(safe_point > read_ts, "{safe_point} <= {read_ts}");
        }
        other => panic!("a read at {read_ts} below the safe point answered {other:?}"),
    }
}

/// The SQLSTATE of the next SELECT of the old block, polled: 72000 once
/// the region's safe point passed the block's snapshot.
async fn wait_for_sqlstate_72000(reader: &tokio_postgres::Client, cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_millis(GC_DEADLINE_MS);
    loop {
        match reader.simple_query("SELECT v FROM kv WHERE k = 'g'").await {
            Ok(_) => assert!(
                Instant::now() < deadline,
                "the old block still reads after {GC_DEADLINE_MS} ms\n{}",
                cluster.logs_tail()
            ),
            Err(error) => {
                let code = error.code().map(|code| code.code().to_string());
                assert_eq!(code.as_deref(), Some("72000"), "{error}");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

async fn gc(cluster: &mut Cluster) {
    let admin = cluster.ready_client().await;
    let client = RegionClient::new(coordinators(cluster));

    // A block whose snapshot predates every write below.
    admin
        .batch_execute("INSERT INTO kv VALUES ('g', '0')")
        .await
        .expect("insert");
    let reader = cluster.try_connect().await.expect("reader connects");
    reader.batch_execute("BEGIN").await.expect("begin");
    let seen = rows(&reader, "SELECT v FROM kv WHERE k = 'g'").await;
    assert_eq!(seen, vec![vec![Some("0".to_string())]]);
    let old_ts = client.timestamp().await.expect("a timestamp");

    for version in 1..=VERSIONS {
        let value = version.to_string();
        admin
            .execute("UPDATE kv SET v = $1 WHERE k = 'g'", &[&value])
            .await
            .expect("update");
        client
            .write(vec![arbor_proto::Mutation {
                op: arbor_proto::MutationOp::Put as i32,
                key: RAW_KEY.to_vec(),
                value: value.into_bytes(),
                condition: arbor_proto::MutationCondition::None as i32,
            }])
            .await
            .expect("raw write");
    }
    let before = versions_on_disk(&cluster.data_dir.join("store-1"));
    assert!(
        before.as_ref().is_ok_and(|count| *count > 1),
        "the writes should first leave many versions ({before:?})"
    );

    wait_for_one_version_everywhere(cluster).await;
    let newest = client.get(RAW_KEY).await.expect("newest read");
    assert_eq!(newest, Some(VERSIONS.to_string().into_bytes()));
    assert_snapshot_too_old(client.get_at(RAW_KEY, old_ts).await, old_ts);
    let fresh = rows(&admin, "SELECT v FROM kv WHERE k = 'g'").await;
    assert_eq!(fresh, vec![vec![Some(VERSIONS.to_string())]]);
    wait_for_sqlstate_72000(&reader, cluster).await;
    drop(reader);

    // The region's safe point is durable: after every process restarted,
    // the old read is still refused, never answered from what is left.
    let stopped = cluster.restart();
    assert!(stopped.is_empty(), "nodes that did not stop: {stopped:?}");
    let _admin = cluster.ready_client().await;
    let client = RegionClient::new(coordinators(cluster));
    assert_snapshot_too_old(client.get_at(RAW_KEY, old_ts).await, old_ts);
    let newest = client.get(RAW_KEY).await.expect("newest read");
    assert_eq!(newest, Some(VERSIONS.to_string().into_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_are_collected_below_the_safe_point_and_old_reads_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = gc_cluster(dir.path());
    let finished = tokio::time::timeout(Duration::from_secs(180), gc(&mut cluster)).await;
    stop_checked(cluster, finished.is_ok(), "GC test (180 s)");
}

/// Root's GC safe point as the first coordinator that answers sees it.
async fn safe_point(cluster: &Cluster) -> Option<u64> {
    for address in coordinators(cluster) {
        let Ok(mut client) = arbor_proto::coordinator_client::CoordinatorClient::connect(format!(
            "http://{address}"
        ))
        .await
        else {
            continue;
        };
        let request = arbor_proto::ClusterViewRequest { events_limit: 0 };
        if let Ok(view) = client.cluster_view(request).await {
            return view.into_inner().root.map(|root| root.gc_safe_point);
        }
    }
    None
}

/// Polls until root's safe point satisfies `check`, or fails saying `what`.
async fn wait_for_safe_point(cluster: &Cluster, what: &str, check: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_millis(GC_DEADLINE_MS);
    loop {
        let seen = safe_point(cluster).await;
        if let Some(point) = seen.filter(|point| check(*point)) {
            return point;
        }
        assert!(
            Instant::now() < deadline,
            "the safe point never {what} (last {seen:?})\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// A transaction that died holding a lock: the safe point must stay below
/// its start, because whoever resolves the lock later reads the fate of
/// the transaction from versions at or after that start.
async fn held(cluster: &mut Cluster) {
    let client = RegionClient::new(coordinators(cluster));
    let key = b"gc-held-lock".to_vec();
    let start_ts = client.timestamp().await.expect("start timestamp");
    client
        .lock_keys(start_ts, &key, vec![key.clone()])
        .await
        .expect("lock the key");
    // Time alone would pass the lock within a lifetime; the cap stops it.
    let capped =
        wait_for_safe_point(cluster, "reached the lock", |point| point == start_ts - 1).await;
    tokio::time::sleep(Duration::from_millis(2 * GC_LIFETIME_MS)).await;
    assert_eq!(
        safe_point(cluster).await,
        Some(capped),
        "the safe point passed a lock still held"
    );
    let committed = client
        .rollback(start_ts, &key, vec![key.clone()])
        .await
        .expect("roll the lock back");
    assert_eq!(committed, None, "the transaction never committed");
    wait_for_safe_point(cluster, "moved past the rolled-back lock", |point| {
        point > start_ts
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_point_stays_below_a_lock_left_by_a_dead_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = gc_cluster(dir.path());
    let finished = tokio::time::timeout(Duration::from_secs(120), held(&mut cluster)).await;
    stop_checked(cluster, finished.is_ok(), "held-lock test (120 s)");
}
