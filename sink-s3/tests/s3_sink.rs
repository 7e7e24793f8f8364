//! The S3 sink against the local S3 server (moto), in real pipelines: the tests of issue 7.
//!
//! Start the server with `scripts/brokers up` (or run everything with `scripts/test.sh`).
//! Endpoint, bucket and credentials come from `WATERSHED_S3_ENDPOINT` (default
//! `http://127.0.0.1:9000`), `WATERSHED_S3_BUCKET` (default `watershed-test`),
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (default `test`) and `AWS_REGION` (default
//! `us-east-1`).
//!
//! Test 3 (`kill -9` and restart) runs the `s3-sink-demo` binary of the examples crate, so it
//! lives there: examples/tests/s3_sink_demo_crash.rs.

mod common;

use common::{all_keys, final_objects, lines, HOUR, T0};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use watershed_core::connectors::GeneratorSource;
use watershed_core::*;
use watershed_sink_s3::{Compression, CsvOptions, Format, ParquetOptions, S3Sink};

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
            .expect("S3 client is configured"),
    )
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

/// A prefix no earlier run used, so tests never see each other's objects.
fn unique_prefix(name: &str) -> String {
    format!(
        "watershed-test/s3-sink/{name}-{}-{}",
        std::process::id(),
        nanos()
    )
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Row {
    /// Zero-padded, so every line has the same length and size rotation is easy to predict.
    id: String,
}

fn row(i: u64) -> Row {
    Row {
        id: format!("{i:08}"),
    }
}

/// Runs `n` records (record `i` at `time(i)`) through `sink` in one split; only the final
/// checkpoint, so object boundaries come from the rolling settings alone.
async fn run<T: Send + 'static>(
    n: u64,
    make: impl Fn(u64) -> Record<T> + Send + 'static,
    sink: S3Sink<T>,
) {
    let p = Pipeline::new(
        PipelineConfig::new("s3-test")
            .checkpoint_store(CheckpointStore::memory())
            .without_periodic_checkpoints()
            .handle_signals(false),
    );
    p.source(
        "rows",
        GeneratorSource::new(1, n, move |_, i| make(i)),
        WatermarkStrategy::monotonous(),
    )
    .sink("s3", sink);
    p.run().await.expect("pipeline runs");
}

fn ids(objects: &[(String, bytes::Bytes)]) -> Vec<Vec<u64>> {
    objects
        .iter()
        .map(|(k, b)| {
            lines(k, b)
                .iter()
                .map(|v| v["id"].as_str().unwrap().parse().unwrap())
                .collect()
        })
        .collect()
}

/// Rule (issue 7, test 1): record-count, size and record-time rotation give the expected number
/// of objects, and every gzip, zstd, CSV and plain object decodes to its records, in order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn count_size_and_record_time_rotation_give_the_expected_objects_which_all_decode() {
    let store = s3();

    // Count: 5000 records, 1000 per object, gzip.
    let prefix = unique_prefix("count");
    let sink = S3Sink::s3(store.clone(), &prefix)
        .compression(Compression::Gzip)
        .max_object_records(1000)
        .build()
        .unwrap();
    run(
        5000,
        |i| Record::new(row(i), EventTime(T0 + i as i64)),
        sink,
    )
    .await;
    let objects = final_objects(store.as_ref(), &prefix).await;
    assert!(objects.iter().all(|(k, _)| k.ends_with(".jsonl.gz")));
    let expected: Vec<Vec<u64>> = (0..5)
        .map(|o| (o * 1000..(o + 1) * 1000).collect())
        .collect();
    assert_eq!(ids(&objects), expected);

    // Record time: 300 records 1 s apart, 60 s of record time per object, zstd.
    let prefix = unique_prefix("span");
    let sink = S3Sink::s3(store.clone(), &prefix)
        .compression(Compression::Zstd)
        .max_object_span(Some(Duration::from_secs(60)))
        .build()
        .unwrap();
    run(
        300,
        |i| Record::new(row(i), EventTime(T0 + i as i64 * 1000)),
        sink,
    )
    .await;
    let objects = final_objects(store.as_ref(), &prefix).await;
    assert!(objects.iter().all(|(k, _)| k.ends_with(".jsonl.zst")));
    let expected: Vec<Vec<u64>> = (0..5).map(|o| (o * 60..(o + 1) * 60).collect()).collect();
    assert_eq!(ids(&objects), expected);

    // CSV, zstd: 5000 records, 2500 per object, each object starting with its header.
    let prefix = unique_prefix("csv");
    let sink = S3Sink::s3(store.clone(), &prefix)
        .format(Format::Csv(CsvOptions::new(["id"])))
        .compression(Compression::Zstd)
        .max_object_records(2500)
        .build()
        .unwrap();
    run(
        5000,
        |i| Record::new(row(i), EventTime(T0 + i as i64)),
        sink,
    )
    .await;
    let objects = final_objects(store.as_ref(), &prefix).await;
    assert_eq!(objects.len(), 2);
    let mut csv_ids = Vec::new();
    for (key, body) in &objects {
        assert!(key.ends_with(".csv.zst"), "{key}");
        let text = String::from_utf8(zstd::stream::decode_all(&body[..]).unwrap()).unwrap();
        let mut rows = text.lines();
        assert_eq!(rows.next(), Some("id"));
        csv_ids.extend(rows.map(|r| r.parse::<u64>().unwrap()));
    }
    assert_eq!(csv_ids, (0..5000).collect::<Vec<u64>>());

    // Size (before compression): lines of 18 bytes, objects roll at the line reaching 50,000.
    let prefix = unique_prefix("size");
    let sink = S3Sink::s3(store.clone(), &prefix)
        .max_object_bytes(50_000)
        .build()
        .unwrap();
    run(10_000, |i| Record::new(row(i), EventTime(T0)), sink).await;
    let objects = final_objects(store.as_ref(), &prefix).await;
    let line = serde_json::to_vec(&row(0)).unwrap().len() as u64 + 1;
    let per_object = 50_000u64.div_ceil(line);
    assert_eq!(objects.len() as u64, 10_000u64.div_ceil(per_object));
    for (n, object) in ids(&objects).iter().enumerate() {
        let start = n as u64 * per_object;
        let expected: Vec<u64> = (start..(start + per_object).min(10_000)).collect();
        assert_eq!(object, &expected);
    }
}

