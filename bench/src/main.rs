//! `arbor-bench`: the benchmark driver behind `bench/run`.
//!
//! Owns: starting a fresh Arbor cluster, a separate 3-peer root group, a
//! 3-member etcd and a throwaway PostgreSQL as its children; running every
//! benchmark of the plan ([`plan`]) with a progress line per step; writing
//! `<out>/<date>.json` ([`report`]). `bench/plot.py` turns that file into
//! the Markdown tables and PNG charts.
//!
//! Never knows: any Arbor crate's internals. It drives Arbor like a user or
//! an operator: the `arbor` binary's command line, the public gRPC APIs
//! (`Root`, `Coordinator`), PostgreSQL's protocol (pgbench, tokio-postgres)
//! and, for the benchmark without SQL ([`region`]), the public region
//! client of `arbor-raftstore`, the library the gateway reads and writes
//! through.
//!
//! Invariants: every process it starts is stopped when it ends, on error and
//! on Ctrl-C/SIGTERM, by the pid it started ([`procs`]); every measurement
//! runs for a fixed duration and every wait has a deadline, so a run ends
//! by itself.

mod anchors;
mod arbor;
mod error;
mod failover;
mod load;
mod machine;
mod pgbench;
mod plan;
mod procs;
mod region;
mod report;
mod soak;
mod sql;
mod stats;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::root_client::RootClient;
use arbor_proto::root_event::Kind;
use arbor_proto::{GetTimestampsRequest, LeaseGranted, LeaseRenewed, ProposeRequest, RootEvent};
use clap::Parser;
use futures::FutureExt;

use crate::anchors::{etcdserverpb, Etcd, Postgres, POSTGRES_SETTINGS};
use crate::arbor::{channel, Arbor, RootGroup};
use crate::error::{BenchError, Result};
use crate::load::{closed_loop, Request};
use crate::pgbench::{Length, Runner, Script, Target};
use crate::plan::{
    format_duration, plan, progress_line, Config, HolderStop, RegionOp, Step, System, Workload,
    REGION_BATCH_KEYS, REGION_PRELOAD_KEYS,
};
use crate::procs::Supervisor;
use crate::report::{
    Comparison, Failover, Measurement, Outcome, RegionClientPoint, RegionPoint, Report,
    ScalingPoint, Setting,
};

/// Deadline of one benchmark request (a proposal, a put, a TSO call).
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long a failover repetition waits for service to come back.
pub const FAILOVER_WAIT_MAX_MS: u64 = 30_000;
/// Deadline of one statement of the failover writer; a statement stuck
/// longer is abandoned with its connection.
pub const FAILOVER_STATEMENT_TIMEOUT_MS: u64 = 1_000;
/// TTL of the lease the root benchmark grants itself and renews.
pub const BENCH_LEASE_TTL_MS: u64 = 60_000;
/// Keys each etcd client cycles through.
pub const ETCD_KEYS_PER_CLIENT: u64 = 1_000;
/// Bytes of each etcd value (a lease renewal encodes to about as many).
pub const ETCD_VALUE_BYTES: usize = 32;
/// The file in the run directory that names the result JSON written.
pub const RESULT_PATH_FILE: &str = "result-path";
/// Clients of the point-select load at each region count.
pub const REGION_LOAD_CLIENTS: usize = 16;

#[derive(Parser, Debug)]
#[command(
    name = "arbor-bench",
    about = "Arbor's benchmarks against PostgreSQL and etcd (run it through bench/run)"
)]
struct Args {
    /// The `arbor` binary to start.
    #[arg(long, env = "ARBOR_BIN", default_value = "target/release/arbor")]
    arbor_bin: PathBuf,
    /// Scratch directory for every process's data and logs (bench/run makes a fresh one).
    #[arg(long)]
    run_dir: PathBuf,
    /// Where `<date>.json` goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// About two minutes instead of the full run (to test the harness).
    #[arg(long)]
    quick: bool,
    /// Date in the result's file name; default today (UTC).
    #[arg(long)]
    date: Option<String>,
    /// Where the Arbor binary came from, for the report (default: --arbor-bin;
    /// bench/run runs a private copy and names the original here).
    #[arg(long)]
    arbor_origin: Option<String>,
    /// The commit the Arbor binary was built from, for the report.
    #[arg(long, default_value = "unknown")]
    git_commit: String,
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin_dir: PathBuf,
    #[arg(long, default_value = "etcd")]
    etcd: String,
    /// pgbench; default `<pg-bin-dir>/pgbench` (the server's own version).
    #[arg(long)]
    pgbench: Option<PathBuf>,
    /// pgbench scale (100 000 accounts each).
    #[arg(long, default_value_t = 1)]
    scale: u64,
    /// Run only these groups (root, tso, sql, clients, region, failover,
    /// regions, soak); soak runs only when named here.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Minutes of steady load in the soak group.
    #[arg(long, default_value_t = plan::SOAK_MINUTES_DEFAULT)]
    soak_minutes: u64,
}

struct Run {
    args: Args,
    config: Config,
    supervisor: Arc<Supervisor>,
    arbor: Option<Arbor>,
    root_group: Option<RootGroup>,
    etcd: Option<Etcd>,
    postgres: Option<Postgres>,
    runner: Runner,
    scripts: HashMap<&'static str, Script>,
    bench_lease_granted: bool,
    /// The region client of the `region` group, made by its preload step.
    region_client: Option<arbor_raftstore::RegionClient>,
    report: Report,
}

fn unavailable(what: &str) -> BenchError {
    BenchError::cluster(what, "not started in this run (see --only)")
}

