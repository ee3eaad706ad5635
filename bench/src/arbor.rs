//! The Arbor processes a run starts: a whole cluster (3 root peers, 2
//! coordinators, 3 stores, 1 gateway) and, for the root benchmark, a
//! separate 3-peer root group nothing else proposes to. Driven only through
//! the `arbor` binary's command line and its public gRPC/pgwire APIs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::root_client::RootClient;
use arbor_proto::{
    ClusterViewRequest, ClusterViewResponse, CoordinatorStatus, CoordinatorStatusRequest,
    RootStatusRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::error::{BenchError, Result};
use crate::procs::{Spec, Supervisor};

/// How long a fresh cluster (or root group) gets to serve.
pub const READY_TIMEOUT_MS: u64 = 90_000;
/// Deadline of one control call (status, cluster view) made by the harness.
pub const CONTROL_CALL_TIMEOUT_MS: u64 = 2_000;
pub const ROOT_PEERS: usize = 3;
pub const COORDINATORS: usize = 2;
pub const STORES: usize = 3;

/// Ports chosen by the kernel, all held until every one is chosen so no two
/// are the same.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| BenchError::cluster("free ports", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| BenchError::cluster("free ports", e))
}

pub fn channel(address: &str) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| BenchError::cluster(format!("address {address}"), e))?;
    Ok(endpoint
        .connect_timeout(Duration::from_millis(CONTROL_CALL_TIMEOUT_MS))
        .tcp_nodelay(true)
        .connect_lazy())
}

async fn timed<T>(
    call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(Duration::from_millis(CONTROL_CALL_TIMEOUT_MS), call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("timed out after {CONTROL_CALL_TIMEOUT_MS} ms")),
    }
}

/// A 3-peer root group of its own (`rootbench-N`): the target of the root
/// proposal benchmark, so its proposals race with no coordinator.
pub struct RootGroup {
    pub addresses: Vec<String>,
}

impl RootGroup {
    pub async fn start(supervisor: &Supervisor, binary: &Path, data: &Path) -> Result<RootGroup> {
        let ports = free_ports(ROOT_PEERS)?;
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let peers: Vec<String> = addresses
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        for (i, address) in addresses.iter().enumerate() {
            let id = i + 1;
            supervisor.spawn(Spec::new(
                format!("rootbench-{id}"),
                binary,
                vec![
                    "root".into(),
                    "--id".into(),
                    id.to_string(),
                    "--listen".into(),
                    address.clone(),
                    "--peers".into(),
                    peers.join(","),
                    "--data".into(),
                    data.join(format!("rootbench-{id}")).display().to_string(),
                ],
            ))?;
        }
        let group = RootGroup { addresses };
        group.leader(supervisor).await?;
        Ok(group)
    }

    /// The address of the peer that is leader, once one is.
    pub async fn leader(&self, supervisor: &Supervisor) -> Result<String> {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        let mut last_error = String::from("no answer yet");
        while Instant::now() < deadline {
            for address in &self.addresses {
                let mut client = RootClient::new(channel(address)?);
                match timed(client.status(RootStatusRequest {})).await {
                    Ok(status) if status.role == "leader" => return Ok(address.clone()),
                    Ok(status) => last_error = format!("{address} is {}", status.role),
                    Err(error) => last_error = format!("{address}: {error}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(BenchError::NotReady {
            what: "the benchmark's root group".into(),
            seconds: READY_TIMEOUT_MS / 1000,
            last_error,
            log: supervisor.log_path("rootbench-1").display().to_string(),
        })
    }
}

/// The whole cluster, every node a child of the [`Supervisor`].
pub struct Arbor {
    pub binary: PathBuf,
    pub root: Vec<String>,
    pub coordinators: Vec<String>,
    pub stores: Vec<String>,
    /// Each store's `/metrics` listener (the soak reads its hibernation
    /// gauge there).
    pub store_metrics: Vec<String>,
    pub pg_port: u16,
    pub http_port: u16,
}

impl Arbor {
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=arbor dbname=arbor connect_timeout=5",
            self.pg_port
        )
    }

    pub fn coordinator_name(index: usize) -> String {
        format!("coordinator-{}", index + 1)
    }

    pub fn store_name(store_id: u64) -> String {
        format!("store-{store_id}")
    }

    pub fn coordinator_spec(&self, index: usize, region_split_keys: Option<u64>) -> Spec {
        let mut args = vec![
            "coordinator".into(),
            "--id".into(),
            Arbor::coordinator_name(index),
            "--listen".into(),
            self.coordinators[index].clone(),
            "--root".into(),
            self.root.join(","),
        ];
        if let Some(keys) = region_split_keys {
            args.extend(["--region-split-keys".into(), keys.to_string()]);
        }
        Spec::new(Arbor::coordinator_name(index), &self.binary, args)
    }

