//! `arbor dev`'s control API: stop and start any child by name, on loopback.
//!
//! `GET /processes` lists every child (name, kind, address, state, pid);
//! `POST /processes/{name}/stop` sends SIGTERM and waits for the exit (SIGKILL
//! after [`super::CHILD_STOP_TIMEOUT_MS`]); `POST /processes/{name}/start`
//! starts it again with the same command line and data. The gateway's
//! dashboard forwards its buttons here.
//!
//! Invariants: the listener is bound by the caller on loopback only; every
//! POST must carry [`CONTROL_HEADER`], which a web page of another origin
//! cannot send without a CORS preflight this server never grants, so
//! browsing elsewhere cannot stop a process; the process lock is never held
//! across an await.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;

use super::{lock, spawn_child, terminate, Processes, CHILD_STOP_TIMEOUT_MS};

pub const CONTROL_HEADER: &str = "x-arbor-dev-control";
/// How often a stop looks whether the child has exited.
const STOP_POLL_MS: u64 = 50;

struct Control {
    processes: Processes,
    data: PathBuf,
}

/// Serves the control API until the runtime ends.
pub async fn serve(listener: TcpListener, processes: Processes, data: PathBuf) {
    let control = Arc::new(Control { processes, data });
    let router = Router::new()
        .route("/processes", get(list))
        .route("/processes/{name}/stop", post(stop))
        .route("/processes/{name}/start", post(start))
        .with_state(control);
    if let Err(error) = axum::serve(listener, router).await {
        eprintln!("arbor dev: the control API stopped: {error}");
    }
}

fn answer(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn refuse(status: StatusCode, message: String) -> Response {
    answer(status, json!({ "error": message }))
}

async fn list(State(control): State<Arc<Control>>) -> Response {
    let processes: Vec<Json> = lock(&control.processes)
        .iter()
        .map(|process| {
            let state = match (&process.child, process.stopping) {
                (Some(_), _) => "running",
                (None, true) => "stopping",
                (None, false) => "stopped",
            };
            json!({
                "name": process.name,
                "kind": process.kind,
                "address": process.address,
                "state": state,
                "pid": process.child.as_ref().map(std::process::Child::id),
            })
        })
        .collect();
    answer(StatusCode::OK, json!({ "processes": processes }))
}

async fn stop(
    State(control): State<Arc<Control>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !headers.contains_key(CONTROL_HEADER) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("missing {CONTROL_HEADER} header"),
        );
    }
    let child = {
        let mut processes = lock(&control.processes);
        let Some(process) = processes.iter_mut().find(|process| process.name == name) else {
            return refuse(StatusCode::NOT_FOUND, format!("no process named {name:?}"));
        };
        let Some(child) = process.child.take() else {
            return refuse(StatusCode::CONFLICT, format!("{name} is not running"));
        };
        process.stopping = true;
        child
    };
    println!("dev control: stopping {name}");
    let clean = wait_for_exit(child).await;
    if let Some(process) = lock(&control.processes)
        .iter_mut()
        .find(|process| process.name == name)
    {
        process.stopping = false;
    }
    let _ = std::fs::remove_file(control.data.join("pids").join(format!("{name}.pid")));
    answer(
        StatusCode::OK,
        json!({ "name": name, "state": "stopped", "clean": clean }),
    )
}

/// SIGTERM, then poll without blocking the runtime (the gateway and other
/// requests keep being served), SIGKILL at the deadline.
async fn wait_for_exit(mut child: std::process::Child) -> bool {
    terminate(&child);
    let deadline = Instant::now() + Duration::from_millis(CHILD_STOP_TIMEOUT_MS);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

async fn start(
    State(control): State<Arc<Control>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !headers.contains_key(CONTROL_HEADER) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("missing {CONTROL_HEADER} header"),
        );
    }
    let mut processes = lock(&control.processes);
    let Some(process) = processes.iter_mut().find(|process| process.name == name) else {
        return refuse(StatusCode::NOT_FOUND, format!("no process named {name:?}"));
    };
    if process.child.is_some() || process.stopping {
        return refuse(
            StatusCode::CONFLICT,
            format!("{name} is running or stopping"),
        );
    }
    match spawn_child(&control.data, &process.name, &process.args) {
        Ok(child) => {
            let pid = child.id();
            process.child = Some(child);
            println!("dev control: started {name} (pid {pid})");
            answer(
                StatusCode::OK,
                json!({ "name": name, "state": "running", "pid": pid }),
            )
        }
        Err(message) => refuse(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}
