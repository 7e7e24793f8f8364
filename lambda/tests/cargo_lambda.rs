//! The Lambda form of `primary`, run as Lambda runs it: the example binary `cargo test` built
//! (`target/debug/examples/primary-lambda`) polls cargo-lambda's Runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`), and `cargo lambda invoke` sends it a Kinesis
//! event built from real click records; the function writes to the local S3 server.
//!
//! The emulator does not build the function: `cargo lambda watch --example …` runs `cargo
//! build`, which waits for ever for the build directory lock the running `cargo test` holds.
//! `cargo test` without `--test` builds the examples; with `--test cargo_lambda` alone, build
//! the example first (`cargo build -p watershed-lambda --example primary-lambda`), or the test
//! fails saying so.
//!
//! Needs cargo-lambda: when it is missing, the test installs it from PyPI (`pip install
//! cargo-lambda==1.9.2`, a prebuilt binary in the wheel); if that fails, the test fails with
//! the reason.

mod common;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use watershed_examples::analytics::ClickSpec;

const CARGO_LAMBDA: &str = "cargo-lambda==1.9.2";

/// Works when `program lambda --version` does.
fn runs(program: &Path) -> bool {
    Command::new(program)
        .args(["lambda", "--version"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The cargo-lambda binary (run as `cargo-lambda lambda <command>`, as cargo runs it): the one
/// on PATH, else one installed from PyPI into a virtual environment under the target directory
/// (reused by later runs), else one `pip install` puts in Python's own environment. Panics,
/// saying why, when it cannot be had.
fn cargo_lambda() -> PathBuf {
    let on_path = PathBuf::from("cargo-lambda");
    if runs(&on_path) {
        return on_path;
    }
    let venv = target_dir().join("cargo-lambda-venv");
    let in_venv = venv.join("bin").join("cargo-lambda");
    if runs(&in_venv) {
        return in_venv;
    }
    eprintln!("cargo-lambda missing: installing {CARGO_LAMBDA} from PyPI");
    let mut tried = Vec::new();
    let mut attempt = |what: &str, command: &mut Command| match command.output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            let said = String::from_utf8_lossy(&o.stderr);
            tried.push(format!("{what}: {}", said.trim()));
            false
        }
        Err(e) => {
            tried.push(format!("{what}: {e}"));
            false
        }
    };
    let venv_made = attempt(
        "python3 -m venv",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    );
    if venv_made
        && attempt(
            "pip install in the venv",
            Command::new(venv.join("bin").join("python3")).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                CARGO_LAMBDA,
            ]),
        )
        && runs(&in_venv)
    {
        return in_venv;
    }
    if attempt(
        "python3 -m pip install",
        Command::new("python3").args(["-m", "pip", "install", "--quiet", CARGO_LAMBDA]),
    ) {
        if runs(&on_path) {
            return on_path;
        }
        // pip's script directories need not be on PATH.
        let scripts = Command::new("python3")
            .args([
                "-c",
                "import os, sysconfig; print(sysconfig.get_path('scripts')); \
                 print(sysconfig.get_path('scripts', os.name + '_user'))",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for dir in scripts.lines() {
            let candidate = Path::new(dir.trim()).join("cargo-lambda");
            if runs(&candidate) {
                return candidate;
            }
        }
    }
    panic!(
        "cargo-lambda is not installed and could not be installed from PyPI ({CARGO_LAMBDA}); \
         install it (https://www.cargo-lambda.info/guide/installation.html, or `python3 -m pip \
         install {CARGO_LAMBDA}`) and run again. Tried:\n{}",
        tried.join("\n")
    );
}

/// `target/` (this test's executable is in `target/<profile>/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("the test executable is in target/<profile>/deps")
        .to_owned()
}

/// The example binary built next to this test's executable (`target/<profile>/deps/…`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let binary = profile.join("examples").join("primary-lambda");
    assert!(
        binary.is_file(),
        "the example binary {} is missing: `cargo test -p watershed-lambda` (without `--test`) \
         builds it; with `--test cargo_lambda`, run `cargo build -p watershed-lambda --example \
         primary-lambda` first",
        binary.display()
    );
    // A binary older than the sources it is built from was not rebuilt by this `cargo test`.
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![manifest.join("examples/primary-lambda.rs")];
    if let Ok(dir) = std::fs::read_dir(manifest.join("src")) {
        sources.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    let built = modified(&binary);
    if let Some(newer) = sources.iter().find(|s| modified(s) > built) {
        eprintln!(
            "warning: {} is newer than {}: rebuild it (`cargo build -p watershed-lambda \
             --example primary-lambda`) to test the current code",
            newer.display(),
            binary.display()
        );
    }
    binary
}

/// A child in its own process group; dropping it ends the whole group.
struct Group {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Group {
    fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Group {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Group { child, name, log }
    }

