//! Client compatibility: the clients people use (psql, psycopg2, psycopg 3,
//! SQLAlchemy 2, asyncpg, node-postgres, pgjdbc) run their scripted checks
//! in `tests/clients/` against ONE real cluster, one after another.
//!
//! Their runtimes and packages come from `scripts/setup.sh`; a missing one
//! fails the test with a message saying so, never a silent skip. Every
//! client runs as a child process with a deadline, and a failure prints the
//! client's own output and the tail of every node's log.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arbor_tests::Cluster;

/// How long one client program may run (JVM start-up included).
const CLIENT_TIMEOUT_MS: u64 = 60_000;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// Fails (never skips) when something setup.sh installs is missing.
fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is missing ({}): run scripts/setup.sh to install the client test dependencies",
        path.display()
    );
}

fn require_command(command: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{command}` is not installed: run scripts/setup.sh to install the client test dependencies"
    );
}

/// Runs `command` to completion (or kills it at the deadline); returns its
/// combined output, or an error describing how it failed.
fn run(mut command: Command, name: &str) -> Result<String, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("{name}: cannot start: {error}"))?;
    let deadline = Instant::now() + Duration::from_millis(CLIENT_TIMEOUT_MS);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut output);
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut output);
    }
    match status {
        Some(status) if status.success() => Ok(output),
        Some(status) => Err(format!("{name} failed ({status}):\n{output}")),
        None => Err(format!(
            "{name} timed out after {CLIENT_TIMEOUT_MS} ms:\n{output}"
        )),
    }
}

fn with_pg_env(mut command: Command, cluster: &Cluster) -> Command {
    command
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.pg_port.to_string())
        .env("PGUSER", "arbor")
        .env("PGDATABASE", "arbor")
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// psql: a scripted session (DDL, writes, a query) and the meta-commands
/// `\dt`, `\d t`, `\l`, `\conninfo`, whose output must read like Postgres'.
fn psql_session_lists_and_describes_tables(cluster: &Cluster) -> Result<(), String> {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(clients_dir().join("psql_session.sql"));
    let output = run(with_pg_env(command, cluster), "psql")?;
    let expected = [
        " 1 | one  |   1.5",
        " public | psql_t | table | arbor",
        "Table \"public.psql_t\"",
        " id     | bigint           |           | not null | ",
        " score  | double precision |           |          | 1.5",
        "\"psql_t_pkey\" PRIMARY KEY, btree (id)",
        " arbor | arbor | UTF8",
        "You are connected to database \"arbor\" as user \"arbor\"",
    ];
    for line in expected {
        if !output.contains(line) {
            return Err(format!("psql output lacks {line:?}:\n{output}"));
        }
    }
    Ok(())
}

fn python_check(cluster: &Cluster, script: &str) -> Result<(), String> {
    let python = workspace_dir().join("target/client-venv/bin/python");
    let mut command = Command::new(python);
    command
        .arg(script)
        .current_dir(clients_dir().join("python"));
    run(with_pg_env(command, cluster), script).map(|_| ())
}

fn node_postgres_check(cluster: &Cluster) -> Result<(), String> {
    let mut command = Command::new("node");
    command
        .arg("check.js")
        .current_dir(clients_dir().join("node"));
    run(with_pg_env(command, cluster), "node-postgres").map(|_| ())
}

const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn pgjdbc_check(cluster: &Cluster, classes: &Path) -> Result<(), String> {
    let mut compile = Command::new("javac");
    compile
        .args(["-d"])
        .arg(classes)
        .args(["-cp", PGJDBC_JAR])
        .arg(clients_dir().join("java/JdbcCheck.java"));
    run(compile, "javac")?;
    let classpath = format!("{}:{PGJDBC_JAR}", classes.display());
    let mut command = Command::new("java");
    command
        .args([
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            &classpath,
            "JdbcCheck",
        ])
        .arg(format!(
            "jdbc:postgresql://127.0.0.1:{}/arbor",
            cluster.pg_port
        ));
    run(with_pg_env(command, cluster), "pgjdbc").map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_work_against_one_cluster() {
    require_command("psql");
    require_command("node");
    require_command("java");
    require_command("javac");
    require(
        &workspace_dir().join("target/client-venv/bin/python"),
        "the Python client venv",
    );
    require(
        &clients_dir().join("node/node_modules/pg"),
        "node-postgres (npm package pg)",
    );
    require(
        Path::new(PGJDBC_JAR),
        "pgjdbc (Debian package libpostgresql-jdbc-java)",
    );

    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    drop(cluster.ready_client().await);
    let classes = data.path().join("jdbc-classes");

    let cluster_ref = &cluster;
    let checks: Vec<(&str, Box<dyn Fn() -> Result<(), String> + '_>)> = vec![
        (
            "psql_session_lists_and_describes_tables",
            Box::new(|| psql_session_lists_and_describes_tables(cluster_ref)),
        ),
        (
            "psycopg2_reads_and_writes_with_client_side_parameters",
            Box::new(|| python_check(cluster_ref, "psycopg2_check.py")),
        ),
        (
            "psycopg3_uses_prepared_and_binary_statements",
            Box::new(|| python_check(cluster_ref, "psycopg3_check.py")),
        ),
        (
            "sqlalchemy_core_and_orm_create_query_and_commit",
            Box::new(|| python_check(cluster_ref, "sqlalchemy_check.py")),
        ),
        (
            "asyncpg_describes_parameters_and_results",
            Box::new(|| python_check(cluster_ref, "asyncpg_check.py")),
        ),
        (
            "node_postgres_runs_parameterized_and_named_statements",
            Box::new(|| node_postgres_check(cluster_ref)),
        ),
        (
            "pgjdbc_switches_to_server_prepared_binary_statements",
            Box::new(|| pgjdbc_check(cluster_ref, &classes)),
        ),
    ];
    let mut failures = Vec::new();
    for (name, check) in &checks {
        let started = Instant::now();
        let result = tokio::task::block_in_place(check);
        eprintln!(
            "{name}: {} in {} ms",
            if result.is_ok() { "ok" } else { "FAILED" },
            started.elapsed().as_millis()
        );
        if let Err(error) = result {
            failures.push(format!("--- {name} ---\n{error}"));
        }
    }
    drop(checks);
    if !failures.is_empty() {
        panic!(
            "{} client check(s) failed:\n{}\n{}",
            failures.len(),
            failures.join("\n"),
            cluster.logs_tail()
        );
    }
    cluster.stop();
}
