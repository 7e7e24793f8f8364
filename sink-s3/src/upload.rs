//! Uploads: each object's multipart upload (to its final key, or to a staging key), its parts
//! sent in the background with a bound on those in flight, and their results collected.

use crate::builder::CommitVia;
use crate::error::S3SinkError;
use crate::sink::S3Sink;
use futures::future::BoxFuture;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use std::time::{Duration, Instant};

/// An object's upload, started with its first part.
pub(crate) enum Upload {
    /// A multipart upload of the final key, known by the id S3 returned.
    Multipart { id: String },
    /// An upload of the staging key, completed at pre-commit.
    Staged {
        key: Path,
        upload: Box<dyn MultipartUpload>,
    },
}

/// A background part upload's outcome, matched back to its object and part.
pub(crate) struct PartDone {
    object: u64,
    idx: usize,
    bytes: u64,
    took: Duration,
    result: object_store::Result<Option<PartId>>,
}

impl<T> S3Sink<T> {
    /// Starts the object's upload if it has none yet (lazily, so small objects cost one request
    /// less until they have something to upload).
    async fn ensure_upload(&mut self, id: u64) -> Result<(), S3SinkError> {
        let obj = self.objects.get(&id).expect("object exists");
        if obj.upload.is_some() {
            return Ok(());
        }
        let key = obj.key.clone();
        let upload = match &self.cfg.via {
            CommitVia::Multipart(mp) => {
                let id = mp
                    .create_multipart(&key)
                    .await
                    .map_err(|e| S3SinkError::store("create upload", &key, None, e))?;
                tracing::debug!(%key, upload_id = %id, "s3 sink: multipart upload started");
                Upload::Multipart { id }
            }
            CommitVia::Staging => {
                let staging = self.staging_key_for(&key);
                let upload =
                    self.cfg.store.put_multipart(&staging).await.map_err(|e| {
                        S3SinkError::store("create staging upload", &staging, None, e)
                    })?;
                tracing::debug!(%key, %staging, "s3 sink: staging upload started");
                Upload::Staged {
                    key: staging,
                    upload,
                }
            }
        };
        self.objects.get_mut(&id).expect("object exists").upload = Some(upload);
        Ok(())
    }

    /// Uploads `data` as the object's next part, in the background, keeping at most
    /// `max_concurrent_uploads` in flight.
    pub(crate) async fn upload_part(&mut self, id: u64, data: Vec<u8>) -> Result<(), S3SinkError> {
        while self.uploads.len() >= self.cfg.max_concurrent_uploads {
            self.reap_one().await?;
        }
        self.ensure_upload(id).await?;
        let via = self.cfg.via.clone();
        let obj = self.objects.get_mut(&id).expect("object exists");
        let idx = obj.parts.len();
        obj.parts.push(None);
        let bytes = data.len() as u64;
        tracing::debug!(key = %obj.key, part = idx, bytes, "s3 sink: uploading part");
        let upload = obj.upload.as_mut().expect("upload started");
        let fut = put_part(upload, via, &obj.key, idx, PutPayload::from(data));
        self.uploads.spawn(async move {
            let start = Instant::now();
            let result = fut.await;
            PartDone {
                object: id,
                idx,
                bytes,
                took: start.elapsed(),
                result,
            }
        });
        Ok(())
    }

    /// Waits for one part upload and records its result.
    pub(crate) async fn reap_one(&mut self) -> Result<(), S3SinkError> {
        let Some(joined) = self.uploads.join_next().await else {
            return Ok(());
        };
        let done = joined.map_err(|source| S3SinkError::Task {
            key: "(unknown object)".into(),
            source,
        })?;
        let obj = self
            .objects
            .get_mut(&done.object)
            .expect("uploads are drained before objects are dropped");
        match done.result {
            Ok(part) => {
                obj.parts[done.idx] = part.or(Some(PartId {
                    content_id: String::new(),
                }));
                obj.uploaded += done.bytes;
                self.metrics.bytes.increment(done.bytes);
                self.metrics.upload_seconds.record(done.took.as_secs_f64());
                tracing::debug!(
                    key = %obj.key,
                    part = done.idx,
                    bytes = done.bytes,
                    took = ?done.took,
                    "s3 sink: part uploaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(key = %obj.key, part = done.idx, error = %e, "s3 sink: part upload failed");
                Err(S3SinkError::store(
                    "upload part",
                    &obj.key,
                    obj.upload_id(),
                    e,
                ))
            }
        }
    }

    /// Cancels the part uploads in flight and abandons every object of the epoch. Best effort:
    /// uploads left behind are invisible and reclaimed by the bucket's lifecycle rule.
    pub(crate) async fn discard_epoch(&mut self) {
        self.uploads.abort_all();
        while self.uploads.join_next().await.is_some() {}
        self.open.clear();
        self.last_object = None;
        let objects = std::mem::take(&mut self.objects);
        if !objects.is_empty() {
            tracing::info!(node = %self.node, epoch = self.epoch, objects = objects.len(), "s3 sink: discarding the epoch's objects");
        }
        for obj in objects.into_values() {
            let aborted = match (obj.upload, &self.cfg.via) {
                (Some(Upload::Multipart { id }), CommitVia::Multipart(mp)) => {
                    mp.abort_multipart(&obj.key, &id).await
                }
                (Some(Upload::Staged { mut upload, .. }), _) => upload.abort().await,
                _ => Ok(()),
            };
            if let Err(e) = aborted {
                tracing::warn!(key = %obj.key, error = %e, "s3 sink: aborting an upload failed; the lifecycle rule reclaims it");
            }
        }
    }
}

/// The request that uploads part `idx` of an object.
fn put_part(
    upload: &mut Upload,
    via: CommitVia,
    key: &Path,
    idx: usize,
    payload: PutPayload,
) -> BoxFuture<'static, object_store::Result<Option<PartId>>> {
    match (upload, via) {
        (Upload::Multipart { id: upload_id }, CommitVia::Multipart(mp)) => {
            let key = key.clone();
            let upload_id = upload_id.clone();
            Box::pin(async move { mp.put_part(&key, &upload_id, idx, payload).await.map(Some) })
        }
        (Upload::Staged { upload, .. }, _) => {
            let part = upload.put_part(payload);
            Box::pin(async move { part.await.map(|()| None) })
        }
        (Upload::Multipart { .. }, CommitVia::Staging) => {
            unreachable!("an object's upload kind follows the sink's commit mode")
        }
    }
}
