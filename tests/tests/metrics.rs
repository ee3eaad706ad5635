//! Observability end to end: every process of a real cluster serves
//! Prometheus `/metrics` and `/health`; the key series exist from the start
//! and move when SQL runs through the gateway; the gateway's
//! `/api/timeseries` counts the statements it served per second.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use arbor_tests::{rows, Cluster};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cluster gets to elect a root leader and a lease holder, as
/// the metrics see them.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `GET` on a fresh connection: (status, body).
fn get(address: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("{address}{path}: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or(format!("{address}{path}: no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(format!("{address}{path}: no status"))?;
    Ok((status, body.to_string()))
}

/// A scrape: `name{labels}` exactly as rendered -> value.
type Scrape = BTreeMap<String, f64>;

fn parse(text: &str) -> Scrape {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line:?}"));
            (series.to_string(), value)
        })
        .collect()
}

fn scrape(address: &str) -> Scrape {
    let (status, body) =
        get(address, "/metrics").unwrap_or_else(|e| panic!("scraping {address}: {e}"));
    assert_eq!(status, 200, "{address}/metrics: {body}");
    parse(&body)
}

/// Every process's scrape, by node name (the gateway's from its HTTP port).
fn scrape_all(cluster: &Cluster) -> BTreeMap<String, Scrape> {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let address = match node.metrics_address() {
                Some(address) => address.to_string(),
                None => format!("127.0.0.1:{}", cluster.http_port),
            };
            (node.name.clone(), scrape(&address))
        })
        .collect()
}

fn value(scrapes: &BTreeMap<String, Scrape>, node: &str, series: &str) -> f64 {
    *scrapes[node]
        .get(series)
        .unwrap_or_else(|| panic!("{node} has no {series}: {:?}", scrapes[node].keys()))
}

/// The sum of `series` over the nodes whose name starts with `prefix`;
/// every one of them must have it.
fn total(scrapes: &BTreeMap<String, Scrape>, prefix: &str, series: &str) -> f64 {
    scrapes
        .keys()
        .filter(|node| node.starts_with(prefix))
        .map(|node| value(scrapes, node, series))
        .sum()
}

/// Like [`total`], for a labelled series that appears on a node only once
/// it counted something there (a store that served no Get has no
/// `method="get"` series yet).
fn total_seen(scrapes: &BTreeMap<String, Scrape>, prefix: &str, series: &str) -> f64 {
    scrapes
        .iter()
        .filter(|(node, _)| node.starts_with(prefix))
        .filter_map(|(_, scrape)| scrape.get(series))
        .sum()
}

const ROOT_SERIES: &[&str] = &[
    "arbor_root_raft_term",
    "arbor_root_raft_last_log_index",
    "arbor_root_raft_committed_index",
    "arbor_root_raft_applied_index",
    "arbor_root_raft_is_leader",
    "arbor_root_raft_leader_changes_total",
    "arbor_root_proposals_total{outcome=\"accepted\"}",
    "arbor_root_proposals_total{outcome=\"rejected\"}",
    "arbor_root_rpc_duration_seconds_count{method=\"propose\"}",
];
const COORDINATOR_SERIES: &[&str] = &[
    "arbor_coordinator_lease_generation",
    "arbor_coordinator_is_holder",
    "arbor_coordinator_tso_timestamps_served_total",
    "arbor_coordinator_ids_allocated_total",
    "arbor_coordinator_heartbeats_received_total",
    "arbor_coordinator_rpc_duration_seconds_count{method=\"get_timestamps\"}",
];
const STORE_SERIES: &[&str] = &[
    "arbor_store_regions",
    "arbor_store_regions_led",
    "arbor_store_raft_applied_entries",
    "arbor_store_raft_log_entries",
    "arbor_store_raft_proposals_total",
];
const GATEWAY_SERIES: &[&str] = &[
    "arbor_gateway_statements_total{kind=\"select\"}",
    "arbor_gateway_statements_total{kind=\"insert\"}",
    "arbor_gateway_statements_total{kind=\"ddl\"}",
    "arbor_gateway_statement_duration_seconds_count{kind=\"select\"}",
    "arbor_gateway_connections",
];

