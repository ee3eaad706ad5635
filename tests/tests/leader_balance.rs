//! Leader balancing end to end: a table split into several regions whose
//! leaders sit on store 1 (where the splits leave them; any region led
//! elsewhere has its replica on store 1 asked to campaign) is seen
//! imbalanced in `system.stores`, and the coordinator lease holder then
//! moves leaders off store 1 until no store leads more than its share plus
//! the balancer's tolerance. Every row written before stays readable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbor_coordinator::scheduler::LEADER_BALANCE_TOLERANCE;
use arbor_proto::store_raft_client::StoreRaftClient;
use arbor_proto::CampaignRequest;
use arbor_tests::{rows, Cluster};
use tokio_postgres::Client;

const ROWS: i64 = 160;
/// Split points of `t`: seven regions of the table, plus whatever the rest
/// of the key space is in.
const SPLIT_IDS: [i64; 6] = [20, 40, 60, 80, 100, 120];
/// The store every leader is pulled onto.
const CROWDED_STORE_ID: u64 = 1;
/// How long the splits get to show in the coordinators' view, each region
/// with a leader.
const SPLITS_SETTLE_MS: u64 = 20_000;
/// How long pulling the leaders onto one store gets before the test fails.
const IMBALANCE_TIMEOUT_MS: u64 = 20_000;
/// How long the balancer gets to spread the leaders (it moves one per
/// cooldown of 2 s, so a handful of moves fit with room).
const BALANCE_TIMEOUT_MS: u64 = 30_000;
/// How often the test reads the system tables.
const POLL_MS: u64 = 250;
/// How long one Campaign call may take.
const CAMPAIGN_TIMEOUT_MS: u64 = 1_000;

fn cell(value: &str) -> Option<String> {
    Some(value.to_string())
}

fn number(value: &Option<String>) -> Option<u64> {
    value.as_deref().and_then(|text| text.parse().ok())
}

/// Region id -> leader store id (None while a region has no known leader)
/// from `system.regions`.
async fn region_leaders(client: &Client) -> BTreeMap<u64, Option<u64>> {
    rows(
        client,
        "SELECT region_id, leader_store_id FROM system.regions",
    )
    .await
    .iter()
    .filter_map(|row| Some((number(&row[0])?, number(&row[1]))))
    .collect()
}

/// Store id -> leader_count from `system.stores` (alive stores only).
async fn leader_counts(client: &Client) -> BTreeMap<u64, usize> {
    rows(
        client,
        "SELECT store_id, leader_count FROM system.stores WHERE alive = true",
    )
    .await
    .iter()
    .filter_map(|row| {
        let store_id = number(&row[0])?;
        let leaders = usize::try_from(number(&row[1])?).ok()?;
        Some((store_id, leaders))
    })
    .collect()
}

/// The balancer's share of one store: every known leader spread evenly over
/// the up stores, rounded up.
fn share(counts: &BTreeMap<u64, usize>) -> usize {
    let leaders: usize = counts.values().sum();
    leaders.div_ceil(counts.len().max(1))
}

/// True when no store leads more than its share plus the tolerance, and
/// every region of `leaders` has a leader counted in `counts` (so a leader
/// missing between two heartbeats does not pass for balance).
fn balanced(counts: &BTreeMap<u64, usize>, leaders: &BTreeMap<u64, Option<u64>>) -> bool {
    let counted: usize = counts.values().sum();
    let every_region_led = leaders.values().all(Option::is_some);
    every_region_led
        && counted == leaders.len()
        && counts
            .values()
            .all(|led| *led <= share(counts) + LEADER_BALANCE_TOLERANCE)
}

