//! Reading back what a sink committed to an object store (feature `s3`): the keys, the
//! committed objects' bodies, and the JSON lines inside them, decompressed by extension.
//! Test helpers: they panic with what failed rather than return errors.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::io::Read;

/// Every object key under `prefix`, sorted, staging objects included.
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

/// Every committed object under `prefix` (the S3 sink's `_staging` excluded), sorted by key,
/// with its body.
pub async fn committed_objects(store: &dyn ObjectStore, prefix: &str) -> Vec<(String, Bytes)> {
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

/// The JSON lines of an object, decompressed by its key's extension (`.gz`, `.zst`).
pub fn json_lines(key: &str, body: &[u8]) -> Vec<serde_json::Value> {
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
