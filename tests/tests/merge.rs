//! Region merge end to end. `ALTER TABLE ... UNSPLIT AT` removes a boundary
//! `SPLIT AT` made while writers keep inserting on every side of it: `SHOW
//! REGIONS` no longer shows the boundary, every acknowledged row is still
//! readable, root's events show the merge planned then committed, the
//! source region is gone from `system.regions`, and writes go on working.
//! A merge planned in root by a holder that is then killed is finished by
//! its successor. And with `--region-merge-keys` on the coordinators, the
//! regions of an almost empty table that SPLIT AT cut merge back by
//! themselves.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_proto::root_client::RootClient;
use arbor_proto::root_event::Kind;
use arbor_proto::{ClusterViewResponse, MergePlanned, ProposeRequest, RootEvent};
use arbor_tests::{rows, Cluster, ClusterOptions};
use tokio_postgres::Client;

/// How long a committed merge gets to show in the answering coordinator's
/// view, and an automatic merge to happen at all (one per scheduler tick).
const SETTLE_TIMEOUT_MS: u64 = 60_000;
/// Rows each writer inserts at most: a bound only, it is told to stop
/// shortly after the merge.
const WRITER_ROWS_MAX: i64 = 20_000;
const WRITERS: i64 = 2;
/// Rows present before the split: `a` from 0 to 29, so each of the three
/// regions SPLIT AT (10), (20) makes holds ten values of `a`.
const INITIAL_A_MAX: i64 = 30;
/// `--region-merge-keys` of the automatic-merge cluster: far above the few
/// rows its table holds, far below half the default split threshold.
const MERGE_KEYS: u64 = 1_000;

fn cell(value: &str) -> Option<String> {
    Some(value.to_string())
}

