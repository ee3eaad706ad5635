//! Per-session settings: SET / SHOW / RESET, set_config and
//! current_setting, their transactional behaviour, startup parameters, and
//! the SQLSTATEs of values Arbor refuses.

use super::memory::{executor, query_in, rows, run_in, tag};
use crate::executor::Executor;
use crate::settings::KNOWN_SETTINGS;
use crate::transaction::Session;

fn session() -> Session {
    Session::for_login("alice", [("application_name", "psql")])
}

async fn ok(executor: &Executor, session: &Session, sql: &str) -> String {
    match run_in(executor, session, sql).await {
        Ok(result) => tag(&result),
        Err(error) => panic!("{sql}: {error} ({})", error.sqlstate()),
    }
}

async fn error_in(executor: &Executor, session: &Session, sql: &str) -> &'static str {
    match run_in(executor, session, sql).await {
        Ok(result) => panic!("{sql}: expected an error, got {}", tag(&result)),
        Err(error) => error.sqlstate(),
    }
}

async fn show(executor: &Executor, session: &Session, name: &str) -> String {
    let (_, got) = query_in(executor, session, &format!("SHOW {name}")).await;
    match got.as_slice() {
        [row] => row[0].clone().unwrap_or_default(),
        other => panic!("SHOW {name}: {other:?}"),
    }
}

#[tokio::test]
async fn set_is_seen_by_show_in_the_same_session_only() {
    let (executor, _) = executor();
    let first = session();
    let second = session();
    assert_eq!(
        ok(&executor, &first, "SET application_name = 'billing'").await,
        "SET"
    );
    assert_eq!(show(&executor, &first, "application_name").await, "billing");
    assert_eq!(show(&executor, &second, "application_name").await, "psql");
    ok(&executor, &first, "SET SESSION statement_timeout TO 5000").await;
    assert_eq!(show(&executor, &first, "statement_timeout").await, "5000");
    assert_eq!(show(&executor, &second, "statement_timeout").await, "0");
    // SHOW names its column as Postgres does, in the canonical spelling.
    let (columns, _) = query_in(&executor, &first, "SHOW datestyle").await;
    assert_eq!(columns, ["DateStyle"]);
}

#[tokio::test]
async fn reset_returns_to_the_startup_value_and_reset_all_drops_every_set() {
    let (executor, _) = executor();
    let session = session();
    ok(&executor, &session, "SET application_name = 'x'").await;
    ok(&executor, &session, "SET lock_timeout = '2s'").await;
    assert_eq!(
        ok(&executor, &session, "RESET application_name").await,
        "RESET"
    );
    assert_eq!(show(&executor, &session, "application_name").await, "psql");
    assert_eq!(show(&executor, &session, "lock_timeout").await, "2s");
    ok(&executor, &session, "SET application_name TO DEFAULT").await;
    assert_eq!(show(&executor, &session, "application_name").await, "psql");
    ok(&executor, &session, "SET application_name = 'y'").await;
    assert_eq!(ok(&executor, &session, "RESET ALL").await, "RESET");
    assert_eq!(show(&executor, &session, "application_name").await, "psql");
    assert_eq!(show(&executor, &session, "lock_timeout").await, "0");
}

#[tokio::test]
async fn set_in_a_rolled_back_block_is_undone_and_in_a_committed_block_stays() {
    let (executor, _) = executor();
    let session = session();
    ok(&executor, &session, "BEGIN").await;
    ok(&executor, &session, "SET application_name = 'rolled_back'").await;
    assert_eq!(
        show(&executor, &session, "application_name").await,
        "rolled_back"
    );
    ok(&executor, &session, "ROLLBACK").await;
    assert_eq!(show(&executor, &session, "application_name").await, "psql");

    ok(&executor, &session, "BEGIN").await;
    ok(&executor, &session, "SET application_name = 'committed'").await;
    ok(&executor, &session, "SET LOCAL statement_timeout = 100").await;
    assert_eq!(show(&executor, &session, "statement_timeout").await, "100");
    ok(&executor, &session, "COMMIT").await;
    assert_eq!(
        show(&executor, &session, "application_name").await,
        "committed"
    );
    // SET LOCAL lasts only until the end of the block.
    assert_eq!(show(&executor, &session, "statement_timeout").await, "0");

    // A block that failed is rolled back by COMMIT: its SETs too.
    ok(&executor, &session, "BEGIN").await;
    ok(&executor, &session, "SET application_name = 'failed'").await;
    error_in(&executor, &session, "SELECT * FROM no_such_table").await;
    assert_eq!(ok(&executor, &session, "COMMIT").await, "ROLLBACK");
    assert_eq!(
        show(&executor, &session, "application_name").await,
        "committed"
    );
}

