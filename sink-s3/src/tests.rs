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

#[tokio::test]
async fn multipart_objects_are_invisible_until_commit_and_then_hold_every_record() {
    let store = memory();
    let mut sink = S3Sink::s3(store.clone(), "out").build().unwrap();
    sink.start("p", "s3", None).await.unwrap();
    let handle = write_epoch(
        &mut sink,
        (0..1000).map(|i| ev(i, T0 + i as i64)).collect(),
        1,
    )
    .await;
    assert_eq!(handle.objects.len(), 1);
    assert!(matches!(
        handle.objects[0].via,
        PendingCommit::Multipart { .. }
    ));
    assert!(final_objects(store.as_ref(), "out").await.is_empty());

    sink.commit(CheckpointId(1), handle).await.unwrap();
    let objects = final_objects(store.as_ref(), "out").await;
    assert_eq!(
        objects.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["out/dt=2025-11-25/hour=17/p-s3-0000000001-000000.jsonl"]
    );
    assert_eq!(ids(&objects), (0..1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn staged_objects_are_invisible_until_commit_and_staging_is_emptied_after() {
    let store = memory();
    let mut sink = S3Sink::builder(store.clone(), "out").build().unwrap();
    sink.start("p", "s3", None).await.unwrap();
    let handle = write_epoch(&mut sink, (0..1000).map(|i| ev(i, T0)).collect(), 1).await;
    assert!(matches!(
        handle.objects[0].via,
        PendingCommit::Staged { .. }
    ));
    assert!(final_objects(store.as_ref(), "out").await.is_empty());

    sink.commit(CheckpointId(1), handle).await.unwrap();
    assert_eq!(
        ids(&final_objects(store.as_ref(), "out").await),
        (0..1000).collect::<Vec<_>>()
    );
    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(all.len(), 1, "only the final object remains: {all:?}");
}

#[tokio::test]
async fn a_recommit_after_a_crash_is_a_no_op_in_a_new_sink_instance() {
    for multipart in [true, false] {
        let store = memory();
        let build = || {
            if multipart {
                S3Sink::s3(store.clone(), "out").build().unwrap()
            } else {
                S3Sink::builder(store.clone(), "out").build().unwrap()
            }
        };
        let mut sink = build();
        sink.start("p", "s3", None).await.unwrap();
        let handle = write_epoch(&mut sink, (0..500).map(|i| ev(i, T0)).collect(), 1).await;
        sink.commit(CheckpointId(1), handle.clone()).await.unwrap();
        let before = final_objects(store.as_ref(), "out").await;

        // The process restarts from checkpoint 1 and the runtime commits its handle again.
        let mut restarted = build();
        restarted
            .start("p", "s3", Some(CheckpointId(1)))
            .await
            .unwrap();
        restarted.commit(CheckpointId(1), handle).await.unwrap();
        assert_eq!(final_objects(store.as_ref(), "out").await, before);
    }
}

#[tokio::test]
async fn a_recommit_refuses_a_final_object_of_another_length() {
    for multipart in [true, false] {
        let store = memory();
        let mut sink = if multipart {
            S3Sink::s3(store.clone(), "out").build().unwrap()
        } else {
            S3Sink::builder(store.clone(), "out").build().unwrap()
        };
        sink.start("p", "s3", None).await.unwrap();
        let handle = write_epoch(&mut sink, (0..500).map(|i| ev(i, T0)).collect(), 1).await;
        let key = Path::from(handle.objects[0].key.as_str());
        store
            .put(&key, PutPayload::from_static(b"someone else's object"))
            .await
            .unwrap();
        let err = sink.commit(CheckpointId(1), handle).await.unwrap_err();
        let err = err.downcast::<S3SinkError>().unwrap();
        assert!(
            matches!(&*err, S3SinkError::Commit { key: k, .. } if k == key.as_ref()),
            "{err}"
        );
        let body = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], b"someone else's object", "never overwritten");
    }
}

#[tokio::test]
async fn objects_roll_by_record_count_and_by_record_time_only() {
    let store = memory();
    let mut sink = S3Sink::s3(store.clone(), "out")
        .partition_template("")
        .max_object_records(300)
        .max_object_span(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    sink.start("p", "s3", None).await.unwrap();
    // 1000 records 1 ms apart: count rolls at 300, 600, 900.
    let h = write_epoch(
        &mut sink,
        (0..1000).map(|i| ev(i, T0 + i as i64)).collect(),
        1,
    )
    .await;
    assert_eq!(
        h.objects.iter().map(|o| o.records).collect::<Vec<_>>(),
        [300, 300, 300, 100]
    );
    // 100 records 1 s apart: the span rolls at 10 s of record time, whatever the wall clock.
    let h = write_epoch(
        &mut sink,
        (0..100).map(|i| ev(i, T0 + i as i64 * 1000)).collect(),
        2,
    )
    .await;
    assert_eq!(h.objects.len(), 10);
    assert!(h.objects.iter().all(|o| o.records == 10));
    assert!(h.objects[9].key.ends_with("p-s3-0000000002-000009.jsonl"));
}

#[tokio::test]
async fn objects_roll_by_size_before_compression() {
    let store = memory();
    let mut sink = S3Sink::s3(store.clone(), "out")
        .compression(Compression::Gzip)
        .max_object_bytes(10_000)
        .build()
        .unwrap();
    sink.start("p", "s3", None).await.unwrap();
    let records: Vec<_> = (0..1000).map(|i| ev(i, T0)).collect();
    let lines: Vec<usize> = records
        .iter()
        .map(|r| serde_json::to_vec(&r.value).unwrap().len() + 1)
        .collect();
    let longest = *lines.iter().max().unwrap();
    let h = write_epoch(&mut sink, records, 1).await;
    let mut next = 0;
    for o in &h.objects[..h.objects.len() - 1] {
        let raw: usize = lines[next..next + o.records as usize].iter().sum();
        next += o.records as usize;
        assert!(
            (10_000..10_000 + longest).contains(&raw),
            "an object rolls at the record that reaches 10,000 raw bytes, not at {raw}"
        );
    }
    assert!(h.objects.len() >= 3);
}

#[tokio::test]
async fn a_replay_of_an_epoch_writes_the_same_keys_and_bytes() {
    let mut runs = Vec::new();
    for batch_size in [7, 100] {
        let store = memory();
        let mut sink = S3Sink::s3(store.clone(), "out")
            .compression(Compression::Gzip)
            .max_object_records(333)
            .build()
            .unwrap();
        sink.start("p", "s3", Some(CheckpointId(4))).await.unwrap();
        let records: Vec<_> = (0..2000).map(|i| ev(i, T0 + i as i64 * 3000)).collect();
        for chunk in records.chunks(batch_size) {
            sink.write(chunk.to_vec()).await.unwrap();
        }
        let h = sink.pre_commit(CheckpointId(5)).await.unwrap();
        assert_eq!(h.epoch, 5);
        sink.commit(CheckpointId(5), h).await.unwrap();
        runs.push(final_objects(store.as_ref(), "out").await);
    }
    assert_eq!(runs[0], runs[1], "batching does not change names or bytes");
}

#[tokio::test]
async fn records_of_three_event_hours_land_under_three_hour_prefixes() {
    let store = memory();
    let mut sink = S3Sink::s3(store.clone(), "out").build().unwrap();
    sink.start("p", "s3", None).await.unwrap();
    let records = (0..300)
        .map(|i| ev(i, T0 + (i as i64 % 3) * HOUR))
        .collect();
    let h = write_epoch(&mut sink, records, 1).await;
    sink.commit(CheckpointId(1), h).await.unwrap();
    let objects = final_objects(store.as_ref(), "out").await;
    let dirs: Vec<_> = objects
        .iter()
        .map(|(k, _)| k.rsplit_once('/').unwrap().0.to_owned())
        .collect();
    assert_eq!(
        dirs,
        [
            "out/dt=2025-11-25/hour=17",
            "out/dt=2025-11-25/hour=18",
            "out/dt=2025-11-25/hour=19"
        ]
    );
    for (k, b) in &objects {
        let hour: i64 = k.split("hour=").nth(1).unwrap()[..2].parse().unwrap();
        assert!(decode(k, b).iter().all(|e| (e.id as i64 % 3) == hour - 17));
    }
}

#[tokio::test]
async fn gzip_and_zstd_objects_decode_to_the_records() {
    for (compression, ext) in [
        (Compression::Gzip, ".jsonl.gz"),
        (Compression::Zstd, ".jsonl.zst"),
    ] {
        let store = memory();
        let mut sink = S3Sink::s3(store.clone(), "out")
            .compression(compression)
            .build()
            .unwrap();
        sink.start("p", "s3", None).await.unwrap();
        let h = write_epoch(&mut sink, (0..5000).map(|i| ev(i, T0)).collect(), 1).await;
        sink.commit(CheckpointId(1), h).await.unwrap();
        let objects = final_objects(store.as_ref(), "out").await;
        assert!(objects.iter().all(|(k, _)| k.ends_with(ext)));
        assert_eq!(ids(&objects), (0..5000).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_large_object_is_uploaded_in_parts_and_reassembles_in_order() {
    for multipart in [true, false] {
        let store = memory();
        let builder = if multipart {
            S3Sink::s3(store.clone(), "out")
        } else {
            S3Sink::builder(store.clone(), "out")
        };
        let mut sink = builder.part_size(5 * 1024 * 1024).build().unwrap();
        sink.start("p", "s3", None).await.unwrap();
        // ~13 MiB of JSON: three parts.
        let big = |i: u64| {
            let mut r = ev(i, T0);
            r.value.pad = format!("{i:0>1000}");
            r
        };
        let h = write_epoch(&mut sink, (0..13_000).map(big).collect(), 1).await;
        if let PendingCommit::Multipart { parts, .. } = &h.objects[0].via {
            assert_eq!(parts.len(), 3);
        }
        sink.commit(CheckpointId(1), h).await.unwrap();
        assert_eq!(
            ids(&final_objects(store.as_ref(), "out").await),
            (0..13_000).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn staged_objects_of_epochs_after_the_restored_checkpoint_are_deleted_on_open() {
    let store = memory();
    let mut sink = S3Sink::builder(store.clone(), "out").build().unwrap();
    sink.start("p", "s3", None).await.unwrap();
    let h1 = write_epoch(&mut sink, (0..10).map(|i| ev(i, T0)).collect(), 1).await;
    let _h2 = write_epoch(&mut sink, (10..20).map(|i| ev(i, T0)).collect(), 2).await;
    // Crash: checkpoint 1 completed (its commit may not have run), checkpoint 2 did not.
    let mut restarted = S3Sink::<Ev>::builder(store.clone(), "out").build().unwrap();
    restarted
        .start("p", "s3", Some(CheckpointId(1)))
        .await
        .unwrap();
    restarted.commit(CheckpointId(1), h1).await.unwrap();
    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(all.len(), 1, "epoch 2's staged object is gone: {all:?}");
    assert_eq!(
        ids(&final_objects(store.as_ref(), "out").await),
        (0..10).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_local_directory_gets_the_same_layout_and_bytes_as_the_multipart_store() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let mem = memory();
    let mut results = Vec::new();
    for (store, mut sink) in [
        (
            local.clone(),
            S3Sink::builder(local.clone(), "out")
                .compression(Compression::Zstd)
                .max_object_records(250)
                .build()
                .unwrap(),
        ),
        (
            mem.clone() as Arc<dyn ObjectStore>,
            S3Sink::s3(mem.clone(), "out")
                .compression(Compression::Zstd)
                .max_object_records(250)
                .build()
                .unwrap(),
        ),
    ] {
        sink.start("p", "s3", None).await.unwrap();
        let records = (0..1000).map(|i| ev(i, T0 + i as i64 * 20_000)).collect();
        let h = write_epoch(&mut sink, records, 1).await;
        sink.commit(CheckpointId(1), h).await.unwrap();
        results.push(final_objects(store.as_ref(), "out").await);
    }
    assert!(results[0].len() > 4);
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn abort_discards_the_epoch_and_leaves_nothing_visible() {
    let store = memory();
    let mut sink = S3Sink::s3(store.clone(), "out").build().unwrap();
    sink.start("p", "s3", None).await.unwrap();
    sink.write((0..100).map(|i| ev(i, T0)).collect())
        .await
        .unwrap();
    sink.abort().await.unwrap();
    let h = sink.pre_commit(CheckpointId(1)).await.unwrap();
    assert!(h.objects.is_empty());
    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(all.is_empty());
}

#[test]
fn settings_that_cannot_work_are_refused_at_build() {
    let store = memory();
    let small_parts = S3Sink::<Ev>::s3(store.clone(), "out")
        .part_size(1024)
        .build();
    assert!(matches!(small_parts, Err(S3SinkError::Config(_))));
    let bad_template = S3Sink::<Ev>::s3(store.clone(), "out")
        .partition_template("dt={day_of_week}")
        .build();
    assert!(matches!(bad_template, Err(S3SinkError::Config(_))));
    let too_many_parts = S3Sink::<Ev>::s3(store, "out")
        .max_object_bytes(1 << 40)
        .part_size(5 << 20)
        .build();
    assert!(matches!(too_many_parts, Err(S3SinkError::Config(_))));
}

mod parquet_format {
    use super::*;
    use crate::{Format, ParquetCompression, ParquetOptions};
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::RecordBatchReader;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn options() -> ParquetOptions {
        ParquetOptions::derive_from(&[ev(0, T0).value]).unwrap()
    }

    /// (schema, ids, pads) of one Parquet object.
    fn read(body: &Bytes) -> (arrow_schema::SchemaRef, Vec<i64>, Vec<String>) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(body.clone())
            .unwrap()
            .build()
            .unwrap();
        let schema = reader.schema();
        let (mut ids, mut pads) = (Vec::new(), Vec::new());
        for batch in reader {
            let batch = batch.unwrap();
            ids.extend(
                batch
                    .column_by_name("id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            pads.extend(
                batch
                    .column_by_name("pad")
                    .unwrap()
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap().to_owned()),
            );
        }
        (schema, ids, pads)
    }

    #[tokio::test]
    async fn parquet_objects_read_back_with_the_same_rows_and_schema() {
        for compression in [
            ParquetCompression::Snappy,
            ParquetCompression::Zstd,
            ParquetCompression::Uncompressed,
        ] {
            let store = memory();
            let opts = options().compression(compression).row_group_rows(700);
            let mut sink = S3Sink::s3(store.clone(), "out")
                .format(Format::Parquet(opts.clone()))
                .max_object_records(2000)
                .build()
                .unwrap();
            sink.start("p", "s3", None).await.unwrap();
            let records: Vec<_> = (0..5000).map(|i| ev(i, T0)).collect();
            let expected_pads: Vec<String> = records.iter().map(|r| r.value.pad.clone()).collect();
            let h = write_epoch(&mut sink, records, 1).await;
            sink.commit(CheckpointId(1), h).await.unwrap();
            let objects = final_objects(store.as_ref(), "out").await;
            assert_eq!(objects.len(), 3);
            let (mut ids, mut pads) = (Vec::new(), Vec::new());
            for (key, body) in &objects {
                assert!(key.ends_with(".parquet"), "{key}");
                let (schema, i, p) = read(body);
                assert_eq!(schema.fields(), opts.schema().fields());
                ids.extend(i);
                pads.extend(p);
            }
            assert_eq!(ids, (0..5000).collect::<Vec<i64>>());
            assert_eq!(pads, expected_pads);
        }
    }

    #[tokio::test]
    async fn parquet_bytes_do_not_depend_on_how_records_were_batched() {
        let mut runs = Vec::new();
        for batch_size in [7, 1000] {
            let store = memory();
            let mut sink = S3Sink::s3(store.clone(), "out")
                .format(Format::Parquet(options().row_group_rows(3000)))
                .build()
                .unwrap();
            sink.start("p", "s3", None).await.unwrap();
            let records: Vec<_> = (0..10_000).map(|i| ev(i, T0)).collect();
            for chunk in records.chunks(batch_size) {
                sink.write(chunk.to_vec()).await.unwrap();
            }
            let h = sink.pre_commit(CheckpointId(1)).await.unwrap();
            sink.commit(CheckpointId(1), h).await.unwrap();
            runs.push(final_objects(store.as_ref(), "out").await);
        }
        assert_eq!(runs[0], runs[1]);
    }

    #[tokio::test]
    async fn a_record_that_does_not_fit_the_schema_is_an_encode_error_naming_the_object() {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "id",
            arrow_schema::DataType::Int64,
            false,
        )]));
        let store = memory();
        let mut sink = S3Sink::<serde_json::Value>::s3(store, "out")
            .format(Format::Parquet(ParquetOptions::new(schema)))
            .build()
            .unwrap();
        sink.start("p", "s3", None).await.unwrap();
        let bad = Record::new(serde_json::json!({"id": "not a number"}), EventTime(T0));
        let mut result = sink.write(vec![bad]).await;
        if result.is_ok() {
            // The decoder may only see the bad value when the batch is converted.
            result = sink.pre_commit(CheckpointId(1)).await.map(|_| ());
        }
        let err = result.unwrap_err().downcast::<S3SinkError>().unwrap();
        assert!(
            matches!(&*err, S3SinkError::Encode { key, .. } if key.ends_with(".parquet")),
            "{err}"
        );
    }

    #[test]
    fn parquet_with_object_compression_is_refused() {
        let built = S3Sink::<Ev>::s3(memory(), "out")
            .format(Format::Parquet(options()))
            .compression(Compression::Gzip)
            .build();
        assert!(matches!(built, Err(S3SinkError::Config(_))));
    }
}

mod on_s3 {
    use super::*;
    use object_store::aws::{AmazonS3, AmazonS3Builder};

    fn env_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_owned())
    }

    fn s3() -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(env_or("WATERSHED_S3_ENDPOINT", "http://127.0.0.1:9000"))
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_bucket_name(env_or("WATERSHED_S3_BUCKET", "watershed-test"))
                .with_region(env_or("AWS_REGION", "us-east-1"))
                .with_access_key_id(env_or("AWS_ACCESS_KEY_ID", "test"))
                .with_secret_access_key(env_or("AWS_SECRET_ACCESS_KEY", "test"))
                .build()
                .unwrap(),
        )
    }

    /// Rule (S2): on S3, re-committing a handle whose upload already completed (or whose staged
    /// copy already happened) verifies the object instead of failing, and changes nothing;
    /// staged commits work on S3 without copy-if-not-exists support, and leave nothing staged.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "needs local brokers: scripts/brokers up"]
    async fn a_recommit_on_s3_verifies_the_committed_object_in_both_commit_modes() {
        let store = s3();
        for multipart in [true, false] {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let prefix = format!("watershed-test/s3-sink-unit/recommit-{multipart}-{nanos}");
            let build = || {
                if multipart {
                    S3Sink::s3(store.clone(), &prefix).build().unwrap()
                } else {
                    S3Sink::builder(store.clone(), &prefix).build().unwrap()
                }
            };
            let mut sink = build();
            sink.start("p", "s3", None).await.unwrap();
            let records = (0..3000).map(|i| ev(i, T0 + i as i64 * 1000)).collect();
            let handle = write_epoch(&mut sink, records, 1).await;
            assert!(final_objects(store.as_ref(), &prefix).await.is_empty());
            sink.commit(CheckpointId(1), handle.clone()).await.unwrap();
            let committed = final_objects(store.as_ref(), &prefix).await;
            assert_eq!(ids(&committed), (0..3000).collect::<Vec<_>>());

            let mut restarted = build();
            restarted
                .start("p", "s3", Some(CheckpointId(1)))
                .await
                .unwrap();
            restarted.commit(CheckpointId(1), handle).await.unwrap();
            assert_eq!(final_objects(store.as_ref(), &prefix).await, committed);
            let all: Vec<_> = store
                .list(Some(&Path::from(prefix.as_str())))
                .try_collect()
                .await
                .unwrap();
            assert_eq!(all.len(), committed.len(), "nothing left staged: {all:?}");
        }
    }
}

#[tokio::test]
async fn gzip_csv_objects_start_with_the_header_and_hold_one_row_per_record() {
    let store = memory();
    let mut sink = S3Sink::s3(store.clone(), "out")
        .format(crate::Format::Csv(crate::CsvOptions::new(["id", "pad"])))
        .compression(Compression::Gzip)
        .max_object_records(400)
        .build()
        .unwrap();
    sink.start("p", "s3", None).await.unwrap();
    let records: Vec<_> = (0..1000).map(|i| ev(i, T0)).collect();
    let expected: Vec<String> = records
        .iter()
        .map(|r| format!("{},{}", r.value.id, r.value.pad))
        .collect();
    let h = write_epoch(&mut sink, records, 1).await;
    sink.commit(CheckpointId(1), h).await.unwrap();
    let objects = final_objects(store.as_ref(), "out").await;
    assert_eq!(objects.len(), 3);
    let mut rows = Vec::new();
    for (key, body) in &objects {
        assert!(key.ends_with(".csv.gz"), "{key}");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,pad"));
        rows.extend(lines.map(str::to_owned));
    }
    assert_eq!(rows, expected);
}

#[test]
fn csv_without_columns_or_with_a_quote_delimiter_is_refused() {
    for options in [
        crate::CsvOptions::new(Vec::<String>::new()),
        crate::CsvOptions::new(["a"]).delimiter(b'"'),
    ] {
        let built = S3Sink::<Ev>::s3(memory(), "out")
            .format(crate::Format::Csv(options))
            .build();
        assert!(matches!(built, Err(S3SinkError::Config(_))));
    }
}
