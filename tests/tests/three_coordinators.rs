//! Three coordinators, two crashes: `system.coordinators` lists all three,
//! one holder at the lease's generation; then, while clients stream
//! `GetTimestamps` and `AllocateIds`, the holder is killed -9, a standby
//! serves within a lease TTL (+1 s), that new holder is killed -9 too, and
//! the last coordinator takes over just as fast. No timestamp or id is ever
//! handed out twice, timestamps only grow per client, the generation grows
//! at each takeover, and `system.coordinators` and `system.leases` end
//! naming the survivor as holder.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbor_coordinator::lease::LEASE_TTL_MS;
use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{AllocateIdsRequest, ClusterViewRequest, GetTimestampsRequest};
use arbor_tests::{rows, Cluster, ClusterOptions};
use tokio_postgres::Client;

const COORDINATORS: usize = 3;
/// A standby must serve within this long of the holder's crash: the lease
/// runs out at most a TTL after the kill, and a second is the allowance for
/// campaigning in root and raising the fences before the first answer.
const TAKEOVER_WITHIN_MS: u64 = LEASE_TTL_MS + 1_000;
/// How long the test waits for a takeover at all before it fails (longer
/// than the bound above, so a slow takeover is reported with its time).
const TAKEOVER_WAIT_MAX_MS: u64 = 10_000;
/// How long `system.coordinators` gets to show a settled lease.
const SYSTEM_VIEW_SETTLE_MS: u64 = 10_000;
/// Concurrent clients; each alternates a timestamp and an id request.
const CLIENTS: usize = 3;
/// How long one request may take before the client tries the next
/// coordinator.
const REQUEST_TIMEOUT_MS: u64 = 500;
/// Pause after a coordinator did not serve, before the next one is tried.
const RETRY_PAUSE_MS: u64 = 20;
/// Timestamps or ids asked per request.
const BATCH: u32 = 10;
/// Streaming before the first kill, so both kinds are served by the first
/// holder too.
const WARM_UP_MS: u64 = 500;
/// How often the test looks at what the clients received.
const POLL_MS: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Timestamps,
    Ids,
}

/// One answer a client accepted.
#[derive(Debug, Clone, Copy)]
struct Served {
    kind: Kind,
    first: u64,
    count: u32,
    generation: u64,
    at: Instant,
}

/// What one client accepted, and how many answers it rejected as older
/// than a generation it had already seen.
#[derive(Default)]
struct ClientLog {
    served: Vec<Served>,
    rejected_stale: usize,
}

/// One request of `kind` at `address`: (first, count, generation), or None
/// when that coordinator did not serve (down, a standby's redirect, slow).
async fn ask(address: &str, kind: Kind) -> Option<(u64, u32, u64)> {
    let mut client = CoordinatorClient::connect(format!("http://{address}"))
        .await
        .ok()?;
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    match kind {
        Kind::Timestamps => {
            let mut request = tonic::Request::new(GetTimestampsRequest { count: BATCH });
            request.set_timeout(timeout);
            let answer = client.get_timestamps(request).await.ok()?.into_inner();
            Some((answer.first, answer.count, answer.generation))
        }
        Kind::Ids => {
            let mut request = tonic::Request::new(AllocateIdsRequest { count: BATCH });
            request.set_timeout(timeout);
            let answer = client.allocate_ids(request).await.ok()?.into_inner();
            Some((answer.first, answer.count, answer.generation))
        }
    }
}

/// Alternates timestamp and id requests at whichever coordinator serves,
/// applying the client rule: an answer from an older generation than the
/// newest this client has seen is rejected.
async fn stream(addresses: Vec<String>, stop: Arc<AtomicBool>, log: Arc<Mutex<ClientLog>>) {
    let mut newest_generation = 0;
    let mut target = 0;
    let mut kind = Kind::Timestamps;
    while !stop.load(Ordering::Relaxed) {
        let address = &addresses[target % addresses.len()];
        let Some((first, count, generation)) = ask(address, kind).await else {
            target += 1;
            tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
            continue;
        };
        let mut log = log.lock().expect("client log lock");
        if generation < newest_generation {
            log.rejected_stale += 1;
            continue;
        }
        newest_generation = generation;
        log.served.push(Served {
            kind,
            first,
            count,
            generation,
            at: Instant::now(),
        });
        kind = match kind {
            Kind::Timestamps => Kind::Ids,
            Kind::Ids => Kind::Timestamps,
        };
    }
}

/// (index in `addresses`, generation) of the coordinator that says it holds
/// the lease.
async fn holder_of(addresses: &[String]) -> Option<(usize, u64)> {
    for (i, address) in addresses.iter().enumerate() {
        let Ok(mut client) = CoordinatorClient::connect(format!("http://{address}")).await else {
            continue;
        };
        let Ok(view) = client
            .cluster_view(ClusterViewRequest { events_limit: 0 })
            .await
        else {
            continue;
        };
        if let Some(status) = view.into_inner().coordinator {
            if status.role == "holder" {
                return Some((i, status.generation));
            }
        }
    }
    None
}

