//! What a run does, in order, with an estimate of each step's seconds:
//! pure, so the progress line's ETA and the "full run under 15 minutes"
//! budget are checked without starting anything.

use std::fmt::Write;

/// The benchmark groups, selectable with `--only`, in the order they run.
pub const GROUPS: &[&str] = &[
    "root", "tso", "sql", "clients", "region", "failover", "regions", "soak",
];

/// Groups that run only when named with `--only`: the soak alone takes
/// longer than the whole 15-minute budget of the full run.
pub const OPT_IN_GROUPS: &[&str] = &["soak"];

/// Regions the soak makes before measuring (issue 6: 1,000 idle regions).
pub const SOAK_REGIONS: usize = 1_000;
/// Default minutes of steady load in the soak (`--soak-minutes`).
pub const SOAK_MINUTES_DEFAULT: u64 = 10;
/// Seconds of each idle CPU window of the soak (before and after the load).
pub const SOAK_IDLE_SECONDS: u64 = 60;
/// Seconds between two RSS samples of every process during the soak.
pub const SOAK_SAMPLE_SECONDS: u64 = 30;
/// Most seconds the soak waits for every region to hibernate (splits still
/// under way wake regions; on a busy 2-core machine 120 s was too short).
pub const SOAK_HIBERNATE_WAIT_MAX_SECONDS: u64 = 300;
/// Most seconds the soak waits for the splits to 1,000 regions to settle:
/// longer than the `regions` group's wait, since an unsettled split makes
/// the idle window not idle (240 s was not enough on a busy machine).
pub const SOAK_SETTLE_MAX_SECONDS: u64 = 480;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub quick: bool,
    /// Seconds per measured point of the main benchmarks.
    pub seconds: u64,
    /// Seconds per point of the curves over many client counts (client
    /// scaling, TSO, region client): their points are many and fast, so
    /// shorter points keep the full run in its budget.
    pub scaling_seconds: u64,
    pub kv_clients: Vec<usize>,
    /// Concurrent clients of the TSO benchmark.
    pub tso_clients: Vec<usize>,
    /// Concurrent clients of each region-client (no SQL) benchmark.
    pub region_clients: Vec<usize>,
    pub sql_clients: Vec<usize>,
    pub scaling_clients: Vec<usize>,
    /// TSO batch sizes (timestamps per request).
    pub tso_batches: Vec<u32>,
    /// Times the coordinator lease holder is killed (kill -9), and again
    /// stopped gracefully (SIGTERM: it seals its lease), each.
    pub coordinator_failover_repetitions: usize,
    /// Times a region leader's store is killed.
    pub store_failover_repetitions: usize,
    /// Region counts the region-scaling curve aims at.
    pub region_targets: Vec<usize>,
    /// Most seconds to wait for splits to reach one region target.
    pub region_settle_max_seconds: u64,
    /// Minutes of steady load in the soak.
    pub soak_minutes: u64,
    /// Seconds of each idle CPU window of the soak.
    pub soak_idle_seconds: u64,
    pub groups: Vec<String>,
}

impl Config {
    pub fn new(quick: bool, only: Option<Vec<String>>) -> Config {
        let groups = only.unwrap_or_else(|| {
            GROUPS
                .iter()
                .filter(|g| !OPT_IN_GROUPS.contains(g))
                .map(|g| g.to_string())
                .collect()
        });
        if quick {
            Config {
                quick,
                seconds: 2,
                scaling_seconds: 1,
                kv_clients: vec![1, 16],
                tso_clients: vec![1, 16],
                region_clients: vec![16],
                sql_clients: vec![16],
                scaling_clients: vec![1, 32],
                tso_batches: vec![1, 1_000],
                coordinator_failover_repetitions: 1,
                store_failover_repetitions: 1,
                region_targets: vec![1, 10],
                region_settle_max_seconds: 30,
                soak_minutes: SOAK_MINUTES_DEFAULT,
                soak_idle_seconds: 10,
                groups,
            }
        } else {
            Config {
                quick,
                seconds: 8,
                scaling_seconds: 3,
                kv_clients: vec![1, 16, 64],
                tso_clients: vec![1, 16, 64],
                region_clients: vec![1, 16, 64],
                sql_clients: vec![1, 16, 64],
                scaling_clients: vec![1, 2, 4, 8, 16, 32, 64, 128],
                tso_batches: vec![1, 1_000],
                coordinator_failover_repetitions: 10,
                store_failover_repetitions: 3,
                region_targets: vec![1, 10, 100, 1_000],
                region_settle_max_seconds: 240,
                soak_minutes: SOAK_MINUTES_DEFAULT,
                soak_idle_seconds: SOAK_IDLE_SECONDS,
                groups,
            }
        }
    }

