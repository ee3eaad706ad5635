//! `WatchEvents` is resumable: a watcher that reconnects with the next
//! cursor, even to another peer after the leader died, sees every accepted
//! event exactly once, in order.

mod common;

use std::time::Duration;

use arbor_proto::watch_events_item::Item;
use arbor_proto::RootEventRecord;
use common::*;
use futures::StreamExt;

async fn next_events(
    stream: &mut tonic::Streaming<arbor_proto::WatchEventsItem>,
    count: usize,
) -> Vec<RootEventRecord> {
    let mut events = Vec::new();
    while events.len() < count {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events keep coming")
            .expect("stream open")
            .expect("no error");
        match item.item {
            Some(Item::Event(event)) => events.push(event),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    events
}

fn store_ids(events: &[RootEventRecord]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.detail.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_sees_every_event_once_in_order_across_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path()).await;
    let client = cluster.client();
    bootstrap(&client).await;
    for id in 1..=10 {
        assert!(propose_until_answered(&client, join(id)).await.accepted);
    }

    let mut stream = client.watch_events(1).await.unwrap();
    let first = next_events(&mut stream, 11).await;
    assert_eq!(first[0].kind, "cluster_bootstrapped");
    assert!(first[1..].iter().all(|e| e.kind == "store_joined"));
    assert!(
        first.windows(2).all(|w| w[0].cursor < w[1].cursor),
        "in cursor order"
    );

    // Live tail on the same stream.
    assert!(propose_until_answered(&client, join(11)).await.accepted);
    let live = next_events(&mut stream, 1).await;
    assert_eq!(store_ids(&live), ["store_id=11"]);
    let last_seen = live[0].cursor;
    drop(stream);

    // Events while disconnected, then the leader dies.
    for id in 12..=15 {
        assert!(propose_until_answered(&client, join(id)).await.accepted);
    }
    let leader = cluster.leader().await;
    cluster.stop_peer(leader).await;
    let survivors: Vec<u64> = cluster
        .members
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let resumed_client = cluster.client_of(&survivors);
    let mut stream = resumed_client.watch_events(last_seen + 1).await.unwrap();
    let resumed = next_events(&mut stream, 4).await;
    assert_eq!(
        store_ids(&resumed),
        ["store_id=12", "store_id=13", "store_id=14", "store_id=15"],
        "exactly the events after the last one seen"
    );
    assert!(resumed[0].cursor > last_seen);
    drop(stream);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_from_cursor_zero_on_a_fresh_cluster_starts_at_the_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path()).await;
    let client = cluster.client();
    bootstrap(&client).await;
    let mut stream = client.watch_events(0).await.unwrap();
    let events = next_events(&mut stream, 1).await;
    assert_eq!(events[0].kind, "cluster_bootstrapped");
    drop(stream);
    eventually("nothing", Duration::from_millis(1), || true).await;
    cluster.stop().await;
}
