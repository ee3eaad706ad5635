//! Where the catalog comes from: root's replicated state, behind a trait so
//! statements are testable with an in-memory catalog.
//!
//! Freshness mechanism ("every gateway sees a DDL change before its next
//! statement"): every statement that names a relation other than the
//! built-in `kv` and `system.*` tables starts with one linearizable
//! `ReadCatalogVersion` on root. Root answers it through its raft leader, so
//! a DDL that committed before the statement began is always visible. The
//! decoded catalog is cached by version and fetched (`ReadState`) only when
//! the version moved, so the cost is one small round trip.
//! DDL commits with `expected_version` = the version it read; on a mismatch
//! it re-reads and re-applies ([`DDL_ATTEMPTS_MAX`] times).
//!
//! Invariant: every RPC is bounded by [`ROOT_CONNECT_TIMEOUT`] and
//! [`ROOT_RPC_TIMEOUT`], and each call tries each root peer at most once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbor_catalog::{Catalog, CATALOG_BYTES_MAX};
use arbor_proto::root_client::RootClient;
use arbor_proto::{
    root_event, CatalogChanged, ProposeRequest, ReadStateRequest, RejectionCode, RootEvent,
    RootState,
};
use async_trait::async_trait;
use tonic::transport::{Channel, Endpoint};

use crate::error::GatewayError;

pub(crate) const ROOT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
pub(crate) const ROOT_RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Times a DDL statement re-reads and re-applies after losing a race.
pub(crate) const DDL_ATTEMPTS_MAX: usize = 8;

/// The outcome of proposing a new catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitOutcome {
    Committed,
    /// Someone else changed the catalog since `expected_version`.
    VersionMismatch,
}

#[async_trait]
pub(crate) trait CatalogSource: Send + Sync {
    /// The newest committed catalog (linearizable).
    async fn current(&self) -> Result<Arc<Catalog>, GatewayError>;
    /// Replaces the catalog if it is still at `expected_version`.
    async fn commit(
        &self,
        expected_version: u64,
        next: &Catalog,
        summary: &str,
    ) -> Result<CommitOutcome, GatewayError>;
}

/// The catalog as root keeps it. Connections are made once per peer and
/// reused (tonic channels reconnect by themselves).
pub(crate) struct RootCatalog {
    addresses: Vec<String>,
    channels: Mutex<Vec<Option<Channel>>>,
    cached: Mutex<Arc<Catalog>>,
}

impl RootCatalog {
    pub(crate) fn new(addresses: Vec<String>) -> Self {
        RootCatalog {
            channels: Mutex::new(vec![None; addresses.len()]),
            addresses,
            cached: Mutex::new(Arc::new(Catalog::empty())),
        }
    }

    fn channel(&self, index: usize) -> Result<Channel, String> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(Some(channel)) = channels.get(index) {
            return Ok(channel.clone());
        }
        let address = &self.addresses[index];
        let uri = if address.contains("://") {
            address.clone()
        } else {
            format!("http://{address}")
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|error| error.to_string())?
            .connect_timeout(ROOT_CONNECT_TIMEOUT)
            .timeout(ROOT_RPC_TIMEOUT)
            .connect_lazy();
        channels[index] = Some(channel.clone());
        Ok(channel)
    }

    fn unavailable(&self, reason: String) -> GatewayError {
        GatewayError::RootUnavailable {
            addresses: self.addresses.join(","),
            reason,
        }
    }

    /// Calls `call` on each root peer in turn until one answers.
    async fn ask_root<T, F, Fut>(&self, what: &str, call: F) -> Result<T, GatewayError>
    where
        F: Fn(RootClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last_reason = "no root addresses configured (--root)".to_owned();
        for index in 0..self.addresses.len() {
            let channel = match self.channel(index) {
                Ok(channel) => channel,
                Err(reason) => {
                    last_reason = reason;
                    continue;
                }
            };
            match call(RootClient::new(channel)).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    tracing::debug!(address = %self.addresses[index], %status, "root {what} failed");
                    last_reason = format!("{}: {}", self.addresses[index], status.message());
                }
            }
        }
        Err(self.unavailable(last_reason))
    }

    /// The catalog version alone: one small linearizable read per statement.
    async fn read_catalog_version(&self) -> Result<u64, GatewayError> {
        let answer = self
            .ask_root("ReadCatalogVersion", |mut root| async move {
                root.read_catalog_version(ReadStateRequest {}).await
            })
            .await?;
        Ok(answer.catalog_version)
    }

    async fn read_state(&self) -> Result<RootState, GatewayError> {
        self.ask_root("ReadState", |mut root| async move {
            root.read_state(ReadStateRequest {}).await
        })
        .await
    }
}

