//! End to end: a register workload — concurrent reads and writes of a few
//! keys through the real region client, not SQL — while the store that
//! leads the keys' region is killed with SIGKILL. Every operation's invoke
//! and completion instants are recorded; afterwards the whole history, with
//! one final read of every key, must be linearizable (the WGL checker in
//! `arbor_tests::linearizability`), and the longest time after the kill
//! without a successful write is printed and bounded.
//!
//! What `RegionClient::get` promises is what is checked: it reads at a
//! fresh TSO timestamp, so a read must see every write acknowledged before
//! it began. Every write is a `Put` of a value no other write uses, so a
//! read names the write it saw.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_proto::{Mutation, MutationCondition, MutationOp};
use arbor_raftstore::{RegionClient, WriteOutcome};
use arbor_tests::linearizability::{check, Completion, Operation, RegisterOp, SplitMix64};
use arbor_tests::{rows, Cluster};
use tokio_postgres::Client;

/// Concurrent clients, each with its own region client (its own routes,
/// connections and TSO batching), like separate gateways.
const CLIENTS: usize = 6;
/// Registers; few, so clients collide on them.
const KEYS: usize = 4;
/// Share of operations that are writes, in percent.
const WRITE_PERCENT: u64 = 50;
/// How long the load runs before the kill, and at least after it.
const LOAD_BEFORE_KILL_MS: u64 = 2_000;
const LOAD_AFTER_KILL_MS: u64 = 5_000;
/// The load also runs this long after writes resumed, so the history holds
/// reads and writes served by the new leader; but never longer than
/// [`LOAD_AFTER_KILL_MAX_MS`] after the kill.
const LOAD_AFTER_RESUME_MS: u64 = 2_000;
const LOAD_AFTER_KILL_MAX_MS: u64 = 20_000;
/// Operations one client issues at most (the load also stops on time).
const OPERATIONS_PER_CLIENT_MAX: usize = 5_000;
/// An operation still running after this long is abandoned and counted as
/// ambiguous; above the region client's own retry deadline, so normally
/// the client gives up first.
const OPERATION_TIMEOUT_MS: u64 = 15_000;
/// The aim for the longest time without a successful write after a
/// region leader dies.
const WRITE_GAP_AIM_MS: u64 = 2_000;
/// What the test asserts for that gap: what the system reliably meets
/// today, so a regression fails while the aim is printed beside the
/// measurement. Measured on the 2-core machine: with store liveness
/// detection in the tree, writes resumed after 1.3-2.2 s in 10 runs;
/// before it (election timeout only) after 2.8-3.7 s in 16 runs and 5.2 s
/// and 5.7 s in two more while other builds loaded the cores.
const WRITE_GAP_BOUND_MS: u64 = 5_000;
/// The leader of the keys' region must be known within this long.
const LEADER_WAIT_MS: u64 = 30_000;
/// Error texts kept per client for the failure message.
const ERRORS_KEPT_MAX: usize = 5;

const _: () = assert!(OPERATION_TIMEOUT_MS > arbor_raftstore::client::REQUEST_RETRY_DEADLINE_MS);

type History = Vec<Operation<String, String>>;

fn key_bytes(index: usize) -> Vec<u8> {
    format!("linearizability/register-{index}").into_bytes()
}

/// Nanoseconds since the run's origin: the checker's time scale.
fn nanos_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

/// `system.regions` shows keys as text with `\\` and `\xNN` escapes.
fn parse_displayed_key(shown: &str) -> Vec<u8> {
    let bytes = shown.as_bytes();
    let mut key = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], bytes.get(index + 1)) {
            (b'\\', Some(b'\\')) => {
                key.push(b'\\');
                index += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&bytes[index + 2..index + 4])
                    .expect("system.regions escapes bytes as \\xNN");
                key.push(u8::from_str_radix(hex, 16).expect("system.regions escapes bytes as hex"));
                index += 4;
            }
            (byte, _) => {
                key.push(byte);
                index += 1;
            }
        }
    }
    key
}