/// Asks store `store_id`'s replica of `region_id` to call an election. A
/// lost or refused election is fine: the caller looks again and retries.
async fn campaign(address: &str, region_id: u64) {
    let Ok(mut client) = StoreRaftClient::connect(format!("http://{address}")).await else {
        return;
    };
    let mut request = tonic::Request::new(CampaignRequest { region_id });
    request.set_timeout(Duration::from_millis(CAMPAIGN_TIMEOUT_MS));
    let _ = client.campaign(request).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_pulled_onto_one_store_are_spread_back_within_the_tolerance() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;
    let store_addresses = cluster.listen_addresses("store-");
    // Stores get `--id` 1, 2, 3 in node order.
    let crowded_address = store_addresses
        .get(usize::try_from(CROWDED_STORE_ID - 1).expect("a small id"))
        .expect("the crowded store runs")
        .clone();

    rows(&client, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)").await;
    let values: Vec<String> = (1..=ROWS).map(|id| format!("({id}, 'v{id}')")).collect();
    rows(
        &client,
        &format!("INSERT INTO t VALUES {}", values.join(",")),
    )
    .await;
    for id in SPLIT_IDS {
        let split = rows(&client, &format!("ALTER TABLE t SPLIT AT VALUES ({id})")).await;
        assert_eq!(split.len(), 1, "split at {id}: {split:?}");
    }

    // Every split region is in the view, each with a leader.
    let deadline = Instant::now() + Duration::from_millis(SPLITS_SETTLE_MS);
    let leaders = loop {
        let leaders = region_leaders(&client).await;
        let settled = leaders.len() > SPLIT_IDS.len() && leaders.values().all(Option::is_some);
        if settled {
            break leaders;
        }
        assert!(
            Instant::now() < deadline,
            "the splits never showed, each led: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    };
    let region_count = leaders.len();
    println!("{region_count} regions, leaders after the splits: {leaders:?}");

    // Pull every leader onto one store until system.stores shows it leading
    // more than the balancer tolerates. The balancer works against this
    // (one move per cooldown), so campaigning repeats until the imbalance
    // is seen at least once.
    let deadline = Instant::now() + Duration::from_millis(IMBALANCE_TIMEOUT_MS);
    let imbalanced = loop {
        let counts = leader_counts(&client).await;
        let crowded = counts.get(&CROWDED_STORE_ID).copied().unwrap_or(0);
        if crowded > share(&counts) + LEADER_BALANCE_TOLERANCE {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "store {CROWDED_STORE_ID} never led more than its share + \
             {LEADER_BALANCE_TOLERANCE}: {counts:?}"
        );
        for (region_id, leader) in region_leaders(&client).await {
            if leader != Some(CROWDED_STORE_ID) {
                campaign(&crowded_address, region_id).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    };
    println!("imbalanced: leader counts {imbalanced:?}");
    let imbalanced_at = Instant::now();

    // The balancer spreads them back.
    let deadline = imbalanced_at + Duration::from_millis(BALANCE_TIMEOUT_MS);
    let counts = loop {
        let counts = leader_counts(&client).await;
        let leaders = region_leaders(&client).await;
        if balanced(&counts, &leaders) {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "leaders not balanced within {BALANCE_TIMEOUT_MS} ms: leader counts \
             {counts:?}, region leaders {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    };
    let most = counts.values().max().copied().unwrap_or(0);
    let fewest = counts.values().min().copied().unwrap_or(0);
    println!(
        "balanced after {:?}: leader counts {counts:?} (max - min = {})",
        imbalanced_at.elapsed(),
        most - fewest
    );
    let crowded_led =
        |counts: &BTreeMap<u64, usize>| counts.get(&CROWDED_STORE_ID).copied().unwrap_or(0);
    assert!(
        crowded_led(&counts) < crowded_led(&imbalanced),
        "leaders moved off store {CROWDED_STORE_ID}: {imbalanced:?} -> {counts:?}"
    );

    // Every row written before is still readable, in every region.
    assert_eq!(
        rows(&client, "SELECT count(*) FROM t").await,
        vec![vec![cell(&ROWS.to_string())]]
    );
    let ids: Vec<i64> = rows(&client, "SELECT id FROM t")
        .await
        .iter()
        .map(|row| {
            row[0]
                .as_deref()
                .and_then(|id| id.parse().ok())
                .expect("an id")
        })
        .collect();
    assert_eq!(ids.iter().sum::<i64>(), ROWS * (ROWS + 1) / 2, "{ids:?}");
    for id in SPLIT_IDS.iter().flat_map(|id| [id - 1, *id]).chain([ROWS]) {
        assert_eq!(
            rows(&client, &format!("SELECT id, v FROM t WHERE id = {id}")).await,
            vec![vec![cell(&id.to_string()), cell(&format!("v{id}"))]]
        );
    }

    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}
