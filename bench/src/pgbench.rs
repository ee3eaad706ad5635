//! pgbench runs: the scripts (one per workload, the same text against Arbor
//! and PostgreSQL), choosing a statement variant Arbor accepts, running
//! pgbench and reading its summary and per-transaction log.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{BenchError, Result};
use crate::report::Outcome;
use crate::stats::Histogram;

/// pgbench threads: at most this many (pgbench's own CPU competes with the
/// servers on a small machine).
pub const PGBENCH_THREADS_MAX: usize = 4;
/// Tries per transaction on a serialization failure or deadlock (40001,
/// 40P01); other errors abort the client.
pub const PGBENCH_TRIES_MAX: u32 = 10;

/// One workload: its name and the script pgbench runs, with `:scale`
/// etc. set through `-D`.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: &'static str,
    pub text: String,
}

/// A statement of a script and what to use instead when Arbor refuses it.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    pub what: &'static str,
    /// Alternatives, best first; an empty string leaves the statement out.
    pub variants: &'static [&'static str],
}

pub const SETS_ACCOUNT: &str = "\\set aid random(1, 100000 * :scale)\n";
pub const SETS_TPCB: &str = "\\set aid random(1, 100000 * :scale)\n\\set bid random(1, 1 * :scale)\n\\set tid random(1, 10 * :scale)\n\\set delta random(-5000, 5000)\n\\set hid random(1, 9000000000000000000)\n";
pub const SETS_RANGE: &str = "\\set lo random(1, 100000 * :scale - 99)\n\\set hi :lo + 99\n";
pub const SETS_UPSERT: &str = "\\set k random(1, :upsert_keys)\n\\set v random(1, 1000000000)\n";

pub const POINT_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;";
pub const UPSERT: &str =
    "INSERT INTO bench_upsert (k, v) VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;";
pub const RANGE: Choice = Choice {
    what: "range scan",
    variants: &[
        "SELECT aid, abalance FROM pgbench_accounts WHERE aid BETWEEN :lo AND :hi LIMIT 100;",
        "SELECT aid, abalance FROM pgbench_accounts WHERE aid >= :lo AND aid <= :hi LIMIT 100;",
    ],
};

/// pgbench's built-in "TPC-B (sort of)" script, statement by statement,
/// between the transaction block of [`TPCB_BLOCK`].
pub const TPCB: &[Choice] = &[
    Choice {
        what: "account update",
        variants: &[
            "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;",
            "UPDATE pgbench_accounts SET abalance = :delta WHERE aid = :aid;",
        ],
    },
    Choice {
        what: "account select",
        variants: &["SELECT abalance FROM pgbench_accounts WHERE aid = :aid;"],
    },
    Choice {
        what: "teller update",
        variants: &[
            "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;",
            "UPDATE pgbench_tellers SET tbalance = :delta WHERE tid = :tid;",
        ],
    },
    Choice {
        what: "branch update",
        variants: &[
            "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;",
            "UPDATE pgbench_branches SET bbalance = :delta WHERE bid = :bid;",
        ],
    },
    Choice {
        what: "history insert",
        variants: &[
            "INSERT INTO pgbench_history (hid, tid, bid, aid, delta, mtime) VALUES (:hid, :tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);",
            "INSERT INTO pgbench_history (hid, tid, bid, aid, delta, mtime) VALUES (:hid, :tid, :bid, :aid, :delta, '2000-01-01 00:00:00');",
        ],
    },
];

/// Where the statements go inside a transaction block. pgbench refuses a
/// script that ends inside an open transaction, so BEGIN is probed with
/// its END around one statement.
pub const BODY: &str = "{body}";
pub const TPCB_BLOCK: Choice = Choice {
    what: "transaction block",
    variants: &["BEGIN;\n{body}\nEND;", "BEGIN;\n{body}\nCOMMIT;", ""],
};

/// The TPC-B-like script from the chosen block and statements.
pub fn tpcb_script(block: &str, statements: &[String]) -> String {
    let body: Vec<&str> = statements
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    let body = body.join("\n");
    let text = if block.is_empty() {
        body
    } else {
        block.replace(BODY, &body)
    };
    format!("{SETS_TPCB}{text}\n")
}

/// Where and as whom pgbench connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub label: String,
    pub port: u16,
    pub user: String,
    pub database: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub processed: u64,
    pub failed: u64,
    pub serialization_failures: u64,
    pub deadlock_failures: u64,
    pub retried: u64,
    pub tps: Option<f64>,
    pub latency_average_ms: Option<f64>,
    pub aborted_clients: u64,
    pub first_error: Option<String>,
}

