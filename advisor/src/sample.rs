//! Sampling a stream: every open shard read with GetRecords for a bounded time, counting
//! records, bytes, arrival times and partition keys.

use crate::error::{detail, AdvisorError};
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use aws_sdk_kinesis::Client;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use watershed_source_kinesis::utilisation::sketch::SpaceSaving;

/// Counters of each shard's partition-key sketch in a sample.
pub const SAMPLE_KEY_COUNTERS: usize = 64;
/// At most 5 GetRecords calls per second and shard are allowed (shared with every consumer):
/// the sampler makes at most 4.
const MIN_CALL_GAP: Duration = Duration::from_millis(250);
/// Wait after an empty response or a throttled call.
const IDLE_GAP: Duration = Duration::from_secs(1);

/// Where each shard is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The oldest record kept (the stream's retained history).
    TrimHorizon,
    /// Records written after sampling starts.
    Latest,
}

/// What one shard returned.
#[derive(Clone, Debug)]
pub struct ShardSample {
    /// The shard id.
    pub shard: String,
    /// Records read.
    pub records: u64,
    /// Bytes read (data plus partition key, as the write limit counts them).
    pub bytes: u64,
    /// Approximate arrival time of the first and last record read (ms since the epoch).
    pub arrivals: Option<(i64, i64)>,
    /// Records and bytes per arrival second (for the peak second).
    pub per_second: HashMap<i64, (u64, u64)>,
    /// The heaviest partition keys.
    pub keys: SpaceSaving,
}

impl ShardSample {
    /// An empty sample of `shard`.
    pub fn new(shard: impl Into<String>) -> Self {
        ShardSample {
            shard: shard.into(),
            records: 0,
            bytes: 0,
            arrivals: None,
            per_second: HashMap::new(),
            keys: SpaceSaving::new(SAMPLE_KEY_COUNTERS),
        }
    }

    /// Counts one record of `bytes` (data plus key) with partition `key`, arrived at `ms`.
    pub fn add(&mut self, key: &str, bytes: u64, arrival_ms: i64) {
        self.records += 1;
        self.bytes += bytes;
        self.arrivals = Some(match self.arrivals {
            None => (arrival_ms, arrival_ms),
            Some((a, b)) => (a.min(arrival_ms), b.max(arrival_ms)),
        });
        let second = self
            .per_second
            .entry(arrival_ms.div_euclid(1000))
            .or_default();
        second.0 += 1;
        second.1 += bytes;
        self.keys.offer(key, 1);
    }

    fn add_record(&mut self, r: &Record) {
        let bytes = (r.data().as_ref().len() + r.partition_key().unwrap_or_default().len()) as u64;
        let at = r
            .approximate_arrival_timestamp()
            .and_then(|t| t.to_millis().ok())
            .unwrap_or(0);
        self.add(r.partition_key().unwrap_or_default(), bytes, at);
    }
}

/// A sample of every open shard of a stream.
#[derive(Clone, Debug)]
pub struct StreamSample {
    /// The stream name.
    pub stream: String,
    /// One sample per open shard, in ListShards order.
    pub shards: Vec<ShardSample>,
    /// Seconds sampled from LATEST (the records arrived within them); 0 from the trim horizon.
    pub window_secs: f64,
}

impl StreamSample {
    /// The time the sampled records arrived over: from the first to the last arrival on any
    /// shard, or the sampled window from LATEST if longer; at least 1 s (a burst within one
    /// second counts as one second).
    pub fn span_secs(&self) -> f64 {
        let (first, last) = self
            .shards
            .iter()
            .filter_map(|s| s.arrivals)
            .fold((i64::MAX, i64::MIN), |(a, b), (f, l)| (a.min(f), b.max(l)));
        let arrivals = match first > last {
            true => 0.0,
            false => (last - first) as f64 / 1000.0,
        };
        arrivals.max(self.window_secs).max(1.0)
    }
}

