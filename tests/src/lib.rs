//! `arbor-tests`: a harness that starts a real Arbor cluster — every plane,
//! each node its own `arbor` child process on free loopback ports — and
//! stops exactly what it started.
//!
//! Never knows: any crate's internals; it drives the cluster only through the
//! binary's command line (or `ARBOR_*` environment) and the PostgreSQL
//! protocol, like a user.
//!
//! It also holds [`linearizability`], a pure WGL checker of register
//! histories that the fault tests use.
//!
//! Invariants: every child is started with a parent-death signal and is
//! stopped (SIGTERM, then SIGKILL) when the [`Cluster`] or its own [`Node`]
//! handle is dropped; nodes are addressed by their own handles, never by
//! process name.

pub mod linearizability;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh or restarted cluster gets to serve SQL.
pub const READY_TIMEOUT_MS: u64 = 90_000;
/// How long a node gets to exit after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT_MS: u64 = 5_000;

/// The `arbor` binary: `$ARBOR_BIN`, else next to this test's own target dir
/// (`target/<profile>/deps/<test>` -> `target/<profile>/arbor`).
pub fn arbor_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ARBOR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let binary = profile_dir.join("arbor");
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --release --workspace`, which builds it",
        binary.display()
    );
    binary
}

/// Ports chosen by the kernel, all held until every one is chosen so no two
/// are the same.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("bound listener has an address")
                .port()
        })
        .collect()
}

pub struct Node {
    pub name: String,
    args: Vec<String>,
    /// A command the binary runs under, e.g. `ip netns exec <namespace>`;
    /// empty runs it directly.
    launcher: Vec<String>,
    /// Extra environment (the `ARBOR_*` configuration of a node started
    /// from environment alone, as in a container).
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    /// A node that is not started yet: `arbor <args>`. Start it with
    /// [`Node::start_again`]; dropping it stops it.
    pub fn new(name: impl Into<String>, args: Vec<String>) -> Node {
        Node {
            name: name.into(),
            args,
            launcher: Vec::new(),
            env: Vec::new(),
            child: None,
        }
    }

    /// Runs the binary as the last argument of `launcher`, e.g.
    /// `["ip", "netns", "exec", "ns1"]`. The launcher must exec the binary
    /// (not fork it), so signals sent to the handle reach the node itself.
    pub fn launched_by(mut self, launcher: Vec<String>) -> Node {
        self.launcher = launcher;
        self
    }

    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Node {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The `--listen` (or `--pg-listen`) address the node was started with.
    pub fn listen_address(&self) -> Option<&str> {
        self.args
            .windows(2)
            .find(|pair| pair[0] == "--listen" || pair[0] == "--pg-listen")
            .map(|pair| pair[1].as_str())
    }

    /// The `--metrics-listen` address (`/metrics`, `/health`) of a root
    /// peer, coordinator or store; the gateway serves them on its HTTP port.
    pub fn metrics_address(&self) -> Option<&str> {
        self.args
            .windows(2)
            .find(|pair| pair[0] == "--metrics-listen")
            .map(|pair| pair[1].as_str())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn start(&mut self, log_dir: &Path) {
        let log_path = log_dir.join(format!("{}.log", self.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open node log");
        let log_err = log.try_clone().expect("clone log handle");
        let mut command = match self.launcher.split_first() {
            Some((program, launcher_args)) => {
                let mut command = Command::new(program);
                command.args(launcher_args).arg(arbor_binary());
                command
            }
            None => Command::new(arbor_binary()),
        };
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl only affects the child; the kernel kills it if the
        // thread that started it dies, so no node outlives a crashed test.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(command.spawn().expect("start an arbor node"));
    }

    /// SIGTERM, wait, then SIGKILL. Returns true if it exited on SIGTERM.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL (a crash: no shutdown path runs) and reap the child, so the
    /// handle is stopped and [`Node::start_again`] may reuse it.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Child::kill sends SIGKILL to our own child by its pid.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the node again with the same arguments and data, logging to
    /// the same file under `log_dir` (the cluster's `data_dir/logs`).
    pub fn start_again(&mut self, log_dir: &Path) {
        if self.is_running() {
            return;
        }
        self.start(log_dir);
    }
}

/// A node stops (SIGTERM, then SIGKILL) when its handle goes, so a test's
/// own nodes cannot outlive it either.
impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Knobs a test may turn; the defaults are the production ones.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `--region-split-keys` for every coordinator.
    pub region_split_keys: Option<u64>,
    /// How many stores; [`DEFAULT_STORES`] when unset (the first region
    /// takes three, so fewer are refused).
    pub stores: Option<usize>,
    /// Extra flags for every coordinator, e.g. `--store-dead-after-ms`.
    pub coordinator_args: Vec<String>,
    /// How many coordinators (`coordinator-1` .. `coordinator-N`, every one
    /// campaigning for the lease); [`DEFAULT_COORDINATORS`] when unset, and
    /// at least one.
    pub coordinators: Option<usize>,
}

/// Stores of a cluster whose options do not say.
pub const DEFAULT_STORES: usize = 3;
/// Coordinators of a cluster whose options do not say: a holder and one
/// standby, as `arbor dev` runs.
pub const DEFAULT_COORDINATORS: usize = 2;

/// A whole cluster: 3 root peers, [`DEFAULT_COORDINATORS`] coordinators and
/// [`DEFAULT_STORES`] stores unless [`ClusterOptions`] say otherwise, and 1
/// gateway.
pub struct Cluster {
    pub data_dir: PathBuf,
    pub pg_port: u16,
    /// The gateway's dashboard (HTTP) port.
    pub http_port: u16,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts every node of a fresh cluster keeping data under `data_dir`.
    pub fn start(data_dir: &Path) -> Cluster {
        Cluster::start_with(data_dir, ClusterOptions::default())
    }

    pub fn start_with(data_dir: &Path, options: ClusterOptions) -> Cluster {
        let store_count = options.stores.unwrap_or(DEFAULT_STORES);
        assert!(store_count >= 3, "the first region needs three stores");
        let coordinator_count = options.coordinators.unwrap_or(DEFAULT_COORDINATORS);
        assert!(
            coordinator_count >= 1,
            "a cluster needs a coordinator to hold the lease"
        );
        // 3 root peers, the coordinators, the stores, Postgres, HTTP, then one
        // metrics listener for each root peer, coordinator and store.
        let coordinators_end = 3 + coordinator_count;
        let servers = coordinators_end + store_count;
        let ports = free_ports(servers + 2 + servers);
        let address = |port: u16| format!("127.0.0.1:{port}");
        let root: Vec<String> = ports[0..3].iter().map(|p| address(*p)).collect();
        let coordinators: Vec<String> = ports[3..coordinators_end]
            .iter()
            .map(|p| address(*p))
            .collect();
        let stores: Vec<String> = ports[coordinators_end..servers]
            .iter()
            .map(|p| address(*p))
            .collect();
        let pg_port = ports[servers];
        let http_port = ports[servers + 1];
        let peers: Vec<String> = root
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let dir = |name: &str| data_dir.join(name).display().to_string();
        let mut nodes = Vec::new();
        let mut metrics_ports = ports[servers + 2..].iter();
        let mut add = |name: String, mut args: Vec<String>| {
            if name != "gateway" {
                if let Some(port) = metrics_ports.next() {
                    args.extend(["--metrics-listen".to_string(), address(*port)]);
                }
            }
            nodes.push(Node::new(name, args))
        };
        for (i, a) in root.iter().enumerate() {
            let id = i + 1;
            add(
                format!("root-{id}"),
                vec![
                    "root".into(),
                    "--id".into(),
                    id.to_string(),
                    "--listen".into(),
                    a.clone(),
                    "--peers".into(),
                    peers.join(","),
                    "--data".into(),
                    dir(&format!("root-{id}")),
                ],
            );
        }
        for (i, a) in coordinators.iter().enumerate() {
            let id = i + 1;
            add(
                format!("coordinator-{id}"),
                vec![
                    "coordinator".into(),
                    "--id".into(),
                    format!("coordinator-{id}"),
                    "--listen".into(),
                    a.clone(),
                    "--root".into(),
                    root.join(","),
                ]
                .into_iter()
                .chain(
                    options
                        .region_split_keys
                        .iter()
                        .flat_map(|keys| ["--region-split-keys".to_string(), keys.to_string()]),
                )
                .chain(options.coordinator_args.iter().cloned())
                .collect(),
            );
        }
        for (i, a) in stores.iter().enumerate() {
            let id = i + 1;
            add(
                format!("store-{id}"),
                vec![
                    "store".into(),
                    "--id".into(),
                    id.to_string(),
                    "--listen".into(),
                    a.clone(),
                    "--coordinators".into(),
                    coordinators.join(","),
                    "--data".into(),
                    dir(&format!("store-{id}")),
                ],
            );
        }
        add(
            "gateway".into(),
            vec![
                "gateway".into(),
                "--pg-listen".into(),
                address(pg_port),
                "--coordinators".into(),
                coordinators.join(","),
                "--root".into(),
                root.join(","),
                "--http-listen".into(),
                address(http_port),
            ],
        );
        let mut cluster = Cluster {
            data_dir: data_dir.to_path_buf(),
            pg_port,
            http_port,
            nodes,
        };
        cluster.start_nodes();
        cluster
    }

    /// The `--listen` addresses of the nodes whose names start with
    /// `prefix` (`"coordinator-"`, `"root-"`, `"store-"`), in node order.
    pub fn listen_addresses(&self, prefix: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|node| node.name.starts_with(prefix))
            .filter_map(|node| node.listen_address().map(str::to_owned))
            .collect()
    }

    /// psql's unaligned, tuples-only output of `sql` (`-X -q -At`, stop on
    /// the first error): stdout then stderr, trimmed.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "arbor",
                "-d",
                "arbor",
            ])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("psql is installed by scripts/setup.sh");
        let mut text = String::from_utf8_lossy(&output.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        text.trim().to_string()
    }

    fn start_nodes(&mut self) {
        let log_dir = self.data_dir.join("logs");
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        for node in &mut self.nodes {
            node.start(&log_dir);
        }
    }

    pub fn node(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node named {name}"))
    }

    /// Stops every node, gateway first and root last. Returns the names of
    /// nodes that had to be killed because SIGTERM did not stop them.
    pub fn stop(&mut self) -> Vec<String> {
        let mut killed = Vec::new();
        for node in self.nodes.iter_mut().rev() {
            if !node.stop() {
                killed.push(node.name.clone());
            }
        }
        killed
    }

    /// Stops everything, then starts the same nodes on the same data.
    pub fn restart(&mut self) -> Vec<String> {
        let killed = self.stop();
        self.start_nodes();
        killed
    }

    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=arbor dbname=arbor connect_timeout=5",
            self.pg_port
        )
    }

    /// Connects once the cluster serves `SELECT count(*) FROM kv`; panics
    /// with the tail of every node's log if it does not in time.
    pub async fn ready_client(&mut self) -> tokio_postgres::Client {
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
            match self.try_connect().await {
                Ok(client) => match client.simple_query("SELECT count(*) FROM kv").await {
                    Ok(_) => return client,
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "cluster not ready after {READY_TIMEOUT_MS} ms: {last_error}\n{}",
            self.logs_tail()
        );
    }

    /// Transaction locks still held anywhere in the cluster (at most
    /// [`LOCKS_LISTED_MAX`]), read through the region client: a fault test
    /// ends with none.
    pub async fn locks_left(&mut self) -> Vec<arbor_proto::LockInfo> {
        let coordinators: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.name.starts_with("coordinator-"))
            .filter_map(|node| node.listen_address().map(str::to_owned))
            .collect();
        arbor_raftstore::RegionClient::new(coordinators)
            .scan_locks(b"", b"", LOCKS_LISTED_MAX)
            .await
            .unwrap_or_else(|error| panic!("scanning for locks: {error}\n{}", self.logs_tail()))
    }

    pub async fn try_connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string(), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let path = self
                .data_dir
                .join("logs")
                .join(format!("{}.log", node.name));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("--- {} ---\n{}\n", node.name, tail.join("\n")));
        }
        out
    }
}

/// A test that fails with a cluster up prints every node's log tail first:
/// the data directory (and the logs in it) usually goes with the test.
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the test failed; node logs:\n{}", self.logs_tail());
        }
        self.stop();
    }
}

/// How long [`rows`] waits for one statement's answer before it fails the
/// test (far above any statement's own retry deadline: a hang, not a slow
/// answer, trips it).
pub const QUERY_TIMEOUT_MS: u64 = 60_000;

/// Rows of a simple query as text cells (NULL as None); panics with the SQL
/// and the error if the query fails or gets no answer in
/// [`QUERY_TIMEOUT_MS`].
pub async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let answer = tokio::time::timeout(
        Duration::from_millis(QUERY_TIMEOUT_MS),
        client.simple_query(sql),
    )
    .await
    .unwrap_or_else(|_| panic!("{sql}: no answer in {QUERY_TIMEOUT_MS} ms"));
    let messages = answer.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE `sql` fails with; panics if it succeeds or fails without one.
pub async fn sqlstate_of(client: &tokio_postgres::Client, sql: &str) -> String {
    let error = client
        .simple_query(sql)
        .await
        .expect_err(&format!("{sql} should fail"));
    error
        .code()
        .map(|code| code.code().to_string())
        .unwrap_or_else(|| panic!("{sql}: error without SQLSTATE: {error}"))
}

/// How long [`http_status`] waits for an answer.
pub const HTTP_PROBE_TIMEOUT_MS: u64 = 1_000;

/// `GET path` over plain HTTP/1.0, as a readiness probe does: the status
/// code, or None when nothing answers in [`HTTP_PROBE_TIMEOUT_MS`].
pub async fn http_status(address: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // Only the status line matters ("HTTP/1.1 200 OK").
        let mut head = [0u8; 64];
        let mut filled = 0;
        while filled < head.len() && !head[..filled].contains(&b'\n') {
            let read = stream.read(&mut head[filled..]).await.ok()?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        let line = std::str::from_utf8(&head[..filled]).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_millis(HTTP_PROBE_TIMEOUT_MS), probe)
        .await
        .ok()
        .flatten()
}

/// Leftover locks [`Cluster::locks_left`] lists at most.
pub const LOCKS_LISTED_MAX: usize = 100;

/// The value of one sample line of `address`'s `/metrics` (the series name
/// with its labels exactly as exposed), or None when it is missing or
/// nothing answers in [`HTTP_PROBE_TIMEOUT_MS`].
pub async fn metric_value(address: &str, series: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let scrape = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        answer.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    };
    tokio::time::timeout(Duration::from_millis(HTTP_PROBE_TIMEOUT_MS), scrape)
        .await
        .ok()
        .flatten()
}

/// The cluster view one coordinator (`host:port`) serves, or None when it
/// does not answer.
pub async fn coordinator_view(address: &str) -> Option<arbor_proto::ClusterViewResponse> {
    let mut client =
        arbor_proto::coordinator_client::CoordinatorClient::connect(format!("http://{address}"))
            .await
            .ok()?;
    let view = client
        .cluster_view(arbor_proto::ClusterViewRequest { events_limit: 0 })
        .await
        .ok()?;
    Some(view.into_inner())
}

/// The index in `coordinators` of the one that holds the lease, once one
/// does; panics after `timeout`.
pub async fn lease_holder_index(coordinators: &[String], timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        for (i, address) in coordinators.iter().enumerate() {
            let role = coordinator_view(address)
                .await
                .and_then(|view| view.coordinator)
                .map(|c| c.role);
            if role.as_deref() == Some("holder") {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no coordinator holds the lease after {timeout:?}");
}