    /// Panics with the log when the process has ended.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); its output:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    fn signal(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The leader is gone; anything else left in its group goes too.
                self.signal("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A minimal package for the emulator to read with `cargo metadata` (it needs one, and the
/// workspace's would make it resolve the whole workspace).
fn emulator_dir(dir: &Path) -> PathBuf {
    let package = dir.join("emulator");
    std::fs::create_dir_all(package.join("src")).unwrap();
    std::fs::write(
        package.join("Cargo.toml"),
        "[package]\nname = \"primary-lambda-emulator\"\nversion = \"0.0.0\"\n\
         edition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(package.join("src/main.rs"), "fn main() {}\n").unwrap();
    package
}

/// Waits until something listens on `port`, while `emulator` runs.
fn wait_for_port(port: u16, emulator: &mut Group, within: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        emulator.check_alive();
        assert!(
            start.elapsed() < within,
            "the emulator did not listen on port {port} within {within:?}:\n{}",
            std::fs::read_to_string(&emulator.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Rule: the example binary, serving cargo-lambda's emulated Lambda Runtime API, answers a
/// Kinesis event of real clicks (one of them undecodable) with no batch item failures and
/// writes the raw archive, the page statistics and the dead letter to S3; no process of the
/// test is left behind.
#[tokio::test]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn primary_lambda_under_cargo_lambda_writes_the_analytics_to_s3() {
    let cargo_lambda = cargo_lambda();
    let binary = example_binary();
    let spec = ClickSpec {
        events: 40,
        malformed_every: 20,
        bot_every: 0,
        ..ClickSpec::default()
    };
    let payloads: Vec<Vec<u8>> = (0..spec.events).map(|n| spec.payload(n).1).collect();
    let event = common::event("shardId-000000000000", &payloads);
    let dir = tempfile_dir();
    let event_file = dir.join("event.json");
    std::fs::write(&event_file, serde_json::to_vec(&event).unwrap()).unwrap();
    let prefix = format!("lambda-test/cargo-lambda-{}", std::process::id());
    let port = free_port();
    let mut emulator = {
        let mut command = Command::new(&cargo_lambda);
        command
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address"])
            .args(["127.0.0.1", "--invoke-port", &port.to_string()])
            .current_dir(emulator_dir(&dir));
        Group::spawn("cargo lambda watch", command, dir.join("emulator.log"))
    };
    wait_for_port(port, &mut emulator, Duration::from_secs(60));
    let mut function = {
        let mut command = Command::new(&binary);
        command
            // What the emulator tells a function it does not start to set.
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "primary-lambda")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("WATERSHED_S3_PREFIX", &prefix);
        Group::spawn("primary-lambda", command, dir.join("function.log"))
    };
    let response = invoke(
        &cargo_lambda,
        port,
        &event_file,
        &mut function,
        Duration::from_secs(90),
    );
    let groups = [function.child.id(), emulator.child.id()];
    drop(function);
    drop(emulator);
    for group in groups {
        let alive = Command::new("kill")
            .args(["-0", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(!alive, "process group {group} still has processes");
    }
    assert_eq!(response, serde_json::json!({ "batchItemFailures": [] }));

    let s3 = watershed_sink_s3::amazon_s3_from_env().expect("S3 settings");
    let keys: Vec<String> = s3
        .list(Some(&prefix.as_str().into()))
        .map_ok(|o| o.location.to_string())
        .try_collect()
        .await
        .unwrap();
    for part in [
        "/raw/",
        "/page-stats/",
        "/category-stats/",
        "/error-rates/",
        "/dead-letters/",
    ] {
        assert!(
            keys.iter().any(|k| k.contains(part)),
            "no {part} object in {keys:?}"
        );
    }
    for k in keys {
        s3.delete(&k.as_str().into()).await.unwrap();
    }
    // Kept when the test fails: the logs of the emulator, the function and the invocation.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends the event to the function (the emulator's default function `_`, the one its
/// Runtime API at `/.rt` serves) and returns its answer.
fn invoke(
    cargo_lambda: &Path,
    port: u16,
    event_file: &Path,
    function: &mut Group,
    within: Duration,
) -> Value {
    let log = function.log.with_file_name("invoke.log");
    let mut command = Command::new(cargo_lambda);
    command
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
        .args([
            "--invoke-port",
            &port.to_string(),
            "--output-format",
            "json",
        ])
        .arg("--data-file")
        .arg(event_file);
    let mut invoke = Group::spawn("cargo lambda invoke", command, log.clone());
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = invoke.child.try_wait() {
            break status;
        }
        function.check_alive();
        assert!(
            start.elapsed() < within,
            "no answer within {within:?}; the function's output:\n{}",
            std::fs::read_to_string(&function.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "cargo lambda invoke failed ({status}): {output}\nthe function's output:\n{}",
        std::fs::read_to_string(&function.log).unwrap_or_default()
    );
    // The answer, pretty-printed, starts at the first line that opens an object.
    let at = match output.find("\n{") {
        _ if output.starts_with('{') => 0,
        Some(i) => i + 1,
        None => output.len(),
    };
    serde_json::Deserializer::from_str(&output[at..])
        .into_iter::<Value>()
        .next()
        .unwrap_or_else(|| Err(serde::de::Error::custom("no object")))
        .unwrap_or_else(|e| panic!("cargo lambda invoke answered no JSON ({e}): {output}"))
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("watershed-lambda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
