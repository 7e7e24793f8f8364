use crate::checkpoint::CheckpointId;
use crate::error::BoxError;
use crate::record::Batch;
use crate::sink::Sink;
use async_trait::async_trait;
use serde::Serialize;
use std::io::Write;
use std::marker::PhantomData;

/// Prints each record's value as one JSON line on standard output. At-least-once: lines appear
/// as they are written, and a restarted pipeline may print some again.
#[derive(Debug)]
pub struct StdoutSink<T> {
    prefix: String,
    _type: PhantomData<fn(T)>,
}

impl<T> Default for StdoutSink<T> {
    fn default() -> Self {
        StdoutSink {
            prefix: String::new(),
            _type: PhantomData,
        }
    }
}

impl<T> StdoutSink<T> {
    /// A sink printing bare JSON lines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prints `prefix` before every line.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

#[async_trait]
impl<T: Serialize + Send + 'static> Sink for StdoutSink<T> {
    type Item = T;
    type Handle = ();

    async fn write(&mut self, batch: Batch<T>) -> Result<(), BoxError> {
        let mut buf = Vec::with_capacity(batch.len() * 64);
        for r in &batch {
            buf.extend_from_slice(self.prefix.as_bytes());
            serde_json::to_writer(&mut buf, &r.value)?;
            buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(&buf).and_then(|_| out.flush()) {
            // A closed pipe (`| head`) is the reader's choice, not a pipeline failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    async fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<(), BoxError> {
        Ok(())
    }

    async fn commit(&mut self, _checkpoint: CheckpointId, _handle: ()) -> Result<(), BoxError> {
        Ok(())
    }
}