    pub fn runs(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    pub fn needs_sql(&self) -> bool {
        ["sql", "clients", "failover", "regions"]
            .iter()
            .any(|g| self.runs(g))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    PointSelect,
    Upsert,
    RangeScan,
    Tpcb,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::PointSelect,
        Workload::Upsert,
        Workload::RangeScan,
        Workload::Tpcb,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Workload::PointSelect => "point select",
            Workload::Upsert => "upsert",
            Workload::RangeScan => "range scan (100 rows)",
            Workload::Tpcb => "TPC-B-like",
        }
    }

    pub fn script_name(self) -> &'static str {
        match self {
            Workload::PointSelect => "point_select",
            Workload::Upsert => "upsert",
            Workload::RangeScan => "range_scan",
            Workload::Tpcb => "tpcb",
        }
    }
}

/// Keys the region-client point reads pick from.
pub const REGION_PRELOAD_KEYS: usize = 10_000;
const _: () = assert!(REGION_PRELOAD_KEYS % REGION_BATCH_KEYS == 0);

/// Keys of one batch write of the region-client benchmark.
pub const REGION_BATCH_KEYS: usize = 100;

/// What one region-client (no SQL) benchmark does per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionOp {
    /// `RegionClient::get`: a timestamp from the TSO, then a read at it.
    PointRead,
    /// `RegionClient::write` of one key: a one-phase commit.
    SingleWrite,
    /// `RegionClient::write` of [`REGION_BATCH_KEYS`] keys in one region:
    /// one one-phase commit.
    BatchWrite,
}

impl RegionOp {
    pub const ALL: [RegionOp; 3] = [
        RegionOp::PointRead,
        RegionOp::SingleWrite,
        RegionOp::BatchWrite,
    ];

    pub fn label(self) -> String {
        match self {
            RegionOp::PointRead => "point read".into(),
            RegionOp::SingleWrite => "single-key write".into(),
            RegionOp::BatchWrite => format!("{REGION_BATCH_KEYS}-key batch write"),
        }
    }

    /// The SQL benchmark that does the same work through the gateway, so
    /// the report can put both paths side by side.
    pub fn sql_counterpart(self) -> Option<Workload> {
        match self {
            RegionOp::PointRead => Some(Workload::PointSelect),
            RegionOp::SingleWrite => Some(Workload::Upsert),
            RegionOp::BatchWrite => None,
        }
    }
}

/// How the coordinator failover benchmark takes the lease holder away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderStop {
    /// SIGKILL: nobody seals the lease, so the successor waits it out.
    Kill,
    /// SIGTERM: the holder seals its lease on the way out, so the standby
    /// may take over at once.
    Seal,
}

impl HolderStop {
    pub const ALL: [HolderStop; 2] = [HolderStop::Kill, HolderStop::Seal];

