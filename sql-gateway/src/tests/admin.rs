//! Admin statements: `ALTER TABLE ... SPLIT AT`, `ALTER TABLE ... UNSPLIT
//! AT` and `SHOW REGIONS FROM TABLE` — recognition before sqlparser, split keys that sort exactly
//! where the value's rows start, their SQLSTATEs, and both wire protocols.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arbor_catalog::{
    encode_primary_key, table_key_range, Datum, TableDescriptor, FIRST_USER_TABLE_ID,
};
use arbor_proto::{ClusterViewResponse, RegionDescriptor, RegionEpoch, RegionPeer, RegionStatus};
use tokio::net::TcpListener;
use tokio_postgres::NoTls;

use super::memory::MemoryStore;
use super::memory::{error_state, executor, ok_tag, query, query_in, rows, run_in, FixedViews};
use crate::catalog_source::{CatalogSource, MemoryCatalog};
use crate::executor::{parse_statements, Executor};
use crate::statement::admin::split_at::SPLIT_ROWS_MAX;
use crate::statement::admin::{AdminStatement, ParsedStatement};
use crate::transaction::Session;

/// An executor over a fresh store and catalog, both kept for inspection.
fn admin_executor(
    view: Option<ClusterViewResponse>,
) -> (Executor, Arc<MemoryStore>, Arc<MemoryCatalog>) {
    let store = Arc::new(MemoryStore::default());
    let catalog = Arc::new(MemoryCatalog::default());
    let executor = Executor::new(store.clone(), Arc::new(FixedViews(view)), catalog.clone());
    (executor, store, catalog)
}

async fn table(catalog: &MemoryCatalog, name: &str) -> TableDescriptor {
    catalog
        .current()
        .await
        .expect("memory catalog")
        .table(name)
        .cloned()
        .expect("table exists")
}

fn admin(sql: &str) -> AdminStatement {
    match parse_statements(sql).expect("parses").as_slice() {
        [ParsedStatement::Admin(statement)] => statement.clone(),
        other => panic!("{sql}: expected one admin statement, got {other:?}"),
    }
}

fn kinds(sql: &str) -> Vec<&'static str> {
    parse_statements(sql)
        .expect("parses")
        .iter()
        .map(|statement| match statement {
            ParsedStatement::Sql(_) => "sql",
            ParsedStatement::Admin(AdminStatement::SplitAt { .. }) => "split",
            ParsedStatement::Admin(AdminStatement::UnsplitAt { .. }) => "unsplit",
            ParsedStatement::Admin(AdminStatement::ShowRegions { .. }) => "show",
        })
        .collect()
}

fn parse_error_state(sql: &str) -> &'static str {
    parse_statements(sql)
        .expect_err("does not parse")
        .sqlstate()
}

#[test]
fn split_at_is_recognised_with_any_case_comments_and_qualified_names() {
    let AdminStatement::SplitAt { table, rows } = admin("ALTER TABLE t SPLIT AT VALUES (1), (100)")
    else {
        panic!("not a split");
    };
    assert_eq!(table.to_string(), "t");
    assert_eq!(rows.to_string(), "VALUES (1), (100)");
    let AdminStatement::SplitAt { table, .. } =
        admin("alter /* why */ table public.\"T\"\n split at values (1, 'a');")
    else {
        panic!("not a split");
    };
    assert_eq!(table.to_string(), "public.\"T\"");
}

#[test]
fn unsplit_at_is_recognised_with_any_case_comments_and_qualified_names() {
    let AdminStatement::UnsplitAt { table, rows } =
        admin("ALTER TABLE t UNSPLIT AT VALUES (1), (100)")
    else {
        panic!("not an unsplit");
    };
    assert_eq!(table.to_string(), "t");
    assert_eq!(rows.to_string(), "VALUES (1), (100)");
    let AdminStatement::UnsplitAt { table, .. } =
        admin("alter /* why */ table public.\"T\"\n unsplit at values (1, 'a');")
    else {
        panic!("not an unsplit");
    };
    assert_eq!(table.to_string(), "public.\"T\"");
    assert_eq!(
        kinds("ALTER TABLE t UNSPLIT AT VALUES (1); ALTER TABLE t SPLIT AT VALUES (1)"),
        ["unsplit", "split"]
    );
    assert_eq!(kinds("ALTER TABLE t RENAME TO unsplit"), ["sql"]);
    assert_eq!(
        parse_error_state("ALTER TABLE t UNSPLIT AT VALUES (1) x"),
        "42601"
    );
    assert_eq!(parse_error_state("ALTER TABLE t UNSPLIT AT"), "42601");
    assert_eq!(
        parse_error_state("ALTER TABLE t UNSPLIT VALUES (1)"),
        "42601"
    );
    assert_eq!(
        parse_error_state("ALTER TABLE t UNSPLIT AT VALUES ($1)"),
        "0A000"
    );
}

