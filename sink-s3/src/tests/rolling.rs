//! Buffering and rotation: objects cut by record count, record time and size, partitions
//! by event hour, parts of large objects, and replays that cut the same objects.

use super::*;

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