/// The region holding `key` and the store the coordinators report as its
/// leader, once one is known.
async fn region_leader_of(client: &Client, key: &[u8]) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
    while Instant::now() < deadline {
        let regions = rows(
            client,
            "SELECT region_id, start_key, end_key, leader_store_id FROM system.regions",
        )
        .await;
        let found = regions.iter().find_map(|row| {
            let start = parse_displayed_key(row[1].as_deref()?);
            let end = parse_displayed_key(row[2].as_deref()?);
            let holds = start.as_slice() <= key && (end.is_empty() || key < end.as_slice());
            let region: u64 = row[0].as_deref()?.parse().ok()?;
            let leader: u64 = row[3].as_deref()?.parse().ok()?;
            (holds && leader != 0).then_some((region, leader))
        });
        if let Some(found) = found {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no leader known for the region holding {key:?}");
}

/// What one client did.
#[derive(Default)]
struct ClientLog {
    history: History,
    errors: Vec<String>,
    error_count: usize,
}

impl ClientLog {
    fn error(&mut self, what: String) {
        self.error_count += 1;
        if self.errors.len() < ERRORS_KEPT_MAX {
            self.errors.push(what);
        }
    }
}

/// What the clients share with the test while the load runs.
struct Load {
    origin: Instant,
    stop: AtomicBool,
    /// The newest successful write completion (ns since `origin`).
    last_write_ns: AtomicU64,
}

/// One client: random reads and writes of random keys until `stop`.
async fn run_client(
    client: usize,
    region_client: RegionClient,
    seed: u64,
    load: Arc<Load>,
) -> ClientLog {
    let origin = load.origin;
    let mut rng = SplitMix64::new(seed ^ (client as u64).wrapping_mul(0x9E37_79B9));
    let mut log = ClientLog::default();
    let timeout = Duration::from_millis(OPERATION_TIMEOUT_MS);
    for sequence in 0..OPERATIONS_PER_CLIENT_MAX {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let key_index = rng.below(KEYS as u64) as usize;
        let key = key_bytes(key_index);
        let key_name = String::from_utf8_lossy(&key).into_owned();
        if rng.below(100) < WRITE_PERCENT {
            let value = format!("c{client}-{sequence}");
            let mutation = Mutation {
                op: MutationOp::Put as i32,
                key,
                value: value.clone().into_bytes(),
                condition: MutationCondition::None as i32,
            };
            let invoked = Instant::now();
            let outcome = tokio::time::timeout(timeout, region_client.write(vec![mutation])).await;
            let completion = match outcome {
                Ok(Ok(WriteOutcome::Applied { .. })) => {
                    let completed_ns = nanos_since(origin, Instant::now());
                    load.last_write_ns
                        .fetch_max(completed_ns, Ordering::Relaxed);
                    Completion::At(completed_ns)
                }
                Ok(Ok(WriteOutcome::ConditionFailed { mutation_index })) => {
                    panic!(
                        "write of {value} had no condition, yet condition {mutation_index} failed"
                    )
                }
                // Every write error is ambiguous: the client's rollback
                // after a failure is best effort, so even a write conflict
                // may hide an attempt that applied.
                Ok(Err(error)) => {
                    log.error(format!("write {value}: {error}"));
                    Completion::Unknown
                }
                Err(_) => {
                    log.error(format!(
                        "write {value}: no answer in {OPERATION_TIMEOUT_MS} ms"
                    ));
                    Completion::Unknown
                }
            };
            log.history.push(Operation {
                client,
                key: key_name,
                op: RegisterOp::Write(value),
                invoke_ns: nanos_since(origin, invoked),
                completion,
            });
        } else {
            let invoked = Instant::now();
            let outcome = tokio::time::timeout(timeout, region_client.get(&key)).await;
            let (op, completion) = match outcome {
                Ok(Ok(value)) => (
                    RegisterOp::Read(value.map(|v| String::from_utf8_lossy(&v).into_owned())),
                    Completion::At(nanos_since(origin, Instant::now())),
                ),
                // A failed read changed nothing; the checker drops it.
                Ok(Err(error)) => {
                    log.error(format!("read {key_name}: {error}"));
                    (RegisterOp::Read(None), Completion::Unknown)
                }
                Err(_) => {
                    log.error(format!(
                        "read {key_name}: no answer in {OPERATION_TIMEOUT_MS} ms"
                    ));
                    (RegisterOp::Read(None), Completion::Unknown)
                }
            };
            log.history.push(Operation {
                client,
                key: key_name,
                op,
                invoke_ns: nanos_since(origin, invoked),
                completion,
            });
        }
    }
    log
}

/// Waits while the load runs on after the kill: at least
/// [`LOAD_AFTER_KILL_MS`], and [`LOAD_AFTER_RESUME_MS`] past the first
/// write acknowledged after the kill (as seen by polling), at most
/// [`LOAD_AFTER_KILL_MAX_MS`]. The end of the load (ns since the origin).
async fn keep_load_after_kill(load: &Load, kill_ns: u64) -> u64 {
    const POLL_MS: u64 = 20;
    let mut resumed_ns: Option<u64> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        let now_ns = nanos_since(load.origin, Instant::now());
        let last_write_ns = load.last_write_ns.load(Ordering::Relaxed);
        if resumed_ns.is_none() && last_write_ns > kill_ns {
            resumed_ns = Some(last_write_ns);
        }
        let since_kill_ms = (now_ns - kill_ns) / 1_000_000;
        let long_enough = since_kill_ms >= LOAD_AFTER_KILL_MS
            && resumed_ns.is_some_and(|at| now_ns - at >= LOAD_AFTER_RESUME_MS * 1_000_000);
        if long_enough || since_kill_ms >= LOAD_AFTER_KILL_MAX_MS {
            return now_ns;
        }
    }
}