fn number_after(line: &str, prefix: &str) -> Option<f64> {
    let rest = line.strip_prefix(prefix)?.trim_start();
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    number.parse().ok()
}

/// Reads pgbench's (PostgreSQL 15) summary on stdout and errors on stderr.
pub fn parse_summary(stdout: &str, stderr: &str) -> Summary {
    let mut summary = Summary::default();
    for line in stdout.lines().chain(stderr.lines()) {
        let line = line.trim();
        let count = |prefix| number_after(line, prefix).map(|n| n as u64);
        if let Some(n) = count("number of transactions actually processed:") {
            summary.processed = n;
        } else if let Some(n) = count("number of failed transactions:") {
            summary.failed = n;
        } else if let Some(n) = count("number of serialization failures:") {
            summary.serialization_failures = n;
        } else if let Some(n) = count("number of deadlock failures:") {
            summary.deadlock_failures = n;
        } else if let Some(n) = count("number of transactions retried:") {
            summary.retried = n;
        } else if let Some(tps) = number_after(line, "tps =") {
            summary.tps = Some(tps);
        } else if let Some(ms) = number_after(line, "latency average =") {
            summary.latency_average_ms = Some(ms);
        }
    }
    // With -M prepared a refused statement fails at PREPARE first, and the
    // client's abort line then names only the missing prepared statement:
    // the first server ERROR says why.
    let server_error = stderr
        .lines()
        .find_map(|line| line.find("ERROR:").map(|at| line[at..].trim().to_string()));
    let mut abort_message = None;
    for line in stderr.lines() {
        if let Some(position) = line.find(" aborted in command ") {
            if line[..position].contains("client ") {
                summary.aborted_clients += 1;
                if abort_message.is_none() {
                    abort_message = line[position..]
                        .split_once(": ")
                        .map(|(_, message)| message.trim().to_string());
                }
            }
        } else if line.contains("aborted: ") && line.contains("client ") {
            summary.aborted_clients += 1;
        }
    }
    summary.first_error = server_error.or(abort_message).or_else(|| {
        stderr
            .lines()
            .find(|l| l.contains("error"))
            .map(|l| l.trim().to_string())
    });
    summary
}

/// Latencies (µs) of the completed transactions in a pgbench log (`-l`):
/// `client transaction latency_us script epoch epoch_us ...`; failed or
/// skipped transactions log a word instead of a latency.
pub fn parse_log_into(log: &str, histogram: &mut Histogram) {
    for line in log.lines() {
        if let Some(latency) = line.split_whitespace().nth(2) {
            if let Ok(us) = latency.parse::<u64>() {
                histogram.record_us(us);
            }
        }
    }
}

/// Picks, for each choice, the first variant Arbor runs without error
/// (`accepts` runs a one-statement script once); records what it chose.
pub async fn choose<F, Fut>(choice: &Choice, accepts: F, notes: &mut Vec<String>) -> String
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), String>>,
{
    let mut refused = Vec::new();
    for variant in choice.variants {
        if variant.is_empty() {
            notes.push(format!(
                "{}: left out, Arbor refused every form ({})",
                choice.what,
                refused.join("; ")
            ));
            return String::new();
        }
        match accepts(variant.to_string()).await {
            Ok(()) => {
                if !refused.is_empty() {
                    notes.push(format!(
                        "{}: ran `{variant}` on both systems because Arbor refused the standard form ({})",
                        choice.what,
                        refused.join("; ")
                    ));
                }
                return variant.to_string();
            }
            Err(error) => refused.push(format!("`{variant}`: {error}")),
        }
    }
    // No variant and no "leave out": keep the standard form and let the
    // run report its errors.
    notes.push(format!(
        "{}: Arbor refused every form ({}); the run reports the errors",
        choice.what,
        refused.join("; ")
    ));
    choice
        .variants
        .first()
        .map_or(String::new(), |v| v.to_string())
}

pub struct Runner {
    pub program: PathBuf,
    pub dir: PathBuf,
    pub scale: u64,
}

#[derive(Debug, Clone, Copy)]
pub enum Length {
    Seconds(u64),
    Transactions(u64),
}

