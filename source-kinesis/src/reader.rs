//! One shard's reader task: where its iterator starts, the GetRecords polling loop, and how
//! its records become Watershed records. The enhanced fan-out loop is in `efo.rs`.

use crate::config::{with_stream, StreamRef};
use crate::deaggregate::{split, NotAggregate, KPL_MAGIC};
use crate::error::{classify, code, detail, Failure, KinesisError};
use crate::retry::{Call, Retry, Verdict};
use crate::source::{ShardPosition, SourceOptions, StartPosition};
use crate::stats::KinesisStats;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use aws_smithy_types::DateTime;
use bytes::Bytes;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use watershed_core::{EventTime, Offset, Origin, Record, SequenceNumber, SplitId, SplitRef};

/// Where a new iterator or subscription starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartAt {
    After(String),
    Latest,
    Timestamp(i64),
    TrimHorizon,
}

/// What a shard reader task reports.
pub(crate) enum ReaderEvent {
    Records {
        shard: String,
        split: SplitId,
        records: Vec<Record<Bytes>>,
        /// Sequence number and sub-sequence of the last record.
        last: (String, u32),
    },
    End {
        shard: String,
        children: Vec<(String, Vec<String>)>,
    },
    /// The reader stopped: see [`Stop`].
    Stopped { shard: String, stop: Stop },
}

/// Why a reader stopped before its shard's end.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A failure the source passes on as it is.
    Failed(KinesisError),
    /// Kinesis refused to start after this sequence number (InvalidArgumentException, or
    /// ResourceNotFoundException for the record): the position is out of the shard's range.
    Refused { sequence: String, detail: String },
    /// Any other refusal (ResourceNotFoundException, ResourceInUseException of a stream being
    /// deleted, …): the source checks whether the stream still exists before reporting it.
    Check {
        operation: &'static str,
        sequence: Option<String>,
        detail: String,
    },
}

impl From<KinesisError> for Stop {
    fn from(e: KinesisError) -> Self {
        Stop::Failed(e)
    }
}

fn sub_sequence(r: &Record<Bytes>) -> u32 {
    match r.origin.as_ref().map(|o| &o.offset) {
        Some(Offset::Sequence(s)) => s.sub,
        _ => 0,
    }
}

/// The reading loop of one shard (GetRecords polling, or SubscribeToShard), in its own task.
pub(crate) struct ShardReader {
    pub(crate) client: Client,
    pub(crate) stream: StreamRef,
    pub(crate) shard: String,
    pub(crate) split: Arc<SplitRef>,
    /// Where the first iterator or subscription starts.
    pub(crate) start: ShardPosition,
    /// Where a later one starts while no record was read yet: the position's entry, which
    /// for a shard opened at LATEST is the resolved `AtTimestamp`, not a new LATEST.
    pub(crate) resume: ShardPosition,
    pub(crate) options: Arc<SourceOptions>,
    pub(crate) stats: Arc<KinesisStats>,
    pub(crate) tx: mpsc::Sender<ReaderEvent>,
    /// The enhanced fan-out consumer to subscribe with; `None` polls with GetRecords.
    pub(crate) consumer: Option<Arc<str>>,
    /// Set once ListShards reports the shard closed (it has an ending sequence number).
    pub(crate) closed: Arc<AtomicBool>,
    /// The Kinesis endpoint, for errors.
    pub(crate) endpoint: Arc<str>,
}

impl ShardReader {
    pub(crate) async fn run(self) {
        let tx = self.tx.clone();
        let shard = self.shard.clone();
        let result = if self.consumer.is_some() {
            self.subscribe().await
        } else {
            self.read().await
        };
        if let Err(stop) = result {
            let _ = tx.send(ReaderEvent::Stopped { shard, stop }).await;
        }
    }

