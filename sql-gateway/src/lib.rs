//! `arbor-sql-gateway`: the PostgreSQL front door.
//!
//! Owns: the Postgres wire server (pgwire; simple and extended query
//! protocol, trust authentication for now), SQL parsing (sqlparser, Postgres
//! dialect), planning and execution of statements against the region client,
//! the read-only `system.*` tables served from the coordinator's
//! `ClusterView`, and the mapping of every error to a SQLSTATE.
//!
//! Never knows: how regions are replicated or routed (that is
//! `arbor_raftstore::RegionClient`'s job), nor the key/row byte layout (that
//! is `arbor_catalog`'s). **Architecture Invariant:** this is the ONLY crate
//! that knows pgwire and SQLSTATEs; one table ([`GatewayError::sqlstate`])
//! maps errors to them.
//!
//! Invariants:
//! - A statement's writes go to the store in one batch with per-key
//!   conditions, so a failed statement (e.g. 23505) writes nothing.
//! - Every read is bounded: point gets, or paged scans that stop at
//!   `SCAN_ROWS_MAX` rows examined with 54000 rather than exhausting memory;
//!   every value, key, statement and batch has a named size limit.
//! - Until transactions land, each statement autocommits on its own:
//!   BEGIN/COMMIT/ROLLBACK are accepted as no-ops (with the tags and
//!   transaction status drivers expect) and SET is accepted and ignored.
//! - After any statement error the session stays usable.
//!
//! Code map: `server` (listener) -> `handler` (pgwire seams) -> `executor`
//! (SQL text -> results) -> `plan` + `bind` + `expr` (pure planning) ->
//! `statement/*` (one module per statement kind) -> `store` (the
//! `KvStore` seam over the region client) and `cluster_view` +
//! `system_tables` (system tables).

mod bind;
mod cluster_view;
mod error;
mod executor;
mod expr;
mod handler;
mod plan;
mod server;
mod statement;
mod store;
mod system_tables;
mod value;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arbor_raftstore::RegionClient;
use tokio::net::TcpListener;

pub use error::GatewayError;

use cluster_view::CoordinatorViews;
use executor::Executor;

/// Where the gateway listens and which coordinators it asks for routes and
/// cluster views.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub pg_listen: SocketAddr,
    /// `host:port` of each coordinator.
    pub coordinator_addresses: Vec<String>,
}

/// Binds the Postgres listener, then serves sessions until `shutdown`
/// completes. Returns an error only if the listener cannot be bound.
pub async fn run_gateway(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let listener = TcpListener::bind(config.pg_listen)
        .await
        .map_err(|source| GatewayError::Listen {
            address: config.pg_listen,
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            address: config.pg_listen,
            source,
        })?;
    tracing::info!(%address, "gateway listening on {address}");
    let store = Arc::new(RegionClient::new(config.coordinator_addresses.clone()));
    let views = Arc::new(CoordinatorViews::new(config.coordinator_addresses));
    server::serve(listener, Executor::new(store, views), shutdown).await
}