#[tokio::test]
async fn unsplit_at_removes_the_boundary_split_at_made_and_again_answers_at_once() {
    let (executor, store, _) = admin_executor(None);
    ok_tag(&executor, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)").await;
    query(&executor, "ALTER TABLE t SPLIT AT VALUES (10), (20)").await;
    let split_keys = store.split_keys.lock().expect("split keys").clone();
    let (columns, got) = query(&executor, "ALTER TABLE t UNSPLIT AT VALUES (10)").await;
    assert_eq!(columns, ["unsplit_key", "region_id"]);
    assert_eq!(got, rows(&[&[Some("/10"), Some("1")]]));
    assert_eq!(
        store.unsplit_keys.lock().expect("unsplit keys").clone(),
        vec![split_keys[0].clone()],
        "the key UNSPLIT AT asks for is the one SPLIT AT made"
    );
    let starts = store.region_starts.lock().expect("regions").clone();
    assert_eq!(
        starts.keys().cloned().collect::<Vec<_>>(),
        vec![split_keys[1].clone()]
    );
    // Again: the boundary is gone, the region holding the key answers.
    let (_, again) = query(&executor, "ALTER TABLE t UNSPLIT AT VALUES (10)").await;
    assert_eq!(again, got);
    let (_, right) = query(&executor, "ALTER TABLE t UNSPLIT AT VALUES ('20'), (15)").await;
    assert_eq!(
        right,
        rows(&[&[Some("/20"), Some("1")], &[Some("/15"), Some("1")]])
    );
    assert!(store.region_starts.lock().expect("regions").is_empty());
}

#[tokio::test]
async fn unsplit_at_errors_have_the_sqlstates_of_split_at() {
    let (executor, store, _) = admin_executor(None);
    ok_tag(&executor, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)").await;
    let cases = [
        ("ALTER TABLE missing UNSPLIT AT VALUES (1)", "42P01"),
        ("ALTER TABLE t UNSPLIT AT VALUES (1, 2)", "42804"),
        ("ALTER TABLE t UNSPLIT AT VALUES (true)", "42804"),
        ("ALTER TABLE t UNSPLIT AT VALUES ('abc')", "22P02"),
        ("ALTER TABLE t UNSPLIT AT VALUES (NULL)", "23502"),
        ("ALTER TABLE t UNSPLIT AT VALUES (nope)", "42703"),
        ("ALTER TABLE t UNSPLIT AT SELECT 1", "0A000"),
        ("ALTER TABLE system.regions UNSPLIT AT VALUES (1)", "42809"),
    ];
    for (sql, sqlstate) in cases {
        assert_eq!(error_state(&executor, sql).await, sqlstate, "{sql}");
    }
    let too_many: Vec<String> = (0..=SPLIT_ROWS_MAX).map(|id| format!("({id})")).collect();
    assert_eq!(
        error_state(
            &executor,
            &format!("ALTER TABLE t UNSPLIT AT VALUES {}", too_many.join(", "))
        )
        .await,
        "54000"
    );
    assert!(
        store.unsplit_keys.lock().expect("unsplit keys").is_empty(),
        "no failed statement merged anything"
    );
    let message = crate::tests::memory::run(&executor, "ALTER TABLE t UNSPLIT AT VALUES (1, 2)")
        .await
        .expect_err("too many values")
        .to_string();
    assert_eq!(
        message,
        "UNSPLIT AT data has 2 columns but the primary key of \"t\" has 1"
    );
    let message = crate::tests::memory::run(&executor, "ALTER TABLE t UNSPLIT AT SELECT 1")
        .await
        .expect_err("not VALUES")
        .to_string();
    assert!(
        message.contains("ALTER TABLE ... UNSPLIT AT with a query other than VALUES"),
        "{message}"
    );
    store.unavailable.store(true, Ordering::SeqCst);
    assert_eq!(
        error_state(&executor, "ALTER TABLE kv UNSPLIT AT VALUES ('k')").await,
        "57P03"
    );
}

