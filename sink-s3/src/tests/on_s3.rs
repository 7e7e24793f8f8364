//! The same protocol on the local S3 server (broker test: `scripts/brokers up`).

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

/// Rule: on S3, re-committing a handle whose upload already completed (or whose staged
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