/// Rule (issue 7, test 1, Parquet): Parquet objects (schema derived with serde) read back with
/// the parquet crate give the same rows and the same schema, split by the record-count rule.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn parquet_objects_read_back_with_the_same_rows_and_schema() {
    use arrow_array::cast::AsArray;
    use arrow_array::RecordBatchReader;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let store = s3();
    let prefix = unique_prefix("parquet");
    let options = ParquetOptions::derive_from(&[row(0)])
        .unwrap()
        .row_group_rows(1000);
    let sink = S3Sink::s3(store.clone(), &prefix)
        .format(Format::Parquet(options.clone()))
        .max_object_records(4000)
        .build()
        .unwrap();
    run(
        10_000,
        |i| Record::new(row(i), EventTime(T0 + i as i64)),
        sink,
    )
    .await;
    let objects = final_objects(store.as_ref(), &prefix).await;
    assert_eq!(objects.len(), 3);
    let mut ids = Vec::new();
    for (key, body) in &objects {
        assert!(key.ends_with(".parquet"), "{key}");
        let reader = ParquetRecordBatchReaderBuilder::try_new(body.clone())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(reader.schema().fields(), options.schema().fields());
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch.column_by_name("id").unwrap().as_string::<i32>();
            ids.extend(column.iter().map(|v| v.unwrap().parse::<u64>().unwrap()));
        }
    }
    assert_eq!(ids, (0..10_000).collect::<Vec<u64>>());
}

/// Rule: an object larger than a part is one multipart upload of several parts on S3, and it
/// reads back whole and in order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn an_object_of_several_parts_reads_back_whole_and_in_order() {
    let store = s3();
    let prefix = unique_prefix("parts");
    let sink = S3Sink::s3(store.clone(), &prefix)
        .part_size(5 * 1024 * 1024)
        .build()
        .unwrap();
    // ~12 MiB of uncompressed JSON: three parts.
    run(
        12_000,
        |i| {
            Record::new(
                Row {
                    id: format!("{i:0>1024}"),
                },
                EventTime(T0),
            )
        },
        sink,
    )
    .await;
    let objects = final_objects(store.as_ref(), &prefix).await;
    assert_eq!(objects.len(), 1);
    assert!(objects[0].1.len() > 12_000 * 1024);
    assert_eq!(ids(&objects), vec![(0..12_000).collect::<Vec<u64>>()]);
}

