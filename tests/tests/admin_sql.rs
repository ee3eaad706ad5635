//! Admin SQL end to end: `ALTER TABLE ... SPLIT AT` splits a user table's
//! region exactly at a primary-key value through the coordinator lease
//! holder, `SHOW REGIONS FROM TABLE` lists the halves, every row stays
//! readable on either side, a repeated split is harmless, and psql runs
//! both statements.

use std::time::{Duration, Instant};

use arbor_tests::{rows, sqlstate_of, Cluster};
use tokio_postgres::Client;

/// How long a committed split gets to show in the answering coordinator's
/// view (a standby applies root's log a moment after the holder).
const VIEW_SETTLE_TIMEOUT_MS: u64 = 20_000;
const ROWS: i64 = 100;
const SPLIT_ID: i64 = 50;

fn cell(value: &str) -> Option<String> {
    Some(value.to_string())
}

/// `SHOW REGIONS FROM TABLE t` once some region starts at `start_key`.
async fn regions_once_one_starts_at(client: &Client, start_key: &str) -> Vec<Vec<Option<String>>> {
    let deadline = Instant::now() + Duration::from_millis(VIEW_SETTLE_TIMEOUT_MS);
    loop {
        let regions = rows(client, "SHOW REGIONS FROM TABLE t").await;
        if regions
            .iter()
            .any(|region| region[1].as_deref() == Some(start_key))
            || Instant::now() >= deadline
        {
            return regions;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn split_at_splits_a_table_at_a_primary_key_and_show_regions_lists_the_halves() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;

    rows(&client, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)").await;
    let values: Vec<String> = (1..=ROWS).map(|id| format!("({id}, 'v{id}')")).collect();
    rows(
        &client,
        &format!("INSERT INTO t VALUES {}", values.join(",")),
    )
    .await;

    let split = rows(&client, "ALTER TABLE t SPLIT AT VALUES (50)").await;
    assert_eq!(split.len(), 1, "{split:?}");
    assert_eq!(split[0][0], cell("/50"), "{split:?}");
    let left = split[0][1].clone().expect("a region ends at /50");
    let right = split[0][2].clone().expect("a region starts at /50");
    assert_ne!(left, right);

    let regions = regions_once_one_starts_at(&client, "/50").await;
    assert!(regions.len() >= 2, "{regions:?}");
    let starting = regions
        .iter()
        .find(|region| region[1].as_deref() == Some("/50"))
        .unwrap_or_else(|| panic!("no region starts at /50: {regions:?}"));
    assert_eq!(starting[0], Some(right.clone()), "{regions:?}");
    let ending = regions
        .iter()
        .find(|region| region[2].as_deref() == Some("/50"))
        .unwrap_or_else(|| panic!("no region ends at /50: {regions:?}"));
    assert_eq!(ending[0], Some(left.clone()), "{regions:?}");
    // Key order: the region ending at /50 comes first; replicas are listed.
    let position = |id: &str| {
        regions
            .iter()
            .position(|region| region[0].as_deref() == Some(id))
    };
    assert!(position(&left) < position(&right), "{regions:?}");
    assert!(
        starting[4]
            .as_deref()
            .is_some_and(|replicas| replicas.starts_with('{')),
        "{regions:?}"
    );

    // Every row is still readable, on both sides of the split.
    // (SELECT on user tables has count(*) but no sum(): ids are summed here.)
    assert_eq!(
        rows(&client, "SELECT count(*) FROM t").await,
        vec![vec![cell("100")]]
    );
    let ids: Vec<i64> = rows(&client, "SELECT id FROM t")
        .await
        .iter()
        .map(|row| {
            row[0]
                .as_deref()
                .and_then(|id| id.parse().ok())
                .expect("an id")
        })
        .collect();
    assert_eq!(ids.iter().sum::<i64>(), ROWS * (ROWS + 1) / 2, "{ids:?}");
    assert_eq!(
        rows(&client, "SELECT id, v FROM t WHERE id = 49").await,
        vec![vec![cell("49"), cell("v49")]]
    );
    assert_eq!(
        rows(&client, "SELECT id, v FROM t WHERE id = 50").await,
        vec![vec![cell("50"), cell("v50")]]
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM t WHERE id >= 50").await,
        vec![vec![cell(&(ROWS - SPLIT_ID + 1).to_string())]]
    );

    // The same split again succeeds at once with the same regions.
    let again = rows(&client, "ALTER TABLE t SPLIT AT VALUES (50)").await;
    assert_eq!(again, split);

    assert_eq!(
        sqlstate_of(&client, "ALTER TABLE missing SPLIT AT VALUES (1)").await,
        "42P01"
    );
    assert_eq!(
        sqlstate_of(&client, "ALTER TABLE t SPLIT AT VALUES ('x')").await,
        "22P02"
    );

    // psql runs both statements as a user would type them.
    let shown = cluster.psql("ALTER TABLE t SPLIT AT VALUES (75);");
    assert!(shown.starts_with("/75|"), "{shown}");
    regions_once_one_starts_at(&client, "/75").await;
    let listed = cluster.psql("SHOW RANGES FROM TABLE t;");
    assert!(
        listed.lines().any(|line| line.contains("|/75|")),
        "{listed}"
    );
    let refused = cluster.psql("BEGIN; ALTER TABLE t SPLIT AT VALUES (10); COMMIT;");
    assert!(
        refused.contains("cannot run inside a transaction block"),
        "{refused}"
    );
}