#[tokio::test]
async fn unsplit_at_inside_a_transaction_block_is_refused_and_fails_the_block() {
    let (executor, store, _) = admin_executor(Some(crate::system_tables::tests::sample_view()));
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    let refused = run_in(
        &executor,
        &session,
        "ALTER TABLE kv UNSPLIT AT VALUES ('k')",
    )
    .await
    .expect_err("refused in a block");
    assert_eq!(refused.sqlstate(), "25001");
    assert_eq!(
        refused.to_string(),
        "ALTER TABLE ... UNSPLIT AT cannot run inside a transaction block"
    );
    ok_in(&executor, &session, "ROLLBACK").await;
    assert!(store.unsplit_keys.lock().expect("unsplit keys").is_empty());
}

#[test]
fn show_regions_and_show_ranges_are_the_same_statement() {
    assert_eq!(
        admin("SHOW REGIONS FROM TABLE t"),
        admin("show ranges from table t")
    );
    assert!(matches!(
        admin("SHOW RANGES FROM TABLE public.t"),
        AdminStatement::ShowRegions { .. }
    ));
}

#[test]
fn admin_statements_mix_with_sql_statements_in_one_query() {
    assert_eq!(
        kinds("SELECT 1; ALTER TABLE t SPLIT AT VALUES (1); SHOW REGIONS FROM TABLE t; SELECT ';'"),
        ["sql", "split", "show", "sql"]
    );
    // Other ALTER TABLE and SHOW statements still reach sqlparser.
    assert_eq!(kinds("ALTER TABLE t ADD COLUMN x INT"), ["sql"]);
    assert_eq!(kinds("SHOW search_path"), ["sql"]);
    assert_eq!(kinds("ALTER TABLE t RENAME TO split"), ["sql"]);
}

#[test]
fn malformed_admin_statements_are_syntax_errors() {
    assert_eq!(
        parse_error_state("ALTER TABLE t SPLIT AT VALUES (1) x"),
        "42601"
    );
    assert_eq!(parse_error_state("ALTER TABLE t SPLIT AT"), "42601");
    assert_eq!(parse_error_state("SHOW REGIONS FROM t"), "42601");
    assert_eq!(parse_error_state("SHOW RANGES FROM TABLE"), "42601");
    assert_eq!(parse_error_state("SHOW REGIONS FROM TABLE t u"), "42601");
}

#[test]
fn parameters_in_admin_statements_are_refused() {
    assert_eq!(
        parse_error_state("ALTER TABLE t SPLIT AT VALUES ($1)"),
        "0A000"
    );
    assert_eq!(parse_error_state("SHOW REGIONS FROM TABLE t $1"), "0A000");
}

#[tokio::test]
async fn split_key_sorts_between_the_rows_below_and_at_the_value() {
    let (executor, store, catalog) = admin_executor(None);
    ok_tag(&executor, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)").await;
    let values: Vec<String> = (1..=100).map(|id| format!("({id}, 'v{id}')")).collect();
    ok_tag(
        &executor,
        &format!("INSERT INTO t VALUES {}", values.join(", ")),
    )
    .await;
    let (columns, got) = query(&executor, "ALTER TABLE t SPLIT AT VALUES (50)").await;
    assert_eq!(columns, ["split_key", "left_region_id", "right_region_id"]);
    assert_eq!(got, rows(&[&[Some("/50"), Some("1"), Some("2")]]));

    let t = table(&catalog, "t").await;
    let row_key = |id: i64| encode_primary_key(&t, &[Datum::Int(id)]).expect("key encodes");
    let split = store.split_keys.lock().expect("split keys")[0].clone();
    assert!(row_key(49) < split, "row 49 stays left of the split");
    assert_eq!(split, row_key(50), "row 50 is the first key right of it");
    let (start, end) = table_key_range(t.id);
    assert!(start < split && split < end, "inside the table");
    // Every row is still there.
    let (_, got) = query(&executor, "SELECT count(*) FROM t").await;
    assert_eq!(got, rows(&[&[Some("100")]]));
}

