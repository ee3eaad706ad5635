//! `arbor`: the one binary. Each subcommand runs one process of the cluster;
//! `arbor dev` runs a whole local cluster as child processes of itself.

mod advertise;
mod dev;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arbor",
    version,
    about = "Arbor: a distributed key/value database with a PostgreSQL front door"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole local cluster (3 root peers, 2 coordinators, 3 stores, 1 gateway).
    Dev(dev::DevArgs),
    /// Run one root peer.
    Root {
        /// This peer's id: its key in --peers.
        #[arg(long, env = "ARBOR_ROOT_ID")]
        id: u64,
        /// Address to bind, e.g. 0.0.0.0:7100 in a container.
        #[arg(long, env = "ARBOR_LISTEN")]
        listen: SocketAddr,
        /// host:port other processes dial; defaults to this peer's entry in
        /// --peers, else --listen (required if that is 0.0.0.0).
        #[arg(long, env = "ARBOR_ADVERTISE")]
        advertise: Option<String>,
        /// Initial voters, e.g. 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103
        /// (names work too: 1=root-1:7100,...).
        #[arg(long, env = "ARBOR_ROOT_PEERS", value_delimiter = ',')]
        peers: Vec<String>,
        /// Directory of this peer's RocksDB.
        #[arg(long, env = "ARBOR_DATA")]
        data: PathBuf,
        /// Where `/metrics` (Prometheus) and `/health` are served, e.g.
        /// 127.0.0.1:9100; not served when unset.
        #[arg(long, env = "ARBOR_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Run one coordinator.
    Coordinator {
        /// A name unique among coordinators.
        #[arg(long, env = "ARBOR_COORDINATOR_ID")]
        id: String,
        /// Address to bind, e.g. 0.0.0.0:7100 in a container.
        #[arg(long, env = "ARBOR_LISTEN")]
        listen: SocketAddr,
        /// host:port gateways and stores dial; defaults to --listen
        /// (required if that is 0.0.0.0).
        #[arg(long, env = "ARBOR_ADVERTISE")]
        advertise: Option<String>,
        /// Root peer addresses, comma-separated.
        #[arg(long, env = "ARBOR_ROOT", value_delimiter = ',')]
        root: Vec<String>,
        /// Split a region once it holds more keys than this.
        #[arg(long, env = "ARBOR_REGION_SPLIT_KEYS", default_value_t = arbor_coordinator::scheduler::REGION_SPLIT_KEYS_DEFAULT)]
        region_split_keys: u64,
        /// Split a region once its data on disk passes this many bytes.
        #[arg(long, env = "ARBOR_REGION_SPLIT_BYTES", default_value_t = arbor_coordinator::scheduler::REGION_SPLIT_BYTES_DEFAULT)]
        region_split_bytes: u64,
        /// Merge two adjacent regions on the same stores once they hold
        /// fewer keys than this together; 0 (the default) with
        /// --region-merge-bytes 0 turns automatic merge off, because manual
        /// SPLIT AT boundaries are not kept from merging yet. At most half
        /// of --region-split-keys.
        #[arg(long, env = "ARBOR_REGION_MERGE_KEYS", default_value_t = 0)]
        region_merge_keys: u64,
        /// Merge two adjacent regions on the same stores once they are
        /// smaller on disk than this together; 0 (the default) with
        /// --region-merge-keys 0 turns automatic merge off. At most half of
        /// --region-split-bytes.
        #[arg(long, env = "ARBOR_REGION_MERGE_BYTES", default_value_t = 0)]
        region_merge_bytes: u64,
        /// Replace a store's replicas once it has been silent this long.
        #[arg(long, env = "ARBOR_STORE_DEAD_AFTER_MS", default_value_t = arbor_coordinator::scheduler::STORE_DEAD_AFTER_DEFAULT_MS)]
        store_dead_after_ms: u64,
        /// Versions replaced longer ago than this are garbage-collected, and
        /// reads older than this are refused (snapshot too old).
        #[arg(long, env = "ARBOR_GC_LIFETIME_MS", default_value_t = arbor_coordinator::gc::GC_LIFETIME_DEFAULT_MS)]
        gc_lifetime_ms: u64,
        /// Where `/metrics` (Prometheus) and `/health` are served, e.g.
        /// 127.0.0.1:9100; not served when unset.
        #[arg(long, env = "ARBOR_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Run one store.
    Store {
        /// This store's id (never reused for another store).
        #[arg(long, env = "ARBOR_STORE_ID")]
        id: u64,
        /// Address to bind, e.g. 0.0.0.0:7100 in a container.
        #[arg(long, env = "ARBOR_LISTEN")]
        listen: SocketAddr,
        /// host:port other stores and gateways dial, registered in root
        /// through heartbeats; defaults to --listen (required if that is 0.0.0.0).
        #[arg(long, env = "ARBOR_ADVERTISE")]
        advertise: Option<String>,
        /// Coordinator addresses, comma-separated.
        #[arg(long, env = "ARBOR_COORDINATORS", value_delimiter = ',')]
        coordinators: Vec<String>,
        /// Directory of this store's RocksDB.
        #[arg(long, env = "ARBOR_DATA")]
        data: PathBuf,
        /// Where `/metrics` (Prometheus) and `/health` are served, e.g.
        /// 127.0.0.1:9100; not served when unset.
        #[arg(long, env = "ARBOR_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Inspect root peers or change root membership at runtime.
    RootAdmin {
        /// Root peer addresses, comma-separated.
        #[arg(long, env = "ARBOR_ROOT", value_delimiter = ',')]
        root: Vec<String>,
        #[command(subcommand)]
        action: RootAdminAction,
    },
    /// Run the SQL gateway (PostgreSQL wire protocol).
    Gateway {
        /// Where PostgreSQL clients connect (0.0.0.0:5433 in a container).
        #[arg(long, env = "ARBOR_PG_LISTEN", default_value = "127.0.0.1:5433")]
        pg_listen: SocketAddr,
        /// Coordinator addresses, comma-separated: routes and cluster views.
        #[arg(long, env = "ARBOR_COORDINATORS", value_delimiter = ',')]
        coordinators: Vec<String>,
        /// Root peer addresses, comma-separated: the catalog and DDL.
        #[arg(long, env = "ARBOR_ROOT", value_delimiter = ',')]
        root: Vec<String>,
        /// Where the dashboard (HTTP page and /api/cluster) listens.
        #[arg(long, env = "ARBOR_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
        http_listen: SocketAddr,
        /// `arbor dev`'s control API; the dashboard then shows stop/start buttons.
        #[arg(long, env = "ARBOR_DEV_CONTROL")]
        dev_control: Option<String>,
        /// PEM certificate chain to serve TLS with (needs --tls-key); without
        /// it SSLRequest is answered 'N'.
        #[arg(long, env = "ARBOR_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of the --tls-cert certificate.
        #[arg(long, env = "ARBOR_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Refuse clients that do not use TLS (28000).
        #[arg(long, env = "ARBOR_TLS_REQUIRED", requires = "tls_cert")]
        tls_required: bool,
        /// How clients authenticate: trust or scram-sha-256.
        #[arg(long, env = "ARBOR_AUTH", default_value = "trust")]
        auth: arbor_sql_gateway::AuthMethod,
        /// File of `user:password` lines for scram-sha-256 (# comments).
        #[arg(long, env = "ARBOR_USERS_FILE")]
        users_file: Option<PathBuf>,
        /// One scram-sha-256 user (with --password).
        #[arg(long, env = "ARBOR_USER", requires = "password")]
        user: Option<String>,
        /// The --user's password; prefer ARBOR_PASSWORD, which `ps` does not show.
        #[arg(
            long,
            env = "ARBOR_PASSWORD",
            hide_env_values = true,
            requires = "user"
        )]
        password: Option<String>,
    },
}