/// The open shards of `stream` (no ending sequence number), in ListShards order.
pub async fn open_shards(client: &Client, stream: &str) -> Result<Vec<String>, AdvisorError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = request.send().await.map_err(|e| AdvisorError::ListShards {
            stream: stream.to_owned(),
            detail: detail(&e),
        })?;
        for s in out.shards() {
            let open = s
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none();
            if open {
                shards.push(s.shard_id().to_owned());
            }
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(shards);
        }
    }
}

/// Reads every open shard of `stream` from `from` for at most `duration` (a shard read from
/// the trim horizon stops earlier once it has caught up), concurrently.
pub async fn sample(
    client: &Client,
    stream: &str,
    from: From,
    duration: Duration,
) -> Result<StreamSample, AdvisorError> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for shard in open_shards(client, stream).await? {
        let (client, stream, id) = (client.clone(), stream.to_owned(), shard.clone());
        let task =
            tokio::spawn(async move { sample_shard(&client, &stream, &id, from, deadline).await });
        tasks.push((shard, task));
    }
    let mut shards = Vec::with_capacity(tasks.len());
    for (shard, task) in tasks {
        let joined = task.await.map_err(|e| AdvisorError::Task {
            stream: stream.to_owned(),
            shard,
            detail: e.to_string(),
        })?;
        shards.push(joined?);
    }
    let window_secs = match from {
        From::Latest => started.elapsed().as_secs_f64(),
        From::TrimHorizon => 0.0,
    };
    Ok(StreamSample {
        stream: stream.to_owned(),
        shards,
        window_secs,
    })
}

async fn sample_shard(
    client: &Client,
    stream: &str,
    shard: &str,
    from: From,
    deadline: Instant,
) -> Result<ShardSample, AdvisorError> {
    let error = |operation, detail| AdvisorError::Read {
        operation,
        stream: stream.to_owned(),
        shard: shard.to_owned(),
        detail,
    };
    let kind = match from {
        From::TrimHorizon => ShardIteratorType::TrimHorizon,
        From::Latest => ShardIteratorType::Latest,
    };
    let out = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .send()
        .await
        .map_err(|e| error("GetShardIterator", detail(&e)))?;
    let mut sample = ShardSample::new(shard);
    let mut iterator = out.shard_iterator().map(str::to_owned);
    // One last call at the deadline collects what arrived up to it.
    let mut last_call = false;
    while let Some(it) = iterator.take() {
        if last_call {
            break;
        }
        last_call = Instant::now() >= deadline;
        let called = Instant::now();
        let out = match client
            .get_records()
            .shard_iterator(&it)
            .limit(10_000)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_provisioned_throughput_exceeded_exception()
                        || s.is_kms_throttling_exception()
                }) =>
            {
                tokio::time::sleep(IDLE_GAP).await;
                iterator = Some(it);
                continue;
            }
            Err(e) => return Err(error("GetRecords", detail(&e))),
        };
        out.records().iter().for_each(|r| sample.add_record(r));
        let caught_up = out.records().is_empty() && out.millis_behind_latest() == Some(0);
        if caught_up && from == From::TrimHorizon {
            break;
        }
        iterator = out.next_shard_iterator().map(str::to_owned);
        let gap = if out.records().is_empty() {
            IDLE_GAP
        } else {
            MIN_CALL_GAP
        };
        tokio::time::sleep_until((called + gap).min(deadline)).await;
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_runs_from_the_first_to_the_last_arrival_on_any_shard() {
        let mut a = ShardSample::new("a");
        a.add("k", 10, 1_000);
        a.add("k", 10, 3_000);
        let mut b = ShardSample::new("b");
        b.add("k", 10, 5_500);
        let sample = StreamSample {
            stream: "s".into(),
            shards: vec![a, b, ShardSample::new("c")],
            window_secs: 0.0,
        };
        assert_eq!(sample.span_secs(), 4.5);
        let burst = StreamSample {
            stream: "s".into(),
            shards: vec![ShardSample::new("a")],
            window_secs: 0.0,
        };
        assert_eq!(burst.span_secs(), 1.0);
        let latest = StreamSample {
            window_secs: 30.0,
            ..burst
        };
        assert_eq!(latest.span_secs(), 30.0);
    }
}