    /// How a call that failed for good stops the reader: a refused start after a sequence
    /// number, a missing resource, or an error naming the shard.
    pub(crate) fn stop<E, R>(
        &self,
        operation: &'static str,
        start: Option<&StartAt>,
        last: &Option<String>,
        verdict: Verdict,
        e: &SdkError<E, R>,
    ) -> Stop
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        if let Verdict::Unreachable(waited) = verdict {
            return Stop::Failed(self.call(operation).unreachable(waited, e));
        }
        let refused = matches!(
            code(e),
            Some("InvalidArgumentException" | "ResourceNotFoundException")
        );
        match start {
            Some(StartAt::After(sequence)) if refused => Stop::Refused {
                sequence: sequence.clone(),
                detail: detail(e),
            },
            _ => Stop::Check {
                operation,
                sequence: last.clone(),
                detail: detail(e),
            },
        }
    }

    /// A call of this reader, for stream-level errors and retry counting.
    pub(crate) fn call(&self, operation: &'static str) -> Call<'_> {
        Call {
            operation,
            stream: &self.stream,
            endpoint: &self.endpoint,
            backoff: &self.options.backoff,
            stats: Some(&self.stats),
        }
    }

    /// The start for a new iterator or subscription: after the last record read, else the
    /// first start for the first one and the position's start for later ones.
    pub(crate) fn start_after(&self, last: &Option<String>, first: bool) -> StartAt {
        match (last, if first { &self.start } else { &self.resume }) {
            (Some(seq), _) => StartAt::After(seq.clone()),
            (None, ShardPosition::Start(StartPosition::Latest)) => StartAt::Latest,
            (None, ShardPosition::Start(StartPosition::AtTimestamp(ms))) => StartAt::Timestamp(*ms),
            (None, ShardPosition::After { sequence, .. }) => StartAt::After(sequence.clone()),
            (None, _) => StartAt::TrimHorizon,
        }
    }

    /// Converts and sends one response's records; returns false when the source is gone.
    /// `last` becomes the last Kinesis record's sequence number.
    pub(crate) async fn emit(
        &self,
        raw: Vec<aws_sdk_kinesis::types::Record>,
        last: &mut Option<String>,
        records_in: &metrics::Counter,
    ) -> bool {
        let fan_out = self.consumer.is_some();
        crate::utilisation::observe_read(self.stream.as_str(), &self.shard, fan_out, &raw);
        if let Some(r) = raw.last() {
            *last = Some(r.sequence_number.clone());
        }
        let mut records: Vec<Record<Bytes>> = Vec::with_capacity(raw.len());
        for r in raw {
            self.convert(r, &mut records);
        }
        if records.is_empty() {
            return true;
        }
        let n = records.len() as u64;
        records_in.increment(n);
        self.stats.add_records(n);
        let event = ReaderEvent::Records {
            shard: self.shard.clone(),
            split: self.split.split.clone(),
            last: (
                last.clone().expect("a batch has a last record"),
                records.last().map_or(0, sub_sequence),
            ),
            records,
        };
        self.tx.send(event).await.is_ok()
    }

    pub(crate) fn error(
        &self,
        operation: &'static str,
        last: &Option<String>,
        detail: String,
    ) -> KinesisError {
        KinesisError::Shard {
            operation,
            stream: self.stream.as_str().into(),
            endpoint: self.endpoint.clone(),
            shard: self.shard.clone(),
            sequence: last.clone(),
            detail,
        }
    }

    /// An iterator just after `last`, or at the start position when nothing was read (`last`
    /// begins as the restored position's sequence number, so a restore resumes after it).
    /// `first`: the shard's first iterator in this run (LATEST is only ever asked for then).
    pub(crate) async fn iterator(
        &self,
        last: &Option<String>,
        first: bool,
    ) -> Result<Option<String>, Stop> {
        let start = self.start_after(last, first);
        let call = self.call("GetShardIterator");
        let failure_of = |e: &SdkError<_, _>| match classify(e) {
            // The stream is not ACTIVE (being created or updated): it will be.
            Failure::Fatal if code(e) == Some("ResourceInUseException") => Failure::Transient,
            failure => failure,
        };
        let got = call
            .run_with(failure_of, || {
                let request = with_stream!(self.client.get_shard_iterator(), &self.stream)
                    .shard_id(&self.shard);
                match &start {
                    StartAt::After(seq) => request
                        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                        .starting_sequence_number(seq),
                    StartAt::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
                    StartAt::Timestamp(ms) => request
                        .shard_iterator_type(ShardIteratorType::AtTimestamp)
                        .timestamp(DateTime::from_millis(*ms)),
                    StartAt::TrimHorizon => {
                        request.shard_iterator_type(ShardIteratorType::TrimHorizon)
                    }
                }
                .send()
            })
            .await;
        match got {
            Ok(out) => Ok(out.shard_iterator().map(str::to_owned)),
            Err(failed) => Err(self.stop(
                "GetShardIterator",
                Some(&start),
                last,
                failed.verdict(),
                failed.sdk(),
            )),
        }
    }

    /// Counts a retried failure.
    pub(crate) fn count(&self, failure: Failure, operation: &'static str) {
        if failure == Failure::Throttled {
            self.stats.add_throttled(1, self.stream.as_str(), operation);
        }
        self.stats.add_retry(self.stream.as_str(), operation);
    }

    /// The shard is read to its end (in polling or enhanced fan-out mode): no longer behind,
    /// and the source learns its children.
    pub(crate) async fn end(
        &self,
        behind: &metrics::Gauge,
        children: Vec<(String, Vec<String>)>,
    ) -> Result<(), Stop> {
        behind.set(0.0);
        let _ = self
            .tx
            .send(ReaderEvent::End {
                shard: self.shard.clone(),
                children,
            })
            .await;
        Ok(())
    }

    async fn read(self) -> Result<(), Stop> {
        let stream = self.stream.as_str().to_owned();
        let behind = metrics::gauge!(crate::metric_catalogue::MILLIS_BEHIND_LATEST, "stream" => stream.clone(), "shard" => self.shard.clone());
        let records_in = metrics::counter!(crate::metric_catalogue::RECORDS_IN, "stream" => stream.clone(), "shard" => self.shard.clone());
        let latency = metrics::histogram!(crate::metric_catalogue::GET_RECORDS_SECONDS, "stream" => stream.clone());
        let mut last: Option<String> = match &self.start {
            ShardPosition::After { sequence, .. } => Some(sequence.clone()),
            _ => None,
        };
        let Some(mut iterator) = self.iterator(&last, true).await? else {
            // No iterator: the shard is closed and read to its end.
            return self.end(&behind, Vec::new()).await;
        };
        let mut next_call = Instant::now();
        let mut retry = Retry::new(&self.options.backoff);
        loop {
            tokio::time::sleep_until(next_call).await;
            next_call = Instant::now() + self.options.poll_interval;
            let started = Instant::now();
            self.stats.add_call();
            let result = self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(self.options.max_records_per_call)
                .send()
                .await;
            latency.record(started.elapsed().as_secs_f64());
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    let failure = classify(&e);
                    if failure == Failure::ExpiredIterator {
                        // Unused for 5 minutes (a long back-pressure stall): resume after the
                        // last record read.
                        self.stats.add_iterator_renewed();
                        iterator = self.iterator(&last, false).await?.ok_or_else(|| {
                            self.error(
                                "GetShardIterator",
                                &last,
                                "no iterator for an expired one".into(),
                            )
                        })?;
                        continue;
                    }
                    match retry.after(failure) {
                        Verdict::Retry(delay) => {
                            self.count(failure, "GetRecords");
                            next_call = Instant::now() + delay.max(self.options.poll_interval);
                            continue;
                        }
                        verdict => return Err(self.stop("GetRecords", None, &last, verdict, &e)),
                    }
                }
            };
            retry.succeeded();
            if let Some(ms) = out.millis_behind_latest() {
                behind.set(ms as f64);
            }
            let next = out.next_shard_iterator().map(str::to_owned);
            let children: Vec<(String, Vec<String>)> = out
                .child_shards()
                .iter()
                .map(|c| (c.shard_id().to_owned(), c.parent_shards().to_vec()))
                .collect();
            if !self.emit(out.records, &mut last, &records_in).await {
                return Ok(());
            }
            match next {
                Some(it) => iterator = it,
                None => {
                    // SHARD_END: the shard is closed and every record of it was returned.
                    return self.end(&behind, children).await;
                }
            }
        }
    }

    /// Appends the user records of one Kinesis record: itself, or the records of a KPL
    /// aggregate with their sub-sequence numbers. A GetRecords response is always returned
    /// whole, so an aggregate is never split between batches: the position after a batch is
    /// the aggregate's last sub-record, and AFTER_SEQUENCE_NUMBER resumes correctly.
    pub(crate) fn convert(&self, r: aws_sdk_kinesis::types::Record, out: &mut Vec<Record<Bytes>>) {
        let timestamp = r
            .approximate_arrival_timestamp
            .and_then(|t| t.to_millis().ok())
            .map(EventTime)
            .unwrap_or(EventTime::MIN);
        // The SDK's buffers become the record's: no payload, key or sequence number is copied.
        let data = Bytes::from(r.data.into_inner());
        let origin = |number: String, sub: u32| Origin {
            source: self.split.clone(),
            offset: Offset::Sequence(Arc::new(SequenceNumber { number, sub })),
        };
        if self.options.deaggregate && data.starts_with(&KPL_MAGIC) {
            match split(&data) {
                Ok(users) => {
                    for (sub, user) in users.into_iter().enumerate() {
                        let sub = u32::try_from(sub).unwrap_or(u32::MAX);
                        let mut record = Record::new(user.data, timestamp)
                            .with_origin(origin(r.sequence_number.clone(), sub));
                        record.key = Some(Bytes::from(user.partition_key.into_bytes()));
                        out.push(record);
                    }
                    return;
                }
                // A plain record that happens to start with the magic bytes.
                Err(NotAggregate::NoMagic | NotAggregate::Checksum) => {}
                // The checksum held, so a producer wrote a broken aggregate: it is delivered
                // whole like any record that is not an aggregate, but said, since its user
                // records will not arrive apart.
                Err(reason) => tracing::warn!(
                    stream = self.stream.as_str(),
                    shard = %self.shard,
                    sequence = %r.sequence_number,
                    %reason,
                    "KPL aggregate not split, delivered as one record"
                ),
            }
        }
        let mut record = Record::new(data, timestamp).with_origin(origin(r.sequence_number, 0));
        record.key = r.partition_key.map(|k| Bytes::from(k.into_bytes()));
        out.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(start: ShardPosition, resume: ShardPosition) -> ShardReader {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .build();
        let (tx, _rx) = mpsc::channel(1);
        ShardReader {
            client: Client::from_conf(config),
            stream: StreamRef::parse("s"),
            shard: "shardId-0".into(),
            split: Arc::new(SplitRef {
                stream: "s".into(),
                split: SplitId::new("shardId-0"),
            }),
            start,
            resume,
            options: Arc::new(SourceOptions::default()),
            stats: Arc::default(),
            tx,
            consumer: None,
            closed: Arc::default(),
            endpoint: "http://127.0.0.1:4568".into(),
        }
    }

    #[tokio::test]
    async fn latest_is_asked_for_only_once_later_iterators_start_at_its_resolved_time() {
        let r = reader(
            ShardPosition::Start(StartPosition::Latest),
            ShardPosition::Start(StartPosition::AtTimestamp(5)),
        );
        assert_eq!(r.start_after(&None, true), StartAt::Latest);
        // An expired iterator or a new subscription before any record: a new LATEST would
        // skip what arrived in between.
        assert_eq!(r.start_after(&None, false), StartAt::Timestamp(5));
        assert_eq!(
            r.start_after(&Some("7".into()), false),
            StartAt::After("7".into())
        );
    }

    #[tokio::test]
    async fn a_restored_position_resumes_after_its_sequence_number() {
        let after = ShardPosition::After {
            sequence: "42".into(),
            sub: 0,
        };
        let r = reader(after.clone(), after);
        assert_eq!(r.start_after(&None, true), StartAt::After("42".into()));
        assert_eq!(r.start_after(&None, false), StartAt::After("42".into()));
    }
}
