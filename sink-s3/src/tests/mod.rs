//! Brokerless tests of the sink's protocol, driving the `Sink` methods directly on the in-memory
//! and local-directory stores (a `SinkContext` can only be built by core, hence `start`).

use crate::{Compression, PendingCommit, S3Sink, S3SinkError, S3SinkHandle};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use watershed_core::{CheckpointId, EventTime, Record, Sink};

/// 2025-11-25T17:00:00Z.
const T0: i64 = 1_764_090_000_000;
const HOUR: i64 = 3_600_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Ev {
    id: u64,
    pad: String,
}

fn ev(id: u64, ts: i64) -> Record<Ev> {
    Record::new(
        Ev {
            id,
            pad: format!("{:x}", id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        },
        EventTime(ts),
    )
}

/// Every object under `prefix` outside staging, sorted by key.
async fn final_objects(store: &dyn ObjectStore, prefix: &str) -> Vec<(String, Bytes)> {
    let mut metas: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    metas.retain(|m| !m.location.parts().any(|p| p.as_ref() == "_staging"));
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out = Vec::new();
    for m in metas {
        let body = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.push((m.location.to_string(), body));
    }
    out
}

fn decode(key: &str, body: &[u8]) -> Vec<Ev> {
    let mut text = Vec::new();
    if key.ends_with(".gz") {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut text)
            .unwrap();
    } else if key.ends_with(".zst") {
        text = zstd::stream::decode_all(body).unwrap();
    } else {
        text = body.to_vec();
    }
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn ids(objects: &[(String, Bytes)]) -> Vec<u64> {
    let mut ids: Vec<u64> = objects
        .iter()
        .flat_map(|(k, b)| decode(k, b))
        .map(|e| e.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Writes `records` in batches of 100 and pre-commits them as checkpoint `checkpoint`.
async fn write_epoch(
    sink: &mut S3Sink<Ev>,
    records: Vec<Record<Ev>>,
    checkpoint: u64,
) -> S3SinkHandle {
    let mut it = records.into_iter().peekable();
    while it.peek().is_some() {
        let batch: Vec<_> = it.by_ref().take(100).collect();
        sink.write(batch).await.unwrap();
    }
    sink.pre_commit(CheckpointId(checkpoint)).await.unwrap()
}

fn memory() -> Arc<InMemory> {
    Arc::new(InMemory::new())
}

mod builder;
mod commit;
mod formats;
mod on_s3;
mod parquet_format;
mod rolling;
