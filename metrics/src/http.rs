//! `/metrics` and `/health` over HTTP/1 (axum), either on a listener of
//! their own ([`MetricsServer`], for root peers, coordinators and stores) or
//! mounted on an existing router ([`metrics_response`], [`health_response`],
//! for the gateway's dashboard listener).
//!
//! Invariants: at most [`HTTP_REQUESTS_MAX`] requests are served at once
//! (others get 503 at once); `/health` answers 200 only while the process
//! says it is serving, so a readiness probe never routes to a process that
//! is still starting or already stopping.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::registry::Registry;
use crate::render::CONTENT_TYPE;

/// Requests one metrics listener serves at once; scrapers and probes are
/// few, so more than this is a misbehaving client.
pub const HTTP_REQUESTS_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Bound, but the process is not serving yet (e.g. raft not started).
    Starting,
    Serving,
    /// Shutdown began; probes should route elsewhere.
    Stopping,
}

/// The readiness a process reports on `/health`; cloned into whatever
/// decides it (the process driver).
#[derive(Debug, Clone)]
pub struct Health(Arc<AtomicU8>);

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const STOPPING: u8 = 2;

impl Default for Health {
    fn default() -> Health {
        Health::new()
    }
}

impl Health {
    /// Starts as [`HealthState::Starting`].
    pub fn new() -> Health {
        Health(Arc::new(AtomicU8::new(STARTING)))
    }

    pub fn set_serving(&self) {
        self.0.store(SERVING, Ordering::Release);
    }

    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::Release);
    }

    pub fn state(&self) -> HealthState {
        match self.0.load(Ordering::Acquire) {
            SERVING => HealthState::Serving,
            STOPPING => HealthState::Stopping,
            _ => HealthState::Starting,
        }
    }
}

/// `GET /metrics`: the registry in the text exposition format.
pub fn metrics_response(registry: &Registry) -> Response {
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        registry.render(),
    )
        .into_response()
}

/// `GET /health`: 200 `ok` while serving, else 503 `starting`/`stopping`.
pub fn health_response(health: &Health) -> Response {
    let (status, body) = match health.state() {
        HealthState::Serving => (StatusCode::OK, "ok\n"),
        HealthState::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        HealthState::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

struct Endpoint {
    registry: Arc<Registry>,
    health: Health,
    requests: Semaphore,
}

/// `/metrics` and `/health` as a router of their own.
pub fn router(registry: Arc<Registry>, health: Health) -> Router {
    let endpoint = Arc::new(Endpoint {
        registry,
        health,
        requests: Semaphore::new(HTTP_REQUESTS_MAX),
    });
    Router::new()
        .route(
            "/metrics",
            get(|State(endpoint): State<Arc<Endpoint>>| async move {
                metrics_response(&endpoint.registry)
            }),
        )
        .route(
            "/health",
            get(|State(endpoint): State<Arc<Endpoint>>| async move {
                health_response(&endpoint.health)
            }),
        )
        .layer(middleware::from_fn_with_state(endpoint.clone(), bounded))
        .with_state(endpoint)
}

async fn bounded(State(endpoint): State<Arc<Endpoint>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = endpoint.requests.try_acquire() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many requests\n").into_response();
    };
    next.run(request).await
}

/// A metrics listener served on its own task; dropping it stops serving, so
/// a process driver just keeps it alive for as long as it runs.
pub struct MetricsServer {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Serves [`router`] on `listener` (bound by the caller, so a taken port
    /// fails the process start with the caller's own error).
    pub fn spawn(listener: TcpListener, registry: Arc<Registry>, health: Health) -> MetricsServer {
        let address = listener
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        tracing::info!(%address, "metrics on http://{address}/metrics");
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router(registry, health)).await {
                tracing::warn!(%error, "the metrics listener stopped");
            }
        });
        MetricsServer { address, task }
    }

    /// Binds `address` and serves [`router`] on it; the error is the bind's.
    pub async fn bind(
        address: std::net::SocketAddr,
        registry: Arc<Registry>,
        health: Health,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(address).await?;
        Ok(MetricsServer::spawn(listener, registry, health))
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap();
        (status, answer)
    }

    #[test]
    fn health_is_503_until_serving_and_again_once_stopping() {
        let health = Health::new();
        assert_eq!(
            health_response(&health).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_serving();
        assert_eq!(health_response(&health).status(), StatusCode::OK);
        health.set_stopping();
        assert_eq!(
            health_response(&health).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn the_server_answers_metrics_and_health_and_stops_when_dropped() {
        let registry = Arc::new(Registry::new());
        registry
            .counter("arbor_served_total", "Served.")
            .unwrap()
            .add(5);
        let health = Health::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = MetricsServer::spawn(listener, registry, health.clone());
        let address = server.local_addr();

        let (status, body) = get(address, "/health").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.ends_with("starting\n"), "{body}");
        health.set_serving();
        let (status, body) = get(address, "/health").await;
        assert_eq!(status, 200);
        assert!(body.ends_with("ok\n"), "{body}");

        let (status, body) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{body}"
        );
        assert!(body.contains("\narbor_served_total 5\n"), "{body}");
        let (status, _) = get(address, "/nothing").await;
        assert_eq!(status, 404);

        drop(server);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(address).await.is_err());
    }
}
