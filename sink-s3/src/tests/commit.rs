//! The two-phase commit: invisible until commit, idempotent re-commits, recovery of staged
//! objects, abort.

use super::*;

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