/// Once exactly one root peer leads, one coordinator holds the lease and
/// every region has a leader, as the processes' own metrics say.
fn settled(scrapes: &BTreeMap<String, Scrape>) -> Result<(), String> {
    let leaders = total(scrapes, "root-", "arbor_root_raft_is_leader");
    let holders = total(scrapes, "coordinator-", "arbor_coordinator_is_holder");
    let regions_led = total(scrapes, "store-", "arbor_store_regions_led");
    if leaders == 1.0 && holders == 1.0 && regions_led >= 1.0 {
        Ok(())
    } else {
        Err(format!(
            "root leaders {leaders}, lease holders {holders}, regions led {regions_led}"
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_process_serves_metrics_and_health_and_the_key_series_move_with_sql() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;

    // Health: every process answers 200 "ok" once it serves.
    for node in &cluster.nodes {
        let address = match node.metrics_address() {
            Some(address) => address.to_string(),
            None => format!("127.0.0.1:{}", cluster.http_port),
        };
        let (status, body) = get(&address, "/health").expect("health answers");
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{}", node.name);
    }

    // The key series exist on every process, and agree on who leads.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let before = loop {
        let scrapes = scrape_all(&cluster);
        match settled(&scrapes) {
            Ok(()) => break scrapes,
            Err(reason) if Instant::now() > deadline => {
                panic!("metrics never showed a settled cluster: {reason}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert_eq!(
        before.len(),
        9,
        "3 root peers, 2 coordinators, 3 stores, gateway"
    );
    for (node, scrape) in &before {
        let expected = match node.split('-').next() {
            Some("root") => ROOT_SERIES,
            Some("coordinator") => COORDINATOR_SERIES,
            Some("store") => STORE_SERIES,
            _ => GATEWAY_SERIES,
        };
        for series in expected {
            assert!(scrape.contains_key(*series), "{node} lacks {series}");
        }
    }
    assert!(total(&before, "root-", "arbor_root_raft_term") >= 3.0);
    assert!(total(&before, "root-", "arbor_root_raft_leader_changes_total") >= 3.0);
    assert!(
        total(
            &before,
            "coordinator-",
            "arbor_coordinator_lease_generation"
        ) >= 2.0
    );
    assert!(
        total(
            &before,
            "coordinator-",
            "arbor_coordinator_heartbeats_received_total"
        ) > 0.0
    );
    assert!(total(&before, "store-", "arbor_store_regions") >= 3.0);

    // SQL through the gateway: DDL, writes, point reads, a scan, one error.
    client
        .batch_execute("CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT)")
        .await
        .expect("create table");
    for id in 1..=5 {
        client
            .execute(
                "INSERT INTO accounts (id, owner) VALUES ($1, $2)",
                &[&(id as i64), &format!("owner-{id}")],
            )
            .await
            .expect("insert");
    }
    for id in 1..=5 {
        let found = rows(
            &client,
            &format!("SELECT owner FROM accounts WHERE id = {id}"),
        )
        .await;
        assert_eq!(found.len(), 1);
    }
    assert_eq!(rows(&client, "SELECT * FROM accounts").await.len(), 5);
    let duplicate = client
        .simple_query("INSERT INTO accounts VALUES (1, 'again')")
        .await
        .expect_err("a duplicate key fails");
    assert_eq!(
        duplicate.code().map(|code| code.code()),
        Some("23505"),
        "{duplicate}"
    );

    let after = scrape_all(&cluster);
    let moved = |prefix: &str, series: &str| {
        (
            total(&before, prefix, series),
            total(&after, prefix, series),
        )
    };
    let moved_seen = |prefix: &str, series: &str| {
        (
            total_seen(&before, prefix, series),
            total_seen(&after, prefix, series),
        )
    };
    let gateway_insert = moved("gateway", "arbor_gateway_statements_total{kind=\"insert\"}");
    assert!(
        gateway_insert.1 >= gateway_insert.0 + 6.0,
        "{gateway_insert:?}"
    );
    let gateway_select = moved("gateway", "arbor_gateway_statements_total{kind=\"select\"}");
    assert!(
        gateway_select.1 >= gateway_select.0 + 6.0,
        "{gateway_select:?}"
    );
    let gateway_ddl = moved("gateway", "arbor_gateway_statements_total{kind=\"ddl\"}");
    assert!(gateway_ddl.1 >= gateway_ddl.0 + 1.0, "{gateway_ddl:?}");
    let latency = moved(
        "gateway",
        "arbor_gateway_statement_duration_seconds_count{kind=\"insert\"}",
    );
    assert!(latency.1 >= latency.0 + 6.0, "{latency:?}");
    assert!(
        value(
            &after,
            "gateway",
            "arbor_gateway_errors_total{sqlstate=\"23505\"}"
        ) >= 1.0
    );
    assert!(value(&after, "gateway", "arbor_gateway_connections") >= 1.0);

    let gets = moved_seen(
        "store-",
        "arbor_store_rpc_duration_seconds_count{method=\"get\"}",
    );
    assert!(gets.1 >= gets.0 + 5.0, "store Get count {gets:?}");
    let writes = moved_seen(
        "store-",
        "arbor_store_rpc_duration_seconds_count{method=\"prewrite\"}",
    );
    assert!(
        writes.1 >= writes.0 + 5.0,
        "store write (Prewrite) count {writes:?}"
    );
    let proposals = moved("store-", "arbor_store_raft_proposals_total");
    assert!(proposals.1 >= proposals.0 + 5.0, "{proposals:?}");
    let applied = moved("store-", "arbor_store_raft_applied_entries");
    assert!(applied.1 >= applied.0 + 5.0, "{applied:?}");

    let root_applied = moved("root-", "arbor_root_raft_applied_index");
    assert!(root_applied.1 > root_applied.0, "{root_applied:?}");
    let accepted = moved("root-", "arbor_root_proposals_total{outcome=\"accepted\"}");
    assert!(accepted.1 > accepted.0, "{accepted:?}");
    let tso = moved(
        "coordinator-",
        "arbor_coordinator_tso_timestamps_served_total",
    );
    assert!(tso.1 > tso.0, "TSO timestamps served {tso:?}");

    // The chart's data: a complete second holding our statements appears.
    let address = format!("127.0.0.1:{}", cluster.http_port);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = get(&address, "/api/timeseries").expect("timeseries answers");
        assert_eq!(status, 200, "{body}");
        let document: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let points = document["points"].as_array().cloned().unwrap_or_default();
        let statements: u64 = points.iter().filter_map(|p| p["statements"].as_u64()).sum();
        let errors: u64 = points.iter().filter_map(|p| p["errors"].as_u64()).sum();
        let latency_shown = points.iter().any(|p| p["p99_ms"].as_f64().is_some());
        if statements >= 13 && errors >= 1 && latency_shown {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the time series never showed our statements: {document}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
