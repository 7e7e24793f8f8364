use crate::checkpoint::CheckpointId;
use crate::error::BoxError;
use crate::record::Batch;
use crate::sink::{Sink, SinkContext};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// What [`LocalDirSink::pre_commit`] hands to the checkpoint: the pre-committed file, if the
/// epoch wrote anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalDirHandle {
    /// File name under `.inprogress/` and, once committed, under the directory.
    pub file: Option<String>,
}

/// Writes JSON lines into a local directory, exactly once.
///
/// Each checkpoint epoch goes to `<dir>/.inprogress/<node>.open`; pre-commit syncs it and renames
/// it to `.inprogress/<node>-<checkpoint>.jsonl`; commit renames that into `<dir>/` by atomic
/// rename. A commit that finds the file already in place is a no-op, so re-running it after a
/// crash duplicates nothing. On start, files of epochs that never completed are removed.
/// Readers should ignore `.inprogress/`.
#[derive(Debug)]
pub struct LocalDirSink<T> {
    dir: PathBuf,
    node: String,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    buf: Vec<u8>,
    _type: PhantomData<fn(T)>,
}

impl<T> LocalDirSink<T> {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalDirSink {
            dir: dir.into(),
            node: String::new(),
            file: None,
            buf: Vec::new(),
            _type: PhantomData,
        }
    }

    fn staging(&self) -> PathBuf {
        self.dir.join(".inprogress")
    }

    fn open_path(&self) -> PathBuf {
        self.staging().join(format!("{}.open", self.node))
    }

    fn name_for(&self, id: CheckpointId) -> String {
        format!("{}-{:010}.jsonl", self.node, id.0)
    }
}

fn epoch_of(name: &str, node: &str) -> Option<u64> {
    name.strip_prefix(node)?
        .strip_prefix('-')?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

async fn sync_dir(dir: &Path) {
    // Makes renames durable; not every platform can open a directory, so best effort.
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

#[async_trait]
impl<T: Serialize + Send + 'static> Sink for LocalDirSink<T> {
    type Item = T;
    type Handle = LocalDirHandle;

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), BoxError> {
        self.node.clone_from(&ctx.node);
        let staging = self.staging();
        tokio::fs::create_dir_all(&staging).await?;
        let _ = tokio::fs::remove_file(self.open_path()).await;
        let restored = ctx.restored_checkpoint.map(|c| c.0).unwrap_or(0);
        let mut entries = tokio::fs::read_dir(&staging).await?;
        while let Some(e) = entries.next_entry().await? {
            let name = e.file_name().to_string_lossy().to_string();
            if epoch_of(&name, &self.node).is_some_and(|epoch| epoch > restored) {
                tokio::fs::remove_file(e.path()).await?;
            }
        }
        Ok(())
    }

    async fn write(&mut self, batch: Batch<T>) -> Result<(), BoxError> {
        if self.file.is_none() {
            let f = tokio::fs::File::create(self.open_path()).await?;
            self.file = Some(tokio::io::BufWriter::with_capacity(1 << 16, f));
        }
        self.buf.clear();
        for r in &batch {
            serde_json::to_writer(&mut self.buf, &r.value)?;
            self.buf.push(b'\n');
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&self.buf).await?;
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<LocalDirHandle, BoxError> {
        let Some(mut file) = self.file.take() else {
            return Ok(LocalDirHandle { file: None });
        };
        file.flush().await?;
        file.get_mut().sync_all().await?;
        drop(file);
        let name = self.name_for(checkpoint);
        tokio::fs::rename(self.open_path(), self.staging().join(&name)).await?;
        sync_dir(&self.staging()).await;
        Ok(LocalDirHandle { file: Some(name) })
    }

    async fn commit(
        &mut self,
        checkpoint: CheckpointId,
        handle: LocalDirHandle,
    ) -> Result<(), BoxError> {
        let Some(name) = handle.file else {
            return Ok(());
        };
        let staged = self.staging().join(&name);
        let final_path = self.dir.join(&name);
        match tokio::fs::rename(&staged, &final_path).await {
            Ok(()) => {
                sync_dir(&self.dir).await;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if tokio::fs::try_exists(&final_path).await? {
                    Ok(()) // committed before the crash
                } else {
                    Err(format!(
                        "checkpoint {checkpoint}: pre-committed file {name} is neither staged nor committed"
                    )
                    .into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        self.file = None;
        let _ = tokio::fs::remove_file(self.open_path()).await;
        Ok(())
    }
}
