//! Two real coordinators over three real root peers (in-process, loopback):
//! one holds the lease and keeps renewing it, the other is a standby; a
//! graceful stop seals the lease and the standby takes over at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbor_coordinator::lease::LEASE_TTL_MS;
use arbor_coordinator::{run_coordinator, CoordinatorConfig};
use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{
    AllocateIdsRequest, ClusterViewRequest, ClusterViewResponse, GetTimestampsRequest,
};
use arbor_root::{run_root, RootConfig};
use tokio::sync::oneshot;

fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn spawn<F, E>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let (stop, stopped) = oneshot::channel();
    let future = run(stopped);
    let task = tokio::spawn(async move {
        if let Err(error) = future.await {
            panic!("node failed: {error}");
        }
    });
    Running { stop, task }
}

async fn view(address: &str) -> Option<ClusterViewResponse> {
    let mut client = CoordinatorClient::connect(format!("http://{address}"))
        .await
        .ok()?;
    let answer = client
        .cluster_view(ClusterViewRequest { events_limit: 0 })
        .await
        .ok()?;
    Some(answer.into_inner())
}

async fn client(address: &str) -> CoordinatorClient<tonic::transport::Channel> {
    CoordinatorClient::connect(format!("http://{address}"))
        .await
        .unwrap()
}

/// (first timestamp, generation) from `address`.
async fn timestamps(address: &str, count: u32) -> Result<(u64, u64), tonic::Status> {
    let answer = client(address)
        .await
        .get_timestamps(GetTimestampsRequest { count })
        .await?;
    let answer = answer.into_inner();
    assert_eq!(answer.count, count);
    Ok((answer.first, answer.generation))
}

async fn ids(address: &str, count: u32) -> Result<(u64, u64), tonic::Status> {
    let answer = client(address)
        .await
        .allocate_ids(AllocateIdsRequest { count })
        .await?;
    let answer = answer.into_inner();
    Ok((answer.first, answer.generation))
}

fn role(view: &ClusterViewResponse) -> (String, u64) {
    let status = view.coordinator.clone().unwrap_or_default();
    (status.role, status.generation)
}

/// Polls until `check` holds for the views of both coordinators.
async fn until<F>(
    addresses: &[String],
    what: &str,
    timeout: Duration,
    check: F,
) -> Vec<ClusterViewResponse>
where
    F: Fn(&[ClusterViewResponse]) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let mut views = Vec::new();
        for address in addresses {
            if let Some(view) = view(address).await {
                views.push(view);
            }
        }
        if views.len() == addresses.len() && check(&views) {
            return views;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_renews_and_a_sealed_lease_passes_to_the_standby_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(5);
    let peers: BTreeMap<u64, String> = ports[..3]
        .iter()
        .enumerate()
        .map(|(i, port)| (i as u64 + 1, format!("127.0.0.1:{port}")))
        .collect();
    let root: Vec<Running> = peers
        .iter()
        .map(|(id, address)| {
            let config = RootConfig {
                peer_id: *id,
                listen: address.parse().unwrap(),
                advertise_address: address.clone(),
                data_dir: dir.path().join(format!("root-{id}")),
                initial_peers: peers.clone(),
            };
            spawn(|stopped| {
                run_root(config, async move {
                    let _ = stopped.await;
                })
            })
        })
        .collect();
    let addresses: Vec<String> = ports[3..]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut coordinators: Vec<Option<Running>> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let config = CoordinatorConfig {
                coordinator_id: format!("coordinator-{}", i + 1),
                listen: address.parse().unwrap(),
                advertise_address: address.clone(),
                root_addresses: peers.values().cloned().collect(),
                region_split_keys: arbor_coordinator::scheduler::REGION_SPLIT_KEYS_DEFAULT,
                region_split_bytes: arbor_coordinator::scheduler::REGION_SPLIT_BYTES_DEFAULT,
                store_dead_after_ms: arbor_coordinator::scheduler::STORE_DEAD_AFTER_DEFAULT_MS,
            };
            Some(spawn(|stopped| {
                run_coordinator(config, async move {
                    let _ = stopped.await;
                })
            }))
        })
        .collect();

    let one_holder = |views: &[ClusterViewResponse]| {
        let roles: Vec<_> = views.iter().map(role).collect();
        roles.iter().filter(|(r, _)| r == "holder").count() == 1
            && roles.iter().filter(|(r, _)| r == "standby").count() == 1
    };
    let views = until(
        &addresses,
        "one holder and one standby",
        Duration::from_secs(20),
        one_holder,
    )
    .await;
    let holder = views.iter().position(|v| role(v).0 == "holder").unwrap();
    let generation = role(&views[holder]).1;

    // Several TTLs later the same holder still holds the same generation:
    // it renews in time and the standby never steals it.
    tokio::time::sleep(Duration::from_millis(3 * LEASE_TTL_MS)).await;
    let views = until(
        &addresses,
        "a stable holder",
        Duration::from_secs(5),
        one_holder,
    )
    .await;
    assert_eq!(role(&views[holder]), ("holder".to_string(), generation));
    let lease = views[holder].root.clone().unwrap().lease.unwrap();
    assert_eq!(lease.generation, generation);

    // Singleton duties: the holder serves increasing timestamps and fresh
    // ids under its generation; the standby refuses and names the holder.
    let standby = 1 - holder;
    let mut last_timestamp = 0;
    let mut handed_out_ids = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let (first, served_generation) = timestamps(&addresses[holder], 10).await.unwrap();
        assert_eq!(served_generation, generation);
        assert!(first > last_timestamp, "timestamps must strictly increase");
        last_timestamp = first + 9;
        let (first_id, _) = ids(&addresses[holder], 3).await.unwrap();
        for id in first_id..first_id + 3 {
            assert!(handed_out_ids.insert(id), "id {id} handed out twice");
        }
    }
    let refused = timestamps(&addresses[standby], 1).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains(&addresses[holder]),
        "{}",
        refused.message()
    );

    // Graceful stop seals the lease: the standby takes over well within a TTL.
    let stopped_at = Instant::now();
    coordinators[holder].take().unwrap().stop().await;
    let survivor = 1 - holder;
    let survivor_address = [addresses[survivor].clone()];
    until(
        &survivor_address,
        "the standby to take over",
        Duration::from_secs(10),
        |views| role(&views[0]) == ("holder".to_string(), generation + 1),
    )
    .await;
    let took = stopped_at.elapsed();
    assert!(
        took < Duration::from_millis(LEASE_TTL_MS),
        "a sealed lease should pass on at once, took {took:?}"
    );

    // The successor starts above everything its predecessor handed out.
    let (first, served_generation) = timestamps(&addresses[survivor], 1).await.unwrap();
    assert_eq!(served_generation, generation + 1);
    assert!(
        first > last_timestamp,
        "time moved backwards across failover"
    );
    let (first_id, _) = ids(&addresses[survivor], 100).await.unwrap();
    assert!(
        first_id > *handed_out_ids.iter().next_back().unwrap(),
        "an id was repeated"
    );

    for coordinator in coordinators.into_iter().flatten() {
        coordinator.stop().await;
    }
    for peer in root {
        peer.stop().await;
    }
}