#[tokio::test]
async fn split_at_a_prefix_of_a_composite_key_precedes_every_row_with_that_prefix() {
    let (executor, store, catalog) = admin_executor(None);
    ok_tag(
        &executor,
        "CREATE TABLE c (a BIGINT, b TEXT, PRIMARY KEY (a, b))",
    )
    .await;
    let (_, got) = query(
        &executor,
        "ALTER TABLE c SPLIT AT VALUES (2), (2, 'm'), (-5)",
    )
    .await;
    assert_eq!(
        got,
        rows(&[
            &[Some("/2"), Some("1"), Some("2")],
            &[Some("/2/\"m\""), Some("2"), Some("3")],
            &[Some("/-5"), Some("1"), Some("4")],
        ])
    );
    let c = table(&catalog, "c").await;
    let key = |a: i64, b: &str| {
        encode_primary_key(&c, &[Datum::Int(a), Datum::Text(b.to_owned())]).expect("encodes")
    };
    let splits = store.split_keys.lock().expect("split keys").clone();
    assert!(key(1, "\u{10ffff}") < splits[0] && splits[0] <= key(2, ""));
    assert!(key(2, "l") < splits[1] && splits[1] <= key(2, "m"));
    assert!(key(-6, "z") < splits[2] && splits[2] <= key(-5, ""));
}

#[tokio::test]
async fn split_at_the_same_value_again_answers_the_same_regions() {
    let (executor, store, _) = admin_executor(None);
    let first = query(&executor, "ALTER TABLE kv SPLIT AT VALUES ('k')").await;
    let again = query(&executor, "ALTER TABLE kv SPLIT AT VALUES ('k')").await;
    assert_eq!(first.1, rows(&[&[Some("/\"k\""), Some("1"), Some("2")]]));
    assert_eq!(first, again);
    assert_eq!(store.split_keys.lock().expect("split keys").len(), 2);
    assert_eq!(store.region_starts.lock().expect("regions").len(), 1);
}

#[tokio::test]
async fn split_at_values_are_converted_like_insert_values() {
    let (executor, _, _) = admin_executor(None);
    ok_tag(&executor, "CREATE TABLE t (id BIGINT PRIMARY KEY)").await;
    // A quoted number and an expression are bigint values, as in INSERT.
    let (_, got) = query(&executor, "ALTER TABLE t SPLIT AT VALUES ('7'), (3 * 4)").await;
    assert_eq!(got[0][0].as_deref(), Some("/7"));
    assert_eq!(got[1][0].as_deref(), Some("/12"));
}

#[tokio::test]
async fn split_at_errors_have_postgres_sqlstates() {
    let (executor, store, _) = admin_executor(None);
    ok_tag(&executor, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)").await;
    let cases = [
        ("ALTER TABLE missing SPLIT AT VALUES (1)", "42P01"),
        ("ALTER TABLE t SPLIT AT VALUES (1, 2)", "42804"),
        ("ALTER TABLE t SPLIT AT VALUES (true)", "42804"),
        ("ALTER TABLE t SPLIT AT VALUES ('abc')", "22P02"),
        ("ALTER TABLE t SPLIT AT VALUES (NULL)", "23502"),
        ("ALTER TABLE t SPLIT AT VALUES (nope)", "42703"),
        ("ALTER TABLE t SPLIT AT SELECT 1", "0A000"),
        ("ALTER TABLE system.regions SPLIT AT VALUES (1)", "42809"),
    ];
    for (sql, sqlstate) in cases {
        assert_eq!(error_state(&executor, sql).await, sqlstate, "{sql}");
    }
    let too_many: Vec<String> = (0..=SPLIT_ROWS_MAX).map(|id| format!("({id})")).collect();
    assert_eq!(
        error_state(
            &executor,
            &format!("ALTER TABLE t SPLIT AT VALUES {}", too_many.join(", "))
        )
        .await,
        "54000"
    );
    assert!(
        store.split_keys.lock().expect("split keys").is_empty(),
        "no failed statement split anything"
    );
    let message = crate::tests::memory::run(&executor, "ALTER TABLE t SPLIT AT VALUES (1, 2)")
        .await
        .expect_err("too many values")
        .to_string();
    assert_eq!(
        message,
        "SPLIT AT data has 2 columns but the primary key of \"t\" has 1"
    );
    let message = crate::tests::memory::run(&executor, "ALTER TABLE t SPLIT AT VALUES (true)")
        .await
        .expect_err("wrong type")
        .to_string();
    assert_eq!(
        message,
        "column \"id\" is of type bigint but expression is of type boolean"
    );
}

