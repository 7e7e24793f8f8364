//! The hybrid example's status page, in a real browser (headless Chromium), while data flows:
//! it draws every node of the graph and shows non-zero rates. Needs the local brokers and
//! Chromium (`scripts/chromium` installs it). A screenshot is kept at target/status-page.png.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("Chromium is missing (looked for /usr/bin/chromium): run scripts/chromium to install it")
    })
}

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The body of `GET path`, or `None` while nothing answers there.
fn get(address: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn json(address: SocketAddr, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&get(address, path)?).ok()
}

/// Waits until the source has read records and reads them now, i.e. data flows.
fn wait_for_flowing_data(address: SocketAddr, log: &Path) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(90) {
        let rate = json(address, "/api/metrics")
            .and_then(|m| m["nodes"]["clicks"]["records_in_per_second"].as_f64());
        if rate.is_some_and(|r| r > 0.0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "no records flowing through the hybrid example within 90 s; its stderr:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The page as Chromium leaves it after `budget_ms` of virtual time (several polls), and a
/// screenshot of it at `screenshot`.
fn render_in_chromium(url: &str, screenshot: &Path) -> String {
    let browser = chromium();
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        let output = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=6000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "chromium failed: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    };
    run(&[
        format!("--screenshot={}", screenshot.display()),
        "--window-size=1700,820".into(),
    ]);
    run(&["--dump-dom".into()])
}

/// The value of `attribute` on the element whose `data-node` is `node`, as the DOM shows it.
fn node_attribute(dom: &str, node: &str, attribute: &str) -> Option<f64> {
    let start = dom.find(&format!("data-node=\"{node}\""))?;
    let tag = &dom[dom[..start].rfind('<')?..];
    let tag = &tag[..tag.find('>')?];
    let value = tag.split(&format!("{attribute}=\"")).nth(1)?;
    value[..value.find('"')?].parse().ok()
}

/// Rule: against a running hybrid example with data flowing, the status page in a browser
/// draws every node of `/api/graph` and shows the source reading records (a non-zero rate),
/// the checkpoints table and the lag table.
#[test]
#[ignore = "needs local brokers: scripts/brokers up"]
fn the_status_page_draws_every_node_with_live_rates_in_a_browser() {
    chromium();
    let input = unique("status-clicks");
    let dir = tempfile::tempdir().unwrap();
    let _load = Running(
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([
                "kafka", "--topic", &input, "--events", "400000", "--rate", "4000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The topic exists once loadgen has started writing.
    std::thread::sleep(Duration::from_secs(3));
    let address = free_address();
    let id = unique("status");
    let mut args = hybrid_args(
        &input,
        &unique("status-stats"),
        &id,
        &unique("status-hybrid"),
        &dir.path().join("checkpoints"),
    );
    *args.last_mut().unwrap() = address.to_string();
    let log = dir.path().join("hybrid.log");
    let _hybrid = Running(spawn_hybrid(&args, &log));
    wait_for_flowing_data(address, &log);

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("status-page.png");
    let dom = render_in_chromium(&format!("http://{address}/"), &screenshot);
    let graph = json(address, "/api/graph").expect("the graph");
    for node in graph["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        assert!(
            dom.contains(&format!("data-node=\"{name}\"")),
            "node `{name}` is not drawn; the DOM:\n{dom}"
        );
    }
    let rate = node_attribute(&dom, "clicks", "data-in-per-second");
    assert!(
        rate.is_some_and(|r| r > 0.0),
        "the source's rate is {rate:?}; the DOM:\n{dom}"
    );
    for row in ["completed", "last-duration", "age", "dead-letters"] {
        assert!(
            dom.contains(&format!("data-key=\"{row}\"")),
            "row {row}:\n{dom}"
        );
    }
    assert!(
        dom.contains("<div id=\"error\"></div>"),
        "the page shows an error:\n{dom}"
    );
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
}
