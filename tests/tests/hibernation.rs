//! End to end: an idle region hibernates on all three stores (its raft
//! timers off, as each store's metrics show); reads and writes still work
//! and wake it; and when the store leading it is killed with SIGKILL the
//! survivors — told by store liveness, not by raft timeouts they no longer
//! run — elect a new leader at once. The failover time is printed; only a
//! generous bound is asserted (the aim, under 2 s, is measured in bench/).

use std::time::{Duration, Instant};

use arbor_tests::{metric_value, rows, Cluster};

const STORES: [&str; 3] = ["store-1", "store-2", "store-3"];
/// A region idle this long has hibernated everywhere (follower idle time
/// plus the leader's delay plus slack).
const HIBERNATE_WAIT_MAX: Duration = Duration::from_secs(30);
/// A write after the kill must succeed within this (liveness, not speed).
const FAILOVER_BOUND: Duration = Duration::from_secs(8);

async fn metric(cluster: &mut Cluster, store: &str, series: &str) -> Option<f64> {
    let address = cluster.node(store).metrics_address()?.to_owned();
    metric_value(&address, series).await
}

/// Waits until every running store in `stores` reports region 1 (the only
/// region) hibernating.
async fn await_hibernation(cluster: &mut Cluster, stores: &[&str]) {
    let deadline = Instant::now() + HIBERNATE_WAIT_MAX;
    loop {
        let mut asleep = 0;
        for store in stores {
            let hibernating = metric(cluster, store, "arbor_store_regions_hibernating").await;
            asleep += usize::from(hibernating == Some(1.0));
        }
        if asleep == stores.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "region 1 did not hibernate on {stores:?} within {HIBERNATE_WAIT_MAX:?}\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn leader_store(cluster: &mut Cluster) -> &'static str {
    for store in STORES {
        if metric(cluster, store, "arbor_store_regions_led").await == Some(1.0) {
            return store;
        }
    }
    panic!("no store leads region 1\n{}", cluster.logs_tail());
}

async fn hibernation(cluster: &mut Cluster) {
    let admin = cluster.ready_client().await;
    admin
        .batch_execute("INSERT INTO kv VALUES ('a', 'x')")
        .await
        .expect("insert");
    await_hibernation(cluster, &STORES).await;
    assert_eq!(
        rows(&admin, "SELECT v FROM kv WHERE k = 'a'").await,
        vec![vec![Some("x".to_owned())]],
        "a hibernating region serves reads"
    );
    admin
        .batch_execute("INSERT INTO kv VALUES ('b', 'y')")
        .await
        .expect("a hibernating region takes writes");
    let leader = leader_store(cluster).await;
    let deadline = Instant::now() + HIBERNATE_WAIT_MAX;
    while metric(cluster, leader, "arbor_store_regions_hibernating").await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the write did not wake the leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    await_hibernation(cluster, &STORES).await;

    cluster.node(leader).kill();
    let killed_at = Instant::now();
    admin
        .batch_execute("INSERT INTO kv VALUES ('c', 'z')")
        .await
        .expect("a write after the leader's store died");
    let failover = killed_at.elapsed();
    println!("hibernated region: write after kill -9 of its leader's store took {failover:?}");
    assert!(
        failover < FAILOVER_BOUND,
        "failover took {failover:?}\n{}",
        cluster.logs_tail()
    );
    assert_eq!(
        rows(&admin, "SELECT k FROM kv ORDER BY k").await,
        vec![
            vec![Some("a".to_owned())],
            vec![Some("b".to_owned())],
            vec![Some("c".to_owned())]
        ]
    );
    let log_dir = cluster.data_dir.join("logs");
    cluster.node(leader).start_again(&log_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_region_hibernates_and_fails_over_at_once_when_its_leaders_store_dies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(dir.path());
    let finished = tokio::time::timeout(Duration::from_secs(120), hibernation(&mut cluster)).await;
    let logs = cluster.logs_tail();
    let stopped = cluster.stop();
    assert!(finished.is_ok(), "hibernation test exceeded 120 s\n{logs}");
    assert!(
        stopped.is_empty(),
        "nodes that did not stop cleanly: {stopped:?}"
    );
}