/// The regions `SHOW REGIONS FROM TABLE t` lists, once `done` holds for
/// them (or the deadline passed: the caller's assertion then shows why).
async fn regions_once(
    client: &Client,
    done: impl Fn(&[Vec<Option<String>>]) -> bool,
) -> Vec<Vec<Option<String>>> {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let regions = rows(client, "SHOW REGIONS FROM TABLE t").await;
        if done(&regions) || Instant::now() >= deadline {
            return regions;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn starts_at(regions: &[Vec<Option<String>>], key: &str) -> bool {
    regions
        .iter()
        .any(|region| region[1].as_deref() == Some(key))
}

/// Root events as `(cursor, kind, detail)`, oldest first.
async fn root_events(client: &Client) -> Vec<(u64, String, String)> {
    let mut events: Vec<(u64, String, String)> = rows(
        client,
        "SELECT cursor, kind, detail FROM system.root_events",
    )
    .await
    .into_iter()
    .map(|row| {
        (
            row[0].as_deref().and_then(|c| c.parse().ok()).unwrap_or(0),
            row[1].clone().unwrap_or_default(),
            row[2].clone().unwrap_or_default(),
        )
    })
    .collect();
    events.sort();
    events
}

/// Inserts `(a, b)` rows one statement at a time, `a` cycling over every
/// region, until told to stop; answers the rows the cluster acknowledged.
/// A failed insert may or may not have committed, so it is not counted.
async fn write_rows(client: Client, writer: i64, stop: Arc<AtomicBool>) -> Vec<(i64, i64)> {
    let mut acknowledged = Vec::new();
    for n in 0..WRITER_ROWS_MAX {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (a, b) = (n % INITIAL_A_MAX, 1_000 * (writer + 1) + n);
        let insert = format!("INSERT INTO t VALUES ({a}, {b}, 'w{writer}-{n}')");
        if client.simple_query(&insert).await.is_ok() {
            acknowledged.push((a, b));
        }
    }
    acknowledged
}

async fn every_row(client: &Client) -> BTreeSet<(i64, i64)> {
    rows(client, "SELECT a, b FROM t")
        .await
        .iter()
        .map(|row| {
            let number = |cell: &Option<String>| {
                cell.as_deref()
                    .and_then(|text| text.parse().ok())
                    .expect("an integer")
            };
            (number(&row[0]), number(&row[1]))
        })
        .collect()
}

async fn create_table_with_rows(client: &Client) -> BTreeSet<(i64, i64)> {
    rows(
        client,
        "CREATE TABLE t (a BIGINT, b BIGINT, v TEXT, PRIMARY KEY (a, b))",
    )
    .await;
    let initial: BTreeSet<(i64, i64)> = (0..INITIAL_A_MAX).map(|a| (a, 0)).collect();
    let values: Vec<String> = initial
        .iter()
        .map(|(a, b)| format!("({a}, {b}, 'initial')"))
        .collect();
    rows(
        client,
        &format!("INSERT INTO t VALUES {}", values.join(",")),
    )
    .await;
    initial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsplit_at_merges_a_split_back_while_writers_insert_and_no_row_is_lost() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;
    let mut expected = create_table_with_rows(&client).await;

    let split = rows(&client, "ALTER TABLE t SPLIT AT VALUES (10), (20)").await;
    assert_eq!(split.len(), 2, "{split:?}");
    let source_id = split[0][2].clone().expect("a region starts at /10");
    let regions = regions_once(&client, |r| starts_at(r, "/10") && starts_at(r, "/20")).await;
    assert!(
        starts_at(&regions, "/10") && starts_at(&regions, "/20"),
        "{regions:?}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let writer_client = cluster.try_connect().await.expect("a writer connects");
        writers.push(tokio::spawn(write_rows(
            writer_client,
            writer,
            stop.clone(),
        )));
    }
    // Let the writers get going on every region before the merge.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let unsplit = rows(&client, "ALTER TABLE t UNSPLIT AT VALUES (10)").await;
    let took = started.elapsed();
    assert_eq!(unsplit.len(), 1, "{unsplit:?}");
    assert_eq!(unsplit[0][0], cell("/10"), "{unsplit:?}");
    let merged_id = unsplit[0][1].clone().expect("the region now holding /10");
    assert_ne!(merged_id, source_id);

    // Writers go on a little against the merged region, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        let acknowledged = writer.await.expect("a writer finishes");
        eprintln!(
            "writer acknowledged {} rows; UNSPLIT AT took {took:?}",
            acknowledged.len()
        );
        assert!(
            !acknowledged.is_empty(),
            "a writer got no row in ({took:?} merge)"
        );
        expected.extend(acknowledged);
    }

    let regions = regions_once(&client, |r| !starts_at(r, "/10")).await;
    assert!(
        !starts_at(&regions, "/10"),
        "the boundary is gone: {regions:?}"
    );
    assert!(
        starts_at(&regions, "/20"),
        "the other boundary stays: {regions:?}"
    );
    let holding = regions
        .iter()
        .find(|region| region[2].as_deref() == Some("/20"))
        .unwrap_or_else(|| panic!("no region ends at /20: {regions:?}"));
    assert_eq!(holding[0], Some(merged_id.clone()), "{regions:?}");

    let stored = every_row(&client).await;
    let missing: Vec<&(i64, i64)> = expected.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged rows missing: {missing:?}");

    let events = root_events(&client).await;
    let source_detail = format!("source={source_id} ");
    let planned = events
        .iter()
        .find(|(_, kind, detail)| kind == "merge_planned" && detail.starts_with(&source_detail))
        .unwrap_or_else(|| panic!("no merge_planned for {source_id}: {events:?}"));
    let committed = events
        .iter()
        .find(|(_, kind, detail)| {
            kind == "merge_committed" && *detail == format!("source={source_id}")
        })
        .unwrap_or_else(|| panic!("no merge_committed for {source_id}: {events:?}"));
    assert!(planned.0 < committed.0, "{events:?}");
    assert!(
        !events.iter().any(|(_, kind, _)| kind == "merge_cancelled"),
        "{events:?}"
    );

    let listed: Vec<Option<String>> = rows(&client, "SELECT region_id FROM system.regions")
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert!(
        !listed.contains(&Some(source_id.clone())),
        "region {source_id} is gone: {listed:?}"
    );

    // Asking again answers at once with the same region.
    let again = rows(&client, "ALTER TABLE t UNSPLIT AT VALUES (10)").await;
    assert_eq!(again, unsplit);

    // Writes still work on the merged range, and read back.
    rows(&client, "INSERT INTO t VALUES (15, 99999, 'after')").await;
    assert_eq!(
        rows(&client, "SELECT v FROM t WHERE a = 15 AND b = 99999").await,
        vec![vec![cell("after")]]
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM t").await,
        vec![vec![cell(&(stored.len() + 1).to_string())]]
    );

    drop(client);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_region_merge_keys_the_split_regions_of_a_small_table_merge_back_by_themselves() {
    let data = tempfile::tempdir().expect("temp dir");
    let options = ClusterOptions {
        coordinator_args: vec!["--region-merge-keys".into(), MERGE_KEYS.to_string()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(data.path(), options);
    let client = cluster.ready_client().await;
    let expected = create_table_with_rows(&client).await;

    let split = rows(&client, "ALTER TABLE t SPLIT AT VALUES (10), (20)").await;
    assert_eq!(split.len(), 2, "{split:?}");

    // The scheduler folds each small region into its left neighbour, one
    // merge per tick, until one region holds all of the table again.
    let regions = regions_once(&client, |r| r.len() == 1).await;
    assert_eq!(regions.len(), 1, "the regions merged back: {regions:?}");
    let total: usize = rows(&client, "SELECT count(*) FROM system.regions")
        .await
        .first()
        .and_then(|row| row[0].as_deref())
        .and_then(|count| count.parse().ok())
        .expect("a count");
    assert_eq!(total, 1, "every region of the cluster merged into one");
    let events = root_events(&client).await;
    let committed = events
        .iter()
        .filter(|(_, kind, _)| kind == "merge_committed")
        .count();
    assert!(committed >= 2, "{events:?}");

    assert_eq!(every_row(&client).await, expected);
    rows(&client, "INSERT INTO t VALUES (15, 1, 'after')").await;
    assert_eq!(
        rows(&client, "SELECT v FROM t WHERE a = 15 AND b = 1").await,
        vec![vec![cell("after")]]
    );

    drop(client);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}

async fn view_of(address: &str) -> Option<ClusterViewResponse> {
    arbor_tests::coordinator_view(address).await
}

/// The index in `coordinators` of the lease holder, once one holds it.
async fn holder_index(coordinators: &[String]) -> usize {
    arbor_tests::lease_holder_index(coordinators, Duration::from_millis(SETTLE_TIMEOUT_MS)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_planned_by_a_holder_that_dies_is_finished_by_its_successor() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;
    let expected = create_table_with_rows(&client).await;
    let split = rows(&client, "ALTER TABLE t SPLIT AT VALUES (10)").await;
    let parse = |cell: &Option<String>| -> u64 {
        cell.as_deref()
            .and_then(|id| id.parse().ok())
            .expect("a region id")
    };
    let (target_id, source_id) = (parse(&split[0][1]), parse(&split[0][2]));

    let coordinators = cluster.listen_addresses("coordinator-");
    let holder = holder_index(&coordinators).await;
    let standby = coordinators[1 - holder].clone();
    let view = view_of(&coordinators[holder]).await.expect("a view");
    let regions = view.root.unwrap_or_default().regions;
    let epoch_of = |id: u64| {
        regions
            .iter()
            .find(|r| r.region_id == id)
            .unwrap_or_else(|| panic!("region {id} in {regions:?}"))
            .epoch
    };
    let planned = MergePlanned {
        source_region_id: source_id,
        source_epoch: epoch_of(source_id),
        target_region_id: target_id,
        target_epoch: epoch_of(target_id),
    };
    // Planned in root right after the holder dies (as the holder itself
    // would have), so only its successor can run it.
    cluster.node(&format!("coordinator-{}", holder + 1)).kill();
    let roots = cluster.listen_addresses("root-");
    let mut root = RootClient::connect(format!("http://{}", roots[0]))
        .await
        .expect("connect to root");
    let proposed = root
        .propose(ProposeRequest {
            event: Some(RootEvent {
                kind: Some(Kind::MergePlanned(planned)),
            }),
            lease_fence: None,
        })
        .await
        .expect("propose the merge")
        .into_inner();
    assert!(proposed.accepted, "{}", proposed.rejection_detail);

    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let state = view_of(&standby)
            .await
            .and_then(|v| v.root)
            .unwrap_or_default();
        let merged = state.pending_changes.is_empty()
            && !state.regions.iter().any(|r| r.region_id == source_id)
            && state.tombstoned_region_ids.contains(&source_id);
        if merged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the successor did not finish the planned merge: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let regions = regions_once(&client, |r| !starts_at(r, "/10")).await;
    assert!(!starts_at(&regions, "/10"), "{regions:?}");
    assert_eq!(every_row(&client).await, expected);
    rows(&client, "INSERT INTO t VALUES (12, 7, 'after')").await;
    assert_eq!(
        rows(&client, "SELECT v FROM t WHERE a = 12 AND b = 7").await,
        vec![vec![cell("after")]]
    );

    drop(client);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}
