//! Where system tables come from: the coordinator's `ClusterView` RPC,
//! behind a trait so rendering is testable with a hand-made view.
//!
//! Invariant: a system-table query makes at most one RPC per coordinator
//! address, each bounded by [`COORDINATOR_CONNECT_TIMEOUT`] and
//! [`COORDINATOR_RPC_TIMEOUT`], so a dead coordinator cannot hang a session.

use std::time::Duration;

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{
    ClusterViewRequest, ClusterViewResponse, CoordinatorStatus, CoordinatorStatusRequest,
};
use async_trait::async_trait;
use tonic::transport::Endpoint;

use crate::error::GatewayError;

pub(crate) const COORDINATOR_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
pub(crate) const COORDINATOR_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Root events fetched for `system.root_events` (newest first).
pub(crate) const ROOT_EVENTS_MAX: u32 = 1_000;

#[async_trait]
pub(crate) trait ClusterViewSource: Send + Sync {
    async fn cluster_view(&self) -> Result<ClusterViewResponse, GatewayError>;
}

/// Asks each coordinator in turn until one answers.
pub(crate) struct CoordinatorViews {
    addresses: Vec<String>,
}

impl CoordinatorViews {
    pub(crate) fn new(addresses: Vec<String>) -> Self {
        CoordinatorViews { addresses }
    }

    async fn ask(address: &str) -> Result<ClusterViewResponse, String> {
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|error| error.to_string())?
            .connect_timeout(COORDINATOR_CONNECT_TIMEOUT)
            .timeout(COORDINATOR_RPC_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| error.to_string())?;
        let mut client = CoordinatorClient::new(channel);
        let request = ClusterViewRequest {
            events_limit: ROOT_EVENTS_MAX,
        };
        client
            .cluster_view(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| status.message().to_owned())
    }
}

impl CoordinatorViews {
    /// Every configured coordinator's status, asked concurrently; one that
    /// does not answer is listed as unreachable rather than left out.
    async fn statuses(&self) -> Vec<CoordinatorStatus> {
        let asks = self.addresses.iter().map(|address| async move {
            let unreachable = CoordinatorStatus {
                address: address.clone(),
                role: "unreachable".to_owned(),
                ..Default::default()
            };
            let uri = if address.contains("://") {
                address.to_owned()
            } else {
                format!("http://{address}")
            };
            let Ok(endpoint) = Endpoint::from_shared(uri) else {
                return unreachable;
            };
            let endpoint = endpoint
                .connect_timeout(COORDINATOR_CONNECT_TIMEOUT)
                .timeout(COORDINATOR_RPC_TIMEOUT);
            let Ok(channel) = endpoint.connect().await else {
                return unreachable;
            };
            match CoordinatorClient::new(channel)
                .status(CoordinatorStatusRequest {})
                .await
            {
                Ok(answer) => answer.into_inner(),
                Err(_) => unreachable,
            }
        });
        futures::future::join_all(asks).await
    }
}

#[async_trait]
impl ClusterViewSource for CoordinatorViews {
    async fn cluster_view(&self) -> Result<ClusterViewResponse, GatewayError> {
        let mut last_reason = "no coordinator addresses configured".to_owned();
        for address in &self.addresses {
            match Self::ask(address).await {
                Ok(mut view) => {
                    view.coordinators = self.statuses().await;
                    return Ok(view);
                }
                Err(reason) => {
                    tracing::debug!(%address, %reason, "coordinator did not answer ClusterView");
                    last_reason = format!("{address}: {reason}");
                }
            }
        }
        Err(GatewayError::CoordinatorUnavailable {
            addresses: self.addresses.join(","),
            reason: last_reason,
        })
    }
}
