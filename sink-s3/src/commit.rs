//! The two-phase commit: what a checkpoint holds for each object ([`S3SinkHandle`]), how an
//! epoch is pre-committed (durable, invisible), and how a completed checkpoint's objects are
//! made visible, idempotently, so a restarted pipeline can commit the same handle again.

use crate::buffer::Object;
use crate::builder::CommitVia;
use crate::error::S3SinkError;
use crate::sink::S3Sink;
use crate::upload::Upload;
use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use watershed_core::CheckpointId;

/// What a pre-committed object needs to become visible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PendingCommit {
    /// Complete this multipart upload of the final key.
    Multipart {
        /// The upload id S3 returned.
        upload_id: String,
        /// The ETag of every part, in part order.
        parts: Vec<String>,
    },
    /// Copy this staged object to the final key, then delete it.
    Staged {
        /// Where the complete object waits.
        staging_key: String,
    },
}

/// One object of a pre-committed epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingObject {
    /// The final key.
    pub key: String,
    /// Its length in bytes (what a re-commit verifies when the object already exists).
    pub bytes: u64,
    /// Records it holds.
    pub records: u64,
    /// How it becomes visible.
    #[serde(flatten)]
    pub via: PendingCommit,
}

/// What [`S3Sink`]'s [`pre_commit`](watershed_core::Sink::pre_commit) hands to the checkpoint:
/// every object of the epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct S3SinkHandle {
    /// The epoch the objects were named after.
    pub epoch: u64,
    /// The objects, in the order they were opened.
    pub objects: Vec<PendingObject>,
}

impl<T> S3Sink<T> {
    /// Rolls every open object, waits for every part, and hands out what each object needs to
    /// become visible: its parts' ETags, or its staged copy once that upload completes.
    pub(crate) async fn pre_commit_epoch(&mut self) -> Result<S3SinkHandle, S3SinkError> {
        let open: Vec<u64> = self.open.values().copied().collect();
        for id in open {
            self.roll(id).await?;
        }
        while !self.uploads.is_empty() {
            self.reap_one().await?;
        }
        let mut handle = S3SinkHandle {
            epoch: self.epoch,
            objects: Vec::with_capacity(self.objects.len()),
        };
        for obj in std::mem::take(&mut self.objects).into_values() {
            handle.objects.push(pending_object(obj).await?);
        }
        self.update_gauges();
        tracing::info!(
            node = %self.node,
            epoch = handle.epoch,
            objects = handle.objects.len(),
            bytes = handle.objects.iter().map(|o| o.bytes).sum::<u64>(),
            "s3 sink: epoch pre-committed"
        );
        Ok(handle)
    }

    /// Makes every object of a completed checkpoint visible.
    pub(crate) async fn commit_epoch(
        &mut self,
        checkpoint: CheckpointId,
        handle: &S3SinkHandle,
    ) -> Result<(), S3SinkError> {
        for obj in &handle.objects {
            self.commit_object(obj).await?;
            self.metrics.objects.increment(1);
        }
        tracing::info!(
            node = %self.node,
            checkpoint = checkpoint.0,
            epoch = handle.epoch,
            objects = handle.objects.len(),
            "s3 sink: checkpoint committed"
        );
        Ok(())
    }

    /// Makes one pre-committed object visible; idempotent.
    async fn commit_object(&mut self, obj: &PendingObject) -> Result<(), S3SinkError> {
        let cfg = self.cfg.clone();
        let key = Path::from(obj.key.as_str());
        match &obj.via {
            PendingCommit::Multipart { upload_id, parts } => {
                let CommitVia::Multipart(mp) = &cfg.via else {
                    return Err(S3SinkError::Commit {
                        key: obj.key.clone(),
                        upload: Some(upload_id.clone()),
                        reason: "the checkpoint holds a multipart upload but the sink is \
                                 configured without a multipart store"
                            .into(),
                    });
                };
                complete_upload(&cfg.store, mp.as_ref(), &key, obj, upload_id, parts).await?;
            }
            PendingCommit::Staged { staging_key } => {
                let staging = Path::from(staging_key.as_str());
                copy_staged(&cfg.store, &staging, &key, obj).await?;
                match cfg.store.delete(&staging).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(S3SinkError::store(
                            "delete staged object",
                            &staging,
                            None,
                            e,
                        ))
                    }
                }
            }
        }
        tracing::debug!(key = %obj.key, bytes = obj.bytes, records = obj.records, "s3 sink: object committed");
        Ok(())
    }

    /// Deletes staged objects of epochs after the restored checkpoint: a previous run wrote
    /// them, but no completed checkpoint refers to them.
    pub(crate) async fn clean_staging(&mut self, restored: u64) -> Result<(), S3SinkError> {
        let dir = Path::from(self.staging_dir());
        let listed: Vec<_> = self
            .cfg
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| S3SinkError::store("list staging", &dir, None, e))?;
        let prefix_parts = dir.parts().count();
        let mut deleted = 0usize;
        for meta in listed {
            let epoch = meta
                .location
                .parts()
                .nth(prefix_parts)
                .and_then(|p| p.as_ref().parse::<u64>().ok());
            if epoch.is_some_and(|e| e > restored) {
                match self.cfg.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(e) => {
                        return Err(S3SinkError::store(
                            "delete stale staged object",
                            &meta.location,
                            None,
                            e,
                        ))
                    }
                }
            }
        }
        if deleted > 0 {
            tracing::info!(
                staging = %dir,
                restored,
                deleted,
                "s3 sink: deleted staged objects of epochs no completed checkpoint refers to"
            );
        }
        Ok(())
    }
}