/// How long after `killed_at` the clients first accepted an answer of a
/// generation above `old_generation`, and that generation; panics if none
/// came in [`TAKEOVER_WAIT_MAX_MS`].
async fn takeover_after(
    logs: &[Arc<Mutex<ClientLog>>],
    killed_at: Instant,
    old_generation: u64,
) -> (Duration, u64) {
    let deadline = killed_at + Duration::from_millis(TAKEOVER_WAIT_MAX_MS);
    loop {
        let first_newer = logs
            .iter()
            .flat_map(|log| {
                let log = log.lock().expect("client log lock");
                log.served
                    .iter()
                    .filter(|served| served.generation > old_generation)
                    .map(|served| (served.at, served.generation))
                    .collect::<Vec<_>>()
            })
            .min_by_key(|(at, _)| *at);
        if let Some((at, generation)) = first_newer {
            return (at.saturating_duration_since(killed_at), generation);
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator served a generation above {old_generation} within \
             {TAKEOVER_WAIT_MAX_MS} ms of the kill"
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// Rows of `system.coordinators` (id, address, role, generation), polled
/// until `settled` holds or [`SYSTEM_VIEW_SETTLE_MS`] passed; the last
/// rows either way.
async fn coordinators_once(
    client: &Client,
    settled: impl Fn(&[Vec<Option<String>>]) -> bool,
) -> Vec<Vec<Option<String>>> {
    let deadline = Instant::now() + Duration::from_millis(SYSTEM_VIEW_SETTLE_MS);
    loop {
        let listed = rows(
            client,
            "SELECT coordinator_id, address, role, generation FROM system.coordinators",
        )
        .await;
        if settled(&listed) || Instant::now() >= deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The generation `system.leases` shows (0 when no lease was granted yet).
async fn lease_generation(client: &Client) -> u64 {
    rows(client, "SELECT generation FROM system.leases")
        .await
        .first()
        .and_then(|row| row[0].as_deref())
        .and_then(|generation| generation.parse().ok())
        .unwrap_or(0)
}

fn role_count(listed: &[Vec<Option<String>>], role: &str) -> usize {
    listed
        .iter()
        .filter(|row| row[2].as_deref() == Some(role))
        .count()
}

/// Every timestamp is unique across clients and increasing per client;
/// every id is unique across clients. Returns how many of each were served.
fn assert_nothing_served_twice(logs: &[Arc<Mutex<ClientLog>>]) -> (usize, usize) {
    let mut timestamps = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for log in logs {
        let log = log.lock().expect("client log lock");
        let mut last_timestamp = 0;
        for served in &log.served {
            assert!(served.count > 0, "an empty answer: {served:?}");
            let last = served.first + u64::from(served.count) - 1;
            match served.kind {
                Kind::Timestamps => {
                    assert!(
                        served.first > last_timestamp,
                        "timestamps went backwards or repeated for one client: \
                         {last_timestamp} then {served:?}"
                    );
                    last_timestamp = last;
                    for timestamp in served.first..=last {
                        assert!(
                            timestamps.insert(timestamp),
                            "timestamp {timestamp} handed out twice"
                        );
                    }
                }
                Kind::Ids => {
                    for id in served.first..=last {
                        assert!(ids.insert(id), "id {id} handed out twice");
                    }
                }
            }
        }
    }
    (timestamps.len(), ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holder_crashes_in_a_row_never_repeat_a_timestamp_or_an_id() {
    let data = tempfile::tempdir().expect("temp dir");
    let options = ClusterOptions {
        coordinators: Some(COORDINATORS),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(data.path(), options);
    let sql = cluster.ready_client().await;
    let addresses = cluster.listen_addresses("coordinator-");
    assert_eq!(addresses.len(), COORDINATORS, "{addresses:?}");

    // All three listed, one holder at the lease's generation; a standby
    // reports generation 0 (it holds none: `Coordinator::status`).
    let lease_generation = lease_generation(&sql).await;
    let listed = coordinators_once(&sql, |listed| {
        listed.len() == COORDINATORS
            && role_count(listed, "holder") == 1
            && role_count(listed, "standby") == COORDINATORS - 1
    })
    .await;
    assert_eq!(listed.len(), COORDINATORS, "{listed:?}");
    assert_eq!(role_count(&listed, "holder"), 1, "{listed:?}");
    assert_eq!(
        role_count(&listed, "standby"),
        COORDINATORS - 1,
        "{listed:?}"
    );
    for row in &listed {
        let expected = if row[2].as_deref() == Some("holder") {
            lease_generation.to_string()
        } else {
            "0".to_string()
        };
        assert_eq!(row[3].as_deref(), Some(expected.as_str()), "{listed:?}");
    }

    let (first_holder, first_generation) = holder_of(&addresses)
        .await
        .expect("one coordinator holds the lease");
    assert_eq!(first_generation, lease_generation);

    let stop = Arc::new(AtomicBool::new(false));
    let logs: Vec<Arc<Mutex<ClientLog>>> = (0..CLIENTS)
        .map(|_| Arc::new(Mutex::new(ClientLog::default())))
        .collect();
    let tasks: Vec<_> = logs
        .iter()
        .map(|log| tokio::spawn(stream(addresses.clone(), stop.clone(), log.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(WARM_UP_MS)).await;

    // First crash: one of the two standbys takes over.
    cluster
        .node(&format!("coordinator-{}", first_holder + 1))
        .kill();
    let killed_at = Instant::now();
    let (first_gap, second_generation) = takeover_after(&logs, killed_at, first_generation).await;
    println!("takeover after the first kill -9: {first_gap:?}");
    let (second_holder, holder_generation) = holder_of(&addresses)
        .await
        .expect("a standby holds the lease after the first crash");
    assert_ne!(second_holder, first_holder, "the killed holder came back");
    assert_eq!(holder_generation, second_generation);

    // Second crash: the last coordinator takes over.
    cluster
        .node(&format!("coordinator-{}", second_holder + 1))
        .kill();
    let killed_at = Instant::now();
    let (second_gap, third_generation) = takeover_after(&logs, killed_at, second_generation).await;
    println!("takeover after the second kill -9: {second_gap:?}");
    let survivor = (0..COORDINATORS)
        .find(|i| *i != first_holder && *i != second_holder)
        .expect("three coordinators, two killed");
    let (third_holder, holder_generation) = holder_of(&addresses)
        .await
        .expect("the survivor holds the lease after the second crash");
    assert_eq!(third_holder, survivor);
    assert_eq!(holder_generation, third_generation);

    // The takeover was seen by the first client answered; let every client
    // be answered by the survivor (both kinds) before they stop.
    let deadline = Instant::now() + Duration::from_millis(TAKEOVER_WITHIN_MS);
    while !logs.iter().all(|log| {
        let log = log.lock().expect("client log lock");
        [Kind::Timestamps, Kind::Ids].into_iter().all(|kind| {
            log.served
                .iter()
                .any(|served| served.kind == kind && served.generation == third_generation)
        })
    }) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task");
    }

    assert!(
        first_generation < second_generation && second_generation < third_generation,
        "the generation grows at each takeover: {first_generation}, \
         {second_generation}, {third_generation}"
    );
    let (timestamps, ids) = assert_nothing_served_twice(&logs);
    let rejected: usize = logs
        .iter()
        .map(|log| log.lock().expect("client log lock").rejected_stale)
        .sum();
    println!("served {timestamps} timestamps and {ids} ids; {rejected} stale answers rejected");
    for log in &logs {
        let log = log.lock().expect("client log lock");
        for kind in [Kind::Timestamps, Kind::Ids] {
            let generations: BTreeSet<u64> = log
                .served
                .iter()
                .filter(|served| served.kind == kind)
                .map(|served| served.generation)
                .collect();
            assert!(
                generations.contains(&first_generation) && generations.contains(&third_generation),
                "every client got {kind:?} from the first and the last holder: {generations:?}"
            );
        }
    }
    let takeover_bound = Duration::from_millis(TAKEOVER_WITHIN_MS);
    assert!(
        first_gap <= takeover_bound,
        "the first takeover took {first_gap:?}"
    );
    assert!(
        second_gap <= takeover_bound,
        "the second takeover took {second_gap:?}"
    );

    // The gateway shows the survivor as holder at the last generation, the
    // two killed coordinators as unreachable.
    let survivor_id = format!("coordinator-{}", survivor + 1);
    let third = third_generation.to_string();
    let listed = coordinators_once(&sql, |listed| {
        listed.iter().any(|row| {
            row[0].as_deref() == Some(survivor_id.as_str())
                && row[2].as_deref() == Some("holder")
                && row[3].as_deref() == Some(third.as_str())
        }) && role_count(listed, "unreachable") == COORDINATORS - 1
    })
    .await;
    assert_eq!(listed.len(), COORDINATORS, "{listed:?}");
    assert_eq!(role_count(&listed, "holder"), 1, "{listed:?}");
    assert_eq!(
        role_count(&listed, "unreachable"),
        COORDINATORS - 1,
        "{listed:?}"
    );
    let holder_row = listed
        .iter()
        .find(|row| row[2].as_deref() == Some("holder"))
        .expect("one holder row");
    assert_eq!(holder_row[0].as_deref(), Some(survivor_id.as_str()));
    assert_eq!(holder_row[1].as_deref(), Some(addresses[survivor].as_str()));
    assert_eq!(holder_row[3].as_deref(), Some(third.as_str()));
    let lease = rows(
        &sql,
        "SELECT holder, holder_address, generation FROM system.leases",
    )
    .await;
    assert_eq!(
        lease,
        vec![vec![
            Some(survivor_id.clone()),
            Some(addresses[survivor].clone()),
            Some(third.clone())
        ]],
        "system.leases names the survivor"
    );

    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}
