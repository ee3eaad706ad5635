//! End to end: a bank. Accounts spread over several regions; workers run
//! concurrent transfers as explicit transactions (read both balances, write
//! both, log the transfer; odd workers read with `SELECT ... FOR UPDATE`,
//! so row locks are held across the faults), retrying on 40001, while the
//! test kills -9 a
//! region-leader store, the coordinator lease holder and the gateway
//! (mid-commit: the workers commit continuously) and starts each again.
//!
//! Afterwards, and all along: the total balance never changes in any
//! snapshot (no fractured or dirty read), two reads in one transaction agree
//! (no non-repeatable read), no lock is left behind, the total is
//! unchanged at the end (a lost
//! update or a partial commit would create or destroy money), and each
//! worker's transfer counter, bumped in the same transaction, shows every
//! acknowledged transfer (transfers whose COMMIT outcome was unknown may or
//! may not have happened, but wholly or not at all).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbor_tests::{rows, Cluster, ClusterOptions};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const ACCOUNTS: i64 = 24;
const OPENING_BALANCE: i64 = 1_000;
const WORKERS: u64 = 4;
/// A region splits above this many keys, so the accounts span regions.
const REGION_SPLIT_KEYS: u64 = 8;
/// The workload runs this long before the first fault and between faults.
const PHASE_MS: u64 = 2_500;
/// A killed node stays down this long before it is started again.
const DOWN_MS: u64 = 1_500;
/// Errors kept for the failure message.
const ERRORS_KEPT_MAX: usize = 8;

/// One worker's transfers by outcome.
#[derive(Default, Debug)]
struct Counts {
    /// COMMIT returned success.
    committed: i64,
    /// COMMIT failed with something other than a conflict (the connection
    /// died, the cluster was failing over): it may have applied.
    unknown: i64,
}

#[derive(Default)]
struct Outcomes {
    per_worker: BTreeMap<i64, Counts>,
    /// Transfers that were retried after 40001.
    conflicts: u64,
    /// The first few errors that were neither conflicts nor at COMMIT.
    errors: Vec<String>,
    /// Anomalies a reader saw.
    anomalies: Vec<String>,
    reads: u64,
}

