//! End to end: the store process leading region 1 is killed with SIGKILL
//! while a writer streams INSERTs through the gateway. Writes must resume
//! (the time it took is printed; only a generous bound is asserted — speed
//! aims live in bench/), and every acknowledged row must be readable
//! afterwards. The killed store is started again at the end and the cluster
//! stopped through its handles.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbor_tests::{rows, Cluster, QUERY_TIMEOUT_MS};
use tokio_postgres::Client;

/// Writes must resume within this long after the kill (a liveness bound,
/// not a performance aim).
const FAILOVER_BOUND_MS: u64 = 10_000;
/// How long the writer runs before the kill, and at least after resuming.
const WRITES_BEFORE_KILL_MS: u64 = 1_500;
const WRITES_AFTER_RESUME_MS: u64 = 1_000;
/// The writer's pause after a failed statement (a failover answers errors
/// quickly; retrying at full speed would only pile them up).
const WRITE_ERROR_PAUSE_MS: u64 = 10;
/// The test gives up waiting for writes to resume after this long.
const RESUME_WAIT_MAX_MS: u64 = 30_000;

/// The store the coordinators report as region 1's leader, once known.
async fn leader_of_region_one(client: &Client) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let regions = rows(
            client,
            "SELECT region_id, leader_store_id FROM system.regions",
        )
        .await;
        let leader = regions
            .iter()
            .find(|row| row[0].as_deref() == Some("1"))
            .and_then(|row| row[1].as_deref())
            .and_then(|leader| leader.parse::<u64>().ok())
            .filter(|leader| *leader != 0);
        if let Some(leader) = leader {
            return leader;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("region 1 has no known leader");
}

/// What the writer saw: acknowledged keys with the time of each ack.
#[derive(Default)]
struct WriterLog {
    acknowledged: BTreeSet<String>,
    ack_times: Vec<Instant>,
    errors: Vec<String>,
    /// Statements that got no answer at all in [`QUERY_TIMEOUT_MS`]: every
    /// statement has a retry deadline far below it, so any is a bug.
    hung: Vec<String>,
    /// The gateway closed the writer's session (it never should).
    connection_lost: bool,
}

async fn write_until(client: Client, log: Arc<Mutex<WriterLog>>, stop: Arc<Mutex<bool>>) {
    let mut index = 0u64;
    while !*stop.lock().expect("stop flag") {
        let key = format!("failover-{index:07}");
        let sql = format!("INSERT INTO kv VALUES ('{key}', 'v{index}')");
        index += 1;
        let outcome = tokio::time::timeout(
            Duration::from_millis(QUERY_TIMEOUT_MS),
            client.simple_query(&sql),
        )
        .await;
        let failed = {
            let mut log = log.lock().expect("writer log");
            match outcome {
                Ok(Ok(_)) => {
                    log.acknowledged.insert(key);
                    log.ack_times.push(Instant::now());
                    false
                }
                Ok(Err(error)) => {
                    log.errors.push(format!("{key}: {error}"));
                    if client.is_closed() {
                        // The gateway dropped the session: every later
                        // statement would fail at once, so stop here.
                        log.connection_lost = true;
                        return;
                    }
                    true
                }
                Err(_) => {
                    // The session may be wedged behind the hung statement.
                    log.hung.push(key);
                    return;
                }
            }
        };
        if failed {
            tokio::time::sleep(Duration::from_millis(WRITE_ERROR_PAUSE_MS)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_region_leader_store_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(dir.path());
    let client = cluster.ready_client().await;
    let leader = leader_of_region_one(&client).await;
    let writer_client = cluster.try_connect().await.expect("writer connection");
    let log = Arc::new(Mutex::new(WriterLog::default()));
    let stop = Arc::new(Mutex::new(false));
    let writer = tokio::spawn(write_until(writer_client, log.clone(), stop.clone()));

    tokio::time::sleep(Duration::from_millis(WRITES_BEFORE_KILL_MS)).await;
    let acked_before_kill = log.lock().expect("writer log").acknowledged.len();
    assert!(
        acked_before_kill > 0,
        "the writer made progress before the kill"
    );
    let store_name = format!("store-{leader}");
    cluster.node(&store_name).kill();
    let killed_at = Instant::now();
    println!(
        "killed {store_name} (leader of region 1) after {acked_before_kill} acknowledged writes"
    );

    // Wait for the first acknowledgement after the kill, then keep writing
    // a little longer.
    let resumed_at = loop {
        let first_after = log
            .lock()
            .expect("writer log")
            .ack_times
            .iter()
            .find(|at| **at > killed_at)
            .copied();
        if let Some(at) = first_after {
            break at;
        }
        assert!(
            killed_at.elapsed() < Duration::from_millis(RESUME_WAIT_MAX_MS),
            "writes did not resume within {RESUME_WAIT_MAX_MS} ms (statements with no answer: {:?}, session closed: {}, last errors: {:?})",
            log.lock().expect("writer log").hung,
            log.lock().expect("writer log").connection_lost,
            log.lock().expect("writer log").errors.iter().rev().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let failover = resumed_at.duration_since(killed_at);
    println!("writes resumed {} ms after the kill", failover.as_millis());
    tokio::time::sleep(Duration::from_millis(WRITES_AFTER_RESUME_MS)).await;
    *stop.lock().expect("stop flag") = true;
    writer.await.expect("writer task");
    assert!(
        failover <= Duration::from_millis(FAILOVER_BOUND_MS),
        "writes resumed only after {} ms",
        failover.as_millis()
    );

    // Every acknowledged row is readable through the gateway.
    let (acknowledged, errors, hung) = {
        let log = log.lock().expect("writer log");
        (
            log.acknowledged.clone(),
            log.errors.clone(),
            log.hung.clone(),
        )
    };
    assert!(
        !log.lock().expect("writer log").connection_lost,
        "the gateway closed the writer's session: {errors:?}"
    );
    assert!(
        hung.is_empty(),
        "statements got no answer in {QUERY_TIMEOUT_MS} ms: {hung:?}"
    );
    println!(
        "{} writes acknowledged, {} failed during the failover",
        acknowledged.len(),
        errors.len()
    );
    let stored: BTreeSet<String> = rows(&client, "SELECT k FROM kv")
        .await
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");

    // The killed store comes back on its data and the cluster still serves.
    let log_dir = cluster.data_dir.join("logs");
    cluster.node(&store_name).start_again(&log_dir);
    rows(&client, "INSERT INTO kv VALUES ('after-restart', 'x')").await;
    let after = rows(&client, "SELECT v FROM kv WHERE k = 'after-restart'").await;
    assert_eq!(after, vec![vec![Some("x".to_string())]]);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "{killed:?} needed SIGKILL to stop");
}
