//! Three real root peers on loopback: election, proposals through any peer,
//! apply-time rejections, events, and a restart on the same data.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbor_proto::root_event::Kind;
use arbor_proto::{ClusterBootstrapped, LeaseGranted, RejectionCode};
use arbor_root::{run_root, RootClient, RootConfig};
use tokio::sync::oneshot;

mod common;
use common::{free_ports, propose_until_answered};

struct Peers {
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), arbor_root::RootError>>>,
}

fn start(dir: &std::path::Path, peers: &BTreeMap<u64, String>) -> Peers {
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for (id, address) in peers {
        let (stop, stopped) = oneshot::channel::<()>();
        let config = RootConfig {
            peer_id: *id,
            listen: address.parse().unwrap(),
            advertise_address: address.clone(),
            data_dir: dir.join(format!("root-{id}")),
            initial_peers: peers.clone(),
        };
        stops.push(stop);
        tasks.push(tokio::spawn(run_root(config, async move {
            let _ = stopped.await;
        })));
    }
    Peers { stops, tasks }
}

async fn stop(peers: Peers) {
    for stop in peers.stops {
        let _ = stop.send(());
    }
    for task in peers.tasks {
        task.await.unwrap().unwrap();
    }
}

fn grant(holder: &str, generation: u64) -> Kind {
    Kind::LeaseGranted(LeaseGranted {
        holder_id: holder.into(),
        holder_address: "127.0.0.1:1".into(),
        generation,
        ttl_ms: 60_000,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_elect_validate_at_apply_and_keep_state_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = free_ports(3)
        .into_iter()
        .enumerate()
        .map(|(i, port)| (i as u64 + 1, format!("127.0.0.1:{port}")))
        .collect();
    let running = start(dir.path(), &peers);
    // A client that only knows a follower still gets answers (forwarding).
    let client = RootClient::new(peers.values().rev().cloned().collect());

    let boot = Kind::ClusterBootstrapped(ClusterBootstrapped {
        cluster_id: "test".into(),
    });
    assert!(propose_until_answered(&client, boot.clone()).await.accepted);
    let again = propose_until_answered(&client, boot).await;
    assert!(!again.accepted);
    assert_eq!(again.rejection, RejectionCode::AlreadyBootstrapped as i32);

    assert!(
        propose_until_answered(&client, grant("a", 1))
            .await
            .accepted
    );
    let racing = propose_until_answered(&client, grant("b", 2)).await;
    assert_eq!(racing.rejection, RejectionCode::LeaseStillHeld as i32);

    let state = client.read_state().await.unwrap();
    assert_eq!(state.cluster_id, "test");
    assert_eq!(state.lease.as_ref().unwrap().holder_id, "a");
    assert!(state.cursor >= racing.cursor);

    let statuses = client.status_all().await;
    assert_eq!(
        statuses.iter().filter(|s| s.role == "leader").count(),
        1,
        "{statuses:?}"
    );
    let events = client.list_events(0, 10).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["lease_granted", "cluster_bootstrapped"],
        "accepted events, newest first"
    );

    let before_restart = client.read_state().await.unwrap();
    stop(running).await;
    let running = start(dir.path(), &peers);
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        match client.read_state().await {
            Ok(state) => break state,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("root did not come back: {error}"),
        }
    };
    assert_eq!(state.cluster_id, "test");
    assert_eq!(state.lease, before_restart.lease);
    assert_eq!(state.stores, before_restart.stores);
    assert!(
        state.cursor >= before_restart.cursor,
        "the cursor never goes back"
    );
    stop(running).await;
}
