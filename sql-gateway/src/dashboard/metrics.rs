//! The gateway's Prometheus series (`arbor_gateway_*`) and the time series
//! behind the dashboard's chart, both fed from the one place a statement's
//! outcome is known (`handler`): [`record_statement`] for the extended
//! protocol, [`record_simple_query`] for the simple one.
//!
//! Process-wide ([`gateway_metrics`]): `/metrics` describes the process, and
//! the statement handlers and the dashboard listener are started apart.
//! Tests construct their own [`GatewayMetrics`] with an injected clock.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbor_metrics::{Counter, CounterVec, Gauge, Histogram, Registry};
use pgwire::error::PgWireError;
use sqlparser::ast::Statement;

use super::timeseries::TimeSeries;
use crate::error::GatewayError;
use crate::statement::admin::{AdminStatement, ParsedStatement};
use crate::statement::QueryResult;

/// Milliseconds since the Unix epoch; injected so tests can drive time.
pub(crate) type Clock = fn() -> u64;

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a statement is, as `arbor_gateway_statements_total{kind}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Ddl,
    Other,
}

impl StatementKind {
    const ALL: [StatementKind; 6] = [
        StatementKind::Select,
        StatementKind::Insert,
        StatementKind::Update,
        StatementKind::Delete,
        StatementKind::Ddl,
        StatementKind::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Ddl => "ddl",
            StatementKind::Other => "other",
        }
    }

    pub(crate) fn of_statement(statement: &Statement) -> StatementKind {
        match statement {
            Statement::Query(_) => StatementKind::Select,
            Statement::Insert(_) => StatementKind::Insert,
            Statement::Update(_) => StatementKind::Update,
            Statement::Delete(_) => StatementKind::Delete,
            Statement::CreateTable(_)
            | Statement::CreateIndex(_)
            | Statement::CreateView(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateSequence { .. }
            | Statement::AlterTable(_)
            | Statement::Drop { .. }
            | Statement::DropFunction(_)
            | Statement::Truncate(_) => StatementKind::Ddl,
            _ => StatementKind::Other,
        }
    }

    /// Admin statements count as what they resemble: SPLIT AT and UNSPLIT
    /// AT change the schema's layout (DDL), SHOW REGIONS is a read.
    pub(crate) fn of_parsed(statement: &ParsedStatement) -> StatementKind {
        match statement {
            ParsedStatement::Sql(statement) => StatementKind::of_statement(statement),
            ParsedStatement::Admin(
                AdminStatement::SplitAt { .. } | AdminStatement::UnsplitAt { .. },
            ) => StatementKind::Ddl,
            ParsedStatement::Admin(AdminStatement::ShowRegions { .. }) => StatementKind::Other,
        }
    }

    /// The kind of a statement that succeeded, from its result alone (the
    /// simple protocol hands back results, not statements).
    pub(crate) fn of_result(result: &QueryResult) -> StatementKind {
        match result {
            QueryResult::Rows { .. } => StatementKind::Select,
            QueryResult::Command { tag, .. } | QueryResult::Returning { tag, .. } => {
                StatementKind::of_tag(tag)
            }
            QueryResult::TransactionStart | QueryResult::TransactionEnd { .. } => {
                StatementKind::Other
            }
        }
    }

    fn of_tag(tag: &str) -> StatementKind {
        let verb = tag.split_whitespace().next().unwrap_or("");
        match verb {
            "SELECT" => StatementKind::Select,
            "INSERT" => StatementKind::Insert,
            "UPDATE" => StatementKind::Update,
            "DELETE" => StatementKind::Delete,
            "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => StatementKind::Ddl,
            _ => StatementKind::Other,
        }
    }
}

pub(crate) struct GatewayMetrics {
    pub(crate) registry: Arc<Registry>,
    /// One per [`StatementKind::ALL`].
    statements: Vec<Counter>,
    latency: Vec<Histogram>,
    errors: CounterVec,
    connections: Gauge,
    series: Mutex<TimeSeries>,
    clock: Clock,
}

/// The process's gateway metrics, created on first use.
pub(crate) fn gateway_metrics() -> &'static GatewayMetrics {
    static METRICS: OnceLock<GatewayMetrics> = OnceLock::new();
    METRICS.get_or_init(|| GatewayMetrics::new(system_clock))
}

/// Counts one extended-protocol statement (Execute) and its outcome.
pub(crate) fn record_statement(
    statement: &ParsedStatement,
    result: &Result<QueryResult, GatewayError>,
    elapsed: Duration,
) {
    let sqlstate = result.as_ref().err().map(GatewayError::sqlstate);
    gateway_metrics().record(StatementKind::of_parsed(statement), elapsed, sqlstate);
}

/// Counts the statements of one simple query. They share its time evenly
/// (a simple query is nearly always one statement); a failed one is
/// classified by parsing the text again, on the error path only.
pub(crate) fn record_simple_query(
    sql: &str,
    results: &[Result<QueryResult, GatewayError>],
    elapsed: Duration,
) {
    let metrics = gateway_metrics();
    let share = elapsed / u32::try_from(results.len().max(1)).unwrap_or(u32::MAX);
    for (index, result) in results.iter().enumerate() {
        match result {
            Ok(result) => metrics.record(StatementKind::of_result(result), share, None),
            Err(error) => {
                let kind = crate::executor::parse_statements(sql)
                    .ok()
                    .and_then(|statements| statements.get(index).map(StatementKind::of_parsed))
                    .unwrap_or(StatementKind::Other);
                metrics.record(kind, share, Some(error.sqlstate()));
            }
        }
    }
}

/// Counts a Parse (extended protocol) that failed: an error the client
/// sees, though no statement ran.
pub(crate) fn record_failed_parse(error: &PgWireError) {
    let sqlstate = match error {
        PgWireError::UserError(info) => info.code.as_str(),
        _ => "XX000",
    };
    gateway_metrics().count_error(sqlstate);
}

/// Keeps `arbor_gateway_connections` up while a session runs.
pub(crate) struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

impl GatewayMetrics {
    pub(crate) fn new(clock: Clock) -> GatewayMetrics {
        let registry = Arc::new(Registry::new());
        let r = &registry;
        // Static names, checked by `gateway_metrics_register_every_series`.
        let valid = "static metric names are valid";
        let statements = r
            .counter_vec(
                "arbor_gateway_statements_total",
                "Statements executed, by kind (select, insert, update, delete, ddl, other), failed ones included.",
                &["kind"],
            )
            .expect(valid);
        let latency = r
            .histogram_vec(
                "arbor_gateway_statement_duration_seconds",
                "Statement latency from execution start to result, by kind.",
                &["kind"],
                arbor_metrics::LATENCY_BUCKETS_SECONDS,
            )
            .expect(valid);
        GatewayMetrics {
            statements: StatementKind::ALL
                .iter()
                .map(|kind| statements.with(&[kind.label()]))
                .collect(),
            latency: StatementKind::ALL
                .iter()
                .map(|kind| latency.with(&[kind.label()]))
                .collect(),
            errors: r
                .counter_vec(
                    "arbor_gateway_errors_total",
                    "Errors answered to clients, by SQLSTATE.",
                    &["sqlstate"],
                )
                .expect(valid),
            connections: r
                .gauge("arbor_gateway_connections", "Open PostgreSQL connections.")
                .expect(valid),
            series: Mutex::new(TimeSeries::new(clock())),
            clock,
            registry,
        }
    }

    pub(crate) fn record(&self, kind: StatementKind, elapsed: Duration, sqlstate: Option<&str>) {
        let index = kind as usize;
        self.statements[index].inc();
        self.latency[index].observe_duration(elapsed);
        if let Some(sqlstate) = sqlstate {
            self.count_error(sqlstate);
        }
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record((self.clock)(), latency_us, sqlstate.is_some());
    }

    fn count_error(&self, sqlstate: &str) {
        self.errors.with(&[sqlstate]).inc();
    }

    pub(crate) fn connection_opened(&self) -> ConnectionGuard {
        self.connections.add(1);
        ConnectionGuard(self.connections.clone())
    }

    /// The `/api/timeseries` document.
    pub(crate) fn timeseries_json(&self) -> serde_json::Value {
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .to_json((self.clock)())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    static NOW_MS: AtomicU64 = AtomicU64::new(1_700_000_000_000);

    fn test_clock() -> u64 {
        NOW_MS.load(Ordering::Relaxed)
    }

    fn parse(sql: &str) -> Statement {
        crate::executor::parse_sql(sql)
            .expect("valid SQL")
            .pop()
            .expect("one statement")
    }

    #[test]
    fn statements_are_classified_by_kind() {
        let cases = [
            ("SELECT 1", StatementKind::Select),
            ("INSERT INTO kv VALUES ('a', 'b')", StatementKind::Insert),
            ("UPDATE kv SET v = 'x'", StatementKind::Update),
            ("DELETE FROM kv", StatementKind::Delete),
            ("CREATE TABLE t (id INT PRIMARY KEY)", StatementKind::Ddl),
            ("DROP TABLE t", StatementKind::Ddl),
            ("BEGIN", StatementKind::Other),
            ("SET x = 1", StatementKind::Other),
        ];
        for (sql, kind) in cases {
            assert_eq!(StatementKind::of_statement(&parse(sql)), kind, "{sql}");
        }
        assert_eq!(
            StatementKind::of_result(&QueryResult::command("DELETE", 3)),
            StatementKind::Delete
        );
        assert_eq!(
            StatementKind::of_result(&QueryResult::Command {
                tag: "CREATE TABLE",
                rows: None
            }),
            StatementKind::Ddl
        );
        assert_eq!(
            StatementKind::of_result(&QueryResult::TransactionStart),
            StatementKind::Other
        );
    }

    #[test]
    fn gateway_metrics_register_every_series() {
        let text = GatewayMetrics::new(test_clock).registry.render();
        for kind in StatementKind::ALL {
            let label = kind.label();
            assert!(text.contains(&format!(
                "arbor_gateway_statements_total{{kind=\"{label}\"}} 0"
            )));
            assert!(text.contains(&format!(
                "arbor_gateway_statement_duration_seconds_count{{kind=\"{label}\"}} 0"
            )));
        }
        assert!(text.contains("# TYPE arbor_gateway_errors_total counter"));
        assert!(text.contains("arbor_gateway_connections 0"));
    }

    #[test]
    fn a_failed_statement_counts_as_a_statement_and_an_error_by_sqlstate() {
        let metrics = GatewayMetrics::new(test_clock);
        metrics.record(StatementKind::Insert, Duration::from_millis(3), None);
        metrics.record(
            StatementKind::Insert,
            Duration::from_millis(4),
            Some("23505"),
        );
        let text = metrics.registry.render();
        assert!(text.contains("arbor_gateway_statements_total{kind=\"insert\"} 2"));
        assert!(text.contains("arbor_gateway_errors_total{sqlstate=\"23505\"} 1"));
        assert!(text.contains("arbor_gateway_statement_duration_seconds_count{kind=\"insert\"} 2"));
        NOW_MS.fetch_add(1_000, Ordering::Relaxed);
        let document = metrics.timeseries_json();
        let last = document["points"]
            .as_array()
            .and_then(|points| points.last())
            .expect("a point");
        assert_eq!(last["statements"], 2);
        assert_eq!(last["errors"], 1);
    }

    #[test]
    fn the_connection_gauge_follows_open_sessions() {
        let metrics = GatewayMetrics::new(test_clock);
        let first = metrics.connection_opened();
        let second = metrics.connection_opened();
        assert_eq!(metrics.connections.get(), 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.connections.get(), 0);
    }
}
