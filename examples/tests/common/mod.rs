//! What the example tests share: names, broker addresses, the hybrid process, S3 output.
#![allow(dead_code)] // each test file uses a part

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use std::io::Read;
use std::process::{Child, Command, Stdio};

#[allow(unused_imports)] // each test file uses a part
pub use watershed_testkit::clients::{committed_consumer, read_committed_to_end};
#[allow(unused_imports)] // each test file uses a part
pub use watershed_testkit::env::{kafka_brokers as brokers, unique};

/// The hybrid example's arguments: read `input`, write `output`, as consumer group and
/// pipeline `id`, archive under the S3 `prefix`, checkpoints in `checkpoints`, no metrics
/// endpoint (tests run side by side).
pub fn hybrid_args(
    input: &str,
    output: &str,
    id: &str,
    prefix: &str,
    checkpoints: &std::path::Path,
) -> Vec<String> {
    [
        "--input",
        input,
        "--output",
        output,
        "--group",
        id,
        "--id",
        id,
        "--s3-prefix",
        prefix,
        "--checkpoints",
        checkpoints.to_str().expect("a UTF-8 path"),
        "--metrics",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts the hybrid example with `args`, its stderr appended to `log`.
pub fn spawn_hybrid<S: AsRef<std::ffi::OsStr>>(args: &[S], log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_hybrid"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// Every line of every object under `prefix` (gzip or plain JSON lines).
pub async fn s3_lines(prefix: &str) -> Vec<String> {
    let store = watershed_sink_s3::amazon_s3_from_env().unwrap();
    let objects: Vec<_> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut lines = Vec::new();
    for o in objects {
        let bytes = store.get(&o.location).await.unwrap().bytes().await.unwrap();
        let mut text = String::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .unwrap();
        } else {
            text = String::from_utf8(bytes.to_vec()).unwrap();
        }
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}
