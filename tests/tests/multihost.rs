//! Multi-host behaviour on one machine: every node runs in its own network
//! namespace with its own IP on a private bridge, configured from `ARBOR_*`
//! environment alone (as a container would be) and binding `0.0.0.0`. Root
//! peers and coordinators are known by host name, as compose service names
//! are (each namespace gets a hosts file); stores advertise their namespace
//! IP. The gateway and every `/health` endpoint are reached from the host
//! namespace through the bridge; SQL writes and reads must work, and the
//! system tables must show the advertised addresses, never a bind address.
//!
//! Skip: creating namespaces needs root and iproute2's `ip netns`. Where
//! either is missing (or the kernel refuses a namespace), the test prints
//! `skipped: <reason>` and returns, passing. Everything it creates —
//! processes (by their own handles), namespaces, their /etc/netns hosts
//! files, the bridge and veth links — is removed by Drop guards, also when
//! the test fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use arbor_tests::{arbor_binary, http_status, rows, Node};

/// How long the namespaced cluster gets to serve SQL.
const READY_TIMEOUT_MS: u64 = 90_000;
/// Every node listens on the same ports: each namespace has its own.
const NODE_PORT: u16 = 7100;
const PG_PORT: u16 = 5433;
const HTTP_PORT: u16 = 8080;
/// `/metrics` and `/health` of root peers, coordinators and stores.
const METRICS_PORT: u16 = 9100;
const ROOT_PEERS: usize = 3;
const COORDINATORS: usize = 2;
const STORES: usize = 3;

/// Runs `ip <args>`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Why this machine cannot run the test, or None if it can.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root (run the tests as root)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed".into());
    }
    let probe = format!("arbor-probe-{}", std::process::id());
    if let Err(error) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {error}"));
    }
    let _ = ip(&["netns", "delete", &probe]);
    None
}

/// A /24 on a bridge in the host namespace, one namespace per host with a
/// veth pair into the bridge, and a hosts file that `ip netns exec` mounts
/// over /etc/hosts in each namespace, so hosts also find each other by name
/// (as containers do by service name). Dropping it deletes the namespaces
/// (which deletes their veth pairs), their /etc/netns directories and the
/// bridge.
struct Network {
    prefix: String,
    bridge: String,
    /// Host `n`'s name (`root-1`, `store-2`, ...).
    names: Vec<String>,
    namespaces: Vec<String>,
}

impl Network {
    /// Names carry the test's pid, so two runs never share a link; the
    /// subnet's third octet is picked so it is not in use on this machine.
    fn create(names: Vec<String>) -> Result<Network, String> {
        let pid = std::process::id();
        let hosts = names.len();
        let mut network = Network {
            prefix: free_subnet(pid)?,
            bridge: format!("arb{pid}br"),
            names,
            namespaces: Vec::new(),
        };
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        let gateway_cidr = format!("{}.1/24", network.prefix);
        ip(&["addr", "add", &gateway_cidr, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        for host in 0..hosts {
            network.add_host(pid, host)?;
        }
        Ok(network)
    }

    fn add_host(&mut self, pid: u32, host: usize) -> Result<(), String> {
        let namespace = format!("arbor-{pid}-{host}");
        ip(&["netns", "add", &namespace])?;
        self.namespaces.push(namespace.clone());
        self.write_hosts_file(&namespace)?;
        let outside = format!("arb{pid}v{host}");
        let inside = format!("arb{pid}p{host}");
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &namespace])?;
        ip(&["link", "set", &outside, "master", &self.bridge])?;
        ip(&["link", "set", &outside, "up"])?;
        let cidr = format!("{}/24", self.host_ip(host));
        let exec = ["netns", "exec", namespace.as_str(), "ip"];
        let in_namespace = |rest: &[&str]| {
            let args: Vec<&str> = exec.iter().chain(rest).copied().collect();
            ip(&args)
        };
        in_namespace(&["addr", "add", &cidr, "dev", &inside])?;
        in_namespace(&["link", "set", &inside, "up"])?;
        // A process dialing its own advertised IP goes through loopback.
        in_namespace(&["link", "set", "lo", "up"])
    }