fn clients_label(clients: usize) -> String {
    plan::clients_label(clients)
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn describe_outcome(outcome: &Outcome, unit: &str) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut text = format!(
        "{:.1} {unit}, p50 {} ms, p99 {} ms",
        outcome.throughput,
        ms(outcome.latency.p50_ms),
        ms(outcome.latency.p99_ms)
    );
    if outcome.errors > 0 || outcome.aborted_clients > 0 {
        text.push_str(&format!(
            ", {} failed ({:.2}%), {} clients aborted",
            outcome.errors, outcome.abort_rate_pct, outcome.aborted_clients
        ));
    }
    if let Some(error) = &outcome.first_error {
        text.push_str(&format!(", first error: {error}"));
    }
    text
}

fn cpu_of(supervisor: &Supervisor, names: &[String]) -> f64 {
    names
        .iter()
        .filter_map(|name| supervisor.cpu_seconds(name))
        .sum()
}

impl Run {
    fn arbor_origin(&self) -> String {
        self.args
            .arbor_origin
            .clone()
            .unwrap_or_else(|| self.args.arbor_bin.display().to_string())
    }

    fn arbor(&self) -> Result<&Arbor> {
        self.arbor
            .as_ref()
            .ok_or_else(|| unavailable("arbor cluster"))
    }

    fn arbor_target(&self) -> Result<Target> {
        Ok(Target {
            label: "Arbor".into(),
            port: self.arbor()?.pg_port,
            user: "arbor".into(),
            database: "arbor".into(),
        })
    }

    fn postgres_target(&self) -> Result<Target> {
        let postgres = self
            .postgres
            .as_ref()
            .ok_or_else(|| unavailable("postgres"))?;
        Ok(Target {
            label: "PostgreSQL".into(),
            port: postgres.port,
            user: "postgres".into(),
            database: "postgres".into(),
        })
    }

    fn setting(&mut self, system: &str, detail: String) {
        self.report.setup.push(Setting {
            system: system.into(),
            detail,
        });
    }

