//! `arbor dev`: a whole local cluster as child processes of this binary.
//!
//! Layout under the data directory: `root-N/`, `store-N/` (each process's
//! RocksDB), `logs/<process>.log`, `pids/<process>.pid`. Children are started
//! from the main thread with a parent-death signal, so they never outlive
//! this process, and are stopped in reverse dependency order on Ctrl-C or
//! SIGTERM (gateway, stores, coordinators, root).
//!
//! A control API on loopback (`control`, at base port + 30) stops and starts
//! any child by name; the gateway's dashboard forwards its buttons to it. A
//! child stopped through it is not a crash: only a child that exits while
//! the supervisor expects it to run ends `dev`.

mod control;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::ClusterViewRequest;

/// How long `dev` waits for the cluster to serve SQL before giving up.
pub const READY_TIMEOUT_MS: u64 = 60_000;
/// How long a child gets to exit after SIGTERM before it is killed.
pub const CHILD_STOP_TIMEOUT_MS: u64 = 5_000;
pub const ROOT_PEERS: u64 = 3;
pub const COORDINATORS: u64 = 2;
pub const STORES: u64 = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Where every process keeps its data; a restart on the same directory keeps it.
    #[arg(long, default_value = "./arbor-data")]
    pub data: PathBuf,
    /// Port of the PostgreSQL endpoint.
    #[arg(long, default_value_t = 5433)]
    pub pg_port: u16,
    /// Internal ports: root peers at base+1.., coordinators at base+11.., stores at base+21..,
    /// each one's metrics listener 3 above its own port (base+4.., base+14.., base+24..),
    /// the dev control API (loopback) at base+30.
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// Port of the dashboard (the gateway's HTTP listener).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
}

/// Offset of the control API's port from `--base-port`.
pub const CONTROL_PORT_OFFSET: u64 = 30;
/// A root peer's, coordinator's or store's metrics listener (`/metrics`,
/// `/health`) is its own port plus this, in the gaps the other ports leave.
pub const METRICS_PORT_OFFSET: u64 = 3;

const _: () = assert!(ROOT_PEERS + METRICS_PORT_OFFSET < 11);
const _: () = assert!(10 + COORDINATORS + METRICS_PORT_OFFSET < 21);
const _: () = assert!(20 + STORES + METRICS_PORT_OFFSET < CONTROL_PORT_OFFSET);

struct Process {
    name: String,
    kind: &'static str,
    address: String,
    /// The command line, kept so the control API can start it again.
    args: Vec<String>,
    /// `None` while deliberately stopped (or being stopped) through the
    /// control API: such a child is not watched for crashes.
    child: Option<Child>,
    /// True between a control-API stop's SIGTERM and the child's exit; a
    /// start waits for it to be false so two copies never share a port.
    stopping: bool,
}

/// Every child, shared between the supervisor loop and the control API.
type Processes = Arc<Mutex<Vec<Process>>>;

fn lock(processes: &Processes) -> MutexGuard<'_, Vec<Process>> {
    // A panic while holding the lock leaves plain data behind; keep going so
    // the children are still stopped on the way out.
    processes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Layout {
    root: Vec<(u64, String)>,
    coordinators: Vec<(u64, String)>,
    stores: Vec<(u64, String)>,
    pg: String,
    http: String,
    control: String,
    /// Process name -> its metrics listener (root peers, coordinators,
    /// stores; the gateway serves `/metrics` on its HTTP listener).
    metrics: BTreeMap<String, String>,
}

fn layout(args: &DevArgs) -> Result<Layout, String> {
    let port = |offset: u64| -> Result<String, String> {
        let port = u64::from(args.base_port) + offset;
        u16::try_from(port)
            .map(|p| format!("127.0.0.1:{p}"))
            .map_err(|_| {
                format!(
                    "--base-port {} leaves no room for port offset {offset}",
                    args.base_port
                )
            })
    };
    let mut metrics = BTreeMap::new();
    for (kind, first_offset, count) in [
        ("root", 0, ROOT_PEERS),
        ("coordinator", 10, COORDINATORS),
        ("store", 20, STORES),
    ] {
        for i in 1..=count {
            let address = port(first_offset + i + METRICS_PORT_OFFSET)?;
            metrics.insert(format!("{kind}-{i}"), address);
        }
    }
    Ok(Layout {
        metrics,
        root: (1..=ROOT_PEERS)
            .map(|i| Ok((i, port(i)?)))
            .collect::<Result<_, String>>()?,
        coordinators: (1..=COORDINATORS)
            .map(|i| Ok((i, port(10 + i)?)))
            .collect::<Result<_, String>>()?,
        stores: (1..=STORES)
            .map(|i| Ok((i, port(20 + i)?)))
            .collect::<Result<_, String>>()?,
        pg: format!("127.0.0.1:{}", args.pg_port),
        http: format!("127.0.0.1:{}", args.http_port),
        control: port(CONTROL_PORT_OFFSET)?,
    })
}