    fn write_hosts_file(&self, namespace: &str) -> Result<(), String> {
        let dir = netns_etc(namespace);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (host, name) in self.names.iter().enumerate() {
            hosts.push_str(&format!("{} {name}\n", self.host_ip(host)));
        }
        let path = dir.join("hosts");
        std::fs::write(&path, hosts).map_err(|e| format!("write {}: {e}", path.display()))
    }

    /// Host `n` is .(10 + n); .1 is the bridge in the host namespace.
    fn host_ip(&self, host: usize) -> String {
        format!("{}.{}", self.prefix, 10 + host)
    }

    fn launcher(&self, host: usize) -> Vec<String> {
        ["ip", "netns", "exec", self.namespaces[host].as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            if let Err(error) = ip(&["netns", "delete", namespace]) {
                eprintln!("cleanup: {error}");
            }
            let _ = std::fs::remove_dir_all(netns_etc(namespace));
        }
        // Only if empty: another run's files stay.
        let _ = std::fs::remove_dir(netns_etc(""));
        if let Err(error) = ip(&["link", "delete", &self.bridge]) {
            eprintln!("cleanup: {error}");
        }
    }
}

/// Files under /etc/netns/<namespace>/ replace their /etc namesakes for
/// processes started with `ip netns exec <namespace>`.
fn netns_etc(namespace: &str) -> std::path::PathBuf {
    Path::new("/etc/netns").join(namespace)
}

/// `10.213.X` with X derived from the pid, moved on while any address of
/// this machine is already in that /24.
fn free_subnet(pid: u32) -> Result<String, String> {
    let output = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .map_err(|e| format!("ip -o addr show: {e}"))?;
    let in_use = String::from_utf8_lossy(&output.stdout).to_string();
    (0..250u32)
        .map(|step| format!("10.213.{}", (pid + step) % 250 + 1))
        .find(|prefix| !in_use.contains(&format!(" {prefix}.")))
        .ok_or_else(|| "no free 10.213.x.0/24 subnet".to_string())
}

/// The namespaced cluster: nodes are declared before the network so they
/// stop (Drop, in reverse start order) before the namespaces go.
struct Hosts {
    /// Node `n` runs on host (namespace) `n`.
    nodes: Vec<Node>,
    network: Network,
    log_dir: std::path::PathBuf,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        while let Some(mut node) = self.nodes.pop() {
            node.stop();
        }
    }
}

