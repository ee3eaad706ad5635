//! The dashboard end to end: its JSON API against a harness cluster, and the
//! page itself in a real headless Chromium (driven through chromedriver's
//! WebDriver HTTP API by a tiny client below) against `arbor dev`, whose
//! control API the page's stop buttons need.
//!
//! The browser test fails (never skips) when Chromium is missing: run
//! `scripts/setup.sh`. It saves its screenshot as
//! `target/dashboard-failover.png`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arbor_tests::{arbor_binary, free_ports, Cluster};
use base64::Engine;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long `arbor dev` gets to serve a lease and region leaders.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the page gets to show a new lease holder after the stop.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_RESPONSE_MAX: usize = 32 * 1024 * 1024;
/// Ports `arbor dev` takes above `--base-port` (its control API is +30).
const DEV_PORT_SPAN: u16 = 30;

// ---------------------------------------------------------------- HTTP ----

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
fn http(
    method: &str,
    address: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // Read until the body is complete by its own framing: chromedriver may
    // keep the connection open despite `Connection: close`.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let read = stream
            .read(&mut buffer)
            .map_err(|e| format!("{path}: {e}"))?;
        answer.extend_from_slice(&buffer[..read]);
        if read == 0 || answer.len() > HTTP_RESPONSE_MAX || complete(&answer) {
            break;
        }
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let mut body = answer[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    if chunked(&head) {
        body = dechunk(&body)?;
    } else if let Some(length) = content_length(&head) {
        body.truncate(length);
    }
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

fn chunked(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
}

fn content_length(head: &str) -> Option<usize> {
    head.to_ascii_lowercase()
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
}

/// True once `answer` holds the headers and the whole body they announce.
fn complete(answer: &[u8]) -> bool {
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..split]);
    let body = &answer[split + 4..];
    if chunked(&head) {
        body.ends_with(b"0\r\n\r\n")
    } else {
        content_length(&head).is_some_and(|length| body.len() >= length)
    }
}

fn dechunk(mut chunked: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&chunked[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        chunked = &chunked[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(chunked.get(..size).ok_or("short chunk")?);
        chunked = chunked.get(size + 2..).ok_or("short chunk")?;
    }
}

fn get_json(address: &str, path: &str) -> Result<(u16, Value), String> {
    let (status, body) = http("GET", address, path, None)?;
    let value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))?;
    Ok((status, value))
}

fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match probe() {
            Ok(value) => return value,
            Err(reason) => last = reason,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {timeout:?} waiting for {what}: {last}");
}

/// The lease holder and generation `/api/cluster` reports, once the cluster
/// has a lease, a root leader and a leader for every region.
fn settled_lease(http_address: &str) -> Result<(String, i64), String> {
    let (status, document) = get_json(http_address, "/api/cluster")?;
    if status != 200 {
        return Err(format!("/api/cluster answered {status}: {document}"));
    }
    let tables = &document["tables"];
    let lease = &tables["leases"]["rows"][0];
    let holder = lease["holder"].as_str().ok_or("no lease yet")?.to_owned();
    let generation = lease["generation"].as_i64().ok_or("no generation")?;
    let regions = tables["regions"]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if regions.is_empty() || regions.iter().any(|r| r["leader_store_id"].is_null()) {
        return Err("regions without a leader".into());
    }
    let leader = tables["root_peers"]["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|peer| peer["role"] == "leader");
    if !leader {
        return Err("no root leader".into());
    }
    Ok((holder, generation))
}

// ----------------------------------------------------- the API, no browser --

#[tokio::test(flavor = "multi_thread")]
async fn cluster_api_serves_every_system_table_and_no_dev_controls_outside_dev() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(data.path());
    let client = cluster.ready_client().await;
    let address = format!("127.0.0.1:{}", cluster.http_port);
    let (holder, generation) = wait_until(CLUSTER_READY_TIMEOUT, "a settled cluster", || {
        settled_lease(&address)
    });
    let (_, document) = get_json(&address, "/api/cluster").expect("api answers");
    assert_eq!(document["dev_control"], false, "no dev control outside dev");
    for table in [
        "regions",
        "leases",
        "root_events",
        "stores",
        "root_peers",
        "coordinators",
    ] {
        let shown = &document["tables"][table];
        assert!(shown["rows"].is_array(), "{table} missing: {document}");
        assert!(
            shown["durability"] == "truth" || shown["durability"] == "view",
            "{table} has no durability label"
        );
    }
    // One source: the lease the API shows is the one SQL shows.
    let rows = client
        .query("SELECT holder, generation FROM system.leases", &[])
        .await
        .expect("system.leases");
    let sql_holder: String = rows[0].get(0);
    let sql_generation: i64 = rows[0].get(1);
    assert_eq!((sql_holder, sql_generation), (holder, generation));

    let (status, _) = http("GET", &address, "/api/dev/processes", None).expect("answers");
    assert_eq!(status, 404, "the dev routes exist only under arbor dev");
    let (status, _) =
        http("POST", &address, "/api/dev/processes/store-1/stop", None).expect("answers");
    assert_eq!(status, 404);
    let (status, page) = http("GET", &address, "/", None).expect("page");
    assert_eq!(status, 200);
    assert!(page.contains("/dashboard.js"), "the page loads its script");
}

