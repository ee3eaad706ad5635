//! `arbor-sql-gateway`: the PostgreSQL front door.
//!
//! Owns: the Postgres wire server (pgwire; simple and extended query
//! protocol, TLS with rustls, trust or SCRAM-SHA-256 authentication,
//! CancelRequest, the startup ParameterStatus set), SQL parsing (sqlparser,
//! Postgres dialect), DDL (CREATE/DROP TABLE committed to root as `CatalogChanged`
//! with a version precondition), planning and execution of statements
//! against the region client, the text and binary wire formats of every
//! column type, the read-only `system.*` tables served from the
//! coordinator's `ClusterView`, the `pg_catalog`/`information_schema` views
//! and session functions that psql and drivers query for metadata
//! (`pg_catalog`: a small general evaluator over relations rendered from the
//! catalog snapshot), parameter type inference for Describe
//! (`parameter_types`), and the mapping of every error to a SQLSTATE.
//!
//! Never knows: how regions are replicated or routed (that is
//! `arbor_raftstore::RegionClient`'s job), nor the key/row/catalog byte
//! layouts (that is `arbor_catalog`'s). **Architecture Invariant:** this is
//! the ONLY crate that knows pgwire and SQLSTATEs; one table
//! ([`GatewayError::sqlstate`]) maps errors to them.
//!
//! Invariants:
//! - Every statement runs in a transaction (`transaction`): implicit, or an
//!   explicit BEGIN … COMMIT block with snapshot isolation. Writes are
//!   buffered in the gateway and committed all at once, so a failed
//!   statement (e.g. 23505) or transaction writes nothing.
//! - Every statement that names a user table plans against the catalog read
//!   linearizably from root when it starts (`catalog_source`), so a DDL
//!   change committed anywhere is visible to every gateway's next statement.
//! - Every read is bounded: point gets, or paged scans that stop at
//!   `SCAN_ROWS_MAX` rows examined with 54000 rather than exhausting memory;
//!   every value, key, statement and batch has a named size limit.
//! - Settings are per session (`settings`): SET / RESET / SHOW /
//!   `set_config` / `current_setting` see the session's own values, a SET
//!   in a block that rolls back is undone, and a value Arbor cannot honour
//!   (a non-UTF8 encoding, a non-UTC time zone, SERIALIZABLE) is refused
//!   rather than stored; changed reported settings reach the client as
//!   ParameterStatus before ReadyForQuery.
//! - After any statement error the session stays usable; so after a
//!   cancelled statement (57014), which also fails an open block.
//! - Passwords are turned into SCRAM verifiers at startup and never kept or
//!   logged; a gateway with an unusable certificate, key or users file
//!   refuses to start, naming the file.
//! - Catalog queries are pure functions of (catalog snapshot, query,
//!   parameters); OIDs are stable (Postgres' for built-ins, derived from the
//!   never-reused table id for user tables).
//!
//! Code map: `server` (listener; TLS from `tls`) -> `startup` (encryption
//! check, authentication from `auth`, ParameterStatus, cancel keys) ->
//! `handler` (pgwire seams, cancellation) + `wire_format`
//! (values on the wire) -> `executor` (SQL text -> results; reads the
//! catalog via `catalog_source`) -> `plan` + `bind` + `expr` (pure planning)
//! -> `statement/*` (one module per statement kind, `ddl` for CREATE/DROP,
//! `admin` for `ALTER TABLE ... SPLIT AT` and `SHOW REGIONS FROM TABLE`,
//! which are recognised in the token stream before sqlparser parses)
//! -> `transaction` (session state, write buffer, snapshot reads merged
//! with own writes; `settings` holds each session's SET values) -> `store` (the `Storage` seam over the region client) and
//! `cluster_view` + `system_tables` (system tables); `pg_catalog` answers
//! queries over catalog relations and FROM-less SELECTs the planner lacks
//! functions for; `parameter_types` types `$n` for Parse/Describe; `dashboard` (the HTTP
//! page, `/api/cluster` rendered by the same `system_tables` code,
//! `/api/timeseries`, and the gateway's `/metrics` and `/health`).

mod auth;
mod bind;
mod cancel;
mod catalog_source;
mod cluster_view;
mod coordinator_admin;
mod dashboard;
mod error;
mod executor;
mod expr;
mod handler;
mod parameter_types;
mod pg_catalog;
mod plan;
mod server;
mod settings;
mod startup;
mod statement;
mod store;
mod system_tables;
mod tls;
mod transaction;
mod value;
mod wire_format;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use auth::{AuthConfig, AuthMethod};
pub use error::GatewayError;
pub use tls::TlsConfig;

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
    /// Where the dashboard (HTTP: the page, its APIs, `/metrics`, `/health`) listens;
    /// `None` serves no dashboard.
    pub http_listen: Option<SocketAddr>,
    /// `arbor dev`'s control API (`http://127.0.0.1:PORT`): when set, the
    /// dashboard offers stop/start buttons that forward to it.
    pub dev_control: Option<String>,
    /// The certificate and key TLS is served with; `None` answers
    /// SSLRequest with 'N' (plain connections only).
    pub tls: Option<TlsConfig>,
    /// How Postgres clients authenticate (trust by default).
    pub auth: AuthConfig,
}

/// Loads the TLS files and users, binds the Postgres listener, then serves
/// sessions until `shutdown` completes. Returns an error only if the
/// security settings are unusable or the listener cannot be bound.
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
    // Before binding: a misconfigured gateway must not look healthy.
    let security = startup::Security::load(config.tls.as_ref(), &config.auth)?;
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
    tracing::info!(
        %address,
        tls = security.tls_acceptor.is_some(),
        auth = ?config.auth.method,
        "gateway listening on {address}"
    );
    let store = Arc::new(store::ClusterStorage::new(
        config.coordinator_addresses.clone(),
    ));
    let views: Arc<dyn cluster_view::ClusterViewSource> =
        Arc::new(CoordinatorViews::new(config.coordinator_addresses));
    let dashboard = start_dashboard(&config.http_listen, config.dev_control, views.clone()).await?;
    let catalogs: Arc<dyn catalog_source::CatalogSource> =
        Arc::new(catalog_source::RootCatalog::new(config.root_addresses));
    let executor = Executor::new(store, views, catalogs);
    let served = server::serve_with(listener, executor, security, shutdown).await;
    if let Some(dashboard) = dashboard {
        dashboard.abort();
    }
    served
}

/// Binds the dashboard listener (so a taken port fails the start) and serves
/// it on its own task, which the caller aborts at shutdown.
async fn start_dashboard(
    http_listen: &Option<SocketAddr>,
    dev_control: Option<String>,
    views: Arc<dyn cluster_view::ClusterViewSource>,
) -> Result<Option<tokio::task::JoinHandle<()>>, GatewayError> {
    let Some(http_listen) = *http_listen else {
        return Ok(None);
    };
    let dev_control = dev_control
        .as_deref()
        .map(dashboard::DevControl::parse)
        .transpose()
        .map_err(|message| GatewayError::Internal { message })?;
    let listener = dashboard::bind(http_listen).await?;
    let address = listener.local_addr().unwrap_or(http_listen);
    tracing::info!(%address, dev_control = dev_control.is_some(), "dashboard on http://{address}");
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = dashboard::serve(listener, views, dev_control).await {
            tracing::warn!(%error, "the dashboard listener stopped");
        }
    })))
}