impl Hosts {
    fn start(network: Network, data_dir: &Path) -> Hosts {
        let log_dir = data_dir.join("logs");
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        let mut hosts = Hosts {
            nodes: Vec::new(),
            network,
            log_dir,
        };
        // Root peers and coordinators are known by name, as in
        // deploy/docker-compose.yml; stores advertise their IP.
        let named_address = |host: usize| format!("{}:{NODE_PORT}", hosts.network.names[host]);
        let ip_address = |host: usize| format!("{}:{NODE_PORT}", hosts.network.host_ip(host));
        let root: Vec<String> = (0..ROOT_PEERS).map(named_address).collect();
        let coordinators: Vec<String> = (ROOT_PEERS..ROOT_PEERS + COORDINATORS)
            .map(named_address)
            .collect();
        let peers: Vec<String> = root
            .iter()
            .enumerate()
            .map(|(i, address)| format!("{}={address}", i + 1))
            .collect();
        let listen = format!("0.0.0.0:{NODE_PORT}");
        let metrics_listen = format!("0.0.0.0:{METRICS_PORT}");
        let mut planned = Vec::new();
        for i in 0..ROOT_PEERS {
            // No ARBOR_ADVERTISE: a root peer advertises its --peers entry.
            let node = Node::new(format!("root-{}", i + 1), vec!["root".into()])
                .with_env("ARBOR_ROOT_ID", (i + 1).to_string())
                .with_env("ARBOR_LISTEN", &listen)
                .with_env("ARBOR_METRICS_LISTEN", &metrics_listen)
                .with_env("ARBOR_ROOT_PEERS", peers.join(","))
                .with_env(
                    "ARBOR_DATA",
                    path(&data_dir.join(format!("root-{}", i + 1))),
                );
            planned.push((i, node));
        }
        for i in 0..COORDINATORS {
            let host = ROOT_PEERS + i;
            let node = Node::new(format!("coordinator-{}", i + 1), vec!["coordinator".into()])
                .with_env("ARBOR_COORDINATOR_ID", format!("coordinator-{}", i + 1))
                .with_env("ARBOR_LISTEN", &listen)
                .with_env("ARBOR_METRICS_LISTEN", &metrics_listen)
                .with_env("ARBOR_ADVERTISE", named_address(host))
                .with_env("ARBOR_ROOT", root.join(","));
            planned.push((host, node));
        }
        for i in 0..STORES {
            let host = ROOT_PEERS + COORDINATORS + i;
            let node = Node::new(format!("store-{}", i + 1), vec!["store".into()])
                .with_env("ARBOR_STORE_ID", (i + 1).to_string())
                .with_env("ARBOR_LISTEN", &listen)
                .with_env("ARBOR_METRICS_LISTEN", &metrics_listen)
                .with_env("ARBOR_ADVERTISE", ip_address(host))
                .with_env("ARBOR_COORDINATORS", coordinators.join(","))
                .with_env(
                    "ARBOR_DATA",
                    path(&data_dir.join(format!("store-{}", i + 1))),
                );
            planned.push((host, node));
        }
        let gateway = Node::new("gateway", vec!["gateway".into()])
            .with_env("ARBOR_PG_LISTEN", format!("0.0.0.0:{PG_PORT}"))
            .with_env("ARBOR_HTTP_LISTEN", format!("0.0.0.0:{HTTP_PORT}"))
            .with_env("ARBOR_COORDINATORS", coordinators.join(","))
            .with_env("ARBOR_ROOT", root.join(","));
        planned.push((gateway_host(), gateway));
        for (host, node) in planned {
            let mut node = node.launched_by(hosts.network.launcher(host));
            node.start_again(&hosts.log_dir);
            hosts.nodes.push(node);
        }
        hosts
    }

    fn gateway_ip(&self) -> String {
        self.network.host_ip(gateway_host())
    }

    /// Where each node answers `/health`, as a readiness probe on another
    /// host would ask: its namespace IP, through the bridge.
    fn health_addresses(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(host, node)| {
                let port = if host == gateway_host() {
                    HTTP_PORT
                } else {
                    METRICS_PORT
                };
                (
                    node.name.clone(),
                    format!("{}:{port}", self.network.host_ip(host)),
                )
            })
            .collect()
    }

    fn ip_addresses(&self, first_host: usize, count: usize) -> BTreeSet<String> {
        (first_host..first_host + count)
            .map(|host| format!("{}:{NODE_PORT}", self.network.host_ip(host)))
            .collect()
    }

    fn named_addresses(&self, first_host: usize, count: usize) -> BTreeSet<String> {
        (first_host..first_host + count)
            .map(|host| format!("{}:{NODE_PORT}", self.network.names[host]))
            .collect()
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let config = format!(
            "host={} port={PG_PORT} user=arbor dbname=arbor connect_timeout=5",
            self.gateway_ip()
        );
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn ready_client(&mut self) -> tokio_postgres::Client {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        let mut last_error = String::new();
        while Instant::now() < deadline {
            let exited: Vec<String> = self
                .nodes
                .iter_mut()
                .filter_map(|node| (!node.is_running()).then(|| node.name.clone()))
                .collect();
            assert!(
                exited.is_empty(),
                "{exited:?} exited early\n{}",
                self.logs_tail()
            );
            match self.connect().await {
                Ok(client) => match client.simple_query("SELECT count(*) FROM kv").await {
                    Ok(_) => return client,
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "namespaced cluster not ready after {READY_TIMEOUT_MS} ms: {last_error}\n{}",
            self.logs_tail()
        );
    }

    fn logs_tail(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = std::fs::read_to_string(self.log_dir.join(format!("{}.log", node.name)))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("--- {} ---\n{}\n", node.name, tail.join("\n")));
        }
        out
    }
}