#[async_trait]
impl CatalogSource for RootCatalog {
    async fn current(&self) -> Result<Arc<Catalog>, GatewayError> {
        // The version is checked linearizably on every statement; the whole
        // catalog travels only when it moved.
        let version = self.read_catalog_version().await?;
        let cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if cached.version == version {
            return Ok(cached);
        }
        let state = self.read_state().await?;
        let catalog = Arc::new(Catalog::decode(state.catalog_version, &state.catalog)?);
        let mut slot = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.version < catalog.version {
            *slot = catalog.clone();
        }
        Ok(catalog)
    }

    async fn commit(
        &self,
        expected_version: u64,
        next: &Catalog,
        summary: &str,
    ) -> Result<CommitOutcome, GatewayError> {
        let bytes = next.encode();
        if bytes.len() > CATALOG_BYTES_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("a catalog of {} bytes", bytes.len()),
                limit: CATALOG_BYTES_MAX,
            });
        }
        let request = ProposeRequest {
            event: Some(RootEvent {
                kind: Some(root_event::Kind::CatalogChanged(CatalogChanged {
                    expected_version,
                    catalog: bytes,
                    summary: summary.to_owned(),
                })),
            }),
            lease_fence: None,
        };
        let mut last_reason = "no root addresses configured (--root)".to_owned();
        for index in 0..self.addresses.len() {
            let channel = match self.channel(index) {
                Ok(channel) => channel,
                Err(reason) => {
                    last_reason = reason;
                    continue;
                }
            };
            // A timeout after sending leaves the outcome unknown; the next
            // attempt then sees either the new version (mismatch, and the
            // re-applied DDL reports e.g. 42P07) or the old one.
            match RootClient::new(channel).propose(request.clone()).await {
                Ok(response) => {
                    let response = response.into_inner();
                    if response.accepted {
                        return Ok(CommitOutcome::Committed);
                    }
                    if response.rejection() == RejectionCode::CatalogVersionMismatch {
                        return Ok(CommitOutcome::VersionMismatch);
                    }
                    return Err(GatewayError::internal(format!(
                        "root rejected the catalog change: {:?} {}",
                        response.rejection(),
                        response.rejection_detail
                    )));
                }
                Err(status) => {
                    tracing::debug!(address = %self.addresses[index], %status, "root Propose failed");
                    last_reason = format!("{}: {}", self.addresses[index], status.message());
                }
            }
        }
        Err(self.unavailable(last_reason))
    }
}

/// A catalog kept in memory, for the executor's unit tests only: a running
/// gateway always reads and commits its catalog through root.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemoryCatalog {
    catalog: Mutex<Arc<Catalog>>,
}

#[async_trait]
#[cfg(test)]
impl CatalogSource for MemoryCatalog {
    async fn current(&self) -> Result<Arc<Catalog>, GatewayError> {
        Ok(self
            .catalog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone())
    }

    async fn commit(
        &self,
        expected_version: u64,
        next: &Catalog,
        _summary: &str,
    ) -> Result<CommitOutcome, GatewayError> {
        let mut slot = self
            .catalog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.version != expected_version {
            return Ok(CommitOutcome::VersionMismatch);
        }
        let mut committed = next.clone();
        committed.version = expected_version + 1;
        *slot = Arc::new(committed);
        Ok(CommitOutcome::Committed)
    }
}
