//! The result document `bench/results/<date>.json`: every number of a run,
//! the machine it ran on and how each system was set up. `bench/plot.py`
//! reads it to write the Markdown tables and the charts, so its shape is
//! a contract (checked by the tests below); bump [`SCHEMA`] when it changes.

use serde::Serialize;

use crate::stats::{LatencySummary, Spread};

/// Version 2 added `groups`, `region_client` and, per failover row, `stop`
/// and `aim_median_ms`; version 3 added `soak`. `bench/plot.py` still reads
/// version 1 and 2 files.
pub const SCHEMA: &str = "arbor-bench/3";

/// The file name (without extension) of a run's JSON, Markdown and charts:
/// the date for a full run, so only a full run has the name the README
/// links; `<date>-<groups>` for `--only` (groups in plan order) and a
/// `-quick` suffix for a quick run, so neither overwrites a full report.
pub fn result_stem(date: &str, quick: bool, only: Option<&[String]>) -> String {
    let mut stem = date.to_string();
    if let Some(only) = only {
        for group in crate::plan::GROUPS {
            if only.iter().any(|g| g == group) {
                stem.push('-');
                stem.push_str(group);
            }
        }
    }
    if quick {
        stem.push_str("-quick");
    }
    stem
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub schema: &'static str,
    pub date: String,
    /// False when a step failed or the run was interrupted; the numbers
    /// taken until then are kept.
    pub complete: bool,
    pub quick: bool,
    /// The groups this run measured (every group unless `--only`).
    pub groups: Vec<String>,
    /// Seconds from the driver's start to the report (the build and the
    /// package setup that `bench/run` does first are not included).
    pub wall_seconds: f64,
    pub machine: Machine,
    /// How each system was configured, in words the Markdown repeats.
    pub setup: Vec<Setting>,
    /// Every benchmark with an anchor to compare with, one row each.
    pub comparisons: Vec<Comparison>,
    /// Benchmarks without an anchor (TSO).
    pub measurements: Vec<Measurement>,
    pub client_scaling: Vec<ScalingPoint>,
    pub region_scaling: Vec<RegionPoint>,
    /// The region client (no SQL): reads and writes straight to the stores.
    pub region_client: Vec<RegionClientPoint>,
    pub failover: Vec<Failover>,
    /// The soak group: idle CPU per store and every process's memory over
    /// minutes of steady load.
    pub soak: Option<crate::soak::SoakReport>,
    /// What the harness had to adapt (statement variants, transaction
    /// support) and anything else a reader must know to trust the numbers.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Machine {
    pub nproc: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub cpu_model: String,
    pub os: String,
    pub git_commit: String,
    /// 1-minute load average before and after the run: above ~0.5 on this
    /// machine means something else (a build) competed for the CPUs.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub arbor_bin: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub system: String,
    pub detail: String,
}

