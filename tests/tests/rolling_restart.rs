//! The upgrade procedure: restart every process one at a time — root peers,
//! coordinators, stores, then the gateway — with a graceful stop (SIGTERM)
//! and a start on the same data, waiting for the restarted process to be
//! healthy before the next one goes. A writer inserts numbered rows through
//! the gateway the whole time, reconnecting when its connection breaks.
//! Every acknowledged insert must be readable at the end, writes must flow
//! again after every step, and the gateway must keep serving across the
//! restarts of everything below it without being restarted itself.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::root_client::RootClient;
use arbor_proto::{ClusterViewRequest, ClusterViewResponse, RootStatusRequest};
use arbor_tests::{http_status, rows, Cluster};

/// The order of the upgrade: the truth plane first, the front door last.
const ORDER: [&str; 9] = [
    "root-1",
    "root-2",
    "root-3",
    "coordinator-1",
    "coordinator-2",
    "store-1",
    "store-2",
    "store-3",
    "gateway",
];
/// How long a restarted process gets to be healthy again.
const HEALTHY_TIMEOUT_MS: u64 = 20_000;
/// How long writes get to flow again after a step.
const WRITES_RESUME_TIMEOUT_MS: u64 = 20_000;
/// New acknowledged inserts that show writes flow after a step.
const ACKS_AFTER_STEP_MIN: usize = 5;
/// How long each process stays down, as while its binary is replaced; the
/// writer keeps going meanwhile.
const DOWN_MS: u64 = 300;
/// One gRPC health question never waits longer than this.
const PROBE_TIMEOUT_MS: u64 = 1_000;

/// What the writer saw.
#[derive(Default)]
struct WriterLog {
    acknowledged: BTreeSet<String>,
    errors: usize,
    reconnects: usize,
}

