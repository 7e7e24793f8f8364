//! Integration tests against an S3-compatible server (moto locally), through
//! object_store's `AmazonS3`, the client the S3 sink is built on.
//!
//! They check the S3 behaviour the sink will rely on: a multipart upload becomes one
//! object only when completed, and a conditional put (`If-None-Match: *`, i.e.
//! `PutMode::Create`) refuses to overwrite. Start the server with `scripts/brokers up`
//! (or run everything with `scripts/test.sh`). Endpoint, bucket and credentials come
//! from `WATERSHED_S3_ENDPOINT` (default `http://127.0.0.1:9000`), `WATERSHED_S3_BUCKET`
//! (default `watershed-test`), `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (default
//! `test`) and `AWS_REGION` (default `us-east-1`).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

const MIB: usize = 1024 * 1024;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn store() -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(env_or("WATERSHED_S3_ENDPOINT", "http://127.0.0.1:9000"))
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(env_or("WATERSHED_S3_BUCKET", "watershed-test"))
        .with_region(env_or("AWS_REGION", "us-east-1"))
        .with_access_key_id(env_or("AWS_ACCESS_KEY_ID", "test"))
        .with_secret_access_key(env_or("AWS_SECRET_ACCESS_KEY", "test"))
        .build()
        .expect("S3 client is configured")
}

/// A prefix no earlier run used, so tests never see each other's objects.
fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("watershed-test/{name}-{}-{nanos}", std::process::id())
}

/// `len` bytes whose content depends on `seed`, so parts swapped or repeated show up.
fn part(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Rule: the parts of a multipart upload (every part but the last at least 5 MiB)
/// become one object, in part order, and only once the upload is completed: before
/// that the key does not exist; after, it is listed with its full size.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_completed_multipart_upload_is_one_object_with_its_parts_in_order() {
    let store = store();
    let prefix = unique_prefix("multipart");
    let location = Path::from(format!("{prefix}/part-00000.bin"));
    let parts = [part(1, 5 * MIB), part(2, 5 * MIB), part(3, MIB + 123)];
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();

    let mut upload = store
        .put_multipart(&location)
        .await
        .expect("multipart upload starts");
    for p in &parts {
        upload
            .put_part(PutPayload::from(p.clone()))
            .await
            .expect("part is uploaded");
    }
    let before = store.head(&location).await;
    assert!(
        matches!(before, Err(object_store::Error::NotFound { .. })),
        "an uncompleted upload is not an object yet: {before:?}"
    );
    upload.complete().await.expect("upload completes");

    let listed: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "exactly one object: {listed:?}");
    assert_eq!(listed[0].location, location);
    assert_eq!(listed[0].size, expected.len() as u64);

    let got = store
        .get(&location)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.len(), expected.len());
    assert!(
        got.as_ref() == expected.as_slice(),
        "content is the parts concatenated in order"
    );
}

/// Rule: a conditional put (`PutMode::Create`, sent as `If-None-Match: *`) succeeds on
/// a new key and fails with `AlreadyExists` on an existing one, leaving it unchanged;
/// this is what lets a sink commit a file exactly once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_conditional_put_never_overwrites_an_existing_object() {
    let store = store();
    let location = Path::from(format!("{}/commit.json", unique_prefix("conditional")));
    let create = || PutOptions::from(PutMode::Create);

    store
        .put_opts(&location, PutPayload::from_static(b"first"), create())
        .await
        .expect("conditional put of a new key succeeds");

    let second = store
        .put_opts(&location, PutPayload::from_static(b"second"), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "conditional put of an existing key fails with AlreadyExists: {second:?}"
    );

    let got = store
        .get(&location)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), b"first", "the first write is kept");
}
