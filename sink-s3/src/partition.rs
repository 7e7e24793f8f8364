//! Partitioning: which open object a record goes to (its partition rendered from the template,
//! with a shortcut while only the hour matters), and the keys objects are written under.

use crate::builder::PartitionTime;
use crate::error::S3SinkError;
use crate::key::{join, object_name, PartitionTemplate};
use crate::sink::S3Sink;
use object_store::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use watershed_core::Record;

impl<T> S3Sink<T> {
    /// The time partitions are cut by for the records of one batch: `None` for each record's
    /// event time, else the wall clock once for the whole batch.
    pub(crate) fn processing_time(&self) -> Option<i64> {
        match self.cfg.partition_time {
            PartitionTime::EventTime => None,
            PartitionTime::ProcessingTime => Some(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            ),
        }
    }

    /// The open object records at `ts` go to, while partitions depend only on the hour and
    /// the hour is the previous record's: time-only partitions change at most once an hour,
    /// so most records skip rendering and looking up their partition.
    pub(crate) fn cached_object(&self, ts: i64) -> Option<u64> {
        match self.last_object {
            Some((h, id))
                if h == PartitionTemplate::hour_of(ts) && !self.cfg.template.uses_fields() =>
            {
                Some(id)
            }
            _ => None,
        }
    }

    /// The partition of `record` at time `ts`. `values` is scratch space for the field values.
    pub(crate) fn partition_of(
        &self,
        record: &Record<T>,
        ts: i64,
        values: &mut Vec<String>,
    ) -> String {
        let cfg = &self.cfg;
        if cfg.template.uses_fields() {
            values.clear();
            values.extend(cfg.fields.iter().map(|f| sanitize(&f(record))));
            cfg.template.render(ts, values)
        } else {
            cfg.template.render(ts, &[])
        }
    }

    /// The open object of `partition`, opened (for a first record at `first_ts`) if there is
    /// none; remembered for [`cached_object`](Self::cached_object).
    pub(crate) async fn object_of(
        &mut self,
        partition: String,
        ts: i64,
        first_ts: i64,
    ) -> Result<u64, S3SinkError> {
        let id = match self.open.get(&partition) {
            Some(&id) => id,
            None => self.open_object(&partition, first_ts).await?,
        };
        if !self.cfg.template.uses_fields() {
            self.last_object = Some((PartitionTemplate::hour_of(ts), id));
        }
        Ok(id)
    }

    /// `<prefix>/<partition>/<pipeline>-<node>-<epoch>-<seq><ext>`.
    pub(crate) fn key_for(&self, partition: &str, seq: u64) -> Path {
        let name = object_name(
            &self.pipeline,
            &self.node,
            self.epoch,
            seq,
            &self.cfg.extension,
        );
        Path::from(join(&[&self.cfg.prefix, partition, &name]))
    }

    /// Where this sink's staged objects wait, by epoch: one directory per pipeline and node,
    /// so a restart cleans only its own.
    pub(crate) fn staging_dir(&self) -> String {
        join(&[&self.cfg.staging_prefix, &self.pipeline, &self.node])
    }

    pub(crate) fn staging_key_for(&self, key: &Path) -> Path {
        let relative = key
            .as_ref()
            .strip_prefix(self.cfg.prefix.as_str())
            .unwrap_or(key.as_ref());
        Path::from(join(&[
            &self.staging_dir(),
            &format!("{:010}", self.epoch),
            relative,
        ]))
    }
}

/// Keeps partition values to characters that are safe in every store's keys.
fn sanitize(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // "." and ".." would be path navigation, and an empty value an empty directory.
    if clean.chars().all(|c| c == '.') {
        format!("_{clean}")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn partition_values_cannot_add_directories_or_navigate() {
        assert_eq!(sanitize("a/b c"), "a_b_c");
        assert_eq!(sanitize(".."), "_..");
        assert_eq!(sanitize("fr-FR_x.y=z"), "fr-FR_x.y=z");
    }
}