/// What a rolled object of the epoch needs to become visible; completes a staged upload, so
/// the object is durable before the checkpoint refers to it.
async fn pending_object(obj: Object) -> Result<PendingObject, S3SinkError> {
    let key = obj.key.to_string();
    let via = match obj.upload {
        Some(Upload::Multipart { id }) => PendingCommit::Multipart {
            upload_id: id,
            parts: obj
                .parts
                .into_iter()
                .map(|p| p.expect("all parts reaped").content_id)
                .collect(),
        },
        Some(Upload::Staged {
            key: staging,
            mut upload,
        }) => {
            upload
                .complete()
                .await
                .map_err(|e| S3SinkError::store("complete staging upload", &staging, None, e))?;
            PendingCommit::Staged {
                staging_key: staging.to_string(),
            }
        }
        None => unreachable!("a rolled object has uploaded its last part"),
    };
    Ok(PendingObject {
        key,
        bytes: obj.uploaded,
        records: obj.records,
        via,
    })
}

/// Completes the multipart upload of `key`, unless a previous commit already did.
async fn complete_upload(
    store: &Arc<dyn ObjectStore>,
    mp: &dyn MultipartStore,
    key: &Path,
    obj: &PendingObject,
    upload_id: &str,
    parts: &[String],
) -> Result<(), S3SinkError> {
    // Completing overwrites, so look first: committed data is never replaced.
    if verify_existing(store, key, obj, Some(upload_id)).await? {
        tracing::debug!(%key, upload_id, "s3 sink: object already committed, length verified");
        return Ok(());
    }
    let parts = parts
        .iter()
        .map(|p| PartId {
            content_id: p.clone(),
        })
        .collect();
    // object_store names uploads by `MultipartId` (a `String`).
    match mp
        .complete_multipart(key, &upload_id.to_owned(), parts)
        .await
    {
        Ok(_) => Ok(()),
        // The upload may have completed with the response lost: verify the object.
        Err(e) => {
            tracing::warn!(%key, upload_id, error = %e, "s3 sink: completing the upload failed; checking whether it completed anyway");
            match verify_existing(store, key, obj, Some(upload_id)).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(S3SinkError::store(
                    "complete upload",
                    key,
                    Some(upload_id),
                    e,
                )),
                Err(verify) => Err(verify),
            }
        }
    }
}

/// Copies the staged object to `key` without overwriting; a final object already there of the
/// expected length is a commit that ran before a crash.
async fn copy_staged(
    store: &Arc<dyn ObjectStore>,
    staging: &Path,
    key: &Path,
    obj: &PendingObject,
) -> Result<(), S3SinkError> {
    match store.copy_if_not_exists(staging, key).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::NotFound { .. }) => {
            // Committed before a crash (the staged copy may be gone already).
            if !verify_existing(store, key, obj, None).await? {
                return Err(S3SinkError::Commit {
                    key: obj.key.clone(),
                    upload: None,
                    reason: format!(
                        "neither the staged object {staging} nor the final object exists"
                    ),
                });
            }
            tracing::debug!(%key, "s3 sink: object already committed, length verified");
            Ok(())
        }
        Err(object_store::Error::NotSupported { .. }) => {
            // S3 without a copy-if-not-exists configuration: check, then copy.
            // Only this sink writes these names, so nothing races the check.
            if !verify_existing(store, key, obj, None).await? {
                store
                    .copy(staging, key)
                    .await
                    .map_err(|e| S3SinkError::store("copy staged object to", key, None, e))?;
            }
            Ok(())
        }
        Err(e) => Err(S3SinkError::store("copy staged object to", key, None, e)),
    }
}

/// True when the final key holds an object of the expected length, false when it is absent;
/// an error when it holds something else.
async fn verify_existing(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    obj: &PendingObject,
    upload: Option<&str>,
) -> Result<bool, S3SinkError> {
    match store.head(key).await {
        Ok(meta) if meta.size == obj.bytes => Ok(true),
        Ok(meta) => Err(S3SinkError::Commit {
            key: obj.key.clone(),
            upload: upload.map(str::to_owned),
            reason: format!(
                "the object exists with {} bytes, the checkpoint expects {}",
                meta.size, obj.bytes
            ),
        }),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(S3SinkError::store("head", key, upload, e)),
    }
}