pub fn run(args: DevArgs) -> Result<(), String> {
    let data = absolute(&args.data)?;
    for dir in ["logs", "pids"] {
        fs::create_dir_all(data.join(dir))
            .map_err(|e| format!("cannot create {}: {e}", data.join(dir).display()))?;
    }
    refuse_if_running(&data)?;
    let layout = layout(&args)?;
    // One thread: children are spawned (also by the control API's handlers)
    // from the thread whose exit their parent-death signal watches.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let control_listener = runtime
        .block_on(tokio::net::TcpListener::bind(&layout.control))
        .map_err(|e| format!("cannot listen on {} (dev control API): {e}", layout.control))?;
    let processes: Processes = Arc::new(Mutex::new(Vec::new()));
    let started = start_all(&data, &layout, &mut lock(&processes));
    let outcome = started.and_then(|()| {
        print_table(&data, &layout, &lock(&processes));
        runtime.spawn(control::serve(
            control_listener,
            processes.clone(),
            data.clone(),
        ));
        println!("waiting for the cluster to serve SQL ...");
        runtime.block_on(wait_ready(&layout, &processes))?;
        println!(
            "ready: psql -h 127.0.0.1 -p {} -U arbor arbor",
            args.pg_port
        );
        println!("dashboard: http://{}", layout.http);
        let _ = std::io::stdout().flush();
        runtime.block_on(wait_for_signal_or_exit(&processes))
    });
    stop_all(&data, &mut lock(&processes));
    outcome
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    fs::canonicalize(path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))
}

/// A pid file whose process is still an `arbor` means another `dev` (or its
/// orphan) owns this data directory.
fn refuse_if_running(data: &Path) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(data.join("pids")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("arbor") {
            return Err(format!(
                "{} names pid {pid}, which is still running: another `arbor dev` uses {}",
                entry.path().display(),
                data.display()
            ));
        }
        let _ = fs::remove_file(entry.path());
    }
    Ok(())
}

fn start_all(data: &Path, layout: &Layout, processes: &mut Vec<Process>) -> Result<(), String> {
    let peers: Vec<String> = layout
        .root
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect();
    let root_addresses: Vec<String> = layout.root.iter().map(|(_, a)| a.clone()).collect();
    let coordinator_addresses: Vec<String> =
        layout.coordinators.iter().map(|(_, a)| a.clone()).collect();
    for (id, address) in &layout.root {
        let data_dir = data.join(format!("root-{id}"));
        let args = vec![
            "root".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            address.clone(),
            "--peers".into(),
            peers.join(","),
            "--data".into(),
            data_dir.display().to_string(),
        ];
        let name = format!("root-{id}");
        let args = with_metrics(layout, &name, args);
        processes.push(spawn(data, name, "root", address, args)?);
    }
    for (id, address) in &layout.coordinators {
        let args = vec![
            "coordinator".into(),
            "--id".into(),
            format!("coordinator-{id}"),
            "--listen".into(),
            address.clone(),
            "--root".into(),
            root_addresses.join(","),
        ];
        let name = format!("coordinator-{id}");
        let args = with_metrics(layout, &name, args);
        processes.push(spawn(data, name, "coordinator", address, args)?);
    }
    for (id, address) in &layout.stores {
        let data_dir = data.join(format!("store-{id}"));
        let args = vec![
            "store".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            address.clone(),
            "--coordinators".into(),
            coordinator_addresses.join(","),
            "--data".into(),
            data_dir.display().to_string(),
        ];
        let name = format!("store-{id}");
        let args = with_metrics(layout, &name, args);
        processes.push(spawn(data, name, "store", address, args)?);
    }
    let args = vec![
        "gateway".into(),
        "--pg-listen".into(),
        layout.pg.clone(),
        "--coordinators".into(),
        coordinator_addresses.join(","),
        "--root".into(),
        root_addresses.join(","),
        "--http-listen".into(),
        layout.http.clone(),
        "--dev-control".into(),
        format!("http://{}", layout.control),
    ];
    processes.push(spawn(data, "gateway".into(), "gateway", &layout.pg, args)?);
    Ok(())
}

/// `args` plus `--metrics-listen` when `layout` gives `name` a metrics port.
fn with_metrics(layout: &Layout, name: &str, mut args: Vec<String>) -> Vec<String> {
    if let Some(address) = layout.metrics.get(name) {
        args.extend(["--metrics-listen".to_string(), address.clone()]);
    }
    args
}

fn spawn(
    data: &Path,
    name: String,
    kind: &'static str,
    address: &str,
    args: Vec<String>,
) -> Result<Process, String> {
    let child = spawn_child(data, &name, &args)?;
    Ok(Process {
        name,
        kind,
        address: address.to_string(),
        args,
        child: Some(child),
        stopping: false,
    })
}