#[tokio::test]
async fn split_at_while_storage_is_unreachable_is_retryable() {
    let (executor, store, _) = admin_executor(None);
    store.unavailable.store(true, Ordering::SeqCst);
    assert_eq!(
        error_state(&executor, "ALTER TABLE kv SPLIT AT VALUES ('k')").await,
        "57P03"
    );
}

#[tokio::test]
async fn split_at_inside_a_transaction_block_is_refused_and_fails_the_block() {
    let (executor, store, _) = admin_executor(Some(crate::system_tables::tests::sample_view()));
    let session = Session::default();
    ok_in(&executor, &session, "BEGIN").await;
    let refused = run_in(&executor, &session, "ALTER TABLE kv SPLIT AT VALUES ('k')")
        .await
        .expect_err("refused in a block");
    assert_eq!(refused.sqlstate(), "25001");
    assert_eq!(
        refused.to_string(),
        "ALTER TABLE ... SPLIT AT cannot run inside a transaction block"
    );
    let after = run_in(&executor, &session, "SELECT 1")
        .await
        .expect_err("the block failed");
    assert_eq!(after.sqlstate(), "25P02");
    ok_in(&executor, &session, "ROLLBACK").await;
    assert!(store.split_keys.lock().expect("split keys").is_empty());
    // SHOW REGIONS only reads, so a block may run it.
    ok_in(&executor, &session, "BEGIN").await;
    let (_, got) = query_in(&executor, &session, "SHOW REGIONS FROM TABLE kv").await;
    assert_eq!(got.len(), 2);
    ok_in(&executor, &session, "COMMIT").await;
}

async fn ok_in(executor: &Executor, session: &Session, sql: &str) {
    if let Err(error) = run_in(executor, session, sql).await {
        panic!("{sql}: {error}");
    }
}

#[tokio::test]
async fn show_regions_lists_the_regions_of_kv_in_key_order() {
    // The sample view splits the key space at kv's key 'm'.
    let (executor, _) = executor();
    let (columns, got) = query(&executor, "SHOW RANGES FROM TABLE kv").await;
    assert_eq!(
        columns,
        [
            "region_id",
            "start_key",
            "end_key",
            "leader_store_id",
            "replicas",
            "epoch_version",
            "epoch_conf_ver"
        ]
    );
    assert_eq!(
        got,
        rows(&[
            &[
                Some("1"),
                None,
                Some("/\"m\""),
                Some("1"),
                Some("{1,2}"),
                Some("2"),
                Some("1")
            ],
            &[
                Some("2"),
                Some("/\"m\""),
                None,
                None,
                Some("{2}"),
                Some("2"),
                Some("1")
            ],
        ])
    );
}

fn region(region_id: u64, start_key: Vec<u8>, end_key: Vec<u8>) -> RegionStatus {
    RegionStatus {
        region: Some(RegionDescriptor {
            region_id,
            start_key,
            end_key,
            epoch: Some(RegionEpoch {
                version: region_id,
                conf_ver: 1,
            }),
            peers: [3, 1, 2]
                .into_iter()
                .map(|store_id| RegionPeer {
                    peer_id: region_id * 10 + store_id,
                    store_id,
                })
                .collect(),
        }),
        leader_store_id: 2,
        ..RegionStatus::default()
    }
}

