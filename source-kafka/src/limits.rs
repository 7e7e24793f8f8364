//! What the output topic accepts, and the sink's check of each record against it.
//!
//! Kafka refuses a whole produce request, and with it a whole transaction, for one record whose
//! timestamp or size is outside the topic's limits. The exactly-once sink produces an epoch at
//! `commit`, after the checkpoint holding it is complete: a refusal there could never succeed on
//! a retry, so every restart would fail on the same saved epoch. So each record is checked in
//! `write`, before it enters an epoch (or is produced), and a record the topic would refuse is
//! handed to the pipeline's error policy instead (`Sink::take_rejected`).

use crate::epoch::PendingRecord;
use std::time::Duration;
use watershed_core::DeadLetter;

/// Which timestamp the sink gives the records it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputTimestamp {
    /// The record's event time (the default). For window results that is the window's end − 1,
    /// so a result written to a topic keeps the time it describes. Checked against the topic's
    /// `message.timestamp.after.max.ms` / `before.max.ms` (CreateTime topics).
    #[default]
    EventTime,
    /// The wall clock when the sink receives the record. In exactly-once mode it is kept in the
    /// epoch, so a commit repeated after a restart writes the same timestamp.
    ProcessingTime,
    /// None sent: the producer stamps the record when it sends it (CreateTime topics), or the
    /// broker when it appends it (LogAppendTime topics). In exactly-once mode that is commit
    /// time, and a repeated commit writes a later one.
    Broker,
}

/// Sent as "no timestamp": librdkafka then stamps the record itself. Never a real timestamp,
/// as negative ones are refused before they get here.
pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

/// Kafka's defaults, used when the topic's configuration cannot be read.
const DEFAULT_AFTER_MAX_MS: i64 = 3_600_000;
const DEFAULT_TOPIC_MAX_BYTES: usize = 1_048_588;
/// librdkafka's default `message.max.bytes`.
pub(crate) const DEFAULT_PRODUCER_MAX_BYTES: usize = 1_000_000;

/// Bytes Kafka adds around a record in the smallest batch that can hold it: the record batch
/// header (61) and the record's own fields (length, attributes, timestamp and offset deltas,
/// key and value lengths, header count: at most 21 as varints), plus 10 per header for its
/// two lengths. An over-estimate by a few bytes, never an under-estimate.
const BATCH_OVERHEAD: usize = 61 + 21;
const HEADER_OVERHEAD: usize = 10;

/// The topic's limits, as read when the sink opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopicLimits {
    pub topic: String,
    /// `message.timestamp.type=LogAppendTime`: the broker overwrites timestamps, never refuses.
    pub log_append_time: bool,
    /// `message.timestamp.after.max.ms` (`None`: unbounded).
    pub after_max_ms: Option<i64>,
    /// `message.timestamp.before.max.ms` (`None`: unbounded).
    pub before_max_ms: Option<i64>,
    /// The topic's `max.message.bytes`.
    pub topic_max_bytes: usize,
    /// The producer's `message.max.bytes`.
    pub producer_max_bytes: usize,
}

impl TopicLimits {
    /// Kafka's defaults (4.x): at most 1 h ahead, any age, 1 MiB.
    pub(crate) fn defaults(topic: &str, producer_max_bytes: usize) -> Self {
        TopicLimits {
            topic: topic.to_string(),
            log_append_time: false,
            after_max_ms: Some(DEFAULT_AFTER_MAX_MS),
            before_max_ms: None,
            topic_max_bytes: DEFAULT_TOPIC_MAX_BYTES,
            producer_max_bytes,
        }
    }