// ------------------------------------------------------------ arbor dev ----

/// `arbor dev` as a child process; SIGTERM (then SIGKILL) on drop.
struct DevCluster {
    child: Child,
    data_dir: PathBuf,
    pg_port: u16,
    http_address: String,
    control_address: String,
}

impl DevCluster {
    fn start(data_dir: &Path) -> DevCluster {
        let ports = free_ports(2);
        let base_port = free_port_range(DEV_PORT_SPAN);
        let stdout = std::fs::File::create(data_dir.join("dev.out")).expect("dev log");
        let stderr = stdout.try_clone().expect("dev log");
        let mut command = Command::new(arbor_binary());
        command
            .args(["dev", "--data"])
            .arg(data_dir.join("cluster"))
            .args(["--pg-port", &ports[0].to_string()])
            .args(["--http-port", &ports[1].to_string()])
            .args(["--base-port", &base_port.to_string()])
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: prctl only affects the child: it dies with this test.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        DevCluster {
            child: command.spawn().expect("start arbor dev"),
            data_dir: data_dir.to_path_buf(),
            pg_port: ports[0],
            http_address: format!("127.0.0.1:{}", ports[1]),
            control_address: format!(
                "127.0.0.1:{}",
                u32::from(base_port) + u32::from(DEV_PORT_SPAN)
            ),
        }
    }

    fn output(&self) -> String {
        let mut text = std::fs::read_to_string(self.data_dir.join("dev.out")).unwrap_or_default();
        for name in ["coordinator-1", "coordinator-2", "gateway"] {
            let log = self
                .data_dir
                .join("cluster/logs")
                .join(format!("{name}.log"));
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!(
                "\n--- {name} ---\n{}",
                lines[lines.len().saturating_sub(10)..].join("\n")
            ));
        }
        text
    }

    fn assert_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            other => panic!("arbor dev exited ({other:?}):\n{}", self.output()),
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; dev stops its children in order.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A base port whose next `span` ports are all free now, below the kernel's
/// ephemeral range so outgoing connections do not take them meanwhile.
fn free_port_range(span: u16) -> u16 {
    let seed = u32::from(std::process::id() as u16);
    for attempt in 0..200u32 {
        let base = 20_000 + ((seed * 7_919 + attempt * 104_729) % 10_000) as u16;
        let held: Vec<TcpListener> = (1..=span)
            .filter_map(|offset| TcpListener::bind(("127.0.0.1", base + offset)).ok())
            .collect();
        if held.len() == usize::from(span) {
            return base;
        }
    }
    panic!("no free range of {span} ports between 20000 and 30000");
}

// ------------------------------------------------------------- WebDriver ----

/// chromedriver as a child process plus one session in headless Chromium.
struct Browser {
    driver: Child,
    address: String,
    session: String,
}