/// Rule (issue 7, test 2): records of 3 event hours land under 3 `hour=` prefixes, each
/// holding exactly that hour's records.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn records_of_three_event_hours_land_under_three_hour_prefixes() {
    let store = s3();
    let prefix = unique_prefix("hours");
    let sink = S3Sink::s3(store.clone(), &prefix).build().unwrap();
    run(
        3000,
        |i| Record::new(row(i), EventTime(T0 + (i % 3) as i64 * HOUR + i as i64)),
        sink,
    )
    .await;
    let objects = final_objects(store.as_ref(), &prefix).await;
    let mut by_dir: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for ((key, _), rows) in objects.iter().zip(ids(&objects)) {
        let dir = key[prefix.len() + 1..]
            .rsplit_once('/')
            .unwrap()
            .0
            .to_owned();
        by_dir.entry(dir).or_default().extend(rows);
    }
    assert_eq!(
        by_dir.keys().collect::<Vec<_>>(),
        [
            "dt=2025-11-25/hour=17",
            "dt=2025-11-25/hour=18",
            "dt=2025-11-25/hour=19"
        ]
    );
    for (h, rows) in by_dir.values().enumerate() {
        assert_eq!(rows.len(), 1000);
        assert!(rows.iter().all(|i| i % 3 == h as u64));
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Reading {
    id: u32,
}

/// Rule (issue 7, test 4): malformed records appear under the error prefix with their reason
/// and payload; good records land under the main prefix, unaffected.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn malformed_records_appear_under_the_error_prefix_with_their_reason() {
    let store = s3();
    let good_prefix = unique_prefix("good");
    let error_prefix = unique_prefix("errors");
    let p = Pipeline::new(
        PipelineConfig::new("s3-dlq")
            .checkpoint_store(CheckpointStore::memory())
            .handle_signals(false),
    );
    let source = GeneratorSource::new(1, 200, |_, i| {
        let payload = if i % 20 == 7 {
            format!("{{\"id\": broken {i}")
        } else {
            format!("{{\"id\":{i}}}")
        };
        Record::new(bytes::Bytes::from(payload), EventTime(T0 + i as i64))
    });
    p.source("raw", source, WatermarkStrategy::none())
        .apply(
            "decode",
            FnOperator::new(|batch: Batch<bytes::Bytes>, out: &mut Collector<Reading>| {
                for r in batch {
                    match serde_json::from_slice::<Reading>(&r.value) {
                        Ok(v) => out.emit(r.map(|_| v)),
                        Err(e) => out.reject(
                            DeadLetter::new(e.to_string(), r.value.clone())
                                .at(r.origin.clone(), r.timestamp),
                        ),
                    }
                }
            }),
        )
        .sink(
            "good",
            S3Sink::s3(store.clone(), &good_prefix)
                .compression(Compression::Gzip)
                .build()
                .unwrap(),
        );
    p.dead_letter(
        "errors",
        S3Sink::s3_dead_letters(store.clone(), &error_prefix)
            .build()
            .unwrap(),
    );
    assert_eq!(p.run().await.unwrap().rejected, 10);

    let mut good: Vec<u64> = final_objects(store.as_ref(), &good_prefix)
        .await
        .iter()
        .flat_map(|(k, b)| lines(k, b))
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    good.sort_unstable();
    assert_eq!(good, (0..200).filter(|i| i % 20 != 7).collect::<Vec<_>>());

    let mut bad: Vec<serde_json::Value> = final_objects(store.as_ref(), &error_prefix)
        .await
        .iter()
        .flat_map(|(k, b)| lines(k, b))
        .collect();
    bad.sort_by_key(|v| v["timestamp"].as_i64());
    assert_eq!(bad.len(), 10);
    for (n, v) in bad.iter().enumerate() {
        let i = n * 20 + 7;
        assert_eq!(v["payload"], format!("{{\"id\": broken {i}"));
        assert!(!v["reason"].as_str().unwrap().is_empty(), "{v}");
        assert_eq!(v["node"], "decode");
        assert_eq!(v["timestamp"], T0 + i as i64);
    }
}

/// Rule (issue 7, test 5): the same sink writes to a local directory (staged commits) with the
/// same keys and the same bytes as to S3 (multipart commits).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn a_local_directory_gets_the_same_layout_and_bytes_as_s3() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let s3 = s3();
    let prefix = unique_prefix("layout");
    let make = |i: u64| Record::new(row(i), EventTime(T0 + i as i64 * 1500));
    let configure = |b: watershed_sink_s3::S3SinkBuilder<Row>| {
        b.compression(Compression::Gzip)
            .max_object_records(700)
            .build()
            .unwrap()
    };
    run(5000, make, configure(S3Sink::s3(s3.clone(), &prefix))).await;
    run(
        5000,
        make,
        configure(S3Sink::builder(local.clone(), &prefix)),
    )
    .await;

    let on_s3 = final_objects(s3.as_ref(), &prefix).await;
    let on_disk = final_objects(local.as_ref(), &prefix).await;
    assert!(on_s3.len() > 5, "several objects over several hours");
    assert_eq!(
        on_s3.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        on_disk.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert!(on_s3 == on_disk, "same bytes");
    assert!(
        !dir.path().join(&prefix).join("_staging").exists()
            || all_keys(local.as_ref(), &format!("{prefix}/_staging"))
                .await
                .is_empty(),
        "nothing left staged"
    );
}
