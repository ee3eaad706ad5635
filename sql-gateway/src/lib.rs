//! `arbor-sql-gateway`: the PostgreSQL front door.
//!
//! Owns: the Postgres wire server (pgwire; simple and extended query
//! protocol, trust authentication for now), SQL parsing (sqlparser, Postgres
//! dialect), DDL (CREATE/DROP TABLE committed to root as `CatalogChanged`
//! with a version precondition), planning and execution of statements
//! against the region client, the text and binary wire formats of every
//! column type, the read-only `system.*` tables served from the
//! coordinator's `ClusterView`, and the mapping of every error to a SQLSTATE.
//!
//! Never knows: how regions are replicated or routed (that is
//! `arbor_raftstore::RegionClient`'s job), nor the key/row/catalog byte
//! layouts (that is `arbor_catalog`'s). **Architecture Invariant:** this is
//! the ONLY crate that knows pgwire and SQLSTATEs; one table
//! ([`GatewayError::sqlstate`]) maps errors to them.
//!
//! Invariants:
//! - A statement's writes go to the store in one batch with per-key
//!   conditions, so a failed statement (e.g. 23505) writes nothing.
//! - Every statement that names a user table plans against the catalog read
//!   linearizably from root when it starts (`catalog_source`), so a DDL
//!   change committed anywhere is visible to every gateway's next statement.
//! - Every read is bounded: point gets, or paged scans that stop at
//!   `SCAN_ROWS_MAX` rows examined with 54000 rather than exhausting memory;
//!   every value, key, statement and batch has a named size limit.
//! - Until transactions land, each statement autocommits on its own:
//!   BEGIN/COMMIT/ROLLBACK are accepted as no-ops (with the tags and
//!   transaction status drivers expect) and SET is accepted and ignored.
//! - After any statement error the session stays usable.
//!
//! Code map: `server` (listener) -> `handler` (pgwire seams) + `wire_format`
//! (values on the wire) -> `executor` (SQL text -> results; reads the
//! catalog via `catalog_source`) -> `plan` + `bind` + `expr` (pure planning)
//! -> `statement/*` (one module per statement kind, `ddl` for CREATE/DROP)
//! -> `store` (the `KvStore` seam over the region client) and
//! `cluster_view` + `system_tables` (system tables).

mod bind;
mod catalog_source;
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
mod wire_format;

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
    /// `host:port` of each root peer: where the catalog is read and DDL is
    /// committed. Required: the catalog lives only in root.
    pub root_addresses: Vec<String>,
}

/// Binds the Postgres listener, then serves sessions until `shutdown`
/// completes. Returns an error only if the listener cannot be bound.
pub async fn run_gateway(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    if config.root_addresses.is_empty() {
        // The catalog lives only in root; a gateway without it would invent
        // tables no other gateway sees and lose them on restart.
        return Err(GatewayError::RootUnavailable {
            addresses: String::new(),
            reason: "no root addresses given (--root)".into(),
        });
    }
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
    let catalogs: Arc<dyn catalog_source::CatalogSource> =
        Arc::new(catalog_source::RootCatalog::new(config.root_addresses));
    server::serve(listener, Executor::new(store, views, catalogs), shutdown).await
}