#[tokio::test]
async fn set_local_outside_a_block_changes_nothing() {
    let (executor, _) = executor();
    let session = session();
    assert_eq!(
        ok(&executor, &session, "SET LOCAL application_name = 'x'").await,
        "SET"
    );
    assert_eq!(show(&executor, &session, "application_name").await, "psql");
}

#[tokio::test]
async fn startup_parameters_and_the_login_user_are_visible() {
    let (executor, _) = executor();
    let session = Session::for_login(
        "alice",
        [
            ("application_name", "psql"),
            ("DateStyle", "ISO"),
            ("extra_float_digits", "3"),
            ("client_encoding", "UNICODE"),
        ],
    );
    assert_eq!(show(&executor, &session, "application_name").await, "psql");
    assert_eq!(show(&executor, &session, "DateStyle").await, "ISO, MDY");
    assert_eq!(show(&executor, &session, "extra_float_digits").await, "3");
    assert_eq!(show(&executor, &session, "client_encoding").await, "UTF8");
    assert_eq!(
        show(&executor, &session, "session_authorization").await,
        "alice"
    );
    let (_, got) = query_in(
        &executor,
        &session,
        "SELECT current_user, current_setting('application_name')",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("alice"), Some("psql")]]));
}

#[tokio::test]
async fn refused_settings_answer_postgres_sqlstates() {
    let (executor, _) = executor();
    let session = session();
    for (sql, sqlstate) in [
        ("SET no_such_setting = 1", "42704"),
        ("SHOW no_such_setting", "42704"),
        ("RESET no_such_setting", "42704"),
        ("SET client_encoding = 'LATIN1'", "22023"),
        ("SET TimeZone = 'Europe/Berlin'", "22023"),
        ("SET TIME ZONE '+01:00'", "22023"),
        ("SET extra_float_digits = 4", "22023"),
        ("SET DateStyle = 'German'", "22023"),
        (
            "SET default_transaction_isolation = 'serializable'",
            "0A000",
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "0A000",
        ),
        ("SET standard_conforming_strings = off", "0A000"),
        ("SET server_version = '9.6'", "55P02"),
        ("SET session_authorization = 'mallory'", "55P02"),
    ] {
        assert_eq!(error_in(&executor, &session, sql).await, sqlstate, "{sql}");
    }
    // Nothing refused was stored.
    assert_eq!(show(&executor, &session, "TimeZone").await, "UTC");
    assert_eq!(
        show(&executor, &session, "default_transaction_isolation").await,
        "repeatable read"
    );
    // Inside a block a refused SET fails the block like any error.
    ok(&executor, &session, "BEGIN").await;
    error_in(&executor, &session, "SET client_encoding = 'LATIN1'").await;
    assert_eq!(
        error_in(&executor, &session, "SET application_name = 'x'").await,
        "25P02"
    );
    assert_eq!(
        error_in(&executor, &session, "SHOW application_name").await,
        "25P02"
    );
    ok(&executor, &session, "ROLLBACK").await;
}

#[tokio::test]
async fn settings_drivers_send_are_accepted_and_shown() {
    let (executor, _) = executor();
    let session = session();
    for (sql, name, shown) in [
        ("SET statement_timeout = 0", "statement_timeout", "0"),
        ("SET lock_timeout = '10s'", "lock_timeout", "10s"),
        (
            "SET idle_in_transaction_session_timeout = 60000",
            "idle_in_transaction_session_timeout",
            "60000",
        ),
        ("SET extra_float_digits = 3", "extra_float_digits", "3"),
        (
            "SET search_path TO public, pg_catalog",
            "search_path",
            "public, pg_catalog",
        ),
        ("SET bytea_output = 'hex'", "bytea_output", "hex"),
        (
            "SET standard_conforming_strings = on",
            "standard_conforming_strings",
            "on",
        ),
        ("SET client_encoding = 'utf-8'", "client_encoding", "UTF8"),
        ("SET NAMES 'UTF8'", "client_encoding", "UTF8"),
        ("SET TIME ZONE 'Etc/UTC'", "TimeZone", "Etc/UTC"),
        ("SET timezone = 'GMT'", "timezone", "GMT"),
        ("SET TimeZone = '+00:00'", "TimeZone", "+00:00"),
        ("SET datestyle = 'iso, dmy'", "DateStyle", "ISO, DMY"),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "default_transaction_isolation",
            "read committed",
        ),
        ("SET myapp.tenant = 'acme'", "myapp.tenant", "acme"),
    ] {
        assert_eq!(ok(&executor, &session, sql).await, "SET", "{sql}");
        assert_eq!(show(&executor, &session, name).await, shown, "{sql}");
    }
    // A transaction runs at the session's default level unless it set one.
    assert_eq!(
        show(&executor, &session, "transaction_isolation").await,
        "read committed"
    );
    assert_eq!(
        show(&executor, &session, "transaction isolation level").await,
        "read committed"
    );
}