    pub fn label(self) -> &'static str {
        match self {
            HolderStop::Kill => "kill -9",
            HolderStop::Seal => "SIGTERM (lease sealed)",
        }
    }

    /// The median gap issue 5 aims at.
    pub fn aim_median_ms(self) -> f64 {
        match self {
            HolderStop::Kill => 1_500.0,
            HolderStop::Seal => 200.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Arbor,
    Anchor,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    StartArbor,
    StartRootGroup,
    StartEtcd,
    StartPostgres,
    LoadData,
    ChooseStatements,
    RootProposals {
        clients: usize,
    },
    EtcdPuts {
        clients: usize,
    },
    StopRootAnchors,
    Tso {
        clients: usize,
        batch: u32,
    },
    Sql {
        workload: Workload,
        clients: usize,
        system: System,
    },
    ClientScaling {
        clients: usize,
        system: System,
    },
    StopPostgres,
    /// Writes the keys the region-client point reads read.
    RegionPreload,
    RegionClient {
        op: RegionOp,
        clients: usize,
    },
    CoordinatorFailover {
        repetition: usize,
        stop: HolderStop,
    },
    StoreFailover {
        repetition: usize,
    },
    Regions {
        target: usize,
    },
    /// Splits to about `target` regions and waits until the stores say
    /// every region hibernates.
    SoakSplit {
        target: usize,
    },
    /// One idle window: CPU of each store and RSS of every process.
    SoakIdle {
        after_load: bool,
    },
    /// Steady light load (region writes and root proposals) for `minutes`,
    /// sampling every process's RSS.
    SoakLoad {
        minutes: u64,
    },
}

impl Step {
    pub fn label(&self, seconds: u64, scaling_seconds: u64) -> String {
        let who = |system: &System| match system {
            System::Arbor => "Arbor",
            System::Anchor => "PostgreSQL",
        };
        match self {
            Step::StartArbor => "start a fresh Arbor cluster (3 root, 2 coordinators, 3 stores, gateway)".into(),
            Step::StartRootGroup => "start a separate 3-peer Arbor root group for the proposal benchmark".into(),
            Step::StartEtcd => "start a 3-member etcd cluster".into(),
            Step::StartPostgres => "initdb and start a throwaway PostgreSQL".into(),
            Step::LoadData => "create the schema and load the pgbench data into Arbor and PostgreSQL".into(),
            Step::ChooseStatements => "probe which statement forms Arbor accepts; probe BEGIN/COMMIT".into(),
            Step::RootProposals { clients } => format!("root proposals, {}, {seconds} s", clients_label(*clients)),
            Step::EtcdPuts { clients } => format!("etcd puts, {}, {seconds} s", clients_label(*clients)),
            Step::StopRootAnchors => "stop the root group and etcd".into(),
            Step::Tso { clients, batch } => format!(
                "TSO GetTimestamps count={batch}, {}, {scaling_seconds} s",
                clients_label(*clients)
            ),
            Step::Sql { workload, clients, system } => format!(
                "pgbench {} on {}, {}, {seconds} s",
                workload.label(),
                who(system),
                clients_label(*clients)
            ),
            Step::ClientScaling { clients, system } => format!(
                "client scaling: point select on {}, {}, {scaling_seconds} s",
                who(system),
                clients_label(*clients)
            ),
            Step::StopPostgres => "stop PostgreSQL".into(),
            Step::RegionPreload => format!(
                "region client: write {REGION_PRELOAD_KEYS} keys for the point reads (no SQL)"
            ),
            Step::RegionClient { op, clients } => format!(
                "region client (no SQL): {}, {}, {scaling_seconds} s",
                op.label(),
                clients_label(*clients)
            ),
            Step::CoordinatorFailover { repetition, stop } => format!(
                "failover {}: {} the coordinator lease holder under TSO polling",
                repetition + 1,
                stop.label()
            ),
            Step::StoreFailover { repetition } => {
                format!("failover {}: kill -9 a region leader's store under an INSERT stream", repetition + 1)
            }
            Step::Regions { target } => format!(
                "region scaling: split to ~{target} regions, then idle CPU and point select for {scaling_seconds} s"
            ),
            Step::SoakSplit { target } => format!(
                "soak: split to ~{target} regions, wait until every region hibernates"
            ),
            Step::SoakIdle { after_load } => format!(
                "soak: idle window {} the load: CPU per store, RSS of every process",
                if *after_load { "after" } else { "before" }
            ),
            Step::SoakLoad { minutes } => format!(
                "soak: {minutes} min of light load (region writes + root proposals), RSS every {SOAK_SAMPLE_SECONDS} s"
            ),
        }
    }
}

/// "1 client", "16 clients".
pub fn clients_label(clients: usize) -> String {
    if clients == 1 {
        "1 client".into()
    } else {
        format!("{clients} clients")
    }
}

/// Seconds a pgbench run takes beyond its duration (connecting, and the
/// per-transaction log read afterwards), growing with clients.
fn pgbench_overhead(clients: usize) -> f64 {
    1.0 + clients as f64 / 40.0
}

/// Every step of a run with its estimated seconds.
pub fn plan(config: &Config) -> Vec<(Step, f64)> {
    let seconds = config.seconds as f64;
    let mut steps = vec![(Step::StartArbor, 12.0)];
    let root = config.runs("root");
    if root {
        steps.push((Step::StartRootGroup, 4.0));
        steps.push((Step::StartEtcd, 4.0));
    }
    if config.needs_sql() {
        steps.push((Step::StartPostgres, 5.0));
    }
    if root {
        for &clients in &config.kv_clients {
            steps.push((Step::RootProposals { clients }, seconds + 0.5));
            steps.push((Step::EtcdPuts { clients }, seconds + 0.5));
        }
        steps.push((Step::StopRootAnchors, 1.0));
    }
    if config.runs("tso") {
        for &batch in &config.tso_batches {
            for &clients in &config.tso_clients {
                steps.push((
                    Step::Tso { clients, batch },
                    config.scaling_seconds as f64 + 0.5,
                ));
            }
        }
    }
    if config.needs_sql() {
        steps.push((Step::LoadData, 15.0));
        steps.push((Step::ChooseStatements, 3.0));
    }
    if config.runs("sql") {
        for workload in Workload::ALL {
            for &clients in &config.sql_clients {
                for system in [System::Arbor, System::Anchor] {
                    steps.push((
                        Step::Sql {
                            workload,
                            clients,
                            system,
                        },
                        seconds + pgbench_overhead(clients),
                    ));
                }
            }
        }
    }
    if config.runs("clients") {
        for &clients in &config.scaling_clients {
            for system in [System::Arbor, System::Anchor] {
                steps.push((
                    Step::ClientScaling { clients, system },
                    config.scaling_seconds as f64 + pgbench_overhead(clients),
                ));
            }
        }
    }
    if config.needs_sql() {
        steps.push((Step::StopPostgres, 2.0));
    }
    if config.runs("region") {
        steps.push((Step::RegionPreload, 3.0));
        for op in RegionOp::ALL {
            for &clients in &config.region_clients {
                steps.push((
                    Step::RegionClient { op, clients },
                    config.scaling_seconds as f64 + 0.5,
                ));
            }
        }
    }
    if config.runs("failover") {
        // Alternated, so drift in the machine's load touches both kinds alike.
        for repetition in 0..config.coordinator_failover_repetitions {
            for stop in HolderStop::ALL {
                let estimate = match stop {
                    HolderStop::Kill => 5.0,
                    HolderStop::Seal => 3.0,
                };
                steps.push((Step::CoordinatorFailover { repetition, stop }, estimate));
            }
        }
        for repetition in 0..config.store_failover_repetitions {
            steps.push((Step::StoreFailover { repetition }, 12.0));
        }
    }
    if config.runs("regions") {
        for &target in &config.region_targets {
            // Splits run a few per second (the scheduler's per-tick cap).
            let settle = (target as f64 / 4.0).min(config.region_settle_max_seconds as f64);
            steps.push((
                Step::Regions { target },
                settle + 3.0 + config.scaling_seconds as f64 + pgbench_overhead(16) + 4.0,
            ));
        }
    }
    if config.runs("soak") {
        // The root group of the `root` group stays up for the soak when
        // both run (see `Step::StopRootAnchors`); so do the region
        // group's preloaded keys and client.
        if !root {
            steps.push((Step::StartRootGroup, 4.0));
        }
        if !config.runs("region") {
            steps.push((Step::RegionPreload, 3.0));
        }
        let settle = (SOAK_REGIONS as f64 / 4.0).min(SOAK_SETTLE_MAX_SECONDS as f64);
        steps.push((
            Step::SoakSplit {
                target: SOAK_REGIONS,
            },
            settle + 10.0,
        ));
        let idle = config.soak_idle_seconds as f64 + 1.0;
        steps.push((Step::SoakIdle { after_load: false }, idle));
        steps.push((
            Step::SoakLoad {
                minutes: config.soak_minutes,
            },
            config.soak_minutes as f64 * 60.0 + 1.0,
        ));
        steps.push((Step::SoakIdle { after_load: true }, idle));
    }
    steps
}

pub fn format_duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    if total >= 60 {
        format!("{}m{:02}s", total / 60, total % 60)
    } else {
        format!("{total}s")
    }
}

