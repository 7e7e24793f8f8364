//! `KinesisSink`: PutRecords batching, partial-failure retries, at-least-once.

use crate::backoff::Backoff;
use crate::config::{with_stream, AwsOptions, StreamRef};
use crate::error::{classify, detail, is_throttle_code, Failure, KinesisError};
use crate::retry::{Call, Retry, Verdict};
use crate::stats::KinesisStats;
use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;
use watershed_core::{Batch, BoxError, CheckpointId, Record, Sink, SinkContext};

/// PutRecords accepts at most 500 entries per request.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// PutRecords accepts at most 5 MiB (data and partition keys) per request.
pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// A record (data plus partition key) may be at most 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// A partition key is 1 to 256 Unicode characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;

type KeyFn = Arc<dyn Fn(&Record<Bytes>) -> String + Send + Sync>;
type HashKeyFn = Arc<dyn Fn(&Record<Bytes>) -> Option<String> + Send + Sync>;

/// Builds a [`KinesisSink`].
#[derive(Clone)]
pub struct KinesisSinkBuilder {
    stream: StreamRef,
    aws: AwsOptions,
    backoff: Backoff,
    partition_key: Option<KeyFn>,
    explicit_hash_key: Option<HashKeyFn>,
}

impl fmt::Debug for KinesisSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisSinkBuilder")
            .field("stream", &self.stream)
            .field("aws", &self.aws)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl KinesisSinkBuilder {
    /// AWS connection settings (region, credentials, endpoint).
    pub fn aws(mut self, aws: AwsOptions) -> Self {
        self.aws = aws;
        self
    }

    /// Retry timing; `max_attempts` bounds the PutRecords calls per flush before the sink
    /// fails with [`KinesisError::RecordsFailed`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Derives the partition key from the record instead of from its key (see
    /// [`default_partition_key`]). The key must be 1–256 characters.
    pub fn partition_key(
        mut self,
        f: impl Fn(&Record<Bytes>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.partition_key = Some(Arc::new(f));
        self
    }

    /// Sets an explicit hash key (a decimal 128-bit number) per record, which places it on
    /// the shard owning that hash instead of the MD5 of the partition key.
    pub fn explicit_hash_key(
        mut self,
        f: impl Fn(&Record<Bytes>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.explicit_hash_key = Some(Arc::new(f));
        self
    }

    /// The sink (it connects in [`Sink::open`]).
    pub fn build(self) -> KinesisSink {
        KinesisSink {
            stream: self.stream,
            aws: self.aws,
            backoff: self.backoff,
            partition_key: self.partition_key,
            explicit_hash_key: self.explicit_hash_key,
            stats: Arc::default(),
            client: None,
            endpoint: String::new(),
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }
}

/// The partition key used when none is configured: the record key when it is UTF-8 of 1–256
/// characters; otherwise a hex digest of the key, or of the payload for a record without
/// a key (so equal payloads land on one shard and the choice is deterministic).
pub fn default_partition_key(record: &Record<Bytes>) -> String {
    match &record.key {
        Some(key) => match std::str::from_utf8(key) {
            Ok(s) if !s.is_empty() && s.chars().count() <= MAX_PARTITION_KEY_CHARS => s.to_owned(),
            _ => digest(key),
        },
        None => digest(&record.value),
    }
}

/// 128-bit FNV-1a as 32 hex digits: stable across releases and platforms (unlike
/// `DefaultHasher`), so a record keeps its shard from one run to the next.
fn digest(bytes: &[u8]) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in bytes {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    format!("{h:032x}")
}

/// Writes records to a Kinesis data stream with PutRecords.
///
/// Records are buffered and sent in requests of at most 500 records and 5 MiB; a full buffer
/// is sent from `write`, the rest in `pre_commit`, so a completed checkpoint means every
/// record before it was acknowledged by Kinesis. When PutRecords accepts only part of a
/// request, only the failed entries are resent, after a jittered backoff; after
/// `backoff.max_attempts` calls the sink fails with [`KinesisError::RecordsFailed`].
///
/// **At-least-once only.** Kinesis has no transactions and no producer idempotence: a retry
/// after a timeout, a resend after a partial failure, or the replay after a restore from a
/// checkpoint writes a record again with a new sequence number (PutRecords has no idempotent write). `commit` is
/// therefore a no-op. Consumers reach exactly-once by deduplicating on a record id carried in
/// the payload, or by writing to an idempotent store keyed on it. Partial retries can also
/// reorder records of one partition key relative to each other.
pub struct KinesisSink {
    stream: StreamRef,
    aws: AwsOptions,
    backoff: Backoff,
    partition_key: Option<KeyFn>,
    explicit_hash_key: Option<HashKeyFn>,
    stats: Arc<KinesisStats>,
    client: Option<Client>,
    /// The endpoint the client calls, for errors.
    endpoint: String,
    pending: Vec<PutRecordsRequestEntry>,
    pending_bytes: usize,
}

impl KinesisSink {
    /// A builder for a sink writing to `stream` (a name, or an ARN starting with `arn:`).
    pub fn builder(stream: impl Into<String>) -> KinesisSinkBuilder {
        KinesisSinkBuilder {
            stream: StreamRef::parse(stream),
            aws: AwsOptions::default(),
            backoff: Backoff::default(),
            partition_key: None,
            explicit_hash_key: None,
        }
    }

    /// Counters of this sink (shared; read them while the pipeline runs).
    pub fn stats(&self) -> Arc<KinesisStats> {
        self.stats.clone()
    }

    fn entry(
        &self,
        record: Record<Bytes>,
    ) -> Result<(PutRecordsRequestEntry, usize), KinesisError> {
        let key = match &self.partition_key {
            Some(f) => f(&record),
            None => default_partition_key(&record),
        };
        let hash_key = self.explicit_hash_key.as_ref().and_then(|f| f(&record));
        let size = record.value.len() + key.len();
        if size > MAX_RECORD_BYTES {
            return Err(KinesisError::RecordTooLarge {
                stream: self.stream.as_str().to_owned(),
                partition_key: key,
                size,
                limit: MAX_RECORD_BYTES,
            });
        }
        let entry = PutRecordsRequestEntry::builder()
            .data(Blob::new(record.value))
            .partition_key(key)
            .set_explicit_hash_key(hash_key)
            .build()
            .map_err(|e| KinesisError::Config(format!("PutRecords entry: {e}")))?;
        Ok((entry, size))
    }

    /// Sends everything buffered.
    async fn flush(&mut self) -> Result<(), KinesisError> {
        let entries = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if entries.is_empty() {
            return Ok(());
        }
        let client = self
            .client
            .clone()
            .ok_or_else(|| KinesisError::Config("the sink is not open".into()))?;
        put_all(&client, &self.call("PutRecords"), &self.stats, entries).await
    }

    fn call(&self, operation: &'static str) -> Call<'_> {
        Call {
            operation,
            stream: &self.stream,
            endpoint: &self.endpoint,
            backoff: &self.backoff,
            stats: Some(&self.stats),
        }
    }
}

/// Puts `entries` (one request's worth), resending only the entries PutRecords reports as
/// failed, until all are accepted or the attempts run out.
pub(crate) async fn put_all(
    client: &Client,
    call: &Call<'_>,
    stats: &KinesisStats,
    entries: Vec<PutRecordsRequestEntry>,
) -> Result<(), KinesisError> {
    let (stream, backoff) = (call.stream, call.backoff);
    let total = entries.len();
    let mut pending = entries;
    let mut attempt = 0u32;
    // Running out of waits is running out of attempts.
    let mut waits = backoff.delays_between(backoff.max_attempts);
    // Only for a request that gets no answer at all: partial failures count attempts.
    let mut reach = Retry::new(backoff);
    loop {
        attempt += 1;
        stats.add_call();
        let result = with_stream!(client.put_records(), stream)
            .set_records(Some(pending.clone()))
            .send()
            .await;
        let (error_code, error_message) = match result {
            Ok(out) => {
                reach.succeeded();
                let (failed, first) = settle(call, stats, pending, &out)?;
                pending = failed;
                match first {
                    None => return Ok(()),
                    Some(f) => f,
                }
            }
            Err(e) if classify(&e) == Failure::Unreachable => {
                match reach.after(Failure::Unreachable) {
                    Verdict::Retry(delay) => {
                        // Not an attempt that counts: Kinesis never answered it.
                        attempt -= 1;
                        stats.add_retry(stream.as_str(), "PutRecords");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    Verdict::Unreachable(waited) => return Err(call.unreachable(waited, &e)),
                    Verdict::GiveUp => return Err(call.error(&crate::retry::Failed::Refused(e))),
                }
            }
            Err(e) => match classify(&e) {
                // A request-level failure: no entry is known to be written, resend them all
                // (a timeout may have written them: at-least-once).
                Failure::Throttled => {
                    stats.add_throttled(pending.len() as u64, stream.as_str(), "PutRecords");
                    (
                        "ProvisionedThroughputExceededException".to_owned(),
                        detail(&e),
                    )
                }
                Failure::Transient => ("Transient".to_owned(), detail(&e)),
                _ => {
                    return Err(crate::presence::not_found_or(
                        call,
                        &crate::retry::Failed::Refused(e),
                    ))
                }
            },
        };
        let Some(wait) = waits.next() else {
            return Err(KinesisError::RecordsFailed {
                stream: stream.as_str().to_owned(),
                failed: pending.len(),
                total,
                attempts: attempt,
                error_code,
                error_message,
            });
        };
        stats.add_retry(stream.as_str(), "PutRecords");
        tokio::time::sleep(wait).await;
    }
}

/// The entries to resend, and the first failure's code and message (`None`: all went in).
type Resend = (Vec<PutRecordsRequestEntry>, Option<(String, String)>);

/// Sorts one PutRecords response: counts what was accepted and throttled, and returns what
/// to resend.
fn settle(
    call: &Call<'_>,
    stats: &KinesisStats,
    pending: Vec<PutRecordsRequestEntry>,
    out: &aws_sdk_kinesis::operation::put_records::PutRecordsOutput,
) -> Result<Resend, KinesisError> {
    let stream = call.stream;
    if out.records().len() != pending.len() {
        return Err(KinesisError::Stream {
            operation: "PutRecords",
            stream: stream.as_str().to_owned(),
            endpoint: call.endpoint.to_owned(),
            detail: format!(
                "{} results for {} entries",
                out.records().len(),
                pending.len()
            ),
        });
    }
    // Results align with the request by index.
    crate::utilisation::observe_write(stream.as_str(), &pending, out.records());
    let mut failed = Vec::new();
    let mut first: Option<(String, String)> = None;
    let mut throttled = 0;
    // Accepted entries per shard, for the per-shard metric (one update per shard and call,
    // not per record).
    let mut per_shard: Vec<(&str, u64)> = Vec::new();
    for (entry, result) in pending.into_iter().zip(out.records()) {
        if let (None, Some(shard)) = (result.error_code(), result.shard_id()) {
            match per_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, n)) => *n += 1,
                None => per_shard.push((shard, 1)),
            }
        }
        if let Some(code) = result.error_code() {
            if is_throttle_code(code) {
                throttled += 1;
            }
            first.get_or_insert_with(|| {
                (
                    code.to_owned(),
                    result.error_message().unwrap_or_default().to_owned(),
                )
            });
            failed.push(entry);
        }
    }
    if throttled > 0 {
        stats.add_throttled(throttled, stream.as_str(), "PutRecords");
    }
    let done = out.records().len() - failed.len();
    stats.add_records(done as u64);
    for (shard, n) in per_shard {
        metrics::counter!(crate::metric_catalogue::RECORDS_OUT, "stream" => stream.as_str().to_owned(), "shard" => shard.to_owned())
            .increment(n);
    }
    Ok((failed, first))
}

#[async_trait]
impl Sink for KinesisSink {
    type Item = Bytes;
    type Handle = ();

    async fn open(&mut self, _ctx: &SinkContext) -> Result<(), BoxError> {
        let (client, endpoint) = self.aws.build_client().await?;
        self.endpoint = endpoint;
        crate::presence::check_stream(&client, &self.call("DescribeStreamSummary")).await?;
        self.client = Some(client);
        Ok(())
    }

    async fn write(&mut self, batch: Batch<Bytes>) -> Result<(), BoxError> {
        for record in batch {
            let (entry, size) = self.entry(record)?;
            if self.pending.len() == MAX_RECORDS_PER_REQUEST
                || self.pending_bytes + size > MAX_BYTES_PER_REQUEST
            {
                self.flush().await?;
            }
            self.pending.push(entry);
            self.pending_bytes += size;
        }
        if self.pending.len() == MAX_RECORDS_PER_REQUEST {
            self.flush().await?;
        }
        Ok(())
    }

    async fn pre_commit(&mut self, _checkpoint: CheckpointId) -> Result<(), BoxError> {
        // At-least-once: everything before the barrier is acknowledged before the checkpoint
        // can complete.
        self.flush().await?;
        Ok(())
    }

    async fn commit(&mut self, _checkpoint: CheckpointId, _handle: ()) -> Result<(), BoxError> {
        // Nothing to make visible: PutRecords writes are visible at once (no transactions).
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BoxError> {
        // Unsent records are dropped; the restore replays them from the source.
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), BoxError> {
        self.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watershed_core::EventTime;

    fn record(key: Option<&[u8]>, value: &'static [u8]) -> Record<Bytes> {
        let mut r = Record::new(Bytes::from_static(value), EventTime(0));
        r.key = key.map(Bytes::copy_from_slice);
        r
    }

    #[test]
    fn partition_key_is_the_record_key_when_it_is_a_valid_kinesis_key() {
        assert_eq!(
            default_partition_key(&record(Some(b"user-7"), b"x")),
            "user-7"
        );
    }

    #[test]
    fn partition_key_is_a_stable_digest_for_binary_long_or_missing_keys() {
        let binary = default_partition_key(&record(Some(&[0xff, 0xfe]), b"x"));
        assert_eq!(binary.len(), 32);
        let long = default_partition_key(&record(Some(&[b'a'; 300]), b"x"));
        assert_eq!(long.len(), 32);
        let a = default_partition_key(&record(None, b"payload"));
        let b = default_partition_key(&record(None, b"payload"));
        assert_eq!(a, b, "deterministic");
        assert_ne!(a, default_partition_key(&record(None, b"other")));
        // Pinned so that a change of digest (which would move keys between shards) is seen.
        assert_eq!(digest(b""), "6c62272e07bb014262b821756295c58d");
    }

    #[test]
    fn n1_a_record_over_one_mib_is_refused_with_its_partition_key() {
        let sink = KinesisSink::builder("s").build();
        let mut r = Record::new(Bytes::from(vec![0u8; MAX_RECORD_BYTES]), EventTime(0));
        r.key = Some(Bytes::from_static(b"k"));
        match sink.entry(r) {
            Err(KinesisError::RecordTooLarge {
                partition_key,
                size,
                ..
            }) => {
                assert_eq!(partition_key, "k");
                assert_eq!(size, MAX_RECORD_BYTES + 1);
            }
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
    }
}