#[tokio::test]
async fn set_transaction_isolation_lasts_for_its_block() {
    let (executor, _) = executor();
    let session = session();
    ok(&executor, &session, "BEGIN").await;
    ok(
        &executor,
        &session,
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    )
    .await;
    assert_eq!(
        show(&executor, &session, "transaction_isolation").await,
        "read committed"
    );
    assert_eq!(
        error_in(
            &executor,
            &session,
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"
        )
        .await,
        "0A000"
    );
    ok(&executor, &session, "ROLLBACK").await;
    assert_eq!(
        show(&executor, &session, "transaction_isolation").await,
        "repeatable read"
    );
}

#[tokio::test]
async fn show_all_lists_every_known_setting_with_a_description() {
    let (executor, _) = executor();
    let session = session();
    ok(&executor, &session, "SET myapp.tenant = 'acme'").await;
    let (columns, got) = query_in(&executor, &session, "SHOW ALL").await;
    assert_eq!(columns, ["name", "setting", "description"]);
    assert_eq!(got.len(), KNOWN_SETTINGS.len() + 1);
    for known in &KNOWN_SETTINGS {
        let row = got
            .iter()
            .find(|row| row[0].as_deref() == Some(known.name))
            .unwrap_or_else(|| panic!("{} is listed", known.name));
        assert_eq!(row[2].as_deref(), Some(known.description));
    }
    let application_name = got
        .iter()
        .find(|row| row[0].as_deref() == Some("application_name"))
        .expect("listed");
    assert_eq!(application_name[1].as_deref(), Some("psql"));
    assert!(got.contains(&vec![
        Some("myapp.tenant".to_owned()),
        Some("acme".to_owned()),
        Some(String::new()),
    ]));
}

#[tokio::test]
async fn set_config_changes_the_session_and_current_setting_reads_it() {
    let (executor, _) = executor();
    let session = session();
    let (_, got) = query_in(
        &executor,
        &session,
        "SELECT set_config('application_name', 'via_function', false)",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("via_function")]]));
    assert_eq!(
        show(&executor, &session, "application_name").await,
        "via_function"
    );
    ok(&executor, &session, "BEGIN").await;
    query_in(
        &executor,
        &session,
        "SELECT set_config('statement_timeout', '7', true)",
    )
    .await;
    let (_, got) = query_in(
        &executor,
        &session,
        "SELECT current_setting('statement_timeout')",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("7")]]));
    ok(&executor, &session, "COMMIT").await;
    assert_eq!(show(&executor, &session, "statement_timeout").await, "0");
    assert_eq!(
        error_in(
            &executor,
            &session,
            "SELECT set_config('client_encoding', 'LATIN1', false)"
        )
        .await,
        "22023"
    );
    let (_, got) = query_in(
        &executor,
        &session,
        "SELECT current_setting('no_such_setting', true)",
    )
    .await;
    assert_eq!(got, rows(&[&[None]]));
}

#[tokio::test]
async fn only_changed_reported_settings_are_reported_again() {
    let (executor, _) = executor();
    let session = session();
    assert_eq!(session.take_changed_reports(), []);
    ok(&executor, &session, "SET statement_timeout = 10").await;
    assert_eq!(
        session.take_changed_reports(),
        [],
        "statement_timeout is not reported"
    );
    ok(&executor, &session, "SET application_name = 'x'").await;
    assert_eq!(
        session.take_changed_reports(),
        [("application_name", "x".to_owned())]
    );
    assert_eq!(session.take_changed_reports(), []);
    ok(&executor, &session, "BEGIN").await;
    ok(&executor, &session, "SET TimeZone = 'GMT'").await;
    ok(&executor, &session, "ROLLBACK").await;
    // Set and undone before the client was told: nothing to tell.
    assert_eq!(session.take_changed_reports(), []);
}