    /// The limits from the topic's configuration entries (name, value); what is absent keeps
    /// Kafka's default. Before Kafka 3.6 one setting, `message.timestamp.difference.max.ms`,
    /// bounded both directions; the newer ones win when present.
    pub(crate) fn from_entries<'a>(
        topic: &str,
        producer_max_bytes: usize,
        entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Self {
        let mut limits = Self::defaults(topic, producer_max_bytes);
        let (mut after, mut before, mut difference) = (None, None, None);
        let ms = |v: Option<&str>| v.and_then(|v| v.trim().parse::<i64>().ok());
        for (name, value) in entries {
            match name {
                "message.timestamp.type" => {
                    limits.log_append_time = value == Some("LogAppendTime");
                }
                "message.timestamp.after.max.ms" => after = ms(value),
                "message.timestamp.before.max.ms" => before = ms(value),
                "message.timestamp.difference.max.ms" => difference = ms(value),
                "max.message.bytes" => {
                    if let Some(n) = value.and_then(|v| v.trim().parse::<usize>().ok()) {
                        limits.topic_max_bytes = n;
                    }
                }
                _ => {}
            }
        }
        let bounded = |v: i64| (v < i64::MAX).then_some(v);
        limits.after_max_ms = after.or(difference).map_or(limits.after_max_ms, bounded);
        limits.before_max_ms = before.or(difference).and_then(bounded);
        limits
    }

    /// The largest record, and the setting that makes it so.
    fn max_bytes(&self) -> (usize, &'static str) {
        if self.producer_max_bytes < self.topic_max_bytes {
            (self.producer_max_bytes, "the producer's message.max.bytes")
        } else {
            (self.topic_max_bytes, "max.message.bytes")
        }
    }
}

/// Why a record was refused: the `reason` label of `watershed_kafka_records_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    NegativeTimestamp,
    TimestampAhead,
    TimestampBehind,
    TooLarge,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::NegativeTimestamp => "negative_timestamp",
            Refusal::TimestampAhead => "timestamp_ahead",
            Refusal::TimestampBehind => "timestamp_behind",
            Refusal::TooLarge => "too_large",
        }
    }
}

/// Checks records against a topic's limits, for one batch at a time: `now` is read once per
/// batch, and a record that passes costs a few comparisons, no allocation.
pub(crate) struct Check<'a> {
    limits: &'a TopicLimits,
    now: i64,
}

impl<'a> Check<'a> {
    pub(crate) fn new(limits: &'a TopicLimits, now_ms: i64) -> Self {
        Check {
            limits,
            now: now_ms,
        }
    }

    /// Why `r` would be refused, with the text for its dead letter; `None` if it is fine.
    pub(crate) fn refusal(&self, r: &PendingRecord) -> Option<(Refusal, String)> {
        let l = self.limits;
        let topic = &l.topic;
        let ts = r.timestamp;
        if ts != NO_TIMESTAMP && !l.log_append_time {
            if ts < 0 {
                return Some((
                    Refusal::NegativeTimestamp,
                    format!("timestamp {ts} is negative; Kafka refuses negative timestamps (topic `{topic}`)"),
                ));
            }
            if let Some(max) = l.after_max_ms {
                if ts.saturating_sub(self.now) > max - margin(max) {
                    return Some((Refusal::TimestampAhead, format!(
                        "timestamp {ts} is {} ahead of now; topic `{topic}` accepts at most {} ahead (message.timestamp.after.max.ms={max})",
                        human(ts.saturating_sub(self.now)), human(max)
                    )));
                }
            }
            if let Some(max) = l.before_max_ms {
                if self.now.saturating_sub(ts) > max - margin(max) {
                    return Some((Refusal::TimestampBehind, format!(
                        "timestamp {ts} is {} before now; topic `{topic}` accepts at most {} before (message.timestamp.before.max.ms={max})",
                        human(self.now.saturating_sub(ts)), human(max)
                    )));
                }
            }
        }
        let size = record_size(r);
        let (max, setting) = l.max_bytes();
        if size > max {
            return Some((Refusal::TooLarge, format!(
                "record of {size} bytes (key, value, headers and batch overhead) is larger than topic `{topic}` accepts: {max} bytes ({setting}={max})"
            )));
        }
        None
    }

