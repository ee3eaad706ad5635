//! `SplitAt` through the region client: the region holding a key splits
//! exactly at that key; asking again answers at once; a client whose first
//! coordinator is the standby follows it to the holder. And a split planned
//! in root by a holder that is then killed is finished by its successor, so
//! the region map stays a partition of the key space.

use std::time::{Duration, Instant};

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::root_client::RootClient;
use arbor_proto::root_event::Kind;
use arbor_proto::{
    AllocateIdsRequest, ClusterViewResponse, Mutation, MutationCondition, MutationOp,
    ProposeRequest, RegionDescriptor, RegionPeer, RootEvent, SplitAtRequest, SplitPlanned,
};
use arbor_raftstore::RegionClient;
use arbor_tests::Cluster;

/// How long a split or a coordinator hand-off gets before the test fails.
const SETTLE_TIMEOUT_MS: u64 = 30_000;
const KEYS: usize = 60;

fn key(i: usize) -> Vec<u8> {
    format!("split-at/{i:04}").into_bytes()
}

async fn view_of(address: &str) -> Option<ClusterViewResponse> {
    arbor_tests::coordinator_view(address).await
}

/// The index in `coordinators` of the lease holder, once one holds it.
async fn holder_index(coordinators: &[String]) -> usize {
    arbor_tests::lease_holder_index(coordinators, Duration::from_millis(SETTLE_TIMEOUT_MS)).await
}

/// Regions as root has them, sorted by start key.
fn regions(view: &ClusterViewResponse) -> Vec<RegionDescriptor> {
    let mut regions = view.root.clone().unwrap_or_default().regions;
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    regions
}

/// Live regions tile the key space: the first starts at the beginning, each
/// ends where the next starts, the last runs to the end.
fn assert_partition(regions: &[RegionDescriptor]) {
    assert!(!regions.is_empty());
    assert!(regions[0].start_key.is_empty(), "{regions:?}");
    for pair in regions.windows(2) {
        assert_eq!(pair[0].end_key, pair[1].start_key, "{regions:?}");
    }
    assert!(
        regions.last().is_some_and(|r| r.end_key.is_empty()),
        "{regions:?}"
    );
}

async fn write_keys(client: &RegionClient) {
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(20) {
        let mutations = chunk
            .iter()
            .map(|&i| Mutation {
                op: MutationOp::Put as i32,
                key: key(i),
                value: format!("value-{i}").into_bytes(),
                condition: MutationCondition::None as i32,
            })
            .collect();
        client.write(mutations).await.expect("write keys");
    }
}

async fn assert_every_key_readable(client: &RegionClient) {
    let pairs = client
        .scan(&key(0), &key(KEYS), KEYS + 1)
        .await
        .expect("scan every key");
    assert_eq!(pairs.len(), KEYS, "every key survives the splits");
    for (i, (k, v)) in pairs.iter().enumerate() {
        assert_eq!((k, v), (&key(i), &format!("value-{i}").into_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_at_splits_exactly_at_the_key_and_a_planned_split_survives_its_holder() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let _sql = cluster.ready_client().await;
    let coordinators = cluster.listen_addresses("coordinator-");
    let client = RegionClient::new(coordinators.clone());
    write_keys(&client).await;

    // A split exactly at the key, both halves answered.
    let halves = client
        .split_at(&key(20))
        .await
        .unwrap_or_else(|e| panic!("split at: {e}\n{}", cluster.logs_tail()));
    assert_eq!(halves.right.start_key, key(20));
    let left = halves.left.clone().expect("a left half");
    assert_eq!(left.end_key, key(20));
    let holder = holder_index(&coordinators).await;
    let view = view_of(&coordinators[holder]).await.expect("a view");
    let before = regions(&view);
    assert!(before.iter().any(|r| r.start_key == key(20)), "{before:?}");
    assert_partition(&before);

    // Asking again answers at once, with the same halves and no new split.
    let started = Instant::now();
    let again = client.split_at(&key(20)).await.expect("split again");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(again.right.region_id, halves.right.region_id);
    let view = view_of(&coordinators[holder]).await.expect("a view");
    assert_eq!(regions(&view).len(), before.len(), "no second split");

    // The standby answers with the holder named; a client asking it first
    // follows on to the holder.
    let standby = &coordinators[1 - holder];
    let mut direct = CoordinatorClient::connect(format!("http://{standby}"))
        .await
        .expect("connect to the standby");
    let refused = direct
        .split_at(SplitAtRequest { split_key: key(40) })
        .await
        .expect_err("a standby does not split");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains(&coordinators[holder]),
        "the redirect names the holder: {}",
        refused.message()
    );
    let standby_first = RegionClient::new(vec![standby.clone(), coordinators[holder].clone()]);
    let halves = standby_first
        .split_at(&key(40))
        .await
        .expect("split through the standby");
    assert_eq!(halves.right.start_key, key(40));
    assert_every_key_readable(&client).await;

    // A holder plans a split in root and dies before executing it: its
    // successor finishes it. The plan is proposed here (with ids from the
    // holder's allocator, as the holder itself would) right after the kill,
    // so no holder is alive to execute it until the standby takes over.
    let view = view_of(&coordinators[holder]).await.expect("a view");
    let region = regions(&view)
        .into_iter()
        .find(|r| r.start_key == key(40))
        .expect("the region split off at key 40");
    let mut allocator = CoordinatorClient::connect(format!("http://{}", coordinators[holder]))
        .await
        .expect("connect to the holder");
    let ids = allocator
        .allocate_ids(AllocateIdsRequest {
            count: 1 + region.peers.len() as u32,
        })
        .await
        .expect("ids from the holder")
        .into_inner();
    let new_peers = region
        .peers
        .iter()
        .zip(ids.first + 1..)
        .map(|(peer, peer_id)| RegionPeer {
            peer_id,
            store_id: peer.store_id,
        })
        .collect();
    let planned = SplitPlanned {
        region_id: region.region_id,
        expected_epoch: region.epoch,
        split_key: key(50),
        new_region_id: ids.first,
        new_peers,
    };
    let holder_name = format!("coordinator-{}", holder + 1);
    cluster.node(&holder_name).kill();
    let roots = cluster.listen_addresses("root-");
    let mut root = RootClient::connect(format!("http://{}", roots[0]))
        .await
        .expect("connect to root");
    let proposed = root
        .propose(ProposeRequest {
            event: Some(RootEvent {
                kind: Some(Kind::SplitPlanned(planned)),
            }),
            lease_fence: None,
        })
        .await
        .expect("propose the split")
        .into_inner();
    assert!(proposed.accepted, "{}", proposed.rejection_detail);

    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    let finished = loop {
        let view = view_of(standby).await;
        let root_state = view
            .as_ref()
            .and_then(|v| v.root.clone())
            .unwrap_or_default();
        if root_state.pending_changes.is_empty()
            && root_state.regions.iter().any(|r| r.start_key == key(50))
        {
            break view.expect("a view");
        }
        assert!(
            Instant::now() < deadline,
            "the successor did not finish the planned split: {root_state:?}\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = regions(&finished);
    assert_partition(&after);
    assert_eq!(after.len(), before.len() + 2, "{after:?}");
    assert_every_key_readable(&RegionClient::new(vec![standby.clone()])).await;

    drop(client);
    drop(standby_first);
    let killed = cluster.stop();
    assert!(killed.is_empty(), "nodes ignored SIGTERM: {killed:?}");
}
