//! What a run does, in order, with an estimate of each step's seconds:
//! pure, so the progress line's ETA and the "full run under 15 minutes"
//! budget are checked without starting anything.

use std::fmt::Write;

/// The benchmark groups, selectable with `--only`.
pub const GROUPS: &[&str] = &["root", "tso", "sql", "clients", "failover", "regions"];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub quick: bool,
    /// Seconds per measured point of the main benchmarks.
    pub seconds: u64,
    /// Seconds per point of the client-scaling curve.
    pub scaling_seconds: u64,
    pub kv_clients: Vec<usize>,
    pub sql_clients: Vec<usize>,
    pub scaling_clients: Vec<usize>,
    /// TSO batch sizes (timestamps per request).
    pub tso_batches: Vec<u32>,
    pub failover_repetitions: usize,
    /// Region counts the region-scaling curve aims at.
    pub region_targets: Vec<usize>,
    /// Most seconds to wait for splits to reach one region target.
    pub region_settle_max_seconds: u64,
    pub groups: Vec<String>,
}

impl Config {
    pub fn new(quick: bool, only: Option<Vec<String>>) -> Config {
        let groups = only.unwrap_or_else(|| GROUPS.iter().map(|g| g.to_string()).collect());
        if quick {
            Config {
                quick,
                seconds: 2,
                scaling_seconds: 1,
                kv_clients: vec![1, 16],
                sql_clients: vec![16],
                scaling_clients: vec![1, 32],
                tso_batches: vec![1, 1_000],
                failover_repetitions: 1,
                region_targets: vec![1, 10],
                region_settle_max_seconds: 30,
                groups,
            }
        } else {
            Config {
                quick,
                seconds: 8,
                scaling_seconds: 3,
                kv_clients: vec![1, 16],
                sql_clients: vec![1, 16, 64],
                scaling_clients: vec![1, 2, 4, 8, 16, 32, 64, 128],
                tso_batches: vec![1, 1_000],
                failover_repetitions: 3,
                region_targets: vec![1, 10, 100, 1_000],
                region_settle_max_seconds: 240,
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
    CoordinatorFailover {
        repetition: usize,
    },
    StoreFailover {
        repetition: usize,
    },
    Regions {
        target: usize,
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
            Step::Tso { clients, batch } => {
                format!("TSO GetTimestamps count={batch}, {}, {seconds} s", clients_label(*clients))
            }
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
            Step::CoordinatorFailover { repetition } => {
                format!("failover {}: kill -9 the coordinator lease holder under a TSO stream", repetition + 1)
            }
            Step::StoreFailover { repetition } => {
                format!("failover {}: kill -9 a region leader's store under an INSERT stream", repetition + 1)
            }
            Step::Regions { target } => format!(
                "region scaling: split to ~{target} regions, then idle CPU and point select for {scaling_seconds} s"
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
            for &clients in &config.kv_clients {
                steps.push((Step::Tso { clients, batch }, seconds + 0.5));
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
    if config.runs("failover") {
        for repetition in 0..config.failover_repetitions {
            steps.push((Step::CoordinatorFailover { repetition }, 6.0));
        }
        for repetition in 0..config.failover_repetitions {
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
    fn progress_line_shows_position_elapsed_and_eta() {
        assert_eq!(
            progress_line(4, 31, 62.4, 510.0, "etcd puts"),
            "[ 5/31 | 1m02s elapsed | ~8m30s left] etcd puts"
        );
        assert_eq!(format_duration(9.6), "10s");
    }
}
