//! Helpers shared by the sink's integration tests: reading back committed objects.
#![allow(dead_code)] // each test file uses a different subset

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::io::Read;

/// 2025-11-25T17:00:00Z.
pub const T0: i64 = 1_764_090_000_000;
pub const HOUR: i64 = 3_600_000;

/// Every object key under `prefix`, sorted, including staging.
pub async fn all_keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list");
    keys.sort();
    keys
}

/// Every committed object under `prefix` (staging excluded), sorted by key, with its body.
pub async fn final_objects(store: &dyn ObjectStore, prefix: &str) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for key in all_keys(store, prefix).await {
        if key.split('/').any(|p| p == "_staging") {
            continue;
        }
        let body = store
            .get(&Path::from(key.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        out.push((key, body));
    }
    out
}

/// The JSON lines of an object, decompressed according to its extension.
pub fn lines(key: &str, body: &[u8]) -> Vec<serde_json::Value> {
    let mut text = Vec::new();
    if key.ends_with(".gz") {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut text)
            .expect("valid gzip");
    } else if key.ends_with(".zst") {
        text = zstd::stream::decode_all(body).expect("valid zstd");
    } else {
        text = body.to_vec();
    }
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("one JSON document per line"))
        .collect()
}

/// The epoch in an object name `<pipeline>-<node>-<epoch>-<seq><ext>`.
pub fn epoch_of(key: &str) -> u64 {
    let name = key.rsplit('/').next().unwrap();
    let stem = name.split('.').next().unwrap();
    let mut parts = stem.rsplitn(3, '-');
    let _seq = parts.next();
    parts.next().unwrap().parse().expect("epoch in the name")
}