/// One side of a comparison: throughput plus latency.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Outcome {
    /// Completed operations (transactions for pgbench) per second.
    pub throughput: f64,
    pub ops: u64,
    /// Operations that failed (errors, or pgbench's failed transactions).
    pub errors: u64,
    /// pgbench clients that aborted on an error (the run continues with the
    /// rest, so their share of the throughput is missing).
    pub aborted_clients: u64,
    /// Failed / (completed + failed), in percent.
    pub abort_rate_pct: f64,
    /// Transactions that needed more than one try (pgbench retries
    /// serialization failures and deadlocks).
    pub retried: u64,
    pub latency: LatencySummary,
    /// The first error message seen, to say why something failed.
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn abort_rate(ops: u64, errors: u64) -> f64 {
        if ops + errors == 0 {
            0.0
        } else {
            100.0 * errors as f64 / (ops + errors) as f64
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The table it belongs to, e.g. "root proposals vs etcd puts".
    pub group: String,
    /// The row, e.g. "16 clients".
    pub name: String,
    pub clients: usize,
    pub unit: String,
    pub arbor: Outcome,
    pub anchor_name: String,
    pub anchor: Option<Outcome>,
    /// Arbor throughput / anchor throughput.
    pub ratio: Option<f64>,
}

pub fn ratio(arbor: &Outcome, anchor: Option<&Outcome>) -> Option<f64> {
    let anchor = anchor?;
    (anchor.throughput > 0.0).then(|| arbor.throughput / anchor.throughput)
}

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub group: String,
    pub name: String,
    pub clients: usize,
    pub unit: String,
    /// Requests per second.
    pub throughput: f64,
    /// Units per second (timestamps/s for batched TSO requests).
    pub units_per_second: f64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScalingPoint {
    pub clients: usize,
    pub arbor: Outcome,
    pub postgres: Option<Outcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionPoint {
    /// The coordinators' `--region-split-keys` for this point.
    pub split_keys: u64,
    /// Regions in the cluster view when measuring.
    pub regions: usize,
    /// Seconds spent waiting for the splits to settle.
    pub settle_seconds: f64,
    pub point_select: Outcome,
    /// CPU seconds per second of all stores together, idle and under the
    /// point-select load.
    pub store_cpu_idle: f64,
    pub store_cpu_loaded: f64,
    /// Same for the lease-holding coordinator (heartbeats, scheduling).
    pub coordinator_cpu_idle: f64,
    /// The gateway's CPU seconds per second under the point-select load.
    pub gateway_cpu_loaded: f64,
}

/// One region-client benchmark: an operation at a number of clients.
#[derive(Debug, Clone, Serialize)]
pub struct RegionClientPoint {
    /// "point read", "single-key write", "100-key batch write".
    pub operation: String,
    pub clients: usize,
    /// Keys each request reads or writes.
    pub keys_per_request: usize,
    /// Throughput is requests per second.
    pub outcome: Outcome,
    pub keys_per_second: f64,
    /// The `comparisons` group of the SQL benchmark doing the same work
    /// through the gateway ("point select", "upsert"), if there is one;
    /// the Markdown shows its Arbor numbers at the same clients next to
    /// these when the sql group ran too.
    pub sql_counterpart: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    /// "coordinator lease holder", "region leader store".
    pub kind: String,
    /// How the process was taken away: "kill -9" or "SIGTERM (lease sealed)".
    pub stop: String,
    /// The median gap the issue aims at, if it names one.
    pub aim_median_ms: Option<f64>,
    /// What the client did while the process died.
    pub client: String,
    pub gaps_ms: Vec<f64>,
    pub spread_ms: Spread,
    /// Per repetition: which process was killed, and anything odd seen.
    pub details: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{spread, Histogram};

    fn outcome(throughput: f64) -> Outcome {
        let mut histogram = Histogram::default();
        histogram.record_us(1_500);
        Outcome {
            throughput,
            ops: 10,
            latency: histogram.summary(),
            ..Outcome::default()
        }
    }

    #[test]
    fn ratio_is_arbor_over_anchor() {
        assert_eq!(ratio(&outcome(50.0), Some(&outcome(200.0))), Some(0.25));
        assert_eq!(ratio(&outcome(50.0), None), None);
        assert_eq!(ratio(&outcome(50.0), Some(&outcome(0.0))), None);
    }

    #[test]
    fn abort_rate_counts_failed_among_all_attempts() {
        assert_eq!(Outcome::abort_rate(0, 0), 0.0);
        assert_eq!(Outcome::abort_rate(90, 10), 10.0);
    }

    /// The keys `bench/plot.py` reads; renaming one breaks the Markdown.
    #[test]
    fn report_json_has_the_shape_plot_py_reads() {
        let report = Report {
            schema: SCHEMA,
            date: "2025-01-02".into(),
            comparisons: vec![Comparison {
                group: "point select".into(),
                name: "16 clients".into(),
                clients: 16,
                unit: "tx/s".into(),
                arbor: outcome(100.0),
                anchor_name: "PostgreSQL".into(),
                anchor: Some(outcome(400.0)),
                ratio: Some(0.25),
            }],
            measurements: vec![Measurement {
                group: "TSO".into(),
                name: "count=1".into(),
                clients: 1,
                unit: "timestamps/s".into(),
                throughput: 10.0,
                units_per_second: 10.0,
                outcome: outcome(10.0),
            }],
            client_scaling: vec![ScalingPoint {
                clients: 1,
                arbor: outcome(1.0),
                postgres: None,
            }],
            region_scaling: vec![RegionPoint {
                split_keys: 100,
                regions: 7,
                settle_seconds: 1.0,
                point_select: outcome(3.0),
                store_cpu_idle: 0.1,
                store_cpu_loaded: 0.9,
                coordinator_cpu_idle: 0.01,
                gateway_cpu_loaded: 0.5,
            }],
            region_client: vec![RegionClientPoint {
                operation: "point read".into(),
                clients: 16,
                keys_per_request: 1,
                outcome: outcome(900.0),
                keys_per_second: 900.0,
                sql_counterpart: Some("point select".into()),
            }],
            failover: vec![Failover {
                kind: "coordinator lease holder".into(),
                stop: "kill -9".into(),
                aim_median_ms: Some(1_500.0),
                client: "GetTimestamps".into(),
                gaps_ms: vec![1.0, 3.0],
                spread_ms: spread(&[1.0, 3.0]),
                details: vec![],
            }],
            ..Report::default()
        };
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["schema"], "arbor-bench/3");
        for key in [
            "date",
            "quick",
            "groups",
            "wall_seconds",
            "machine",
            "setup",
            "notes",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        for key in ["nproc", "memory_gib", "kernel", "cpu_model", "git_commit"] {
            assert!(json["machine"].get(key).is_some(), "missing machine.{key}");
        }
        let row = &json["comparisons"][0];
        assert_eq!(row["group"], "point select");
        assert_eq!(row["ratio"], 0.25);
        assert_eq!(row["arbor"]["throughput"], 100.0);
        assert_eq!(row["anchor"]["latency"]["p50_ms"], 1.496);
        assert!(row["arbor"]["latency"].get("p99_ms").is_some());
        assert!(row["arbor"].get("abort_rate_pct").is_some());
        assert_eq!(json["measurements"][0]["units_per_second"], 10.0);
        assert!(json["client_scaling"][0]["postgres"].is_null());
        assert_eq!(json["region_scaling"][0]["regions"], 7);
        assert!(json["region_scaling"][0].get("store_cpu_loaded").is_some());
        assert_eq!(json["failover"][0]["spread_ms"]["median"], 2.0);
        assert_eq!(json["failover"][0]["stop"], "kill -9");
        assert_eq!(json["failover"][0]["aim_median_ms"], 1_500.0);
        let region = &json["region_client"][0];
        assert_eq!(region["operation"], "point read");
        assert_eq!(region["clients"], 16);
        assert_eq!(region["keys_per_second"], 900.0);
        assert_eq!(region["sql_counterpart"], "point select");
        assert_eq!(region["outcome"]["throughput"], 900.0);
    }

    #[test]
    fn only_full_runs_get_the_bare_date_as_file_name() {
        assert_eq!(result_stem("2026-12-07", false, None), "2026-12-07");
        assert_eq!(result_stem("2026-12-07", true, None), "2026-12-07-quick");
        let only: Vec<String> = ["failover", "tso", "region", "tso"]
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(
            result_stem("2026-12-07", false, Some(&only)),
            "2026-12-07-tso-region-failover"
        );
        assert_eq!(
            result_stem("2026-12-07", true, Some(&only)),
            "2026-12-07-tso-region-failover-quick"
        );
    }
}
