//! The listener loop: accept Postgres connections and hand each to pgwire,
//! which answers SSLRequest with 'S' and serves TLS when the gateway has a
//! certificate, else with 'N'.
//!
//! Invariant: at most [`CONNECTIONS_MAX`] sessions run at once (a
//! CancelRequest's short connection counts too); when the shutdown future
//! completes the gateway stops accepting and ends every session it started.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pgwire::tokio::process_socket;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::error::GatewayError;
use crate::executor::Executor;
use crate::handler::GatewayHandlers;
use crate::startup::Security;

/// Concurrent Postgres sessions; more are refused by closing the socket.
pub(crate) const CONNECTIONS_MAX: usize = 1_024;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Serves without TLS, with trust authentication.
#[cfg(test)]
pub(crate) async fn serve(
    listener: TcpListener,
    executor: Executor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    serve_with(listener, executor, Security::trust(), shutdown).await
}

pub(crate) async fn serve_with(
    listener: TcpListener,
    executor: Executor,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let handlers = Arc::new(GatewayHandlers::new(executor, &security));
    let tls_acceptor = security.tls_acceptor;
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a Postgres connection failed");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        continue;
                    }
                };
                while sessions.try_join_next().is_some() {}
                if sessions.len() >= CONNECTIONS_MAX {
                    tracing::warn!(%peer, limit = CONNECTIONS_MAX, "refusing connection: too many sessions");
                    continue;
                }
                if let Err(error) = socket.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                }
                let handlers = handlers.clone();
                let tls_acceptor = tls_acceptor.clone();
                let connection = crate::dashboard::gateway_metrics().connection_opened();
                sessions.spawn(async move {
                    // Dropped with the session, however it ends (aborts too).
                    let _connection = connection;
                    if let Err(error) = process_socket(socket, tls_acceptor, handlers).await {
                        tracing::debug!(%peer, %error, "session ended with an error");
                    }
                });
            }
        }
    }
    tracing::info!(sessions = sessions.len(), "gateway shutting down");
    sessions.abort_all();
    while sessions.join_next().await.is_some() {}
    Ok(())
}