async fn connect(cluster_conn: &str) -> Option<Client> {
    let (client, connection) = tokio_postgres::connect(cluster_conn, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(client)
}

fn is_conflict(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

/// Where a transfer failed: before COMMIT nothing can have happened; at
/// COMMIT anything but a conflict leaves the outcome unknown (the commit
/// may have applied before the answer was lost).
enum Failure {
    Before(tokio_postgres::Error),
    AtCommit(tokio_postgres::Error),
}

/// One transfer as one transaction.
async fn transfer(
    client: &Client,
    worker_id: i64,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), Failure> {
    let work = async {
        client.batch_execute("BEGIN").await?;
        let balance = |rows: Vec<tokio_postgres::Row>| rows.first().map(|row| row.get::<_, i64>(0));
        let read = "SELECT balance FROM accounts WHERE id = $1";
        if worker_id % 2 == 1 {
            // Both rows locked by one statement, so in key order: two
            // lockers never wait for each other in a cycle.
            client
                .query(
                    "SELECT id FROM accounts WHERE id IN ($1, $2) FOR UPDATE",
                    &[&from, &to],
                )
                .await?;
        }
        let from_balance = balance(client.query(read, &[&from]).await?).unwrap_or(0);
        let to_balance = balance(client.query(read, &[&to]).await?).unwrap_or(0);
        // Written from what was read: a lost update would break the
        // balance equation at the end.
        let write = "UPDATE accounts SET balance = $1 WHERE id = $2";
        client
            .execute(write, &[&(from_balance - amount), &from])
            .await?;
        client
            .execute(write, &[&(to_balance + amount), &to])
            .await?;
        // Counts this worker's transfers in the same transaction: afterwards
        // the count shows whether every acknowledged one is visible.
        let count = "SELECT transfers FROM workers WHERE id = $1";
        let transfers = balance(client.query(count, &[&worker_id]).await?).unwrap_or(0);
        client
            .execute(
                "UPDATE workers SET transfers = $1 WHERE id = $2",
                &[&(transfers + 1), &worker_id],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(())
    };
    work.await.map_err(Failure::Before)?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(Failure::AtCommit)
}

async fn worker(
    conn: String,
    worker_id: u64,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
) {
    let mut client: Option<Client> = None;
    let mut seed = worker_id * 7919 + 17;
    while !stop.load(Ordering::SeqCst) {
        let Some(live) = client.as_ref().filter(|c| !c.is_closed()) else {
            client = connect(&conn).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let from = ((seed >> 33) % ACCOUNTS as u64) as i64;
        let to = (from + 1 + ((seed >> 40) % (ACCOUNTS as u64 - 1)) as i64) % ACCOUNTS;
        let amount = 1 + ((seed >> 20) % 50) as i64;
        let outcome = transfer(live, worker_id as i64, from, to, amount).await;
        {
            let mut log = outcomes.lock().expect("outcomes");
            let counts = log.per_worker.entry(worker_id as i64).or_default();
            match outcome {
                Ok(()) => counts.committed += 1,
                Err(Failure::Before(error) | Failure::AtCommit(error)) if is_conflict(&error) => {
                    log.conflicts += 1;
                }
                Err(Failure::AtCommit(_)) => counts.unknown += 1,
                Err(Failure::Before(error)) => {
                    if log.errors.len() < ERRORS_KEPT_MAX {
                        log.errors.push(format!("{error:?}"));
                    }
                }
            }
        }
        if client.as_ref().is_some_and(|c| !c.is_closed()) {
            if let Some(live) = client.as_ref() {
                // Ends a failed block; a no-op after COMMIT.
                let _ = live.batch_execute("ROLLBACK").await;
            }
        } else {
            client = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads every balance twice in one transaction: both sums must equal the
/// total and both reads must agree.
async fn reader(conn: String, stop: Arc<AtomicBool>, outcomes: Arc<Mutex<Outcomes>>) {
    let total = ACCOUNTS * OPENING_BALANCE;
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        let Some(live) = client.as_ref().filter(|c| !c.is_closed()) else {
            client = connect(&conn).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let read = async {
            live.batch_execute("BEGIN").await?;
            let first = live.query("SELECT id, balance FROM accounts", &[]).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let second = live.query("SELECT id, balance FROM accounts", &[]).await?;
            live.batch_execute("COMMIT").await?;
            let balances = |rows: &[tokio_postgres::Row]| {
                rows.iter()
                    .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)))
                    .collect::<BTreeMap<i64, i64>>()
            };
            Ok::<_, tokio_postgres::Error>((balances(&first), balances(&second)))
        };
        match read.await {
            Ok((first, second)) => {
                let mut outcomes = outcomes.lock().expect("outcomes");
                outcomes.reads += 1;
                let sum: i64 = first.values().sum();
                if first.len() as i64 != ACCOUNTS || sum != total {
                    outcomes.anomalies.push(format!(
                        "snapshot of {} accounts sums to {sum}",
                        first.len()
                    ));
                }
                if first != second {
                    outcomes
                        .anomalies
                        .push("two reads in one transaction differ".to_owned());
                }
            }
            Err(_) => {
                let _ = live.batch_execute("ROLLBACK").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn regions(table: &[Vec<Option<String>>]) -> Vec<(u64, u64)> {
    table
        .iter()
        .filter_map(|row| {
            let region = row[0].as_deref()?.parse().ok()?;
            let leader = row[1].as_deref()?.parse().ok()?;
            Some((region, leader))
        })
        .collect()
}

const REGIONS_SQL: &str = "SELECT region_id, leader_store_id FROM system.regions";

/// Runs `sql` until it succeeds (the cluster may be failing over).
async fn settle(cluster: &mut Cluster, sql: &str) -> Vec<Vec<Option<String>>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = match cluster.try_connect().await {
            Ok(client) => client.simple_query(sql).await,
            Err(error) => Err(error),
        };
        let last_error = match attempt {
            Err(error) => format!("{error:?}"),
            Ok(messages) => {
                return messages
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_owned))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect();
            }
        };
        assert!(
            Instant::now() < deadline,
            "{sql} did not succeed: {last_error}\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_keep_the_total_through_store_coordinator_and_gateway_failures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start_with(
        dir.path(),
        ClusterOptions {
            region_split_keys: Some(REGION_SPLIT_KEYS),
            ..Default::default()
        },
    );
    let client = cluster.ready_client().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL);
             CREATE TABLE workers (id BIGINT PRIMARY KEY, transfers BIGINT NOT NULL);",
        )
        .await
        .expect("create tables");
    let values: Vec<String> = (0..ACCOUNTS)
        .map(|id| format!("({id}, {OPENING_BALANCE})"))
        .collect();
    client
        .batch_execute(&format!(
            "INSERT INTO accounts VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("open accounts");
    let workers: Vec<String> = (1..=WORKERS).map(|id| format!("({id}, 0)")).collect();
    client
        .batch_execute(&format!(
            "INSERT INTO workers VALUES {}",
            workers.join(", ")
        ))
        .await
        .expect("workers");
    // Wait for the accounts to span several regions.
    let deadline = Instant::now() + Duration::from_secs(30);
    while regions(&rows(&client, REGIONS_SQL).await).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "accounts never split into 3 regions\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(client);

    let conn = cluster.connection_string();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut tasks = Vec::new();
    for worker_id in 1..=WORKERS {
        tasks.push(tokio::spawn(worker(
            conn.clone(),
            worker_id,
            stop.clone(),
            outcomes.clone(),
        )));
    }
    tasks.push(tokio::spawn(reader(
        conn.clone(),
        stop.clone(),
        outcomes.clone(),
    )));

    let phase = Duration::from_millis(PHASE_MS);
    let down = Duration::from_millis(DOWN_MS);
    tokio::time::sleep(phase).await;

    // 1. A store that leads regions, killed -9.
    let leaders = regions(&settle(&mut cluster, REGIONS_SQL).await);
    let store = leaders
        .iter()
        .map(|(_, leader)| *leader)
        .find(|leader| *leader != 0)
        .expect("some region has a leader");
    let name = format!("store-{store}");
    eprintln!("killing {name} (leads regions {leaders:?})");
    cluster.node(&name).kill();
    tokio::time::sleep(down).await;
    cluster.node(&name).start_again(&dir.path().join("logs"));
    tokio::time::sleep(phase).await;

    // 2. The coordinator lease holder, killed -9.
    let holder = settle(
        &mut cluster,
        "SELECT coordinator_id, role FROM system.coordinators",
    )
    .await
    .into_iter()
    .find(|row| row[1].as_deref() == Some("holder"))
    .and_then(|row| row[0].clone())
    .expect("a lease holder");
    eprintln!("killing {holder}");
    cluster.node(&holder).kill();
    tokio::time::sleep(down).await;
    cluster.node(&holder).start_again(&dir.path().join("logs"));
    tokio::time::sleep(phase).await;

    // 3. The gateway, killed -9 while workers commit.
    eprintln!("killing the gateway");
    cluster.node("gateway").kill();
    tokio::time::sleep(down).await;
    cluster
        .node("gateway")
        .start_again(&dir.path().join("logs"));
    tokio::time::sleep(phase).await;

    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }

    let balances: BTreeMap<i64, i64> = settle(&mut cluster, "SELECT id, balance FROM accounts")
        .await
        .into_iter()
        .map(|row| {
            let cell = |i: usize| row[i].as_deref().and_then(|v| v.parse::<i64>().ok());
            (cell(0).expect("id"), cell(1).expect("balance"))
        })
        .collect();
    let visible: BTreeMap<i64, i64> = settle(&mut cluster, "SELECT id, transfers FROM workers")
        .await
        .into_iter()
        .map(|row| {
            let cell = |i: usize| row[i].as_deref().and_then(|v| v.parse::<i64>().ok());
            (cell(0).expect("id"), cell(1).expect("transfers"))
        })
        .collect();
    let outcomes = outcomes.lock().expect("outcomes");
    let committed: i64 = outcomes.per_worker.values().map(|c| c.committed).sum();
    let unknown: i64 = outcomes.per_worker.values().map(|c| c.unknown).sum();
    eprintln!(
        "{committed} transfers committed, {unknown} unknown, {} conflicts retried, {} reader snapshots; per worker {:?}, visible {visible:?}",
        outcomes.conflicts, outcomes.reads, outcomes.per_worker
    );
    assert!(
        committed > 20,
        "too few transfers committed to mean anything; errors: {:?}\n{}",
        outcomes.errors,
        cluster.logs_tail()
    );
    assert!(outcomes.reads > 5, "the reader never completed a snapshot");
    assert!(
        outcomes.anomalies.is_empty(),
        "anomalies: {:?}",
        outcomes.anomalies
    );
    for (worker, counts) in &outcomes.per_worker {
        let seen = visible.get(worker).copied().unwrap_or(0);
        assert!(
            seen >= counts.committed && seen <= counts.committed + counts.unknown,
            "worker {worker}: {seen} transfers visible, {counts:?} acknowledged"
        );
    }
    // The final reads resolved every lock they met. Row locks of a
    // transaction whose gateway died do not block readers; they expire, and
    // the next writer or locker of those rows resolves them — this pass is
    // that locker. Nothing may be left after it.
    settle(
        &mut cluster,
        "BEGIN; SELECT id FROM accounts FOR UPDATE; SELECT id FROM workers FOR UPDATE; COMMIT",
    )
    .await;
    let locks = cluster.locks_left().await;
    assert!(locks.is_empty(), "locks left behind: {locks:?}");
    assert_eq!(balances.len() as i64, ACCOUNTS);
    assert_eq!(
        balances.values().sum::<i64>(),
        ACCOUNTS * OPENING_BALANCE,
        "the total changed: a lost update or a partial commit"
    );
    let stopped = cluster.stop();
    assert!(
        stopped.is_empty(),
        "nodes that did not stop cleanly: {stopped:?}"
    );
}