/// The longest stretch from the kill to the end of the load without a
/// successful write completing, and when writes first resumed.
fn write_gaps(history: &History, kill_ns: u64, load_end_ns: u64) -> (u64, Option<u64>) {
    let mut points: Vec<u64> = history
        .iter()
        .filter(|operation| matches!(operation.op, RegisterOp::Write(_)))
        .filter_map(|operation| match operation.completion {
            Completion::At(ns) if ns > kill_ns => Some(ns),
            _ => None,
        })
        .collect();
    points.sort_unstable();
    let resumed = points.first().map(|first| first - kill_ns);
    points.push(load_end_ns);
    points.insert(0, kill_ns);
    points.sort_unstable();
    let longest = points
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or(0);
    (longest, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_history_stays_linearizable_when_the_region_leader_store_is_killed() {
    let seed = std::env::var("ARBOR_LINEARIZABILITY_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        });
    println!("workload seed {seed} (ARBOR_LINEARIZABILITY_SEED={seed} repeats its choices)");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(dir.path());
    let sql = cluster.ready_client().await;
    let coordinators: Vec<String> = ["coordinator-1", "coordinator-2"]
        .iter()
        .filter_map(|name| cluster.node(name).listen_address().map(str::to_owned))
        .collect();

    let origin = Instant::now();
    let load = Arc::new(Load {
        origin,
        stop: AtomicBool::new(false),
        last_write_ns: AtomicU64::new(0),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            tokio::spawn(run_client(
                client,
                RegionClient::new(coordinators.clone()),
                seed,
                load.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(LOAD_BEFORE_KILL_MS)).await;
    // Every key sits in one region while the key space is this small.
    let (region, leader) = region_leader_of(&sql, &key_bytes(0)).await;
    for index in 1..KEYS {
        assert_eq!(
            region_leader_of(&sql, &key_bytes(index)).await.0,
            region,
            "the registers span regions"
        );
    }
    let store = format!("store-{leader}");
    cluster.node(&store).kill();
    let kill_ns = nanos_since(origin, Instant::now());
    println!("killed {store} (leader of region {region}) after {LOAD_BEFORE_KILL_MS} ms of load");

    let load_end_ns = keep_load_after_kill(&load, kill_ns).await;
    load.stop.store(true, Ordering::Relaxed);
    let mut history = History::new();
    let mut error_count = 0;
    let mut errors = Vec::new();
    for client in clients {
        let log = client.await.expect("client task");
        history.extend(log.history);
        error_count += log.error_count;
        errors.extend(log.errors);
    }

    // One final read of every key, after every operation ended: it must
    // return the last write in the order the checker finds.
    let reader = RegionClient::new(coordinators.clone());
    for index in 0..KEYS {
        let key = key_bytes(index);
        let invoked = Instant::now();
        let value = reader.get(&key).await.unwrap_or_else(|error| {
            panic!(
                "final read of {key:?} failed: {error}\n{}",
                cluster.logs_tail()
            )
        });
        history.push(Operation {
            client: CLIENTS,
            key: String::from_utf8_lossy(&key).into_owned(),
            op: RegisterOp::Read(value.map(|v| String::from_utf8_lossy(&v).into_owned())),
            invoke_ns: nanos_since(origin, invoked),
            completion: Completion::At(nanos_since(origin, Instant::now())),
        });
    }

    let acknowledged_before_kill = history
        .iter()
        .filter(|op| matches!(op.op, RegisterOp::Write(_)))
        .filter(|op| matches!(op.completion, Completion::At(ns) if ns < kill_ns))
        .count();
    let (longest_gap_ns, resumed_ns) = write_gaps(&history, kill_ns, load_end_ns);
    println!(
        "{} operations, {acknowledged_before_kill} writes acknowledged before the kill; writes resumed {} ms after it; longest gap without a successful write after the kill: {} ms (aim {WRITE_GAP_AIM_MS} ms); {error_count} operations failed, e.g. {errors:?}",
        history.len(),
        resumed_ns.map_or("never".to_string(), |ns| (ns / 1_000_000).to_string()),
        longest_gap_ns / 1_000_000
    );
    assert!(
        acknowledged_before_kill > 0,
        "no write succeeded before the kill: {errors:?}\n{}",
        cluster.logs_tail()
    );

    let started = Instant::now();
    let report = check(&history)
        .unwrap_or_else(|failure| panic!("seed {seed}, killed {store} at {kill_ns} ns: {failure}"));
    println!(
        "linearizable ({:?} to check): {report:?}",
        started.elapsed()
    );
    assert!(
        longest_gap_ns <= WRITE_GAP_BOUND_MS * 1_000_000,
        "no write succeeded for {} ms after the kill of {store}\n{}",
        longest_gap_ns / 1_000_000,
        cluster.logs_tail()
    );

    let stopped = cluster.stop();
    assert!(
        stopped.is_empty(),
        "nodes that needed SIGKILL to stop: {stopped:?}"
    );
}