#[derive(Subcommand)]
enum RootAdminAction {
    /// Role, term and applied cursor of every root peer.
    Status,
    /// Add voters (id=host:port; start them first with `arbor root`) and/or
    /// remove voters, in one joint-consensus change.
    ChangeMembership {
        #[arg(long, value_delimiter = ',')]
        add: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        remove: Vec<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args),
        other => run_service(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("arbor: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn run_service(command: Command) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        match command {
            Command::Dev(_) => unreachable!("dev is dispatched in main"),
            Command::RootAdmin { root, action } => root_admin(root, action).await,
            Command::Root {
                id,
                listen,
                advertise,
                peers,
                data,
                metrics_listen,
            } => {
                let initial_peers = parse_peers(&peers)?;
                let own_entry = initial_peers.get(&id).map(String::as_str);
                let advertise_address =
                    advertise::resolve_root(listen, advertise.as_deref(), own_entry)?;
                let config = arbor_root::RootConfig {
                    peer_id: id,
                    listen,
                    advertise_address,
                    data_dir: data,
                    initial_peers,
                };
                arbor_root::server::run_root_with_metrics(config, metrics_listen, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Coordinator {
                id,
                listen,
                advertise,
                root,
                region_split_keys,
                region_split_bytes,
                region_merge_keys,
                region_merge_bytes,
                store_dead_after_ms,
                gc_lifetime_ms,
                metrics_listen,
            } => {
                let config = arbor_coordinator::CoordinatorConfig {
                    coordinator_id: id,
                    listen,
                    advertise_address: advertise::resolve(listen, advertise.as_deref())?,
                    root_addresses: root,
                    region_split_keys,
                    region_split_bytes,
                    store_dead_after_ms,
                };
                arbor_coordinator::server::run_coordinator_with_merge(
                    config,
                    metrics_listen,
                    arbor_coordinator::gc::GcConfig {
                        lifetime_ms: gc_lifetime_ms,
                    },
                    arbor_coordinator::schedule::MergeConfig {
                        region_merge_keys,
                        region_merge_bytes,
                    },
                    shutdown_signal(),
                )
                .await
                .map_err(|e| e.to_string())
            }
            Command::Store {
                id,
                listen,
                advertise,
                coordinators,
                data,
                metrics_listen,
            } => {
                let config = arbor_raftstore::StoreConfig {
                    store_id: id,
                    listen,
                    advertise_address: advertise::resolve(listen, advertise.as_deref())?,
                    data_dir: data,
                    coordinator_addresses: coordinators,
                };
                arbor_raftstore::server::run_store_with_metrics(
                    config,
                    metrics_listen,
                    shutdown_signal(),
                )
                .await
                .map_err(|e| e.to_string())
            }
            Command::Gateway {
                pg_listen,
                coordinators,
                root,
                http_listen,
                dev_control,
                tls_cert,
                tls_key,
                tls_required,
                auth,
                users_file,
                user,
                password,
            } => {
                let tls = match (tls_cert, tls_key) {
                    (Some(cert), Some(key)) => Some(arbor_sql_gateway::TlsConfig {
                        cert,
                        key,
                        required: tls_required,
                    }),
                    _ => None,
                };
                let config = arbor_sql_gateway::GatewayConfig {
                    pg_listen,
                    coordinator_addresses: coordinators,
                    root_addresses: root,
                    http_listen: Some(http_listen),
                    dev_control,
                    tls,
                    auth: arbor_sql_gateway::AuthConfig {
                        method: auth,
                        users_file,
                        user,
                        password,
                    },
                };
                arbor_sql_gateway::run_gateway(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    })
}

async fn root_admin(root: Vec<String>, action: RootAdminAction) -> Result<(), String> {
    if root.is_empty() {
        return Err("--root is empty".into());
    }
    let client = arbor_root::RootClient::new(root);
    match action {
        RootAdminAction::Status => {
            println!(
                "{:>7}  {:<22} {:<12} {:>6} {:>7} {:>14}",
                "peer", "address", "role", "term", "leader", "applied_cursor"
            );
            for peer in client.status_all().await {
                println!(
                    "{:>7}  {:<22} {:<12} {:>6} {:>7} {:>14}",
                    peer.peer_id,
                    peer.address,
                    peer.role,
                    peer.term,
                    peer.leader_id,
                    peer.applied_cursor
                );
            }
            Ok(())
        }
        RootAdminAction::ChangeMembership { add, remove } => {
            let add_voters = parse_peers(&add)
                .or_else(|e| {
                    if add.is_empty() {
                        Ok(BTreeMap::new())
                    } else {
                        Err(e)
                    }
                })?
                .into_iter()
                .map(|(peer_id, address)| arbor_proto::RootMember { peer_id, address })
                .collect();
            let answer = client
                .change_membership(add_voters, remove)
                .await
                .map_err(|e| e.to_string())?;
            let voters: Vec<String> = answer
                .voters
                .iter()
                .map(|m| format!("{}={}", m.peer_id, m.address))
                .collect();
            println!(
                "root voters now {} (cursor {})",
                voters.join(","),
                answer.cursor
            );
            Ok(())
        }
    }
}

/// `1=host:port,2=host:port` -> {1: "host:port", 2: "host:port"}.
fn parse_peers(peers: &[String]) -> Result<BTreeMap<u64, String>, String> {
    let mut parsed = BTreeMap::new();
    for peer in peers {
        let (id, address) = peer
            .split_once('=')
            .ok_or_else(|| format!("--peers entry {peer:?} is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers entry {peer:?} has a non-numeric id"))?;
        if parsed.insert(id, address.trim().to_string()).is_some() {
            return Err(format!("--peers names peer {id} twice"));
        }
    }
    if parsed.is_empty() {
        return Err("--peers is empty".into());
    }
    Ok(parsed)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
