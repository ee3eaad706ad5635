//! System tables through the same SELECT pipeline as kv.

use super::memory::{error_state, executor, executor_with, query, rows};

#[tokio::test]
async fn system_regions_render_from_the_cluster_view() {
    let (executor, _) = executor();
    let (columns, got) = query(
        &executor,
        "SELECT region_id, start_key, end_key, epoch_version, leader_store_id, peers, observed_at FROM system.regions ORDER BY region_id",
    )
    .await;
    assert_eq!(
        columns,
        [
            "region_id",
            "start_key",
            "end_key",
            "epoch_version",
            "leader_store_id",
            "peers",
            "observed_at"
        ]
    );
    assert_eq!(
        got,
        rows(&[
            &[
                Some("1"),
                Some(""),
                Some("t\\x00\\x00\\x00\\x01m\\x00\\x01"),
                Some("2"),
                Some("1"),
                Some("1@store1,2@store2"),
                Some("2024-05-01 12:34:56.789+00"),
            ],
            &[
                Some("2"),
                Some("t\\x00\\x00\\x00\\x01m\\x00\\x01"),
                Some(""),
                Some("2"),
                None,
                Some("3@store2"),
                Some("2024-05-01 12:34:56.789+00"),
            ],
        ])
    );
}

#[tokio::test]
async fn system_tables_filter_order_and_limit() {
    let (executor, _) = executor();
    let (_, got) = query(
        &executor,
        "SELECT store_id, address FROM system.stores WHERE alive = true",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("1"), Some("127.0.0.1:9001")]]));
    let (_, got) = query(
        &executor,
        "SELECT store_id FROM system.stores WHERE region_count >= '2'",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("2")]]));
    let (_, got) = query(
        &executor,
        "SELECT cursor, kind FROM system.root_events ORDER BY cursor LIMIT 1",
    )
    .await;
    assert_eq!(got, rows(&[&[Some("41"), Some("lease_granted")]]));
    let (_, got) = query(
        &executor,
        "SELECT holder, generation, sealed, expires_at FROM system.leases",
    )
    .await;
    assert_eq!(
        got,
        rows(&[&[
            Some("coord-1"),
            Some("3"),
            Some("f"),
            Some("2024-05-01 12:35:05.789+00")
        ]])
    );
    let (_, got) = query(&executor, "SELECT * FROM system.coordinators").await;
    assert_eq!(
        got,
        rows(&[&[
            Some("coord-1"),
            Some("127.0.0.1:7001"),
            Some("holder"),
            Some("3"),
            Some("42")
        ]])
    );
    let (_, got) = query(&executor, "SELECT role, leader_id FROM system.root_peers").await;
    assert_eq!(got, rows(&[&[Some("leader"), Some("1")]]));
    let (_, got) = query(&executor, "SELECT count(*) FROM system.regions").await;
    assert_eq!(got, rows(&[&[Some("2")]]));
}

#[tokio::test]
async fn system_tables_refuse_writes_and_unknown_names() {
    let (executor, _) = executor();
    assert_eq!(
        error_state(&executor, "SELECT * FROM system.nope").await,
        "42P01"
    );
    assert_eq!(
        error_state(&executor, "DELETE FROM system.regions").await,
        "42501"
    );
    assert_eq!(
        error_state(
            &executor,
            "SELECT * FROM system.stores WHERE store_id = 'x'"
        )
        .await,
        "22P02"
    );
    assert_eq!(
        error_state(&executor, "SELECT * FROM system.stores WHERE address = 1").await,
        "42883"
    );
}

#[tokio::test]
async fn unreachable_coordinators_are_retryable_errors() {
    let (executor, _) = executor_with(None);
    assert_eq!(
        error_state(&executor, "SELECT * FROM system.regions").await,
        "57P03"
    );
}
