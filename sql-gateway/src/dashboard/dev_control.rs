//! Forwarding the page's stop/start buttons to `arbor dev`'s control API.
//!
//! The dev supervisor listens on loopback only; the gateway forwards to it so
//! the page never talks to a second origin. The client is a few lines of
//! HTTP/1.1 (one request per connection, `Connection: close`) because the
//! only peer is our own supervisor.
//!
//! Invariant: only loopback control URLs are accepted, process names are
//! short `[a-z0-9-]` words and actions are `stop` or `start`, so nothing the
//! page sends becomes anything else on the wire; every exchange is bounded
//! by [`DEV_CONTROL_TIMEOUT`] and [`DEV_CONTROL_RESPONSE_MAX`].

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::json_error;

/// A stop waits for the child to exit (up to the supervisor's own stop
/// timeout), so this is longer than that.
pub(crate) const DEV_CONTROL_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const DEV_CONTROL_RESPONSE_MAX: usize = 64 * 1024;
pub(crate) const PROCESS_NAME_MAX: usize = 64;
/// The header the supervisor requires, for the same reason as
/// [`super::DASHBOARD_HEADER`].
pub(crate) const DEV_CONTROL_HEADER: &str = "x-arbor-dev-control";

/// Where `arbor dev`'s control API listens (`host:port` on loopback).
#[derive(Debug, Clone)]
pub(crate) struct DevControl {
    authority: String,
}

impl DevControl {
    /// Accepts `http://127.0.0.1:PORT` (or `localhost`, `[::1]`).
    pub(crate) fn parse(url: &str) -> Result<DevControl, String> {
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("dev control URL {url:?} must start with http://"))?
            .trim_end_matches('/');
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("dev control URL {url:?} has no port"))?;
        port.parse::<u16>()
            .map_err(|_| format!("dev control URL {url:?} has an invalid port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(format!("dev control URL {url:?} is not on loopback"));
        }
        Ok(DevControl {
            authority: authority.to_owned(),
        })
    }

    pub(crate) async fn processes(&self) -> Response {
        self.forward("GET", "/processes").await
    }

    pub(crate) async fn act(&self, name: &str, action: &str) -> Response {
        if !valid_process_name(name) {
            return json_error(StatusCode::BAD_REQUEST, "invalid process name");
        }
        if action != "stop" && action != "start" {
            return json_error(StatusCode::BAD_REQUEST, "action must be stop or start");
        }
        self.forward("POST", &format!("/processes/{name}/{action}"))
            .await
    }

    async fn forward(&self, method: &str, path: &str) -> Response {
        match tokio::time::timeout(DEV_CONTROL_TIMEOUT, self.exchange(method, path)).await {
            Ok(Ok((status, body))) => {
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Ok(Err(reason)) => json_error(
                StatusCode::BAD_GATEWAY,
                &format!("dev control at {}: {reason}", self.authority),
            ),
            Err(_) => json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "dev control did not answer in time",
            ),
        }
    }

    async fn exchange(&self, method: &str, path: &str) -> Result<(StatusCode, String), String> {
        let mut stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|error| error.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{DEV_CONTROL_HEADER}: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.authority
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| error.to_string())?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(DEV_CONTROL_RESPONSE_MAX as u64 + 1)
            .read_to_end(&mut answer)
            .await
            .map_err(|error| error.to_string())?;
        if answer.len() > DEV_CONTROL_RESPONSE_MAX {
            return Err(format!(
                "answer longer than {DEV_CONTROL_RESPONSE_MAX} bytes"
            ));
        }
        parse_response(&answer)
    }
}

fn valid_process_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= PROCESS_NAME_MAX
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// Status and body of an HTTP/1.1 answer with a Content-Length (or none,
/// then the body runs to the end of the connection).
fn parse_response(answer: &[u8]) -> Result<(StatusCode, String), String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("answer has no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("answer has no status line")?;
    let length = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    let body = match length {
        Some(length) => body.get(..length).unwrap_or(body),
        None => body,
    };
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_control_urls_are_accepted() {
        assert!(DevControl::parse("http://127.0.0.1:7130").is_ok());
        assert!(DevControl::parse("http://localhost:7130/").is_ok());
        assert!(DevControl::parse("http://[::1]:7130").is_ok());
        assert!(DevControl::parse("http://10.0.0.1:7130").is_err());
        assert!(DevControl::parse("https://127.0.0.1:7130").is_err());
        assert!(DevControl::parse("http://127.0.0.1").is_err());
    }

    #[test]
    fn process_names_are_short_plain_words() {
        assert!(valid_process_name("coordinator-1"));
        assert!(!valid_process_name(""));
        assert!(!valid_process_name("../x"));
        assert!(!valid_process_name("a b"));
        assert!(!valid_process_name(&"a".repeat(PROCESS_NAME_MAX + 1)));
    }

    #[test]
    fn answers_are_cut_at_their_content_length() {
        let answer = b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}garbage";
        assert_eq!(
            parse_response(answer),
            Ok((StatusCode::CONFLICT, "{}".to_owned()))
        );
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