/// The W3C WebDriver key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(profile_dir: &Path) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run scripts/setup.sh (it installs Debian's chromium and chromium-driver)"
            );
        }
        let port = free_ports(1)[0];
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl only affects the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let driver = command.spawn().expect("start chromedriver");
        let address = format!("127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "chromedriver", || {
            let (_, status) = get_json(&address, "/status")?;
            status["value"]["ready"]
                .as_bool()
                .filter(|ready| *ready)
                .map(|_| ())
                .ok_or("not ready".into())
        });
        let user_data_dir = profile_dir.join("chromium-profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1500",
                    format!("--user-data-dir={}", user_data_dir.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Browser {
            driver,
            address,
            session: String::new(),
        };
        let answer = browser.command("POST", "/session", Some(&capabilities));
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        browser
    }

    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = http(method, &self.address, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!(
            status, 200,
            "WebDriver {method} {path} answered {status}: {value}"
        );
        value
    }

    fn session_command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)["value"].clone()
    }

    fn go(&self, url: &str) {
        self.session_command("POST", "/url", Some(&json!({ "url": url })));
    }

    fn text_of(&self, element_id: &str) -> String {
        let script =
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;";
        let value = self.session_command(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": [element_id]})),
        );
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Finds and clicks; retries while the page re-renders the element
    /// between the find and the click (a stale element reference).
    fn click(&self, css: &str) {
        wait_until(Duration::from_secs(5), &format!("a click on {css}"), || {
            let find = json!({"using": "css selector", "value": css});
            let found = self.try_session_command("POST", "/element", &find)?;
            let id = found[ELEMENT_KEY]
                .as_str()
                .ok_or(format!("no element {css}: {found}"))?;
            self.try_session_command("POST", &format!("/element/{id}/click"), &json!({}))
                .map(|_| ())
        });
    }

    fn try_session_command(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let (status, text) = http(method, &self.address, &path, Some(body))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}: {text}"))?;
        if status == 200 {
            Ok(value["value"].clone())
        } else {
            Err(format!("{method} {path} answered {status}: {value}"))
        }
    }

    /// Console messages at level SEVERE since the last call.
    fn console_errors(&self) -> Vec<String> {
        let entries = self.session_command("POST", "/se/log", Some(&json!({"type": "browser"})));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn screenshot(&self, path: &Path) {
        let top = json!({"script": "window.scrollTo(0, 0); return true;", "args": []});
        self.session_command("POST", "/execute/sync", Some(&top));
        let encoded = self.session_command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("the screenshot is base64");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                "DELETE",
                &self.address,
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/` (the test binary lives in `target/<profile>/deps/`).
fn target_dir() -> PathBuf {
    arbor_binary()
        .parent()
        .and_then(Path::parent)
        .expect("the arbor binary lives in target/<profile>/")
        .to_path_buf()
}

/// A few statements through `arbor dev`'s gateway, so the chart has
/// something to draw.
fn run_statements(pg_port: u16) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let config =
            format!("host=127.0.0.1 port={pg_port} user=arbor dbname=arbor connect_timeout=5");
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .expect("connect to arbor dev");
        tokio::spawn(connection);
        for i in 0..5 {
            client
                .simple_query(&format!("INSERT INTO kv VALUES ('chart-{i}', 'v')"))
                .await
                .expect("insert");
            client
                .simple_query(&format!("SELECT v FROM kv WHERE k = 'chart-{i}'"))
                .await
                .expect("select");
        }
    });
}

/// (points, statements) the page's chart shows, once it has drawn a
/// throughput line over complete seconds that include statements.
fn chart_shown(browser: &Browser) -> Result<(u64, u64), String> {
    let script = "const c = document.getElementById('timeseries-chart'); \
        if (!c) return null; \
        return [Number(c.dataset.points || 0), Number(c.dataset.statements || 0), \
                c.querySelectorAll('polyline.throughput').length, \
                c.querySelectorAll('polyline.p99').length];";
    let shown = browser.session_command(
        "POST",
        "/execute/sync",
        Some(&json!({"script": script, "args": []})),
    );
    let numbers: Vec<u64> = shown
        .as_array()
        .ok_or(format!("no chart element: {shown}"))?
        .iter()
        .map(|n| n.as_u64().unwrap_or(0))
        .collect();
    match numbers.as_slice() {
        [points, statements, throughput_lines, latency_lines]
            if *points > 0 && *statements >= 10 && *throughput_lines > 0 && *latency_lines > 0 =>
        {
            Ok((*points, *statements))
        }
        _ => Err(format!(
            "chart shows {numbers:?} (points, statements, lines)"
        )),
    }
}

#[test]
fn page_shows_failover_after_its_button_stops_the_lease_holder() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut dev = DevCluster::start(data.path());
    let http_address = dev.http_address.clone();
    let (holder, generation) = wait_until(CLUSTER_READY_TIMEOUT, "arbor dev to settle", || {
        dev.assert_running()?;
        settled_lease(&http_address).map_err(|e| format!("{e}\n{}", dev.output()))
    });

    let browser = Browser::start(data.path());
    browser.go(&format!("http://{http_address}/"));
    let shown_holder = wait_until(
        Duration::from_secs(20),
        "the page to show the lease",
        || {
            let shown = browser.text_of("lease-holder");
            let leader = browser.text_of("root-leader");
            let stop = format!("button[data-process=\"{shown}\"][data-action=\"stop\"]");
            let has_button = browser
                .session_command(
                    "POST",
                    "/elements",
                    Some(&json!({"using": "css selector", "value": stop})),
                )
                .as_array()
                .is_some_and(|found| !found.is_empty());
            if shown.starts_with("coordinator-") && leader.starts_with("peer ") && has_button {
                Ok(shown)
            } else {
                Err(format!(
                    "holder {shown:?}, root leader {leader:?}, stop button {has_button}"
                ))
            }
        },
    );
    assert_eq!(
        shown_holder, holder,
        "the page shows the holder the API reports"
    );
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors after load: {errors:?}");

    // The throughput/latency chart draws the statements this gateway serves.
    run_statements(dev.pg_port);
    let (points, statements) = wait_until(
        Duration::from_secs(10),
        "the chart to show our statements",
        || chart_shown(&browser),
    );
    eprintln!("chart: {points} points, {statements} statements");

    // The processes panel's button for the holder, as a person would click it.
    browser.click(&format!(
        "#processes button[data-process=\"{holder}\"][data-action=\"stop\"]"
    ));
    let started = Instant::now();
    let (new_holder, new_generation) =
        wait_until(FAILOVER_TIMEOUT, "a new lease holder on the page", || {
            let shown = browser.text_of("lease-holder");
            let shown_generation: i64 = browser.text_of("lease-generation").parse().unwrap_or(0);
            if shown.starts_with("coordinator-") && shown != holder && shown_generation > generation
            {
                Ok((shown, shown_generation))
            } else {
                Err(format!("holder {shown:?} generation {shown_generation}"))
            }
        });
    eprintln!(
        "failover shown after {:?}: {holder} (generation {generation}) -> {new_holder} (generation {new_generation})",
        started.elapsed()
    );
    // The stopped holder is shown as stopped, and dev did not treat it as a crash.
    wait_until(
        Duration::from_secs(10),
        "the holder shown as stopped",
        || {
            let (_, processes) = get_json(&http_address, "/api/dev/processes")?;
            let state = processes["processes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == holder.as_str())
                .map(|p| p["state"].clone());
            (state == Some(json!("stopped")))
                .then_some(())
                .ok_or(format!("{state:?}"))
        },
    );
    std::thread::sleep(Duration::from_millis(1_500));
    dev.assert_running().expect("dev still runs");
    let screenshot = target_dir().join("dashboard-failover.png");
    browser.screenshot(&screenshot);
    eprintln!("screenshot: {}", screenshot.display());
    let errors = browser.console_errors();
    assert!(
        errors.is_empty(),
        "console errors during failover: {errors:?}"
    );

    // Start it again from the page: it comes back as a standby.
    browser.click(&format!(
        "#processes button[data-process=\"{holder}\"][data-action=\"start\"]"
    ));
    wait_until(
        Duration::from_secs(10),
        "the old holder running again",
        || {
            let (_, processes) = get_json(&dev.control_address, "/processes")?;
            let running = processes["processes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == holder.as_str() && p["state"] == "running");
            running.then_some(()).ok_or(format!("{processes}"))
        },
    );
}
