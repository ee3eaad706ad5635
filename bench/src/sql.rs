//! The SQL side of the benchmark: one schema and one data set, created the
//! same way in Arbor and PostgreSQL through ordinary SQL (Arbor has no
//! COPY, so rows are loaded with multi-row INSERTs in both), and a probe of
//! what Arbor's transactions really do.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::error::{BenchError, Result};

/// Rows per INSERT statement while loading.
pub const LOAD_ROWS_PER_INSERT_MAX: u64 = 1_000;
/// Accounts per pgbench scale unit (pgbench's own constant).
pub const ACCOUNTS_PER_SCALE: u64 = 100_000;
pub const TELLERS_PER_SCALE: u64 = 10;
/// Keys the upsert benchmark writes to.
pub const UPSERT_KEYS: u64 = 10_000;
/// Deadline of one statement the harness itself runs (DDL, a load batch).
pub const STATEMENT_TIMEOUT_MS: u64 = 60_000;

/// pgbench's tables with the primary keys Arbor needs (pgbench adds them
/// after loading; `pgbench_history` has none, so it gets `hid`, filled by
/// the script), the upsert table and the failover writer's table. Fillers
/// are VARCHAR where pgbench uses CHAR, and loaded empty as pgbench does.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE pgbench_branches (bid INTEGER PRIMARY KEY, bbalance INTEGER, filler VARCHAR(88))",
    "CREATE TABLE pgbench_tellers (tid INTEGER PRIMARY KEY, bid INTEGER, tbalance INTEGER, filler VARCHAR(84))",
    "CREATE TABLE pgbench_accounts (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler VARCHAR(84))",
    "CREATE TABLE pgbench_history (hid BIGINT PRIMARY KEY, tid INTEGER, bid INTEGER, aid INTEGER, delta INTEGER, mtime TIMESTAMP, filler VARCHAR(22))",
    "CREATE TABLE bench_upsert (k BIGINT PRIMARY KEY, v BIGINT)",
    "CREATE TABLE bench_failover (k BIGINT PRIMARY KEY, v TEXT)",
    "CREATE TABLE bench_txn_probe (k BIGINT PRIMARY KEY, v TEXT)",
];

pub async fn connect(
    connection_string: &str,
) -> std::result::Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(connection_string, NoTls).await?;
    tokio::spawn(async move {
        // The connection ends with an error when the server goes away; the
        // client's next call reports it.
        let _ = connection.await;
    });
    Ok(client)
}

async fn run(client: &Client, target: &str, sql: &str) -> Result<()> {
    match tokio::time::timeout(
        Duration::from_millis(STATEMENT_TIMEOUT_MS),
        client.batch_execute(sql),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BenchError::sql(
            target,
            format!("{}: {}", first_line(sql), describe(&e)),
        )),
        Err(_) => Err(BenchError::sql(
            target,
            format!(
                "{}: timed out after {STATEMENT_TIMEOUT_MS} ms",
                first_line(sql)
            ),
        )),
    }
}

fn first_line(sql: &str) -> String {
    sql.chars().take(80).collect()
}

/// The server's message (tokio-postgres' Display says only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// Multi-row INSERT statements for rows `1..=count`, each at most
/// [`LOAD_ROWS_PER_INSERT_MAX`] rows; `row(i)` renders one row's values.
pub fn insert_batches(
    table: &str,
    columns: &str,
    count: u64,
    row: impl Fn(u64) -> String,
) -> Vec<String> {
    let mut statements = Vec::new();
    let mut first = 1;
    while first <= count {
        let last = (first + LOAD_ROWS_PER_INSERT_MAX - 1).min(count);
        let values: Vec<String> = (first..=last).map(|i| format!("({})", row(i))).collect();
        statements.push(format!(
            "INSERT INTO {table} ({columns}) VALUES {}",
            values.join(",")
        ));
        first = last + 1;
    }
    statements
}

/// Every statement that loads scale `scale` of pgbench's data, branches
/// and tellers first (as `pgbench -i` does).
pub fn load_statements(scale: u64) -> Vec<String> {
    let mut statements = insert_batches("pgbench_branches", "bid, bbalance, filler", scale, |i| {
        format!("{i}, 0, ''")
    });
    statements.extend(insert_batches(
        "pgbench_tellers",
        "tid, bid, tbalance, filler",
        scale * TELLERS_PER_SCALE,
        |i| format!("{i}, {}, 0, ''", (i - 1) / TELLERS_PER_SCALE + 1),
    ));
    statements.extend(insert_batches(
        "pgbench_accounts",
        "aid, bid, abalance, filler",
        scale * ACCOUNTS_PER_SCALE,
        |i| format!("{i}, {}, 0, ''", (i - 1) / ACCOUNTS_PER_SCALE + 1),
    ));
    statements
}