/// Inserts `roll-N` rows, a new key for every attempt (a failed insert may
/// or may not have committed, so its key is never retried), reconnecting to
/// the gateway whenever the connection is gone.
async fn write_until_stopped(
    connection: String,
    log: Arc<Mutex<WriterLog>>,
    stop: Arc<AtomicBool>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(current) = client.as_ref().filter(|c| !c.is_closed()) else {
            client = connect(&connection).await;
            if client.is_some() {
                log.lock().expect("writer log").reconnects += 1;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let key = format!("roll-{index:07}");
        index += 1;
        let sql = format!("INSERT INTO kv VALUES ('{key}', 'v')");
        let acknowledged = current.simple_query(&sql).await.is_ok();
        {
            let mut log = log.lock().expect("writer log");
            if acknowledged {
                log.acknowledged.insert(key);
            } else {
                log.errors += 1;
            }
        }
        if !acknowledged {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn connect(connection: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(connection, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(client)
}

fn address_of(cluster: &mut Cluster, name: &str) -> String {
    cluster
        .node(name)
        .listen_address()
        .unwrap_or_else(|| panic!("{name} has a listen address"))
        .to_string()
}

async fn root_status(address: &str) -> Option<arbor_proto::RootStatusResponse> {
    let probe = async {
        let mut client = RootClient::connect(format!("http://{address}"))
            .await
            .ok()?;
        client
            .status(RootStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    };
    tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), probe)
        .await
        .ok()
        .flatten()
}

async fn cluster_view(address: &str) -> Option<ClusterViewResponse> {
    let probe = async {
        let mut client = CoordinatorClient::connect(format!("http://{address}"))
            .await
            .ok()?;
        client
            .cluster_view(ClusterViewRequest { events_limit: 0 })
            .await
            .ok()
            .map(|r| r.into_inner())
    };
    tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), probe)
        .await
        .ok()
        .flatten()
}

/// The highest applied cursor any other root peer reports.
async fn applied_elsewhere(root: &[String], except: &str) -> u64 {
    let mut highest = 0;
    for address in root.iter().filter(|a| a.as_str() != except) {
        if let Some(status) = root_status(address).await {
            highest = highest.max(status.applied_cursor);
        }
    }
    highest
}

/// Healthy after a restart: `GET /health` answers 200 (what a readiness
/// probe asks), and, by kind:
/// - root peer: knows a leader and applied what the others had applied
///   when it came back;
/// - coordinator: answers with a view of root, and some coordinator holds
///   the lease;
/// - store: the lease holder heard a heartbeat from it sent after the
///   restart, and every region has a leader;
/// - gateway: serves a query on a fresh connection.
async fn wait_healthy(cluster: &mut Cluster, name: &str, root: &[String], coordinators: &[String]) {
    let deadline = Instant::now() + Duration::from_millis(HEALTHY_TIMEOUT_MS);
    let address = address_of(cluster, name);
    let health_address = if name == "gateway" {
        format!("127.0.0.1:{}", cluster.http_port)
    } else {
        cluster
            .node(name)
            .metrics_address()
            .unwrap_or_else(|| panic!("{name} serves /health"))
            .to_string()
    };
    let restarted_at_ms = unix_ms();
    let target_cursor = if name.starts_with("root") {
        applied_elsewhere(root, &address).await
    } else {
        0
    };
    loop {
        let ready = http_status(&health_address, "/health").await == Some(200);
        let healthy = ready
            && if name.starts_with("root") {
                root_status(&address)
                    .await
                    .is_some_and(|s| s.leader_id != 0 && s.applied_cursor >= target_cursor)
            } else if name.starts_with("coordinator") {
                coordinator_healthy(&address, coordinators).await
            } else if name.starts_with("store") {
                store_healthy(name, coordinators, restarted_at_ms).await
            } else {
                gateway_healthy(cluster).await
            };
        if healthy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not healthy after {HEALTHY_TIMEOUT_MS} ms\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn coordinator_healthy(address: &str, coordinators: &[String]) -> bool {
    let Some(own) = cluster_view(address).await else {
        return false;
    };
    if own.root.is_none_or(|root| root.cursor == 0) {
        return false;
    }
    for other in coordinators {
        if let Some(view) = cluster_view(other).await {
            if view.coordinator.is_some_and(|c| c.role == "holder") {
                return true;
            }
        }
    }
    false
}

/// Wall-clock ms, to compare with the coordinator's heartbeat times (the
/// same machine's clock).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn store_healthy(name: &str, coordinators: &[String], restarted_at_ms: u64) -> bool {
    let store_id: u64 = name
        .trim_start_matches("store-")
        .parse()
        .expect("store names end in their id");
    for address in coordinators {
        let Some(view) = cluster_view(address).await else {
            continue;
        };
        if view.coordinator.as_ref().is_none_or(|c| c.role != "holder") {
            continue;
        }
        let heard_since_restart = view.stores.iter().any(|s| {
            s.alive
                && s.last_heartbeat_ms >= restarted_at_ms
                && s.store.as_ref().is_some_and(|d| d.store_id == store_id)
        });
        let led = !view.regions.is_empty() && view.regions.iter().all(|r| r.leader_store_id != 0);
        return heard_since_restart && led;
    }
    false
}

async fn gateway_healthy(cluster: &Cluster) -> bool {
    match cluster.try_connect().await {
        Ok(client) => client.simple_query("SELECT count(*) FROM kv").await.is_ok(),
        Err(_) => false,
    }
}

async fn wait_for_acks(log: &Mutex<WriterLog>, from: usize, step: &str, cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_millis(WRITES_RESUME_TIMEOUT_MS);
    loop {
        let acked = log.lock().expect("writer log").acknowledged.len();
        if acked >= from + ACKS_AFTER_STEP_MIN {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume within {WRITES_RESUME_TIMEOUT_MS} ms after restarting {step}\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_process_one_at_a_time_loses_no_acknowledged_write() {
    let started = Instant::now();
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let reader = cluster.ready_client().await;
    let log_dir = cluster.data_dir.join("logs");
    let root: Vec<String> = ["root-1", "root-2", "root-3"]
        .iter()
        .map(|name| address_of(&mut cluster, name))
        .collect();
    let coordinators: Vec<String> = ["coordinator-1", "coordinator-2"]
        .iter()
        .map(|name| address_of(&mut cluster, name))
        .collect();

    let log = Arc::new(Mutex::new(WriterLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until_stopped(
        cluster.connection_string(),
        log.clone(),
        stop.clone(),
    ));
    wait_for_acks(&log, 0, "nothing (warm-up)", &cluster).await;

    let mut reconnects_before_gateway = 0;
    for name in ORDER {
        if name == "gateway" {
            reconnects_before_gateway = log.lock().expect("writer log").reconnects;
        }
        let step_started = Instant::now();
        let acked_before = log.lock().expect("writer log").acknowledged.len();
        let graceful = cluster.node(name).stop();
        assert!(graceful, "{name} ignored SIGTERM and was killed");
        tokio::time::sleep(Duration::from_millis(DOWN_MS)).await;
        let acked_at_start = log.lock().expect("writer log").acknowledged.len();
        cluster.node(name).start_again(&log_dir);
        wait_healthy(&mut cluster, name, &root, &coordinators).await;
        wait_for_acks(&log, acked_at_start, name, &cluster).await;
        println!(
            "restarted {name}: {} inserts acknowledged while it was stopping or down; \
             healthy and writing again {:?} after the stop began",
            acked_at_start - acked_before,
            step_started.elapsed()
        );
    }

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer task");
    let log = log.lock().expect("writer log");
    // The reader's connection went with the gateway restart; use a new one.
    drop(reader);
    let reader = cluster.ready_client().await;
    let present: BTreeSet<String> = rows(
        &reader,
        "SELECT k FROM kv WHERE k >= 'roll-' AND k < 'roll.'",
    )
    .await
    .into_iter()
    .filter_map(|row| row.into_iter().next().flatten())
    .collect();
    let lost: Vec<&String> = log.acknowledged.difference(&present).collect();
    println!(
        "rolling restart: {} inserts acknowledged, {} failed, {} reconnects, {:?} in all",
        log.acknowledged.len(),
        log.errors,
        log.reconnects,
        started.elapsed()
    );
    assert!(lost.is_empty(), "acknowledged inserts lost: {lost:?}");
    // The gateway reconnects to restarted processes by itself: its client
    // kept its one session until the gateway itself restarted.
    assert_eq!(
        reconnects_before_gateway, 1,
        "the writer lost its gateway session while only processes behind the gateway restarted"
    );
    assert!(
        log.reconnects >= 2,
        "the writer should have reconnected after the gateway restart"
    );
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}
