use crate::error::BoxError;
use crate::record::{Offset, Origin, Record, SplitId, SplitRef};
use crate::source::{Source, SourceEvent};
use crate::time::EventTime;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

/// Position of a [`JsonLinesSource`]: byte offset of the next unread line of every file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonLinesPosition {
    /// Next byte offset per file path.
    pub offsets: BTreeMap<String, u64>,
}

struct FileSplit {
    path: Arc<str>,
    split: SplitId,
    source: Arc<SplitRef>,
    reader: Option<BufReader<tokio::fs::File>>,
    offset: u64,
    added: bool,
    done: bool,
    announced: bool,
}

/// Reads newline-delimited records from files: each file is a split, the position is a byte
/// offset. Yields each line's raw bytes; decode them in the pipeline so that a malformed line
/// goes to the error path. Event time is the read time unless the watermark strategy assigns one.
pub struct JsonLinesSource {
    files: Vec<FileSplit>,
    batch_size: usize,
    cursor: usize,
}

impl JsonLinesSource {
    /// Reads `paths`, each to its end.
    pub fn new(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        let files = paths
            .into_iter()
            .map(|p| {
                let p: PathBuf = p.into();
                let path: Arc<str> = Arc::from(p.to_string_lossy().as_ref());
                FileSplit {
                    split: SplitId::new(&*path),
                    source: Arc::new(SplitRef {
                        stream: path.to_string(),
                        split: SplitId::new(&*path),
                    }),
                    path,
                    reader: None,
                    offset: 0,
                    added: false,
                    done: false,
                    announced: false,
                }
            })
            .collect();
        JsonLinesSource {
            files,
            batch_size: 1024,
            cursor: 0,
        }
    }

    /// Lines per batch (default 1024).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

#[async_trait]
impl Source for JsonLinesSource {
    type Item = Bytes;
    type Position = JsonLinesPosition;

    async fn open(&mut self, restored: Option<JsonLinesPosition>) -> Result<(), BoxError> {
        let restored = restored.unwrap_or_default();
        for f in &mut self.files {
            f.offset = restored.offsets.get(&*f.path).copied().unwrap_or(0);
            let mut file = tokio::fs::File::open(&*f.path)
                .await
                .map_err(|e| format!("cannot open {}: {e}", f.path))?;
            file.seek(std::io::SeekFrom::Start(f.offset)).await?;
            f.reader = Some(BufReader::new(file));
        }
        Ok(())
    }

    async fn poll(&mut self, _max_wait: Duration) -> Result<SourceEvent<Bytes>, BoxError> {
        // Every file holds the watermark back from the start.
        if let Some(f) = self.files.iter_mut().find(|f| !f.added) {
            f.added = true;
            return Ok(SourceEvent::SplitAdded(f.split.clone()));
        }
        // A fully read file stops holding the watermark back.
        if let Some(f) = self.files.iter_mut().find(|f| f.done && !f.announced) {
            f.announced = true;
            return Ok(SourceEvent::SplitRemoved(f.split.clone()));
        }
        let n = self.files.len();
        let Some(i) = (0..n)
            .map(|k| (self.cursor + k) % n)
            .find(|&i| !self.files[i].done)
        else {
            return Ok(SourceEvent::Finished);
        };
        self.cursor = (i + 1) % n;
        let f = &mut self.files[i];
        let reader = f.reader.as_mut().ok_or("source not opened")?;
        let now = EventTime::now();
        let mut records = Vec::with_capacity(self.batch_size);
        let mut line = Vec::new();
        while records.len() < self.batch_size {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| format!("reading {} at byte {}: {e}", f.path, f.offset))?;
            if read == 0 {
                f.done = true;
                break;
            }
            let at = f.offset;
            f.offset += read as u64;
            let mut end = line.len();
            while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            if end == 0 {
                continue;
            }
            records.push(
                Record::new(Bytes::copy_from_slice(&line[..end]), now).with_origin(Origin {
                    source: f.source.clone(),
                    offset: Offset::Number(at as i64),
                }),
            );
        }
        if records.is_empty() {
            return Ok(SourceEvent::Idle);
        }
        Ok(SourceEvent::Batch {
            split: f.split.clone(),
            records,
        })
    }

    fn position(&self) -> JsonLinesPosition {
        JsonLinesPosition {
            offsets: self
                .files
                .iter()
                .map(|f| (f.path.to_string(), f.offset))
                .collect(),
        }
    }
}
