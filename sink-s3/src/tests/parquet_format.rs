//! Parquet objects: rows and schema read back, bytes independent of batching, records that
//! do not fit the schema.

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