#[tokio::test]
async fn show_regions_lists_only_regions_overlapping_the_table() {
    // The first CREATE TABLE gets the first user table id.
    let id = |value: i64| Datum::Int(value);
    let probe = TableDescriptor::new(
        FIRST_USER_TABLE_ID,
        "t",
        vec![arbor_catalog::ColumnDescriptor::new(
            "id",
            arbor_catalog::ColumnType::Int8,
        )],
        vec![0],
    )
    .expect("valid descriptor");
    let key = |value: i64| encode_primary_key(&probe, &[id(value)]).expect("encodes");
    let (table_start, table_end) = table_key_range(FIRST_USER_TABLE_ID);
    let after_table = [table_end.clone(), b"zz".to_vec()].concat();
    // Listed out of order, as a view may be.
    let view = ClusterViewResponse {
        regions: vec![
            region(4, after_table.clone(), Vec::new()),
            region(2, key(50), table_end.clone()),
            region(1, Vec::new(), table_start.clone()),
            region(3, table_end, after_table),
            region(5, table_start, key(50)),
        ],
        ..ClusterViewResponse::default()
    };
    let (executor, _, _) = admin_executor(Some(view));
    ok_tag(&executor, "CREATE TABLE t (id BIGINT PRIMARY KEY)").await;
    let (_, got) = query(&executor, "SHOW REGIONS FROM TABLE t").await;
    assert_eq!(
        got,
        rows(&[
            &[
                Some("5"),
                None,
                Some("/50"),
                Some("2"),
                Some("{1,2,3}"),
                Some("5"),
                Some("1")
            ],
            &[
                Some("2"),
                Some("/50"),
                None,
                Some("2"),
                Some("{1,2,3}"),
                Some("2"),
                Some("1")
            ],
        ])
    );
}

#[tokio::test]
async fn show_regions_errors_have_postgres_sqlstates() {
    let (executor, _) = executor();
    assert_eq!(
        error_state(&executor, "SHOW REGIONS FROM TABLE missing").await,
        "42P01"
    );
    let (down, _, _) = admin_executor(None);
    assert_eq!(
        error_state(&down, "SHOW REGIONS FROM TABLE kv").await,
        "57P03"
    );
}

#[tokio::test]
async fn admin_statements_run_over_the_simple_and_extended_protocols() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    let (executor, store, _) = admin_executor(Some(crate::system_tables::tests::sample_view()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(listener, executor, async move {
        let _ = stopped.await;
    }));
    let config = format!(
        "host=127.0.0.1 port={} user=test dbname=arbor",
        address.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connects");
    let connection = tokio::spawn(connection);

    // Extended protocol: Parse/Describe/Bind/Execute without parameters.
    let split = client
        .query("ALTER TABLE kv SPLIT AT VALUES ('k')", &[])
        .await
        .expect("split over the extended protocol");
    assert_eq!(split.len(), 1);
    assert_eq!(split[0].get::<_, String>("split_key"), "/\"k\"");
    assert_eq!(split[0].get::<_, i64>("right_region_id"), 2);
    let regions = client
        .query("SHOW REGIONS FROM TABLE kv", &[])
        .await
        .expect("show over the extended protocol");
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0].get::<_, i64>("region_id"), 1);
    let refused = client
        .query("ALTER TABLE kv SPLIT AT VALUES ($1)", &[&"k"])
        .await
        .expect_err("parameters are refused");
    assert_eq!(
        refused
            .as_db_error()
            .expect("a Postgres error")
            .code()
            .code(),
        "0A000"
    );

    // Simple protocol, mixed with other statements.
    let messages = client
        .simple_query("ALTER TABLE kv SPLIT AT VALUES ('p'); SELECT count(*) FROM kv")
        .await
        .expect("split over the simple protocol");
    let texts: Vec<Option<String>> = messages
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect();
    assert_eq!(texts, [Some("/\"p\"".to_owned()), Some("0".to_owned())]);
    assert_eq!(store.split_keys.lock().expect("split keys").len(), 2);

    drop(client);
    let _ = connection.await;
    let _ = stop.send(());
    let _ = server.await;
}
