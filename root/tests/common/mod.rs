//! Helpers shared by root's integration tests: real peers on loopback.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arbor_proto::root_event::Kind;
use arbor_proto::{ClusterBootstrapped, ProposeResponse, RootState, StoreDescriptor, StoreJoined};
use arbor_root::{RootClient, RootConfig, RootPeer};

pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub struct Cluster {
    pub dir: PathBuf,
    pub members: BTreeMap<u64, String>,
    pub peers: BTreeMap<u64, RootPeer>,
}

impl Cluster {
    pub async fn start(dir: &Path) -> Cluster {
        let members: BTreeMap<u64, String> = free_ports(3)
            .into_iter()
            .enumerate()
            .map(|(i, port)| (i as u64 + 1, format!("127.0.0.1:{port}")))
            .collect();
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            members,
            peers: BTreeMap::new(),
        };
        for id in cluster.members.keys().copied().collect::<Vec<_>>() {
            cluster.start_peer(id).await;
        }
        cluster
    }

    pub fn config(&self, id: u64) -> RootConfig {
        let address = self.members[&id].clone();
        RootConfig {
            peer_id: id,
            listen: address.parse().unwrap(),
            advertise_address: address,
            data_dir: self.data_dir(id),
            initial_peers: self.members.clone(),
        }
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("root-{id}"))
    }

    pub async fn start_peer(&mut self, id: u64) {
        let peer = RootPeer::start(&self.config(id)).await.unwrap();
        self.peers.insert(id, peer);
    }

    pub async fn stop_peer(&mut self, id: u64) {
        if let Some(peer) = self.peers.remove(&id) {
            peer.stop().await.unwrap();
        }
    }

    pub async fn stop(mut self) {
        for id in self.peers.keys().copied().collect::<Vec<_>>() {
            self.stop_peer(id).await;
        }
    }

    pub fn client(&self) -> RootClient {
        RootClient::new(self.members.values().cloned().collect())
    }

    pub fn client_of(&self, ids: &[u64]) -> RootClient {
        RootClient::new(ids.iter().map(|id| self.members[id].clone()).collect())
    }

    /// The peer every running peer agrees leads, once they agree.
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<Option<u64>> = self
                .peers
                .values()
                .map(|p| p.node.raft.metrics().borrow().current_leader)
                .collect();
            if let Some(Some(first)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*first)) && self.peers.contains_key(first) {
                    return *first;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn applied_state(&self, id: u64) -> RootState {
        self.peers[&id].node.state.borrow().clone()
    }
}

/// Retries until root answers (accepted or rejected), for up to 20 s.
pub async fn propose_until_answered(client: &RootClient, kind: Kind) -> ProposeResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.propose(kind.clone()).await {
            Ok(answer) => return answer,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => panic!("root never answered: {error}"),
        }
    }
}

pub async fn bootstrap(client: &RootClient) {
    let boot = Kind::ClusterBootstrapped(ClusterBootstrapped {
        cluster_id: "test".into(),
    });
    assert!(propose_until_answered(client, boot).await.accepted);
}

pub fn join(store_id: u64) -> Kind {
    Kind::StoreJoined(StoreJoined {
        store: Some(StoreDescriptor {
            store_id,
            address: format!("127.0.0.1:{store_id}"),
        }),
    })
}

/// Polls `check` until it holds, for up to `timeout`.
pub async fn eventually<F: FnMut() -> bool>(what: &str, timeout: Duration, mut check: F) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