/// Creates the schema and loads the data; returns the seconds it took.
pub async fn create_and_load(connection_string: &str, target: &str, scale: u64) -> Result<f64> {
    let started = std::time::Instant::now();
    let client = connect(connection_string)
        .await
        .map_err(|e| BenchError::sql(target, describe(&e)))?;
    for ddl in SCHEMA {
        run(&client, target, ddl).await?;
    }
    for statement in load_statements(scale) {
        run(&client, target, &statement).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// What BEGIN ... COMMIT/ROLLBACK really does on a target, seen from a
/// second session.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionProbe {
    pub begin_accepted: bool,
    /// Another session did not see the uncommitted row (or was made to wait
    /// for it).
    pub isolated: bool,
    /// The row was gone after ROLLBACK.
    pub rollback_undoes: bool,
    pub detail: String,
}

impl TransactionProbe {
    pub fn describe(&self) -> String {
        if !self.begin_accepted {
            return format!("BEGIN is refused ({})", self.detail);
        }
        match (self.isolated, self.rollback_undoes) {
            (true, true) => "BEGIN/COMMIT are real transactions: an uncommitted row is invisible to other sessions and ROLLBACK undoes it".into(),
            (false, false) => "BEGIN/COMMIT are accepted but each statement commits on its own: other sessions see a row before COMMIT and ROLLBACK does not undo it".into(),
            (isolated, undoes) => format!(
                "BEGIN is accepted; other sessions {} an uncommitted row, ROLLBACK {} it",
                if isolated { "do not see" } else { "see" },
                if undoes { "undoes" } else { "does not undo" }
            ),
        }
    }
}

pub async fn probe_transactions(connection_string: &str, target: &str) -> Result<TransactionProbe> {
    let writer = connect(connection_string)
        .await
        .map_err(|e| BenchError::sql(target, describe(&e)))?;
    let reader = connect(connection_string)
        .await
        .map_err(|e| BenchError::sql(target, describe(&e)))?;
    if let Err(e) = writer.batch_execute("BEGIN").await {
        return Ok(TransactionProbe {
            begin_accepted: false,
            isolated: false,
            rollback_undoes: false,
            detail: describe(&e),
        });
    }
    let mut detail = String::new();
    if let Err(e) = writer
        .batch_execute("INSERT INTO bench_txn_probe (k, v) VALUES (1, 'uncommitted')")
        .await
    {
        detail = format!("INSERT inside BEGIN failed: {}", describe(&e));
    }
    async fn count(client: &Client) -> Option<i64> {
        let query = client.query_one("SELECT count(*) FROM bench_txn_probe WHERE k = 1", &[]);
        match tokio::time::timeout(Duration::from_secs(3), query).await {
            Ok(Ok(row)) => Some(row.try_get::<_, i64>(0).unwrap_or(-1)),
            // A reader made to wait on the open transaction's lock.
            _ => None,
        }
    }
    let seen_before_commit = count(&reader).await;
    let _ = writer.batch_execute("ROLLBACK").await;
    let after_rollback = count(&reader).await;
    Ok(TransactionProbe {
        begin_accepted: true,
        isolated: seen_before_commit != Some(1),
        rollback_undoes: after_rollback == Some(0),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_batches_cover_every_row_once() {
        let statements = insert_batches("t", "k", 2_500, |i| i.to_string());
        assert_eq!(statements.len(), 3);
        assert!(statements[0].starts_with("INSERT INTO t (k) VALUES (1),(2),"));
        assert!(statements[2].ends_with("(2500)"));
        let rows: usize = statements.iter().map(|s| s.matches('(').count() - 1).sum();
        assert_eq!(rows, 2_500);
    }

    #[test]
    fn load_statements_follow_pgbench_layout() {
        let statements = load_statements(2);
        assert!(statements[0].contains("(1, 0, ''),(2, 0, '')"));
        assert!(statements[1].contains("(11, 2, 0, '')"));
        let accounts: Vec<&String> = statements
            .iter()
            .filter(|s| s.starts_with("INSERT INTO pgbench_accounts"))
            .collect();
        assert_eq!(accounts.len(), 200);
        assert!(accounts[100].contains("(100001, 2, 0, '')"));
    }

    #[test]
    fn probe_describes_autocommit_honestly() {
        let probe = TransactionProbe {
            begin_accepted: true,
            isolated: false,
            rollback_undoes: false,
            detail: String::new(),
        };
        assert!(probe
            .describe()
            .contains("each statement commits on its own"));
    }
}