impl Runner {
    fn script_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sql"))
    }

    /// Runs `script` with `clients` clients; `Length::Transactions(1)` with
    /// one client is the variant probe.
    pub async fn run(
        &self,
        target: &Target,
        script: &Script,
        clients: usize,
        length: Length,
        tag: &str,
    ) -> Result<(Summary, Histogram)> {
        let path = self.script_path(script.name);
        std::fs::write(&path, &script.text).map_err(|e| BenchError::io(path.display(), e))?;
        let log_dir = self.dir.join("logs").join(tag);
        std::fs::create_dir_all(&log_dir).map_err(|e| BenchError::io(log_dir.display(), e))?;
        let threads = clients.clamp(1, PGBENCH_THREADS_MAX);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(["-h", "127.0.0.1", "-p", &target.port.to_string()])
            .args(["-U", &target.user])
            .args(["-n", "-M", "prepared", "--failures-detailed"])
            .arg(format!("--max-tries={PGBENCH_TRIES_MAX}"))
            .arg("-f")
            .arg(&path)
            .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
            .args(["-D", &format!("scale={}", self.scale)])
            .args(["-D", &format!("upsert_keys={}", crate::sql::UPSERT_KEYS)])
            .arg("-l")
            .arg(format!("--log-prefix={}", log_dir.join("tx").display()))
            .current_dir(&log_dir)
            .kill_on_drop(true);
        match length {
            Length::Seconds(s) => command.args(["-T", &s.to_string()]),
            Length::Transactions(t) => command.args(["-t", &t.to_string()]),
        };
        command.arg(&target.database);
        let timeout = match length {
            Length::Seconds(s) => Duration::from_secs(s + 60),
            Length::Transactions(_) => Duration::from_secs(30),
        };
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .map_err(|_| BenchError::Command {
                what: format!("pgbench {tag}"),
                detail: format!("no end after {} s", timeout.as_secs()),
            })?
            .map_err(|source| BenchError::Spawn {
                what: "pgbench".into(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut summary = parse_summary(&stdout, &stderr);
        if !output.status.success() && summary.first_error.is_none() {
            summary.first_error = Some(format!("pgbench exited with {}", output.status));
        }
        let mut histogram = Histogram::default();
        let entries =
            std::fs::read_dir(&log_dir).map_err(|e| BenchError::io(log_dir.display(), e))?;
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                parse_log_into(&text, &mut histogram);
            }
            // Logs are read once; leaving them would double-count a rerun.
            let _ = std::fs::remove_file(entry.path());
        }
        Ok((summary, histogram))
    }

    /// Whether Arbor runs one statement (after the script's `\set` lines).
    pub async fn accepts(
        &self,
        target: &Target,
        sets: &str,
        statement: &str,
    ) -> std::result::Result<(), String> {
        let script = Script {
            name: "probe",
            text: format!("{sets}{statement}\n"),
        };
        match self
            .run(target, &script, 1, Length::Transactions(1), "probe")
            .await
        {
            Ok((summary, _)) if summary.processed == 1 && summary.first_error.is_none() => Ok(()),
            Ok((summary, _)) => Err(summary
                .first_error
                .unwrap_or_else(|| "no transaction completed".into())),
            Err(error) => Err(error.to_string()),
        }
    }
}