    /// Fills one side of a comparison row, creating the row on first use.
    fn compare(
        &mut self,
        group: &str,
        clients: usize,
        unit: &str,
        anchor_name: &str,
        system: System,
        outcome: Outcome,
    ) {
        let rows = &mut self.report.comparisons;
        let index = match rows
            .iter()
            .position(|r| r.group == group && r.clients == clients)
        {
            Some(index) => index,
            None => {
                rows.push(Comparison {
                    group: group.into(),
                    name: clients_label(clients),
                    clients,
                    unit: unit.into(),
                    arbor: Outcome::default(),
                    anchor_name: anchor_name.into(),
                    anchor: None,
                    ratio: None,
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[index];
        match system {
            System::Arbor => row.arbor = outcome,
            System::Anchor => row.anchor = Some(outcome),
        }
        row.ratio = report::ratio(&row.arbor, row.anchor.as_ref());
    }

    async fn execute(&mut self, step: &Step) -> Result<Option<String>> {
        let seconds = self.config.seconds;
        match step {
            Step::StartArbor => {
                let data = self.supervisor.run_dir().join("arbor");
                let arbor = Arbor::start(&self.supervisor, &self.args.arbor_bin, &data).await?;
                self.setting(
                    "Arbor",
                    format!(
                        "3 root peers, 2 coordinators, 3 stores (every region has 3 replicas), 1 gateway, each its own process on this machine, started fresh from {} (commit {}); default flags, data under a temporary directory",
                        self.arbor_origin(),
                        self.args.git_commit
                    ),
                );
                let done = format!("gateway on 127.0.0.1:{}", arbor.pg_port);
                self.arbor = Some(arbor);
                Ok(Some(done))
            }
            Step::StartRootGroup => {
                let data = self.supervisor.run_dir().join("rootbench");
                let group = RootGroup::start(&self.supervisor, &self.args.arbor_bin, &data).await?;
                self.setting(
                    "Arbor root (proposals)",
                    "a separate 3-peer root group (`arbor root` x3) nothing else proposes to; each proposal is a LeaseRenewed of a lease the benchmark granted itself (accepted every time, the state does not grow), sent with gRPC Root.Propose to the leader; a proposal is answered once replicated to a majority, fsynced and applied".into(),
                );
                self.root_group = Some(group);
                Ok(None)
            }
            Step::StartEtcd => {
                let data = self.supervisor.run_dir().join("etcd");
                let etcd = Etcd::start(&self.supervisor, &self.args.etcd, &data).await?;
                let version = tokio::process::Command::new(&self.args.etcd)
                    .arg("--version")
                    .output()
                    .await
                    .ok()
                    .and_then(|o| String::from_utf8(o.stdout).ok())
                    .and_then(|s| {
                        s.lines().next().map(|l| {
                            format!("etcd {}", l.trim_start_matches("etcd Version:").trim())
                        })
                    })
                    .unwrap_or_default();
                self.setting(
                    "etcd",
                    format!("3 members ({version}, Debian etcd-server), default settings (WAL fsync on), each its own process on this machine; KV.Put over gRPC (a hand-written subset of etcd's rpc.proto) to the leader, {ETCD_VALUE_BYTES}-byte values, each client cycling over {ETCD_KEYS_PER_CLIENT} keys"),
                );
                self.etcd = Some(etcd);
                Ok(None)
            }
            Step::StartPostgres => {
                let data = self.supervisor.run_dir().join("postgres");
                let postgres =
                    Postgres::start(&self.supervisor, &self.args.pg_bin_dir, &data).await?;
                let version = match sql::connect(&postgres.connection_string()).await {
                    Ok(client) => client
                        .query_one("SHOW server_version", &[])
                        .await
                        .ok()
                        .and_then(|row| row.try_get::<_, String>(0).ok())
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let settings: Vec<String> = POSTGRES_SETTINGS
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                self.setting(
                    "PostgreSQL",
                    format!("PostgreSQL {version}, one server, initdb into a temporary directory, {}; everything else default (READ COMMITTED)", settings.join(", ")),
                );
                self.postgres = Some(postgres);
                Ok(None)
            }
            Step::StopRootAnchors => {
                for name in ["etcd-3", "etcd-2", "etcd-1"] {
                    self.supervisor.stop(name).await;
                }
                self.etcd = None;
                // The soak proposes to the same group later.
                if !self.config.runs("soak") {
                    for name in ["rootbench-3", "rootbench-2", "rootbench-1"] {
                        self.supervisor.stop(name).await;
                    }
                    self.root_group = None;
                }
                Ok(None)
            }
            Step::StopPostgres => {
                self.supervisor.stop("postgres").await;
                self.postgres = None;
                Ok(None)
            }
            Step::RootProposals { clients } => {
                let outcome = self.root_proposals(*clients, seconds).await?;
                let line = describe_outcome(&outcome, "proposals/s");
                self.compare(
                    "root proposals vs etcd puts",
                    *clients,
                    "ops/s",
                    "etcd put",
                    System::Arbor,
                    outcome,
                );
                Ok(Some(line))
            }
            Step::EtcdPuts { clients } => {
                let outcome = self.etcd_puts(*clients, seconds).await?;
                let line = describe_outcome(&outcome, "puts/s");
                self.compare(
                    "root proposals vs etcd puts",
                    *clients,
                    "ops/s",
                    "etcd put",
                    System::Anchor,
                    outcome,
                );
                Ok(Some(line))
            }
            Step::Tso { clients, batch } => {
                let arbor = self.arbor()?;
                let holder = arbor.holder(Duration::from_secs(30)).await?;
                let channel = channel(&arbor.coordinators[holder])?;
                let batch = *batch;
                let requests: Vec<Request> = (0..*clients)
                    .map(|_| {
                        let client = CoordinatorClient::new(channel.clone());
                        let request: Request = Box::new(move || {
                            let mut client = client.clone();
                            async move {
                                let call =
                                    client.get_timestamps(GetTimestampsRequest { count: batch });
                                match tokio::time::timeout(
                                    Duration::from_millis(REQUEST_TIMEOUT_MS),
                                    call,
                                )
                                .await
                                {
                                    Ok(Ok(answer)) if answer.get_ref().count == batch => {
                                        Ok(u64::from(batch))
                                    }
                                    Ok(Ok(answer)) => Err(format!(
                                        "asked for {batch}, got {}",
                                        answer.get_ref().count
                                    )),
                                    Ok(Err(status)) => Err(status.message().to_string()),
                                    Err(_) => Err("timed out".into()),
                                }
                            }
                            .boxed()
                        });
                        request
                    })
                    .collect();
                let result =
                    closed_loop(requests, Duration::from_secs(self.config.scaling_seconds)).await;
                let outcome = result.outcome();
                let line = format!(
                    "{:.0} timestamps/s; {}",
                    result.units_per_second(),
                    describe_outcome(&outcome, "requests/s")
                );
                self.report.measurements.push(Measurement {
                    group: "TSO (lease holder GetTimestamps)".into(),
                    name: format!("count={batch}, {}", clients_label(*clients)),
                    clients: *clients,
                    unit: "timestamps/s".into(),
                    throughput: outcome.throughput,
                    units_per_second: result.units_per_second(),
                    outcome,
                });
                Ok(Some(line))
            }
            Step::LoadData => self.load_data().await.map(Some),
            Step::ChooseStatements => self.choose_statements().await.map(Some),
            Step::Sql {
                workload,
                clients,
                system,
            } => {
                let target = match system {
                    System::Arbor => self.arbor_target()?,
                    System::Anchor => self.postgres_target()?,
                };
                let outcome = self.pgbench(*workload, &target, *clients, seconds).await?;
                let line = describe_outcome(&outcome, "tx/s");
                self.compare(
                    workload.label(),
                    *clients,
                    "tx/s",
                    "PostgreSQL",
                    *system,
                    outcome,
                );
                Ok(Some(line))
            }
            Step::ClientScaling { clients, system } => {
                let target = match system {
                    System::Arbor => self.arbor_target()?,
                    System::Anchor => self.postgres_target()?,
                };
                let outcome = self
                    .pgbench(
                        Workload::PointSelect,
                        &target,
                        *clients,
                        self.config.scaling_seconds,
                    )
                    .await?;
                let line = describe_outcome(&outcome, "tx/s");
                let points = &mut self.report.client_scaling;
                let index = match points.iter().position(|p| p.clients == *clients) {
                    Some(index) => index,
                    None => {
                        points.push(ScalingPoint {
                            clients: *clients,
                            arbor: Outcome::default(),
                            postgres: None,
                        });
                        points.len() - 1
                    }
                };
                match system {
                    System::Arbor => points[index].arbor = outcome,
                    System::Anchor => points[index].postgres = Some(outcome),
                }
                Ok(Some(line))
            }
            Step::RegionPreload => self.region_preload().await.map(Some),
            Step::RegionClient { op, clients } => self
                .region_client_load(*op, *clients, self.config.scaling_seconds)
                .await
                .map(Some),
            Step::CoordinatorFailover { stop, .. } => {
                self.coordinator_failover(*stop).await.map(Some)
            }
            Step::StoreFailover { repetition } => self.store_failover(*repetition).await.map(Some),
            Step::Regions { target } => self.regions(*target).await.map(Some),
            Step::SoakSplit { target } => self.soak_split(*target).await.map(Some),
            Step::SoakIdle { after_load } => self.soak_idle(*after_load).await.map(Some),
            Step::SoakLoad { minutes } => self.soak_load(*minutes).await.map(Some),
        }
    }

    async fn root_proposals(&mut self, clients: usize, seconds: u64) -> Result<Outcome> {
        let group = self
            .root_group
            .as_ref()
            .ok_or_else(|| unavailable("root group"))?;
        let leader = group.leader(&self.supervisor).await?;
        let channel = channel(&leader)?;
        self.grant_bench_lease(&channel).await?;
        let requests: Vec<Request> = (0..clients)
            .map(|_| {
                let client = RootClient::new(channel.clone());
                let request: Request = Box::new(move || renew_bench_lease(client.clone()).boxed());
                request
            })
            .collect();
        Ok(closed_loop(requests, Duration::from_secs(seconds))
            .await
            .outcome())
    }

    /// Grants the lease the root proposals renew, once per run.
    async fn grant_bench_lease(&mut self, channel: &tonic::transport::Channel) -> Result<()> {
        if !self.bench_lease_granted {
            let client = RootClient::new(channel.clone());
            propose(
                client,
                Kind::LeaseGranted(LeaseGranted {
                    holder_id: "arbor-bench".into(),
                    holder_address: "127.0.0.1:1".into(),
                    generation: 1,
                    ttl_ms: BENCH_LEASE_TTL_MS,
                }),
            )
            .await
            .map_err(|e| BenchError::cluster("granting the benchmark's lease", e))?;
            self.bench_lease_granted = true;
        }
        Ok(())
    }

    async fn etcd_puts(&mut self, clients: usize, seconds: u64) -> Result<Outcome> {
        let etcd = self.etcd.as_ref().ok_or_else(|| unavailable("etcd"))?;
        let leader = etcd.leader(&self.supervisor).await?;
        let kv = Etcd::kv(&leader)?;
        let requests: Vec<Request> = (0..clients)
            .map(|client_index| {
                let kv = kv.clone();
                let mut n: u64 = 0;
                let request: Request = Box::new(move || {
                    let mut kv = kv.clone();
                    n += 1;
                    let key = format!("bench/{client_index}/{}", n % ETCD_KEYS_PER_CLIENT);
                    async move {
                        let call = kv.put(etcdserverpb::PutRequest {
                            key: key.into_bytes(),
                            value: vec![b'x'; ETCD_VALUE_BYTES],
                            ..Default::default()
                        });
                        match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), call)
                            .await
                        {
                            Ok(Ok(_)) => Ok(1),
                            Ok(Err(status)) => Err(status.message().to_string()),
                            Err(_) => Err("timed out".to_string()),
                        }
                    }
                    .boxed()
                });
                request
            })
            .collect();
        Ok(closed_loop(requests, Duration::from_secs(seconds))
            .await
            .outcome())
    }

    async fn load_data(&mut self) -> Result<String> {
        let scale = self.args.scale;
        let arbor_seconds =
            sql::create_and_load(&self.arbor()?.connection_string(), "Arbor", scale).await?;
        let postgres = self
            .postgres
            .as_ref()
            .ok_or_else(|| unavailable("postgres"))?;
        let postgres_seconds =
            sql::create_and_load(&postgres.connection_string(), "PostgreSQL", scale).await?;
        // What `pgbench -i` does after loading, so PostgreSQL plans with statistics.
        let client = sql::connect(&postgres.connection_string())
            .await
            .map_err(|e| BenchError::sql("PostgreSQL", sql::describe(&e)))?;
        client
            .batch_execute("VACUUM ANALYZE")
            .await
            .map_err(|e| BenchError::sql("PostgreSQL", sql::describe(&e)))?;
        let accounts = scale * sql::ACCOUNTS_PER_SCALE;
        self.setting(
            "data",
            format!(
                "pgbench scale {scale}: {accounts} accounts, {} tellers, {scale} branch(es). Schema created through each system's SQL DDL with primary keys on every table (Arbor needs them; pgbench_history gets a BIGINT `hid` key the script fills with a random value), fillers as VARCHAR; rows loaded with multi-row INSERTs of {} rows in both (Arbor has no COPY): Arbor {arbor_seconds:.1} s, PostgreSQL {postgres_seconds:.1} s (then VACUUM ANALYZE, as pgbench -i does). Upserts go to a table of {} keys.",
                scale * sql::TELLERS_PER_SCALE,
                sql::LOAD_ROWS_PER_INSERT_MAX,
                sql::UPSERT_KEYS,
            ),
        );
        self.setting(
            "pgbench",
            format!(
                "custom scripts (-f), -M prepared, -n, -T, --max-tries={} --failures-detailed (serialization failures and deadlocks are retried; any other error aborts that client), threads = min(clients, {}), per-transaction log (-l) for p50/p99; the same script text against both systems",
                pgbench::PGBENCH_TRIES_MAX,
                pgbench::PGBENCH_THREADS_MAX
            ),
        );
        Ok(format!(
            "{accounts} accounts loaded: Arbor {arbor_seconds:.1} s, PostgreSQL {postgres_seconds:.1} s"
        ))
    }

    async fn choose_statements(&mut self) -> Result<String> {
        let target = self.arbor_target()?;
        let runner = &self.runner;
        let target_ref = &target;
        let mut notes = Vec::new();
        let accepts = |sets: &'static str| {
            move |statement: String| async move { runner.accepts(target_ref, sets, &statement).await }
        };
        let range =
            pgbench::choose(&pgbench::RANGE, accepts(pgbench::SETS_RANGE), &mut notes).await;
        let mut body = Vec::new();
        for choice in pgbench::TPCB {
            body.push(pgbench::choose(choice, accepts(pgbench::SETS_TPCB), &mut notes).await);
        }
        let block = pgbench::choose(
            &pgbench::TPCB_BLOCK,
            |variant: String| async move {
                let probe = variant.replace(pgbench::BODY, pgbench::POINT_SELECT);
                runner.accepts(target_ref, pgbench::SETS_TPCB, &probe).await
            },
            &mut notes,
        )
        .await;
        let mut refused = Vec::new();
        for (what, sets, statement) in [
            ("point select", pgbench::SETS_ACCOUNT, pgbench::POINT_SELECT),
            ("upsert", pgbench::SETS_UPSERT, pgbench::UPSERT),
        ] {
            if let Err(error) = runner.accepts(target_ref, sets, statement).await {
                refused.push(format!(
                    "{what}: Arbor refused `{statement}` ({error}); the run reports the errors"
                ));
            }
        }
        notes.extend(refused);
        let scripts = [
            (
                Workload::PointSelect,
                format!("{}{}\n", pgbench::SETS_ACCOUNT, pgbench::POINT_SELECT),
            ),
            (
                Workload::Upsert,
                format!("{}{}\n", pgbench::SETS_UPSERT, pgbench::UPSERT),
            ),
            (
                Workload::RangeScan,
                format!("{}{range}\n", pgbench::SETS_RANGE),
            ),
            (Workload::Tpcb, pgbench::tpcb_script(&block, &body)),
        ];
        for (workload, text) in scripts {
            let path = self
                .runner
                .dir
                .join(format!("{}.sql", workload.script_name()));
            std::fs::write(&path, &text).map_err(|e| BenchError::io(path.display(), e))?;
            self.scripts.insert(
                workload.script_name(),
                Script {
                    name: workload.script_name(),
                    text,
                },
            );
        }
        let probe = sql::probe_transactions(&self.arbor()?.connection_string(), "Arbor").await?;
        let transactions = format!("Arbor transactions: {}", probe.describe());
        notes.push(format!(
            "TPC-B-like: {}. {transactions}{}",
            if block.is_empty() {
                "run without BEGIN/END (each statement on its own)".to_string()
            } else {
                format!(
                    "run inside `{}`",
                    block.replace(pgbench::BODY, "...").replace('\n', " ")
                )
            },
            if probe.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", probe.detail)
            }
        ));
        let summary = format!("{} adaptation(s); {transactions}", notes.len() - 1);
        self.report.notes.extend(notes);
        Ok(summary)
    }

    async fn pgbench(
        &mut self,
        workload: Workload,
        target: &Target,
        clients: usize,
        seconds: u64,
    ) -> Result<Outcome> {
        let script = self
            .scripts
            .get(workload.script_name())
            .cloned()
            .ok_or_else(|| unavailable("pgbench scripts"))?;
        let tag = format!("{}-{}-{clients}", workload.script_name(), target.label);
        let (summary, histogram) = self
            .runner
            .run(target, &script, clients, Length::Seconds(seconds), &tag)
            .await?;
        Ok(pgbench::outcome(&summary, &histogram, seconds as f64))
    }

    fn failover_entry(
        &mut self,
        kind: &str,
        stop: &str,
        aim_median_ms: Option<f64>,
        client: &str,
    ) -> &mut Failover {
        let rows = &mut self.report.failover;
        let index = match rows.iter().position(|f| f.kind == kind && f.stop == stop) {
            Some(index) => index,
            None => {
                rows.push(Failover {
                    kind: kind.into(),
                    stop: stop.into(),
                    aim_median_ms,
                    client: client.into(),
                    gaps_ms: Vec::new(),
                    spread_ms: stats::spread(&[]),
                    details: Vec::new(),
                });
                rows.len() - 1
            }
        };
        &mut rows[index]
    }

    fn record_gap(
        &mut self,
        kind: &str,
        stop: &str,
        aim_median_ms: Option<f64>,
        client: &str,
        gap_ms: Option<f64>,
        detail: String,
    ) {
        let entry = self.failover_entry(kind, stop, aim_median_ms, client);
        if let Some(gap) = gap_ms {
            entry.gaps_ms.push(gap);
        }
        entry.details.push(detail);
        entry.spread_ms = stats::spread(&entry.gaps_ms);
    }

    async fn coordinator_failover(&mut self, stop: HolderStop) -> Result<String> {
        let (gap, detail) =
            failover::coordinator_failover(self.arbor()?, &self.supervisor, stop).await?;
        self.record_gap(
            "coordinator lease holder",
            stop.label(),
            Some(stop.aim_median_ms()),
            &format!(
                "every coordinator polled with GetTimestamps(count=1) every {} ms; the gap ends at the first answer from another coordinator under a newer lease generation",
                failover::POLL_PAUSE_MS
            ),
            gap,
            detail.clone(),
        );
        Ok(detail)
    }

    async fn region_preload(&mut self) -> Result<String> {
        let client = arbor_raftstore::RegionClient::new(self.arbor()?.coordinators.clone());
        let started = Instant::now();
        region::preload(&client).await?;
        let seconds = started.elapsed().as_secs_f64();
        self.region_client = Some(client);
        self.setting(
            "Arbor region client",
            format!(
                "the benchmark links `arbor_raftstore::RegionClient` (the client the gateway reads and writes through) and calls it directly, no SQL: one client shared by every load task as a gateway shares it between sessions, built from the coordinator addresses; a point read is `get` (a timestamp from the batching TSO client, then a read at the region leader), a write is `write` of {} B values (one region: a one-phase commit, one raft entry), each task writing only its own keys; {REGION_PRELOAD_KEYS} keys preloaded for the reads under `{}`",
                region::VALUE_BYTES,
                region::KEY_PREFIX
            ),
        );
        Ok(format!(
            "{REGION_PRELOAD_KEYS} keys in batches of {REGION_BATCH_KEYS} in {seconds:.1} s"
        ))
    }

    async fn region_client_load(
        &mut self,
        op: RegionOp,
        clients: usize,
        seconds: u64,
    ) -> Result<String> {
        let client = self
            .region_client
            .as_ref()
            .ok_or_else(|| unavailable("region client"))?;
        let result = closed_loop(
            region::requests(op, clients, client),
            Duration::from_secs(seconds),
        )
        .await;
        let outcome = result.outcome();
        let keys_per_request = match op {
            RegionOp::BatchWrite => REGION_BATCH_KEYS,
            RegionOp::PointRead | RegionOp::SingleWrite => 1,
        };
        let sql_counterpart = op.sql_counterpart().map(|w| w.label().to_string());
        let sql = sql_counterpart.as_ref().and_then(|group| {
            self.report
                .comparisons
                .iter()
                .find(|c| &c.group == group && c.clients == clients)
                .filter(|c| c.arbor.ops > 0)
                .map(|c| format!("; SQL {group} here: {:.0} tx/s", c.arbor.throughput))
        });
        let line = format!(
            "{:.0} keys/s; {}{}",
            result.units_per_second(),
            describe_outcome(&outcome, "requests/s"),
            sql.unwrap_or_default()
        );
        self.report.region_client.push(RegionClientPoint {
            operation: op.label(),
            clients,
            keys_per_request,
            keys_per_second: result.units_per_second(),
            outcome,
            sql_counterpart,
        });
        Ok(line)
    }

    async fn store_failover(&mut self, repetition: usize) -> Result<String> {
        let arbor = self.arbor()?;
        let view = arbor
            .wait_healthy(Duration::from_millis(FAILOVER_WAIT_MAX_MS))
            .await?;
        // The writer's table is the newest but one, so its keys sort into
        // the region with the highest keys (the one without an end key).
        let last = view
            .regions
            .iter()
            .find(|r| r.region.as_ref().is_some_and(|d| d.end_key.is_empty()))
            .ok_or_else(|| {
                BenchError::cluster("failover", "no region reaches the end of the key space")
            })?;
        let leader = last.leader_store_id;
        let region_id = last.region.as_ref().map_or(0, |d| d.region_id);
        let name = Arbor::store_name(leader);
        let connection_string = arbor.connection_string();
        let answers: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let streamer = {
            let answers = answers.clone();
            let errors = errors.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut key = (repetition as i64 + 1) * 1_000_000_000;
                let mut client = None;
                while !stop.load(Ordering::Relaxed) {
                    let statement_timeout = Duration::from_millis(FAILOVER_STATEMENT_TIMEOUT_MS);
                    if client.is_none() {
                        match tokio::time::timeout(
                            statement_timeout,
                            sql::connect(&connection_string),
                        )
                        .await
                        {
                            Ok(Ok(connected)) => client = Some(connected),
                            _ => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                        }
                    }
                    let Some(connected) = client.as_ref() else {
                        continue;
                    };
                    key += 1;
                    let sent = Instant::now();
                    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
                    let insert = connected.execute(
                        "INSERT INTO bench_failover (k, v) VALUES ($1, 'x')",
                        &parameters,
                    );
                    match tokio::time::timeout(statement_timeout, insert).await {
                        Ok(Ok(_)) => answers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((sent, Instant::now())),
                        outcome => {
                            let message = match outcome {
                                Ok(Err(e)) => sql::describe(&e),
                                _ => format!("no answer within {FAILOVER_STATEMENT_TIMEOUT_MS} ms"),
                            };
                            let mut errors = errors.lock().unwrap_or_else(|p| p.into_inner());
                            if errors.len() < 3 {
                                errors.push(message);
                            }
                            // A statement may still be running on it; start clean.
                            client = None;
                        }
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let writes_before = answers.lock().unwrap_or_else(|p| p.into_inner()).len();
        let killed_at = self
            .supervisor
            .kill9(&name)
            .ok_or_else(|| BenchError::cluster("failover", format!("{name} is not running")))?;
        let deadline = killed_at + Duration::from_millis(FAILOVER_WAIT_MAX_MS);
        let mut resumed = None;
        while Instant::now() < deadline && resumed.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let answers = answers.lock().unwrap_or_else(|p| p.into_inner());
            resumed = answers.iter().find(|(sent, _)| *sent >= killed_at).copied();
        }
        stop.store(true, Ordering::Relaxed);
        let _ = streamer.await;
        let gap =
            resumed.map(|(_, answered)| answered.duration_since(killed_at).as_secs_f64() * 1000.0);
        let seen_errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let detail = format!(
            "killed {name} (leader of region {region_id}, the writer's region per the cluster view; {writes_before} writes before); {}{}",
            gap.map_or("writes did not resume within the wait".to_string(), |g| format!("writes resumed after {g:.0} ms")),
            if seen_errors.is_empty() { String::new() } else { format!("; client saw: {}", seen_errors.join(" | ")) }
        );
        self.supervisor.restart(&name)?;
        self.arbor()?
            .wait_healthy(Duration::from_millis(2 * FAILOVER_WAIT_MAX_MS))
            .await?;
        self.record_gap("region leader store", HolderStop::Kill.label(), None, "one connection running INSERTs through the gateway in a loop (reconnecting after an error or 1 s without an answer)", gap, detail.clone());
        Ok(detail)
    }

    async fn regions(&mut self, target: usize) -> Result<String> {
        let settle_max_seconds = self.config.region_settle_max_seconds;
        let (split_keys, settle_seconds) = self.split_to(target, settle_max_seconds).await?;
        // Measure even if some of many regions still elect a leader; say so.
        let view = match self
            .arbor()?
            .wait_healthy(Duration::from_millis(FAILOVER_WAIT_MAX_MS))
            .await
        {
            Ok(view) => view,
            Err(error) => {
                self.report.notes.push(format!(
                    "region scaling at ~{target} regions: measured although the cluster was not fully healthy ({error})"
                ));
                self.arbor()?.view().await?
            }
        };
        self.regions_measure(view, split_keys, settle_seconds).await
    }

    /// Restarts the coordinators with a split threshold that gives about
    /// `target` regions and waits (up to `settle_max_seconds`) until
    /// no region is over it and the count held for 3 s. Answers the
    /// threshold (None: one region wanted, nothing to split) and the
    /// seconds it took.
    async fn split_to(
        &mut self,
        target: usize,
        settle_max_seconds: u64,
    ) -> Result<(Option<u64>, f64)> {
        let arbor = self.arbor()?;
        let view = arbor
            .wait_healthy(Duration::from_millis(FAILOVER_WAIT_MAX_MS))
            .await?;
        let total_keys: u64 = view.regions.iter().map(|r| r.key_count).sum();
        let started = Instant::now();
        // Regions end up between half and all of the split threshold, so
        // aim the threshold at 4/3 of the mean size that gives `target`.
        let split_keys = if target <= 1 {
            None
        } else {
            Some((total_keys * 4 / (3 * target as u64)).max(2))
        };
        if let Some(keys) = split_keys {
            // Standby first; the holder seals its lease on SIGTERM, so the
            // restarted standby takes over at once with the new threshold.
            let holder = arbor
                .holder(Duration::from_millis(FAILOVER_WAIT_MAX_MS))
                .await?;
            let order: Vec<usize> = (0..arbor::COORDINATORS)
                .filter(|i| *i != holder)
                .chain(std::iter::once(holder))
                .collect();
            for index in order {
                let spec = self.arbor()?.coordinator_spec(index, Some(keys));
                self.supervisor.stop(&spec.name).await;
                self.supervisor.spawn(spec)?;
                let back = Instant::now() + Duration::from_millis(FAILOVER_WAIT_MAX_MS);
                while !self.arbor()?.coordinator_answers(index).await && Instant::now() < back {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let settle_deadline = started + Duration::from_secs(settle_max_seconds);
            let mut last_count = 0;
            let mut stable_since = Instant::now();
            while Instant::now() < settle_deadline {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                let Ok(view) = self.arbor()?.view().await else {
                    continue;
                };
                let count = view.regions.len();
                let oversized = view.regions.iter().filter(|r| r.key_count > keys).count();
                if count != last_count {
                    last_count = count;
                    stable_since = Instant::now();
                }
                if oversized == 0 && stable_since.elapsed() >= Duration::from_secs(3) {
                    break;
                }
            }
        }
        Ok((split_keys, started.elapsed().as_secs_f64()))
    }

    /// The region-scaling point at the current region count: idle CPU,
    /// then point selects.
    async fn regions_measure(
        &mut self,
        view: arbor_proto::ClusterViewResponse,
        split_keys: Option<u64>,
        settle_seconds: f64,
    ) -> Result<String> {
        let regions = view.regions.len();
        let stores: Vec<String> = (1..=arbor::STORES as u64).map(Arbor::store_name).collect();
        let holder = self
            .arbor()?
            .holder(Duration::from_millis(FAILOVER_WAIT_MAX_MS))
            .await?;
        let coordinator = vec![Arbor::coordinator_name(holder)];
        let idle_seconds = if self.config.quick { 1.0 } else { 3.0 };
        let store_idle_0 = cpu_of(&self.supervisor, &stores);
        let coordinator_0 = cpu_of(&self.supervisor, &coordinator);
        tokio::time::sleep(Duration::from_secs_f64(idle_seconds)).await;
        let store_cpu_idle = (cpu_of(&self.supervisor, &stores) - store_idle_0) / idle_seconds;
        let coordinator_cpu_idle =
            (cpu_of(&self.supervisor, &coordinator) - coordinator_0) / idle_seconds;
        let target_sql = self.arbor_target()?;
        let load_started = Instant::now();
        let store_load_0 = cpu_of(&self.supervisor, &stores);
        let gateway = vec!["gateway".to_string()];
        let gateway_load_0 = cpu_of(&self.supervisor, &gateway);
        let outcome = self
            .pgbench(
                Workload::PointSelect,
                &target_sql,
                REGION_LOAD_CLIENTS,
                self.config.scaling_seconds,
            )
            .await?;
        let load_seconds = load_started.elapsed().as_secs_f64().max(1e-9);
        let store_cpu_loaded = (cpu_of(&self.supervisor, &stores) - store_load_0) / load_seconds;
        let gateway_cpu_loaded =
            (cpu_of(&self.supervisor, &gateway) - gateway_load_0) / load_seconds;
        let line = format!(
            "{regions} regions (split threshold {}), settled in {settle_seconds:.0} s; stores idle {store_cpu_idle:.2} CPU, loaded {store_cpu_loaded:.2} CPU (gateway {gateway_cpu_loaded:.2}); {}",
            split_keys.map_or("default".to_string(), |k| k.to_string()),
            describe_outcome(&outcome, "tx/s")
        );
        self.report.region_scaling.push(RegionPoint {
            split_keys: split_keys.unwrap_or(0),
            regions,
            settle_seconds,
            point_select: outcome,
            store_cpu_idle,
            store_cpu_loaded,
            coordinator_cpu_idle,
            gateway_cpu_loaded,
        });
        Ok(line)
    }
}

/// One root proposal; answers 1 when accepted.
async fn propose(
    mut client: RootClient<tonic::transport::Channel>,
    kind: Kind,
) -> std::result::Result<u64, String> {
    let call = client.propose(ProposeRequest {
        event: Some(RootEvent { kind: Some(kind) }),
        lease_fence: None,
    });
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), call).await {
        Ok(Ok(answer)) if answer.get_ref().accepted => Ok(1),
        Ok(Ok(answer)) => Err(format!("rejected: {}", answer.get_ref().rejection_detail)),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// The proposal the root benchmark and the soak repeat: a renewal of the
/// benchmark's own lease, accepted every time, so the state does not grow.
async fn renew_bench_lease(
    client: RootClient<tonic::transport::Channel>,
) -> std::result::Result<u64, String> {
    propose(
        client,
        Kind::LeaseRenewed(LeaseRenewed {
            holder_id: "arbor-bench".into(),
            generation: 1,
            ttl_ms: BENCH_LEASE_TTL_MS,
        }),
    )
    .await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers, wait forever: the run still ends by itself.
        futures::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

async fn run_all(run: &mut Run, started: Instant) -> Result<()> {
    let steps = plan(&run.config);
    let total = steps.len();
    for (index, (step, _)) in steps.iter().enumerate() {
        let left: f64 = steps[index..].iter().map(|(_, s)| s).sum();
        say(&progress_line(
            index,
            total,
            started.elapsed().as_secs_f64(),
            left,
            &step.label(run.config.seconds, run.config.scaling_seconds),
        ));
        let step_started = Instant::now();
        let done = run.execute(step).await?;
        let exited: Vec<String> = run.supervisor.exited();
        if let Some(done) = done {
            say(&format!(
                "      {done} ({})",
                format_duration(step_started.elapsed().as_secs_f64())
            ));
        }
        if !exited.is_empty() {
            return Err(BenchError::cluster(
                "processes",
                format!(
                    "{exited:?} exited on their own; logs in {}/logs",
                    run.supervisor.run_dir().display()
                ),
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("arbor-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(args))
}

async fn async_main(args: Args) -> ExitCode {
    let started = Instant::now();
    if let Some(only) = &args.only {
        if let Some(unknown) = only.iter().find(|g| !plan::GROUPS.contains(&g.as_str())) {
            eprintln!(
                "arbor-bench: unknown group {unknown}; groups: {}",
                plan::GROUPS.join(", ")
            );
            return ExitCode::FAILURE;
        }
    }
    let supervisor = match Supervisor::new(&args.run_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("arbor-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let date = args.date.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        machine::utc_date(now)
    });
    let mut config = Config::new(args.quick, args.only.clone());
    config.soak_minutes = args.soak_minutes;
    let stem = report::result_stem(&date, args.quick, args.only.as_deref());
    let pgbench_dir = args.run_dir.join("pgbench");
    if let Err(e) = std::fs::create_dir_all(&pgbench_dir) {
        eprintln!("arbor-bench: {}: {e}", pgbench_dir.display());
        return ExitCode::FAILURE;
    }
    let mut run = Run {
        report: Report {
            schema: report::SCHEMA,
            date: date.clone(),
            quick: args.quick,
            groups: config.groups.clone(),
            machine: machine::describe(
                &args.git_commit,
                &args
                    .arbor_origin
                    .clone()
                    .unwrap_or_else(|| args.arbor_bin.display().to_string()),
            ),
            ..Report::default()
        },
        runner: Runner {
            program: args
                .pgbench
                .clone()
                .unwrap_or_else(|| args.pg_bin_dir.join("pgbench")),
            dir: pgbench_dir,
            scale: args.scale,
        },
        args,
        config,
        supervisor: supervisor.clone(),
        arbor: None,
        root_group: None,
        etcd: None,
        postgres: None,
        scripts: HashMap::new(),
        bench_lease_granted: false,
        region_client: None,
    };
    let load = run.report.machine.load_before.unwrap_or(0.0);
    say(&format!(
        "arbor-bench: {} run, {} cores, load average {load:.2}{}; scratch in {}",
        if run.config.quick { "quick" } else { "full" },
        run.report.machine.nproc,
        if load > 0.5 {
            " (the machine is busy: numbers will be noisy)"
        } else {
            ""
        },
        run.supervisor.run_dir().display()
    ));
    let result = tokio::select! {
        result = run_all(&mut run, started) => result,
        _ = shutdown_signal() => Err(BenchError::Interrupted),
    };
    say("stopping every process this run started");
    let killed = supervisor.stop_all().await;
    if !killed.is_empty() {
        say(&format!("  (had to SIGKILL {killed:?})"));
    }
    run.report.machine.load_after = machine::load_now();
    run.report.wall_seconds = started.elapsed().as_secs_f64();
    run.report.complete = result.is_ok();
    if let Err(error) = &result {
        run.report
            .notes
            .push(format!("The run did not complete: {error}"));
    }
    let (before, after) = (
        run.report.machine.load_before,
        run.report.machine.load_after,
    );
    run.report.notes.push(format!(
        "Load average (1 min) before the run {}, after {}: {}",
        before.map_or("?".into(), |l| format!("{l:.2}")),
        after.map_or("?".into(), |l| format!("{l:.2}")),
        if before.unwrap_or(0.0).max(after.unwrap_or(0.0)) > 0.5 {
            "other work (e.g. builds) shared the cores, so the numbers are noisy"
        } else {
            "the machine was otherwise idle"
        }
    ));
    let path = run.args.out.join(format!("{stem}.json"));
    // bench/run plots the file named here (its name depends on --only and
    // --quick), never an older result that happens to exist.
    let named = run.args.run_dir.join(RESULT_PATH_FILE);
    let written = std::fs::create_dir_all(&run.args.out)
        .and_then(|_| serde_json::to_vec_pretty(&run.report).map_err(std::io::Error::other))
        .and_then(|json| std::fs::write(&path, json))
        .and_then(|_| std::fs::write(&named, format!("{}\n", path.display())));
    match written {
        Ok(()) => say(&format!(
            "wrote {} ({} in all)",
            path.display(),
            format_duration(run.report.wall_seconds)
        )),
        Err(e) => eprintln!("arbor-bench: {}: {e}", path.display()),
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("arbor-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