/// Host `n`'s name, in host order: root peers, coordinators, stores, gateway.
fn host_names() -> Vec<String> {
    let kinds = [
        ("root", ROOT_PEERS),
        ("coordinator", COORDINATORS),
        ("store", STORES),
    ];
    kinds
        .iter()
        .flat_map(|(kind, count)| (1..=*count).map(move |i| format!("{kind}-{i}")))
        .chain(["gateway".to_string()])
        .collect()
}

fn gateway_host() -> usize {
    ROOT_PEERS + COORDINATORS + STORES
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// The addresses in column `column` of a system table, until they equal
/// `expected` (views fill in over a few heartbeats) or time runs out.
async fn wait_for_addresses(
    client: &tokio_postgres::Client,
    sql: &str,
    expected: &BTreeSet<String>,
) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: BTreeSet<String> = rows(client, sql)
            .await
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect();
        if &seen == expected || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_separate_network_namespaces_form_a_cluster_by_advertised_addresses() {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    // Fail early with a clear message rather than inside `ip netns exec`.
    let _ = arbor_binary();
    let data = tempfile::tempdir().expect("temp dir");
    let network = Network::create(host_names()).expect("create namespaces and bridge");
    let mut hosts = Hosts::start(network, data.path());
    let client = hosts.ready_client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, address) in hosts.health_addresses() {
        while http_status(&address, "/health").await != Some(200) {
            assert!(
                Instant::now() < deadline,
                "{name}: GET http://{address}/health does not answer 200"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    rows(
        &client,
        "INSERT INTO kv VALUES ('host-a', '1'), ('host-b', '2'), ('host-c', '3')",
    )
    .await;
    let read = rows(
        &client,
        "SELECT k, v FROM kv WHERE k >= 'host-' AND k < 'host.' ORDER BY k",
    )
    .await;
    let expected_rows: Vec<Vec<Option<String>>> =
        [("host-a", "1"), ("host-b", "2"), ("host-c", "3")]
            .iter()
            .map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())])
            .collect();
    assert_eq!(read, expected_rows);

    let stores = hosts.ip_addresses(ROOT_PEERS + COORDINATORS, STORES);
    let seen = wait_for_addresses(&client, "SELECT address FROM system.stores", &stores).await;
    assert_eq!(
        seen, stores,
        "system.stores must list the advertised namespace IPs"
    );
    let coordinators = hosts.named_addresses(ROOT_PEERS, COORDINATORS);
    let seen = wait_for_addresses(
        &client,
        "SELECT address FROM system.coordinators",
        &coordinators,
    )
    .await;
    assert_eq!(
        seen, coordinators,
        "system.coordinators must list advertised addresses"
    );
    let root = hosts.named_addresses(0, ROOT_PEERS);
    let seen = wait_for_addresses(&client, "SELECT address FROM system.root_peers", &root).await;
    assert_eq!(seen, root, "root peers advertise their --peers entries");
    println!(
        "gateway {}:{PG_PORT}; root peers at {root:?}; coordinators at {coordinators:?}; \
         stores at {stores:?}",
        hosts.gateway_ip()
    );

    drop(client);
    let mut killed = Vec::new();
    while let Some(mut node) = hosts.nodes.pop() {
        if !node.stop() {
            killed.push(node.name.clone());
        }
    }
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}

/// Needs no privileges: a process that binds every interface and is told no
/// address to advertise refuses to start, with a hint, instead of
/// registering `0.0.0.0` that no other host can dial.
#[test]
fn binding_every_interface_without_an_advertise_address_is_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = Command::new(arbor_binary())
        .arg("store")
        .env("ARBOR_STORE_ID", "1")
        .env("ARBOR_LISTEN", "0.0.0.0:0")
        .env("ARBOR_COORDINATORS", "127.0.0.1:1")
        .env("ARBOR_DATA", data.path())
        .env_remove("ARBOR_ADVERTISE")
        .output()
        .expect("run arbor store");
    assert!(
        !output.status.success(),
        "the store started without an address to advertise"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ARBOR_ADVERTISE"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