pub fn outcome(summary: &Summary, histogram: &Histogram, seconds: f64) -> Outcome {
    let throughput = summary
        .tps
        .unwrap_or(summary.processed as f64 / seconds.max(1e-9));
    Outcome {
        throughput,
        ops: summary.processed,
        errors: summary.failed,
        aborted_clients: summary.aborted_clients,
        abort_rate_pct: Outcome::abort_rate(summary.processed, summary.failed),
        retried: summary.retried,
        latency: histogram.summary(),
        first_error: summary.first_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDOUT: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/tpcb.sql
scaling factor: 1
query mode: prepared
number of clients: 16
number of threads: 4
maximum number of tries: 10
duration: 10 s
number of transactions actually processed: 5120
number of failed transactions: 12 (0.234%)
number of serialization failures: 12 (0.234%)
number of deadlock failures: 0 (0.000%)
number of transactions retried: 300 (5.800%)
total number of retries: 410
latency average = 31.250 ms
initial connection time = 12.000 ms
tps = 511.912345 (without initial connection time)
";

    #[test]
    fn summary_reads_counts_tps_and_latency() {
        let summary = parse_summary(STDOUT, "");
        assert_eq!(summary.processed, 5120);
        assert_eq!(summary.failed, 12);
        assert_eq!(summary.serialization_failures, 12);
        assert_eq!(summary.deadlock_failures, 0);
        assert_eq!(summary.retried, 300);
        assert_eq!(summary.tps, Some(511.912345));
        assert_eq!(summary.latency_average_ms, Some(31.25));
        assert_eq!(summary.aborted_clients, 0);
        assert_eq!(summary.first_error, None);
    }

    #[test]
    fn summary_counts_aborted_clients_and_keeps_the_first_message() {
        let stderr = "pgbench: error: client 0 script 0 aborted in command 5 query 0: ERROR:  operator + is not supported
pgbench: error: client 3 script 0 aborted in command 5 query 0: ERROR:  operator + is not supported
pgbench: error: Run was aborted; the above results are incomplete.
";
        let summary = parse_summary("number of transactions actually processed: 0\n", stderr);
        assert_eq!(summary.aborted_clients, 2);
        assert_eq!(
            summary.first_error.as_deref(),
            Some("ERROR:  operator + is not supported")
        );
        let prepared = "pgbench: error: ERROR:  expression aid BETWEEN $1 AND $2 is not supported
pgbench: error: client 0 script 0 aborted in command 2 query 0: ERROR:  Statement not found for name: P_0
";
        let summary = parse_summary("", prepared);
        assert_eq!(summary.aborted_clients, 1);
        assert_eq!(
            summary.first_error.as_deref(),
            Some("ERROR:  expression aid BETWEEN $1 AND $2 is not supported")
        );
        let summary = parse_summary("", "pgbench: error: client 2 aborted: end of script reached without completing the last transaction\n");
        assert_eq!(summary.aborted_clients, 1);
        assert!(summary
            .first_error
            .is_some_and(|e| e.contains("end of script")));
        let summary = parse_summary("", stderr);
        assert_eq!(
            summary.first_error.as_deref(),
            Some("ERROR:  operator + is not supported")
        );
    }

    #[test]
    fn log_latencies_skip_failed_transactions() {
        let log = "0 1 1500 0 1700000000 123456\n0 2 failed 0 1700000000 223456\n1 1 2500 0 1700000000 323456 3\n";
        let mut histogram = Histogram::default();
        parse_log_into(log, &mut histogram);
        assert_eq!(histogram.count(), 2);
        assert_eq!(histogram.percentile_us(1.0), Some(2500));
    }

    #[tokio::test]
    async fn choose_takes_the_first_accepted_variant_and_says_so() {
        let mut notes = Vec::new();
        let chosen = choose(
            &RANGE,
            |sql| async move {
                if sql.contains("BETWEEN") {
                    Err("BETWEEN is not supported".to_string())
                } else {
                    Ok(())
                }
            },
            &mut notes,
        )
        .await;
        assert!(chosen.contains("aid >= :lo"));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("BETWEEN is not supported"));

        let mut notes = Vec::new();
        let chosen = choose(&TPCB_BLOCK, |_| async { Err("no".to_string()) }, &mut notes).await;
        assert_eq!(chosen, "");
        assert!(notes[0].contains("left out"));

        let mut notes = Vec::new();
        let chosen = choose(&TPCB[1], |_| async { Ok(()) }, &mut notes).await;
        assert!(chosen.starts_with("SELECT abalance"));
        assert!(notes.is_empty());
    }

    #[test]
    fn tpcb_script_wraps_the_statements_in_the_block() {
        let statements = vec![
            "UPDATE a;".to_string(),
            String::new(),
            "SELECT b;".to_string(),
        ];
        let script = tpcb_script(TPCB_BLOCK.variants[0], &statements);
        assert!(script.starts_with("\\set aid random(1, 100000 * :scale)\n"));
        assert!(script.ends_with("BEGIN;\nUPDATE a;\nSELECT b;\nEND;\n"));
        let bare = tpcb_script("", &statements);
        assert!(bare.ends_with(":scale)\n\\set delta random(-5000, 5000)\n\\set hid random(1, 9000000000000000000)\nUPDATE a;\nSELECT b;\n"), "{bare}");
    }

    #[test]
    fn outcome_prefers_pgbench_tps() {
        let summary = parse_summary(STDOUT, "");
        let result = outcome(&summary, &Histogram::default(), 10.0);
        assert_eq!(result.throughput, 511.912345);
        assert_eq!(result.errors, 12);
        assert!((result.abort_rate_pct - 100.0 * 12.0 / 5132.0).abs() < 1e-9);
    }
}