    /// The setting that would let Kafka accept `r`, as a command to run.
    pub(crate) fn fix(&self, r: &PendingRecord, why: Refusal, brokers: &str) -> String {
        const HOUR: i64 = 3_600_000;
        let topic = &self.limits.topic;
        let alter = |setting: &str, value: String| {
            format!(
                "kafka-configs.sh --bootstrap-server {brokers} --alter --entity-type topics \
                 --entity-name {topic} --add-config {setting}={value}"
            )
        };
        // Rounded up to whole hours, with an hour to spare for the time the restart takes.
        let hours = |ms: i64| (ms.max(0) / HOUR + 2) * HOUR;
        match why {
            Refusal::TimestampAhead => alter(
                "message.timestamp.after.max.ms",
                hours(r.timestamp.saturating_sub(self.now)).to_string(),
            ),
            Refusal::TimestampBehind => alter(
                "message.timestamp.before.max.ms",
                hours(self.now.saturating_sub(r.timestamp)).to_string(),
            ),
            Refusal::NegativeTimestamp => format!(
                "no limit admits a negative CreateTime timestamp; let the broker stamp records: {}",
                alter("message.timestamp.type", "LogAppendTime".into())
            ),
            Refusal::TooLarge => {
                let size = record_size(r);
                format!(
                    "{} (and, if the producer's message.max.bytes is the smaller, \
                     `.property(\"message.max.bytes\", \"{size}\")` on the sink)",
                    alter("max.message.bytes", size.to_string())
                )
            }
        }
    }

    /// `refusal` as a dead letter, counted.
    pub(crate) fn dead_letter(
        &self,
        r: &PendingRecord,
        refusal: Refusal,
        reason: String,
        origin: Option<watershed_core::Origin>,
        event_time: watershed_core::EventTime,
    ) -> DeadLetter {
        metrics::counter!(
            crate::metric_catalogue::RECORDS_REFUSED,
            "topic" => self.limits.topic.clone(),
            "reason" => refusal.label()
        )
        .increment(1);
        DeadLetter::new(reason, r.value.clone()).at(origin, event_time)
    }
}

/// How much of a timestamp limit is held back. The broker checks against its own clock, when
/// the record arrives: the sink's clock may be behind the broker's, and in exactly-once mode
/// the record is produced at `commit`, a checkpoint interval or more after this check. A
/// timestamp ahead only gets closer to the broker's clock by then, but one behind gets older.
/// A tenth of the limit, at most 5 min, covers clock skew and the usual checkpoint intervals;
/// an epoch re-committed after a longer outage can still be refused as too old, and its commit
/// error names the setting to raise.
fn margin(limit_ms: i64) -> i64 {
    (limit_ms / 10).min(300_000)
}

/// The record's size as Kafka counts it against `max.message.bytes`, uncompressed.
pub(crate) fn record_size(r: &PendingRecord) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| HEADER_OVERHEAD + h.name.len() + h.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    BATCH_OVERHEAD + r.key.as_ref().map_or(0, |k| k.len()) + r.value.len() + headers
}