/// Starts one child with its log and pid file; the control API calls this
/// again to restart a stopped child with the same command line.
fn spawn_child(data: &Path, name: &str, args: &[String]) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the arbor binary: {e}"))?;
    let log_path = data.join("logs").join(format!("{name}.log"));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Own process group: a terminal's Ctrl-C reaches only `dev`, which then
    // stops the children in order.
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child. It makes
    // the kernel kill the child if this process dies without stopping it.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let pid_path = data.join("pids").join(format!("{name}.pid"));
    fs::write(&pid_path, format!("{}\n", child.id()))
        .map_err(|e| format!("cannot write {}: {e}", pid_path.display()))?;
    Ok(child)
}

fn print_table(data: &Path, layout: &Layout, processes: &[Process]) {
    println!("arbor dev: data in {}", data.display());
    println!(
        "{:<16} {:<12} {:<22} {:>8}  metrics",
        "process", "kind", "listens on", "pid"
    );
    for process in processes {
        let pid = process
            .child
            .as_ref()
            .map_or_else(String::new, |child| child.id().to_string());
        let metrics = match layout.metrics.get(&process.name) {
            Some(address) => format!("http://{address}/metrics"),
            None if process.kind == "gateway" => format!("http://{}/metrics", layout.http),
            None => String::new(),
        };
        println!(
            "{:<16} {:<12} {:<22} {:>8}  {}",
            process.name, process.kind, process.address, pid, metrics
        );
    }
    println!(
        "{:<16} {:<12} {:<22}",
        "dashboard",
        "http",
        format!("http://{}", layout.http)
    );
    println!(
        "{:<16} {:<12} {:<22}",
        "dev control",
        "http",
        format!("http://{}", layout.control)
    );
    println!("logs: {}/logs/<process>.log", data.display());
}

/// Ready = the gateway accepts connections and a coordinator reports every
/// region with a leader.
async fn wait_ready(layout: &Layout, processes: &Processes) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    let mut last_progress = String::new();
    loop {
        check_children(&mut lock(processes))?;
        let progress = readiness(layout).await;
        match progress {
            Ok(()) => return Ok(()),
            Err(step) => {
                if step != last_progress {
                    println!("  ... {step}");
                    last_progress = step;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the cluster was not ready after {} s ({last_progress}); see the logs",
                READY_TIMEOUT_MS / 1000
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn readiness(layout: &Layout) -> Result<(), String> {
    let mut view = None;
    for (_, address) in &layout.coordinators {
        let Ok(mut client) = CoordinatorClient::connect(format!("http://{address}")).await else {
            continue;
        };
        if let Ok(answer) = client
            .cluster_view(ClusterViewRequest { events_limit: 0 })
            .await
        {
            view = Some(answer.into_inner());
            break;
        }
    }
    let view = view.ok_or("waiting for a coordinator")?;
    let root = view.root.unwrap_or_default();
    if root.lease.is_none() {
        return Err("waiting for root and the coordinator lease".into());
    }
    if root.regions.is_empty() {
        return Err(format!(
            "waiting for stores to join ({} of {STORES})",
            root.stores.len()
        ));
    }
    if view.regions.iter().any(|r| r.leader_store_id == 0) {
        return Err("waiting for region leaders".into());
    }
    tokio::net::TcpStream::connect(&layout.pg)
        .await
        .map_err(|_| "waiting for the gateway".to_string())?;
    Ok(())
}

/// A child that exited on its own is a crash; a deliberately stopped one
/// (`child == None`) is not looked at.
fn check_children(processes: &mut [Process]) -> Result<(), String> {
    for process in processes.iter_mut() {
        let Some(child) = process.child.as_mut() else {
            continue;
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} exited ({status}); see its log under logs/{}.log",
                process.name, process.name
            ));
        }
    }
    Ok(())
}

async fn wait_for_signal_or_exit(processes: &Processes) -> Result<(), String> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { println!("stopping (Ctrl-C) ..."); return Ok(()); }
            _ = terminate.recv() => { println!("stopping (SIGTERM) ..."); return Ok(()); }
            _ = poll.tick() => check_children(&mut lock(processes))?,
        }
    }
}

/// Stops children in reverse start order: gateway first, root last, so each
/// layer can still reach the one below while it shuts down (a coordinator
/// seals its lease in root on the way out).
fn stop_all(data: &Path, processes: &mut Vec<Process>) {
    while let Some(mut process) = processes.pop() {
        if let Some(child) = process.child.take() {
            if !stop_child(child) {
                eprintln!("{} did not stop in time; killed it", process.name);
            }
        }
        let _ = fs::remove_file(data.join("pids").join(format!("{}.pid", process.name)));
    }
    println!("all processes stopped");
}

/// SIGTERM, wait up to [`CHILD_STOP_TIMEOUT_MS`], then SIGKILL. True if the
/// child exited on SIGTERM.
fn stop_child(mut child: Child) -> bool {
    terminate(&child);
    let deadline = Instant::now() + Duration::from_millis(CHILD_STOP_TIMEOUT_MS);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn terminate(child: &Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child's pid.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