    pub async fn start(supervisor: &Supervisor, binary: &Path, data: &Path) -> Result<Arbor> {
        let ports = free_ports(ROOT_PEERS + COORDINATORS + 2 * STORES + 2)?;
        let address = |port: &u16| format!("127.0.0.1:{port}");
        let (root_ports, rest) = ports.split_at(ROOT_PEERS);
        let (coordinator_ports, rest) = rest.split_at(COORDINATORS);
        let (store_ports, rest) = rest.split_at(STORES);
        let (store_metrics_ports, rest) = rest.split_at(STORES);
        let arbor = Arbor {
            binary: binary.to_path_buf(),
            root: root_ports.iter().map(address).collect(),
            coordinators: coordinator_ports.iter().map(address).collect(),
            stores: store_ports.iter().map(address).collect(),
            store_metrics: store_metrics_ports.iter().map(address).collect(),
            pg_port: rest[0],
            http_port: rest[1],
        };
        let peers: Vec<String> = arbor
            .root
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let dir = |name: &str| data.join(name).display().to_string();
        for (i, a) in arbor.root.iter().enumerate() {
            let id = i + 1;
            supervisor.spawn(Spec::new(
                format!("root-{id}"),
                binary,
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
            ))?;
        }
        for index in 0..COORDINATORS {
            supervisor.spawn(arbor.coordinator_spec(index, None))?;
        }
        for (i, a) in arbor.stores.iter().enumerate() {
            let id = i + 1;
            supervisor.spawn(Spec::new(
                Arbor::store_name(id as u64),
                binary,
                vec![
                    "store".into(),
                    "--id".into(),
                    id.to_string(),
                    "--listen".into(),
                    a.clone(),
                    "--coordinators".into(),
                    arbor.coordinators.join(","),
                    "--data".into(),
                    dir(&format!("store-{id}")),
                    "--metrics-listen".into(),
                    arbor.store_metrics[i].clone(),
                ],
            ))?;
        }
        supervisor.spawn(Spec::new(
            "gateway",
            binary,
            vec![
                "gateway".into(),
                "--pg-listen".into(),
                format!("127.0.0.1:{}", arbor.pg_port),
                "--coordinators".into(),
                arbor.coordinators.join(","),
                "--root".into(),
                arbor.root.join(","),
                "--http-listen".into(),
                format!("127.0.0.1:{}", arbor.http_port),
            ],
        ))?;
        arbor.wait_for_sql(supervisor).await?;
        Ok(arbor)
    }

    /// Waits until the gateway answers `SELECT count(*) FROM kv`.
    pub async fn wait_for_sql(&self, supervisor: &Supervisor) -> Result<()> {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        let mut last_error = String::from("no answer yet");
        while Instant::now() < deadline {
            let exited = supervisor.exited();
            if !exited.is_empty() {
                return Err(BenchError::cluster(
                    "arbor cluster",
                    format!(
                        "{exited:?} exited early; logs in {}/logs",
                        supervisor.run_dir().display()
                    ),
                ));
            }
            match crate::sql::connect(&self.connection_string()).await {
                Ok(client) => match client.simple_query("SELECT count(*) FROM kv").await {
                    Ok(_) => return Ok(()),
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(BenchError::NotReady {
            what: "the Arbor cluster".into(),
            seconds: READY_TIMEOUT_MS / 1000,
            last_error,
            log: supervisor.log_path("gateway").display().to_string(),
        })
    }

    /// The index of the coordinator that holds the lease, once one does.
    pub async fn holder(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no answer yet");
        while Instant::now() < deadline {
            for (index, address) in self.coordinators.iter().enumerate() {
                let mut client = CoordinatorClient::new(channel(address)?);
                match timed(client.status(CoordinatorStatusRequest {})).await {
                    Ok(status) if status.role == "holder" => return Ok(index),
                    Ok(status) => last_error = format!("{address} is {}", status.role),
                    Err(error) => last_error = format!("{address}: {error}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BenchError::cluster("coordinator lease", last_error))
    }

    /// The `Status` answer of the coordinator at `index`.
    pub async fn coordinator_status(
        &self,
        index: usize,
    ) -> std::result::Result<CoordinatorStatus, String> {
        let address = self
            .coordinators
            .get(index)
            .ok_or_else(|| format!("no coordinator {index}"))?;
        let channel = channel(address).map_err(|e| e.to_string())?;
        timed(CoordinatorClient::new(channel).status(CoordinatorStatusRequest {})).await
    }

    /// Whether the coordinator at `index` answers `Status` at all.
    pub async fn coordinator_answers(&self, index: usize) -> bool {
        match channel(&self.coordinators[index]) {
            Ok(channel) => {
                timed(CoordinatorClient::new(channel).status(CoordinatorStatusRequest {}))
                    .await
                    .is_ok()
            }
            Err(_) => false,
        }
    }

    /// The lease holder's view of the cluster.
    pub async fn view(&self) -> Result<ClusterViewResponse> {
        let holder = self.holder(Duration::from_millis(READY_TIMEOUT_MS)).await?;
        let mut client = CoordinatorClient::new(channel(&self.coordinators[holder])?);
        timed(client.cluster_view(ClusterViewRequest { events_limit: 1 }))
            .await
            .map_err(|e| BenchError::cluster("cluster view", e))
    }

    /// Waits until every store is alive and every region has a leader.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<ClusterViewResponse> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no view yet");
        while Instant::now() < deadline {
            match self.view().await {
                Ok(view) => {
                    let dead = view.stores.iter().filter(|s| !s.alive).count();
                    let leaderless = view
                        .regions
                        .iter()
                        .filter(|r| r.leader_store_id == 0)
                        .count();
                    if dead == 0 && leaderless == 0 && view.stores.len() == STORES {
                        return Ok(view);
                    }
                    last = format!(
                        "{} stores, {dead} not alive, {leaderless} of {} regions without a leader",
                        view.stores.len(),
                        view.regions.len()
                    );
                }
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(BenchError::cluster("cluster health", last))
    }
}
