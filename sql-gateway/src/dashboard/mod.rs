//! The dashboard: the gateway's HTTP listener, serving one page (embedded in
//! the binary, no build step) and the JSON it polls.
//!
//! Routes: `/` (the page), `/dashboard.js`, `/dashboard.css`, `/api/cluster`
//! (every system table as JSON, see [`api`]), `/api/timeseries` (this
//! gateway's statements, errors and latency per second, see [`timeseries`]),
//! `/metrics` (Prometheus, see [`metrics`]), `/health`, and, only when the
//! gateway was started with a dev control URL (`arbor dev` passes one),
//! `/api/dev/...`, which forwards to the dev supervisor's control API (see
//! [`dev_control`]).
//!
//! Invariants:
//! - One source: `/api/cluster` is rendered by the same `SystemTable` code,
//!   from the same `ClusterViewSource`, as `SELECT * FROM system.*`.
//! - Bounded: at most [`HTTP_REQUESTS_MAX`] requests are served at once
//!   (others get 503), and the coordinator is asked at most once per
//!   [`VIEW_CACHE_MS`] however many pages poll.
//! - Without a dev control URL there is no way to stop a process from here:
//!   the `/api/dev` routes answer 404 and the page shows no buttons.

mod api;
mod dev_control;
mod metrics;
mod timeseries;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_metrics::{health_response, metrics_response, Health};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use crate::cluster_view::ClusterViewSource;

pub(crate) use dev_control::DevControl;
pub(crate) use metrics::{
    gateway_metrics, record_failed_parse, record_simple_query, record_statement,
};

/// Requests served at once; more are answered 503 at once.
pub(crate) const HTTP_REQUESTS_MAX: usize = 64;
/// How long one `ClusterView` answer is reused for every poller.
pub(crate) const VIEW_CACHE_MS: u64 = 250;
/// Header the page sends with every state-changing request. A page of another
/// origin cannot send it without a CORS preflight, which this server never
/// grants, so no other web page can stop a process.
pub(crate) const DASHBOARD_HEADER: &str = "x-arbor-dashboard";

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../assets/dashboard.css");

struct Dashboard {
    views: Arc<dyn ClusterViewSource>,
    dev_control: Option<DevControl>,
    cached: Mutex<Option<(Instant, serde_json::Value)>>,
    requests: Semaphore,
    /// Serving from the moment this listener serves: the gateway binds its
    /// Postgres listener before it starts the dashboard.
    health: Health,
}

/// Serves the dashboard on `listener` until the task is dropped or aborted.
pub(crate) async fn serve(
    listener: TcpListener,
    views: Arc<dyn ClusterViewSource>,
    dev_control: Option<DevControl>,
) -> std::io::Result<()> {
    let dashboard = Arc::new(Dashboard {
        views,
        dev_control,
        cached: Mutex::new(None),
        requests: Semaphore::new(HTTP_REQUESTS_MAX),
        health: Health::new(),
    });
    dashboard.health.set_serving();
    axum::serve(listener, router(dashboard)).await
}

fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route("/api/cluster", get(cluster))
        .route(
            "/api/timeseries",
            get(|| async { json_response(StatusCode::OK, &gateway_metrics().timeseries_json()) }),
        )
        .route(
            "/metrics",
            get(|| async { metrics_response(&gateway_metrics().registry) }),
        )
        .route(
            "/health",
            get(|State(dashboard): State<Arc<Dashboard>>| async move {
                health_response(&dashboard.health)
            }),
        )
        .route("/api/dev/processes", get(dev_processes))
        .route("/api/dev/processes/{name}/{action}", post(dev_action))
        .layer(middleware::from_fn_with_state(dashboard.clone(), bounded))
        .with_state(dashboard)
}

async fn bounded(
    State(dashboard): State<Arc<Dashboard>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = dashboard.requests.try_acquire() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard requests",
        );
    };
    next.run(request).await
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

async fn cluster(State(dashboard): State<Arc<Dashboard>>) -> Response {
    let mut cached = dashboard.cached.lock().await;
    if let Some((at, document)) = cached.as_ref() {
        if at.elapsed() < Duration::from_millis(VIEW_CACHE_MS) {
            return json_response(StatusCode::OK, document);
        }
    }
    match dashboard.views.cluster_view().await {
        Ok(view) => {
            let document = api::cluster_json(&view, dashboard.dev_control.is_some());
            let response = json_response(StatusCode::OK, &document);
            *cached = Some((Instant::now(), document));
            response
        }
        Err(error) => json_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

async fn dev_processes(State(dashboard): State<Arc<Dashboard>>) -> Response {
    let Some(control) = dashboard.dev_control.as_ref() else {
        return json_error(
            StatusCode::NOT_FOUND,
            "no dev control (not started by `arbor dev`)",
        );
    };
    control.processes().await
}

async fn dev_action(
    State(dashboard): State<Arc<Dashboard>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(control) = dashboard.dev_control.as_ref() else {
        return json_error(
            StatusCode::NOT_FOUND,
            "no dev control (not started by `arbor dev`)",
        );
    };
    if !headers.contains_key(DASHBOARD_HEADER) {
        return json_error(
            StatusCode::FORBIDDEN,
            "state-changing requests must carry the x-arbor-dashboard header",
        );
    }
    control.act(&name, &action).await
}

/// Binds the dashboard listener; the error names the address.
pub(crate) async fn bind(address: SocketAddr) -> Result<TcpListener, crate::GatewayError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| crate::GatewayError::Listen { address, source })
}
