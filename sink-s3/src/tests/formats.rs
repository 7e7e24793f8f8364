//! Object formats: gzip and zstd JSON lines, CSV.

use super::*;

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