/// "2 h 13 min", "45 s", "120 ms": a duration for people.
pub(crate) fn human(ms: i64) -> String {
    let d = Duration::from_millis(ms.unsigned_abs());
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=172_799 if s % 3600 < 60 => format!("{} h", s / 3600),
        3600..=172_799 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} days {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use watershed_core::Headers;

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn record(timestamp: i64, value_len: usize) -> PendingRecord {
        PendingRecord {
            key: None,
            value: Bytes::from(vec![b'x'; value_len]),
            timestamp,
            headers: Headers::new(),
        }
    }

    fn topic(entries: &[(&str, &str)]) -> TopicLimits {
        TopicLimits::from_entries(
            "page-stats",
            DEFAULT_PRODUCER_MAX_BYTES,
            entries.iter().map(|(k, v)| (*k, Some(*v))),
        )
    }

    /// Rule: a CreateTime topic's records are refused when their timestamp is negative, further
    /// ahead than `after.max.ms` (less the margin) or older than `before.max.ms`; the reason
    /// names the topic, the value and the limit.
    #[test]
    fn timestamps_outside_the_topic_window_are_refused_with_topic_value_and_limit() {
        let limits = topic(&[("message.timestamp.before.max.ms", "86400000")]);
        let check = Check::new(&limits, NOW);
        assert!(check.refusal(&record(NOW, 10)).is_none());
        assert!(check.refusal(&record(NOW + HOUR / 2, 10)).is_none());
        let (why, text) = check
            .refusal(&record(NOW + 2 * HOUR + 13 * 60_000, 10))
            .unwrap();
        assert_eq!(why, Refusal::TimestampAhead);
        assert!(text.contains("2 h 13 min ahead"), "{text}");
        assert!(text.contains("`page-stats`"), "{text}");
        assert!(
            text.contains("message.timestamp.after.max.ms=3600000"),
            "{text}"
        );
        let (why, _) = check.refusal(&record(-5, 10)).unwrap();
        assert_eq!(why, Refusal::NegativeTimestamp);
        let (why, text) = check.refusal(&record(NOW - 2 * 86_400_000, 10)).unwrap();
        assert_eq!(why, Refusal::TimestampBehind);
        assert!(
            text.contains("message.timestamp.before.max.ms=86400000"),
            "{text}"
        );
    }

    /// Rule: a record whose timestamp is just inside the limit is refused too when it is within
    /// the safety margin, so what passes now still passes when the epoch is committed.
    #[test]
    fn the_margin_holds_back_the_edge_of_the_window() {
        let limits = topic(&[]);
        let check = Check::new(&limits, NOW);
        assert!(check.refusal(&record(NOW + HOUR - 60_000, 1)).is_some());
        assert!(check.refusal(&record(NOW + HOUR - 7 * 60_000, 1)).is_none());
    }

    /// Rule: LogAppendTime topics and records sent without a timestamp are not checked for
    /// time, only for size.
    #[test]
    fn log_append_time_and_broker_timestamps_are_not_checked_for_time() {
        let limits = topic(&[("message.timestamp.type", "LogAppendTime")]);
        let check = Check::new(&limits, NOW);
        assert!(check.refusal(&record(NOW + 100 * HOUR, 1)).is_none());
        let limits = topic(&[]);
        let check = Check::new(&limits, NOW);
        assert!(check.refusal(&record(NO_TIMESTAMP, 1)).is_none());
    }

    /// Rule: a record above the smaller of the topic's `max.message.bytes` and the producer's
    /// `message.max.bytes` is refused, naming the setting that limits it.
    #[test]
    fn records_above_the_smaller_size_limit_are_refused_naming_it() {
        let limits = topic(&[("max.message.bytes", "2000")]);
        let check = Check::new(&limits, NOW);
        assert!(check.refusal(&record(NOW, 1000)).is_none());
        let (why, text) = check.refusal(&record(NOW, 5000)).unwrap();
        assert_eq!(why, Refusal::TooLarge);
        assert!(text.contains("max.message.bytes=2000"), "{text}");
        let mut limits = topic(&[]);
        limits.producer_max_bytes = 3000;
        let (_, text) = Check::new(&limits, NOW)
            .refusal(&record(NOW, 5000))
            .unwrap();
        assert!(
            text.contains("the producer's message.max.bytes=3000"),
            "{text}"
        );
    }

    /// Rule: before Kafka 3.6, `message.timestamp.difference.max.ms` bounds both directions;
    /// unbounded values (Long.MAX) mean no limit.
    #[test]
    fn the_older_difference_setting_bounds_both_directions() {
        let limits = topic(&[("message.timestamp.difference.max.ms", "60000")]);
        assert_eq!(limits.after_max_ms, Some(60_000));
        assert_eq!(limits.before_max_ms, Some(60_000));
        let limits = topic(&[("message.timestamp.after.max.ms", "9223372036854775807")]);
        assert_eq!(limits.after_max_ms, None);
    }
}