/// One progress line: step k of n, elapsed, estimated time left.
pub fn progress_line(index: usize, total: usize, elapsed: f64, left: f64, label: &str) -> String {
    let mut line = String::new();
    let width = total.to_string().len();
    let _ = write!(
        line,
        "[{:>width$}/{total} | {} elapsed | ~{} left] {label}",
        index + 1,
        format_duration(elapsed),
        format_duration(left),
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(config: &Config) -> f64 {
        plan(config).iter().map(|(_, s)| s).sum()
    }

    #[test]
    fn full_run_fits_in_fifteen_minutes() {
        let seconds = total(&Config::new(false, None));
        assert!(seconds < 15.0 * 60.0, "full plan estimates {seconds} s");
    }

    #[test]
    fn quick_run_takes_about_two_minutes() {
        let seconds = total(&Config::new(true, None));
        assert!(seconds < 150.0, "quick plan estimates {seconds} s");
    }

    #[test]
    fn every_sql_point_runs_on_both_systems() {
        let config = Config::new(false, None);
        let steps = plan(&config);
        for workload in Workload::ALL {
            for &clients in &[1, 16, 64] {
                for system in [System::Arbor, System::Anchor] {
                    assert!(steps.iter().any(|(s, _)| *s
                        == Step::Sql {
                            workload,
                            clients,
                            system
                        }));
                }
            }
        }
        assert!(steps
            .iter()
            .any(|(s, _)| *s == Step::Regions { target: 1_000 }));
        assert!(steps.iter().any(|(s, _)| *s
            == Step::ClientScaling {
                clients: 128,
                system: System::Arbor
            }));
    }

    #[test]
    fn only_limits_the_groups_and_their_setup() {
        let config = Config::new(true, Some(vec!["tso".into()]));
        let steps = plan(&config);
        assert!(steps
            .iter()
            .all(|(s, _)| matches!(s, Step::StartArbor | Step::Tso { .. })));
        let config = Config::new(true, Some(vec!["root".into()]));
        assert!(plan(&config).iter().any(|(s, _)| *s == Step::StartEtcd));
        assert!(!plan(&config).iter().any(|(s, _)| *s == Step::StartPostgres));
    }

    #[test]
    fn full_plan_measures_tso_at_1_16_and_64_clients_single_and_batched() {
        let steps = plan(&Config::new(false, None));
        for batch in [1, 1_000] {
            for clients in [1, 16, 64] {
                assert!(
                    steps
                        .iter()
                        .any(|(s, _)| *s == Step::Tso { clients, batch }),
                    "no TSO step for count={batch}, {clients} clients"
                );
            }
        }
    }

    #[test]
    fn full_plan_kills_and_seals_the_holder_ten_times_each_and_kills_stores_three_times() {
        let steps = plan(&Config::new(false, None));
        for stop in HolderStop::ALL {
            let count = steps
                .iter()
                .filter(
                    |(s, _)| matches!(s, Step::CoordinatorFailover { stop: k, .. } if *k == stop),
                )
                .count();
            assert_eq!(count, 10, "{}", stop.label());
        }
        let stores = steps
            .iter()
            .filter(|(s, _)| matches!(s, Step::StoreFailover { .. }))
            .count();
        assert_eq!(stores, 3);
        let quick = plan(&Config::new(true, None));
        assert_eq!(
            quick
                .iter()
                .filter(|(s, _)| matches!(s, Step::StoreFailover { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn region_group_preloads_then_runs_every_operation_at_1_16_and_64_clients_without_sql() {
        let config = Config::new(false, Some(vec!["region".into()]));
        assert!(!config.needs_sql());
        let steps: Vec<Step> = plan(&config).into_iter().map(|(s, _)| s).collect();
        let preload = steps.iter().position(|s| *s == Step::RegionPreload);
        let first_op = steps
            .iter()
            .position(|s| matches!(s, Step::RegionClient { .. }));
        assert!(preload.is_some() && preload < first_op, "{steps:?}");
        for op in RegionOp::ALL {
            for clients in [1, 16, 64] {
                assert!(steps.contains(&Step::RegionClient { op, clients }));
            }
        }
        assert!(steps.iter().all(|s| matches!(
            s,
            Step::StartArbor | Step::RegionPreload | Step::RegionClient { .. }
        )));
    }

    #[test]
    fn region_runs_before_any_process_is_killed() {
        let steps: Vec<Step> = plan(&Config::new(false, None))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let last_region = steps
            .iter()
            .rposition(|s| matches!(s, Step::RegionClient { .. }));
        let first_kill = steps.iter().position(|s| {
            matches!(
                s,
                Step::CoordinatorFailover { .. } | Step::StoreFailover { .. }
            )
        });
        assert!(last_region < first_kill);
    }

    #[test]
    fn region_reads_and_single_writes_name_their_sql_counterpart() {
        assert_eq!(
            RegionOp::PointRead.sql_counterpart(),
            Some(Workload::PointSelect)
        );
        assert_eq!(
            RegionOp::SingleWrite.sql_counterpart(),
            Some(Workload::Upsert)
        );
        assert_eq!(RegionOp::BatchWrite.sql_counterpart(), None);
        assert_eq!(RegionOp::BatchWrite.label(), "100-key batch write");
    }

    #[test]
    fn full_plan_compares_root_and_etcd_at_1_16_and_64_proposers() {
        let steps = plan(&Config::new(false, None));
        for clients in [1, 16, 64] {
            assert!(steps.contains(&(Step::RootProposals { clients }, 8.5)));
            assert!(steps.contains(&(Step::EtcdPuts { clients }, 8.5)));
        }
    }

    #[test]
    fn soak_runs_only_when_named() {
        let full = plan(&Config::new(false, None));
        assert!(!full.iter().any(|(s, _)| matches!(
            s,
            Step::SoakSplit { .. } | Step::SoakIdle { .. } | Step::SoakLoad { .. }
        )));
        let only: Vec<Step> = plan(&Config::new(false, Some(vec!["soak".into()])))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(
            only,
            vec![
                Step::StartArbor,
                Step::StartRootGroup,
                Step::RegionPreload,
                Step::SoakSplit {
                    target: SOAK_REGIONS
                },
                Step::SoakIdle { after_load: false },
                Step::SoakLoad {
                    minutes: SOAK_MINUTES_DEFAULT
                },
                Step::SoakIdle { after_load: true },
            ]
        );
    }

    #[test]
    fn soak_reuses_the_root_group_and_preload_of_groups_that_ran() {
        let config = Config::new(
            true,
            Some(vec!["root".into(), "region".into(), "soak".into()]),
        );
        let steps: Vec<Step> = plan(&config).into_iter().map(|(s, _)| s).collect();
        let count = |step: &Step| steps.iter().filter(|s| *s == step).count();
        assert_eq!(count(&Step::StartRootGroup), 1);
        assert_eq!(count(&Step::RegionPreload), 1);
        let load = steps
            .iter()
            .position(|s| matches!(s, Step::SoakLoad { .. }));
        assert!(steps.iter().position(|s| *s == Step::StartRootGroup) < load);
    }

    #[test]
    fn progress_line_shows_position_elapsed_and_eta() {
        assert_eq!(
            progress_line(4, 31, 62.4, 510.0, "etcd puts"),
            "[ 5/31 | 1m02s elapsed | ~8m30s left] etcd puts"
        );
        assert_eq!(format_duration(9.6), "10s");
    }
}
