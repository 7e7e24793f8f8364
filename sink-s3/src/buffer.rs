//! Buffering: the objects of the current epoch, records encoded into the open one of their
//! partition, and rotation by size, record count, record-time span and open-object count.
//! None of these reads the wall clock, so a replay cuts objects at the same records.

use crate::error::S3SinkError;
use crate::format::ObjectEncoder;
use crate::sink::S3Sink;
use crate::upload::Upload;
use object_store::multipart::PartId;
use object_store::path::Path;
use std::time::Instant;
use watershed_core::Record;

/// An object of the current epoch: open (encoder present) or rolled (waiting for pre-commit).
pub(crate) struct Object {
    pub(crate) key: Path,
    pub(crate) encoder: Option<ObjectEncoder>,
    pub(crate) raw_bytes: u64,
    pub(crate) records: u64,
    pub(crate) first_ts: i64,
    pub(crate) opened: Instant,
    pub(crate) upload: Option<Upload>,
    pub(crate) parts: Vec<Option<PartId>>,
    pub(crate) uploaded: u64,
}

impl Object {
    pub(crate) fn upload_id(&self) -> Option<&str> {
        match &self.upload {
            Some(Upload::Multipart { id }) => Some(id),
            _ => None,
        }
    }
}

impl<T> S3Sink<T> {
    /// Opens a new object for `partition`, rolling the oldest open one if too many are open.
    pub(crate) async fn open_object(
        &mut self,
        partition: &str,
        first_ts: i64,
    ) -> Result<u64, S3SinkError> {
        if self.open.len() >= self.cfg.max_open_objects {
            let oldest = *self.open.values().min().expect("at least one open object");
            self.roll(oldest).await?;
        }
        let id = self.next_id;
        self.next_id += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.key_for(partition, seq);
        let encoder = ObjectEncoder::new(&self.cfg.format, self.cfg.compression, &key)?;
        self.objects.insert(
            id,
            Object {
                key,
                encoder: Some(encoder),
                raw_bytes: 0,
                records: 0,
                first_ts,
                opened: Instant::now(),
                upload: None,
                parts: Vec::new(),
                uploaded: 0,
            },
        );
        self.open.insert(partition.to_owned(), id);
        Ok(id)
    }

    /// Ends the object: compresses the rest and uploads it as the last part.
    pub(crate) async fn roll(&mut self, id: u64) -> Result<(), S3SinkError> {
        let obj = self.objects.get_mut(&id).expect("object exists");
        let Some(encoder) = obj.encoder.take() else {
            return Ok(());
        };
        let key = obj.key.clone();
        tracing::debug!(%key, records = obj.records, raw_bytes = obj.raw_bytes, "s3 sink: object rolled");
        self.open.retain(|_, v| *v != id);
        if self.last_object.is_some_and(|(_, o)| o == id) {
            self.last_object = None;
        }
        let rest = encoder.finish(&key)?;
        self.upload_part(id, rest).await
    }

    /// Rolls object `id` when `record_ts` is a span or more past its first record, before the
    /// record that crosses the span is added. Returns the object the record goes to.
    pub(crate) async fn roll_on_span(
        &mut self,
        id: u64,
        record_ts: i64,
    ) -> Result<u64, S3SinkError> {
        let Some(span) = self.cfg.max_object_span_ms else {
            return Ok(id);
        };
        let first = self.objects[&id].first_ts;
        if record_ts.saturating_sub(first) < span {
            return Ok(id);
        }
        let partition = self
            .open
            .iter()
            .find_map(|(p, v)| (*v == id).then(|| p.clone()))
            .expect("the object is open");
        self.roll(id).await?;
        self.open_object(&partition, record_ts).await
    }

    /// Encodes `record` as the next line of open object `id`.
    pub(crate) fn append(&mut self, id: u64, record: &Record<T>) -> Result<(), S3SinkError> {
        self.scratch.clear();
        (self.cfg.encoder)(record, &mut self.scratch).map_err(|source| S3SinkError::Encode {
            key: self.objects[&id].key.to_string(),
            source,
        })?;
        self.scratch.push(b'\n');
        let obj = self.objects.get_mut(&id).expect("object exists");
        let encoder = obj.encoder.as_mut().expect("open object has an encoder");
        encoder.write_line(&self.scratch, &obj.key)?;
        obj.raw_bytes += self.scratch.len() as u64;
        obj.records += 1;
        Ok(())
    }

    /// Rolls object `id` once full, else uploads a part once enough compressed bytes are ready.
    pub(crate) async fn flush_if_due(&mut self, id: u64) -> Result<(), S3SinkError> {
        let cfg = &self.cfg;
        let obj = self.objects.get_mut(&id).expect("object exists");
        let full = obj.raw_bytes >= cfg.max_object_bytes
            || cfg.max_object_records.is_some_and(|m| obj.records >= m);
        if full {
            return self.roll(id).await;
        }
        let encoder = obj.encoder.as_mut().expect("open object has an encoder");
        if encoder.output_len() >= cfg.part_size {
            let data = encoder.take_output();
            self.upload_part(id, data).await?;
        }
        Ok(())
    }

    /// Bytes buffered in open objects, and the age of the oldest open object.
    pub(crate) fn update_gauges(&mut self) {
        let mut buffered = 0usize;
        let mut oldest: Option<Instant> = None;
        for id in self.open.values() {
            if let Some(obj) = self.objects.get_mut(id) {
                if let Some(e) = obj.encoder.as_mut() {
                    buffered += e.output_len();
                }
                oldest = Some(oldest.map_or(obj.opened, |o| o.min(obj.opened)));
            }
        }
        self.metrics.buffered.set(buffered as f64);
        self.metrics
            .oldest_age
            .set(oldest.map_or(0.0, |o| o.elapsed().as_secs_f64()));
    }
}
