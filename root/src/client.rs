//! A client of the `Root` service that tries each root peer in turn, keeps
//! using the one that last answered, and bounds every call with a timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbor_proto::root_client::RootClient as GrpcRootClient;
use arbor_proto::*;
use tonic::transport::Channel;

use crate::error::RootError;
use crate::network::lazy_channel;

/// Deadline of one unary call to one root peer.
pub const ROOT_CALL_TIMEOUT_MS: u64 = 3_000;
/// Deadline of a membership change, which waits for new peers to catch up.
pub const MEMBERSHIP_CHANGE_TIMEOUT_MS: u64 = 60_000;

#[derive(Clone)]
pub struct RootClient {
    peers: Arc<Vec<(String, Option<GrpcRootClient<Channel>>)>>,
    preferred: Arc<AtomicUsize>,
}

impl RootClient {
    pub fn new(addresses: Vec<String>) -> Self {
        let peers = addresses
            .into_iter()
            .map(|address| {
                let client = lazy_channel(&address).ok().map(GrpcRootClient::new);
                (address, client)
            })
            .collect();
        Self {
            peers: Arc::new(peers),
            preferred: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn addresses(&self) -> Vec<String> {
        self.peers.iter().map(|(a, _)| a.clone()).collect()
    }

    /// Calls `call` on each peer, starting with the last one that answered,
    /// until one answers with anything but `Unavailable`/a transport failure.
    async fn each_peer<T, F, Fut>(&self, call: F) -> Result<T, RootError>
    where
        F: Fn(GrpcRootClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let count = self.peers.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_error = String::from("no root peers configured");
        for offset in 0..count {
            let index = (start + offset) % count;
            let (address, client) = &self.peers[index];
            let Some(client) = client.clone() else {
                last_error = format!("{address}: invalid address");
                continue;
            };
            let answer =
                tokio::time::timeout(Duration::from_millis(ROOT_CALL_TIMEOUT_MS), call(client))
                    .await;
            match answer {
                Ok(Ok(response)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                    return Err(RootError::InvalidArgument {
                        hint: status.message().to_string(),
                    });
                }
                Ok(Err(status)) => last_error = format!("{address}: {}", status.message()),
                Err(_) => {
                    last_error = format!("{address}: timed out after {ROOT_CALL_TIMEOUT_MS} ms")
                }
            }
        }
        Err(RootError::Unreachable {
            addresses: self.addresses(),
            last_error,
        })
    }

    /// Proposes one event; the answer says whether apply accepted it.
    pub async fn propose(&self, event: root_event::Kind) -> Result<ProposeResponse, RootError> {
        self.propose_fenced(event, None).await
    }

    /// Proposes one event that root applies only while `lease_fence` holds
    /// the lease: a deposed coordinator's late proposals change nothing.
    pub async fn propose_fenced(
        &self,
        event: root_event::Kind,
        lease_fence: Option<LeaseFence>,
    ) -> Result<ProposeResponse, RootError> {
        let request = ProposeRequest {
            event: Some(RootEvent { kind: Some(event) }),
            lease_fence,
        };
        self.each_peer(|mut client| {
            let request = request.clone();
            async move { client.propose(request).await }
        })
        .await
    }

    /// Linearizable read of root's applied state.
    pub async fn read_state(&self) -> Result<RootState, RootError> {
        self.each_peer(|mut client| async move { client.read_state(ReadStateRequest {}).await })
            .await
    }

    /// A stream of applied states from `from_cursor` on, from one peer.
    pub async fn watch(&self, from_cursor: u64) -> Result<tonic::Streaming<RootState>, RootError> {
        self.each_peer(|mut client| async move { client.watch(WatchRequest { from_cursor }).await })
            .await
    }

    /// Accepted events from `from_cursor` on, then live (see `WatchEvents`).
    pub async fn watch_events(
        &self,
        from_cursor: u64,
    ) -> Result<tonic::Streaming<WatchEventsItem>, RootError> {
        self.each_peer(|mut client| async move {
            client.watch_events(WatchRequest { from_cursor }).await
        })
        .await
    }

    pub async fn list_events(
        &self,
        before_cursor: u64,
        limit: u32,
    ) -> Result<Vec<RootEventRecord>, RootError> {
        let response = self
            .each_peer(|mut client| async move {
                client
                    .list_events(ListEventsRequest {
                        before_cursor,
                        limit,
                    })
                    .await
            })
            .await?;
        Ok(response.events)
    }

    /// Replaces voters (see `ChangeMembership`); waits for learners to catch
    /// up, so it is given a longer deadline than other calls.
    pub async fn change_membership(
        &self,
        add_voters: Vec<RootMember>,
        remove_peer_ids: Vec<u64>,
    ) -> Result<ChangeMembershipResponse, RootError> {
        let request = ChangeMembershipRequest {
            add_voters,
            remove_peer_ids,
        };
        let mut last_error = String::new();
        for (address, client) in self.peers.iter() {
            let Some(mut client) = client.clone() else {
                continue;
            };
            let call = client.change_membership(request.clone());
            match tokio::time::timeout(Duration::from_millis(MEMBERSHIP_CHANGE_TIMEOUT_MS), call)
                .await
            {
                Ok(Ok(answer)) => return Ok(answer.into_inner()),
                Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                    return Err(RootError::InvalidArgument {
                        hint: status.message().to_string(),
                    })
                }
                Ok(Err(status)) => last_error = format!("{address}: {}", status.message()),
                Err(_) => last_error = format!("{address}: timed out"),
            }
        }
        Err(RootError::Unreachable {
            addresses: self.addresses(),
            last_error,
        })
    }

    /// Status of every configured peer; an unreachable peer is reported with
    /// role "unreachable" rather than left out.
    pub async fn status_all(&self) -> Vec<RootStatusResponse> {
        let calls = self.peers.iter().map(|(address, client)| async move {
            let unreachable = RootStatusResponse {
                address: address.clone(),
                role: "unreachable".into(),
                ..Default::default()
            };
            let Some(mut client) = client.clone() else {
                return unreachable;
            };
            let call = client.status(RootStatusRequest {});
            match tokio::time::timeout(Duration::from_millis(ROOT_CALL_TIMEOUT_MS), call).await {
                Ok(Ok(response)) => response.into_inner(),
                _ => unreachable,
            }
        });
        futures::future::join_all(calls).await
    }
}
