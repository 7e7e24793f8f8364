//! From a sample to advice: per-shard write utilisation, hot keys, the shard count for a
//! target utilisation, and partition-key advice.

use crate::sample::{ShardSample, StreamSample};
use serde::Serialize;
use watershed_source_kinesis::utilisation::{Load, WRITE_BYTES_PER_SEC, WRITE_RECORDS_PER_SEC};

/// The ADR's warning threshold (and the default target).
pub const WARNING: f64 = 0.6;
/// The ADR's critical threshold.
pub const CRITICAL: f64 = 0.8;
/// A key with at least this (guaranteed) share of its shard's records is reported as hot.
pub const HOT_SHARE: f64 = 0.25;
/// Hot keys listed per shard.
pub const TOP_KEYS: usize = 5;

/// How loaded a shard is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Below the warning threshold.
    Ok,
    /// At or above 0.6.
    Warning,
    /// At or above 0.8.
    Critical,
}

impl Level {
    /// The level of a utilisation.
    pub fn of(utilisation: f64) -> Level {
        match utilisation {
            u if u >= CRITICAL => Level::Critical,
            u if u >= WARNING => Level::Warning,
            _ => Level::Ok,
        }
    }
}

/// A heavy partition key of one shard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HotKey {
    /// The partition key.
    pub key: String,
    /// Estimated records (Space-Saving count: at most `error` above the truth).
    pub records: u64,
    /// The most `records` overestimates by.
    pub error: u64,
    /// Estimated share of the shard's records (`records / shard records`).
    pub share: f64,
}

/// One shard's load.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShardReport {
    /// The shard id.
    pub shard: String,
    /// Records sampled.
    pub records: u64,
    /// Bytes sampled (data plus partition keys).
    pub bytes: u64,
    /// Records per second over the sampled span.
    pub records_per_sec: f64,
    /// Bytes per second over the sampled span.
    pub bytes_per_sec: f64,
    /// Write utilisation: max(bytes/s ÷ 1 MiB, records/s ÷ 1,000).
    pub utilisation: f64,
    /// Write utilisation of the busiest arrival second.
    pub peak_utilisation: f64,
    /// Against the 0.6 / 0.8 thresholds.
    pub level: Level,
    /// The heaviest keys, heaviest first.
    pub hot_keys: Vec<HotKey>,
}

/// Advice for one hot key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyAdvice {
    /// The shard the key is on.
    pub shard: String,
    /// The key.
    pub key: String,
    /// Its share of the shard's records.
    pub share_of_shard: f64,
    /// The write utilisation the key alone causes on its shard.
    pub utilisation: f64,
    /// Sub-keys to salt it into (`key#0` … `key#{n-1}`).
    pub salt_into: u32,
    /// Whether salting is needed to meet the target (the key alone is above it), or only
    /// advisable to spread load.
    pub required: bool,
    /// The advice in words.
    pub text: String,
}

/// The advisor's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advice {
    /// The stream.
    pub stream: String,
    /// Seconds the sampled records arrived over.
    pub span_secs: f64,
    /// Target utilisation.
    pub target: f64,
    /// Open shards now.
    pub current_shards: usize,
    /// Stream-wide records per second.
    pub records_per_sec: f64,
    /// Stream-wide bytes per second.
    pub bytes_per_sec: f64,
    /// Stream-wide load in shards' worth of write capacity.
    pub shard_equivalents: f64,
    /// The shard count for the target utilisation.
    pub recommended_shards: usize,
    /// Per shard.
    pub shards: Vec<ShardReport>,
    /// Per hot key.
    pub keys: Vec<KeyAdvice>,
    /// The reasoning, in sentences.
    pub reasoning: Vec<String>,
}

/// Shards needed to carry `load` at `target` utilisation:
/// `ceil(max(bytes/s ÷ 1 MiB, records/s ÷ 1,000) ÷ target)`, at least 1.
pub fn recommended_shards(load: &Load, target: f64) -> usize {
    let needed = load.write_utilisation() / target;
    // A hair of tolerance so that exactly 1.8 / 0.6 is 3, not 4 after rounding error.
    ((needed - 1e-9).ceil() as usize).max(1)
}

fn shard_report(s: &ShardSample, span: f64) -> ShardReport {
    let load = Load {
        records_per_sec: s.records as f64 / span,
        bytes_per_sec: s.bytes as f64 / span,
        calls_per_sec: 0.0,
    };
    let peak = s
        .per_second
        .values()
        .map(|&(r, b)| (b as f64 / WRITE_BYTES_PER_SEC).max(r as f64 / WRITE_RECORDS_PER_SEC))
        .fold(0.0, f64::max);
    let total = s.keys.total().max(1) as f64;
    let hot_keys = s
        .keys
        .top(TOP_KEYS)
        .into_iter()
        .map(|h| HotKey {
            share: h.count as f64 / total,
            key: h.key,
            records: h.count,
            error: h.error,
        })
        .collect();
    let utilisation = load.write_utilisation();
    ShardReport {
        shard: s.shard.clone(),
        records: s.records,
        bytes: s.bytes,
        records_per_sec: load.records_per_sec,
        bytes_per_sec: load.bytes_per_sec,
        utilisation,
        peak_utilisation: peak,
        level: Level::of(utilisation),
        hot_keys,
    }
}

fn key_advice(shard: &ShardReport, target: f64) -> Option<KeyAdvice> {
    let top = shard.hot_keys.first()?;
    let guaranteed = (top.records - top.error) as f64 / shard.records.max(1) as f64;
    if guaranteed < HOT_SHARE || shard.hot_keys.len() < 2 && shard.records < 10 {
        return None;
    }
    let utilisation = top.share * shard.utilisation;
    let required = utilisation > target;
    let salt_into = ((utilisation / target).ceil() as u32).max(2);
    let mut text = format!(
        "key {:?} carries {:.0} % of shard {}'s records ({:.2} of a shard's write limit by itself); \
         all its records hash to one shard, so adding shards does not relieve it. ",
        top.key,
        top.share * 100.0,
        shard.shard,
        utilisation
    );
    text += &if required {
        format!(
            "It alone exceeds the target {target:.2}: salt it into {salt_into} sub-keys \
             (\"{}#0\" … \"{}#{}\", chosen e.g. by record id modulo {salt_into}). ",
            top.key,
            top.key,
            salt_into - 1
        )
    } else {
        format!(
            "It fits within the target today; if it grows past {target:.2}, salt it into \
             {salt_into} or more sub-keys (\"{}#0\" …) to spread it over shards. ",
            top.key
        )
    };
    text += "Salting gives up the key's per-key order across sub-keys (order holds only within \
             each sub-key); readers that need it must re-order, e.g. by event time.";
    Some(KeyAdvice {
        shard: shard.shard.clone(),
        key: top.key.clone(),
        share_of_shard: top.share,
        utilisation,
        salt_into,
        required,
        text,
    })
}

/// Advice from `sample` for a `target` utilisation (0.6: the ADR's warning threshold).
pub fn advise(sample: &StreamSample, target: f64) -> Advice {
    let span = sample.span_secs();
    let shards: Vec<ShardReport> = sample
        .shards
        .iter()
        .map(|s| shard_report(s, span))
        .collect();
    let total = Load {
        records_per_sec: shards.iter().map(|s| s.records_per_sec).sum(),
        bytes_per_sec: shards.iter().map(|s| s.bytes_per_sec).sum(),
        calls_per_sec: 0.0,
    };
    let sampled: u64 = shards.iter().map(|s| s.records).sum();
    // No record is no evidence of no load (a quiet minute, a window too short): the count is
    // kept rather than halved on nothing.
    let recommended = if sampled == 0 {
        shards.len().max(1)
    } else {
        recommended_shards(&total, target)
    };
    let keys: Vec<KeyAdvice> = shards
        .iter()
        .filter_map(|s| key_advice(s, target))
        .collect();
    let reasoning = reasoning(&shards, &keys, &total, recommended, target);
    Advice {
        stream: sample.stream.clone(),
        span_secs: span,
        target,
        current_shards: shards.len(),
        records_per_sec: total.records_per_sec,
        bytes_per_sec: total.bytes_per_sec,
        shard_equivalents: total.write_utilisation(),
        recommended_shards: recommended,
        shards,
        keys,
        reasoning,
    }
}

fn reasoning(
    shards: &[ShardReport],
    keys: &[KeyAdvice],
    total: &Load,
    recommended: usize,
    target: f64,
) -> Vec<String> {
    let current = shards.len();
    if shards.iter().all(|s| s.records == 0) {
        return vec![format!(
            "No record arrived in the sampled window: there is no load to size the stream by,              so the count stays at {recommended}. Sample while the stream takes traffic (a              longer --duration), or from TRIM_HORIZON to include the records it retains."
        )];
    }
    let by_records = total.records_per_sec / WRITE_RECORDS_PER_SEC;
    let by_bytes = total.bytes_per_sec / WRITE_BYTES_PER_SEC;
    let mut out = vec![format!(
        "The stream takes {:.1} records/s and {:.1} KiB/s: {:.3} shards' worth of the record \
         limit (1,000/s) and {:.3} of the byte limit (1 MiB/s); the larger, {:.3}, divided by \
         the target {target:.2} and rounded up gives {recommended} shard(s).",
        total.records_per_sec,
        total.bytes_per_sec / 1024.0,
        by_records,
        by_bytes,
        by_records.max(by_bytes)
    )];
    out.push(match recommended.cmp(&current) {
        std::cmp::Ordering::Greater => format!(
            "Scale up from {current} to {recommended} shards (UpdateShardCount, UNIFORM_SCALING; \
             one call may at most double the count)."
        ),
        std::cmp::Ordering::Less => format!(
            "{current} shards are more than the load needs: {recommended} would do (one call \
             may at most halve the count)."
        ),
        std::cmp::Ordering::Equal => format!("{current} shards fit the load."),
    });
    for s in shards.iter().filter(|s| s.level != Level::Ok) {
        let cause = keys.iter().find(|k| k.shard == s.shard);
        out.push(match cause {
            Some(k) => format!(
                "Shard {} is at {:.2} ({:?}), {:.0} % of it from key {:?}: more shards would \
                 not move that key; salt it.",
                s.shard,
                s.utilisation,
                s.level,
                k.share_of_shard * 100.0,
                k.key
            ),
            None => format!(
                "Shard {} is at {:.2} ({:?}).",
                s.shard, s.utilisation, s.level
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::ShardSample;

    fn load(records_per_sec: f64, bytes_per_sec: f64) -> Load {
        Load {
            records_per_sec,
            bytes_per_sec,
            calls_per_sec: 0.0,
        }
    }

    #[test]
    fn the_shard_count_formula() {
        // Records dominate: 1,800/s is 1.8 shards; at 0.6, 3.
        assert_eq!(recommended_shards(&load(1_800.0, 10_000.0), 0.6), 3);
        // Bytes dominate: 2.5 MiB/s at 0.6 → ceil(4.17) = 5.
        assert_eq!(recommended_shards(&load(10.0, 2.5 * 1_048_576.0), 0.6), 5);
        // At 0.8: ceil(3.125) = 4.
        assert_eq!(recommended_shards(&load(10.0, 2.5 * 1_048_576.0), 0.8), 4);
        // An idle stream still needs one shard.
        assert_eq!(recommended_shards(&load(0.0, 0.0), 0.6), 1);
    }

    #[test]
    fn a_sample_without_records_keeps_the_shard_count_and_says_why() {
        let quiet = StreamSample {
            stream: "orders".into(),
            shards: (0..4)
                .map(|i| ShardSample::new(format!("shardId-{i}")))
                .collect(),
            window_secs: 30.0,
        };
        let advice = advise(&quiet, 0.6);
        assert_eq!(advice.recommended_shards, 4, "nothing to size by: kept");
        assert_eq!(advice.reasoning.len(), 1);
        assert!(advice.reasoning[0].contains("No record arrived"));
        let report = crate::report::render(&advice);
        assert!(
            report.contains("no record arrived in the sampled window"),
            "{report}"
        );
        assert!(
            !report.contains("NaN") && !report.contains("inf"),
            "{report}"
        );
    }

    #[test]
    fn the_chart_draws_each_shard_against_the_60_and_80_percent_marks() {
        let advice = advise(&skewed(), 0.6);
        let chart = crate::report::chart(&advice);
        let bars: Vec<&str> = chart.lines().filter(|l| l.contains("shardId-")).collect();
        assert_eq!(bars.len(), 4, "{chart}");
        // Shard 0 takes 4,000 records over 10 s: 40 % of the record limit, 20 of 50 columns.
        let hot = bars[0].split_whitespace().nth(1).expect("bar");
        assert_eq!(hot.chars().filter(|c| *c == '#').count(), 20, "{chart}");
        assert_eq!(hot.find(':'), Some(30), "60 % mark: {chart}");
        assert_eq!(hot.find('!'), Some(40), "80 % mark: {chart}");
        assert!(bars[0].ends_with("40.0 %"), "{chart}");
    }

    /// 4 shards over 10 s: shard 0 takes a hot key with 3,000 records plus 1,000 others, the
    /// rest 1,000 records each; records of 100 bytes.
    fn skewed() -> StreamSample {
        let mut shards = Vec::new();
        for i in 0..4 {
            let mut s = ShardSample::new(format!("shardId-{i}"));
            for r in 0..1_000i64 {
                s.add(&format!("cold-{i}-{}", r % 200), 100, r * 10);
            }
            if i == 0 {
                for r in 0..3_000i64 {
                    s.add("hot", 100, r * 3);
                }
            }
            shards.push(s);
        }
        shards[3].add("cold", 100, 10_000);
        StreamSample {
            stream: "orders".into(),
            shards,
            window_secs: 0.0,
        }
    }

    #[test]
    fn a_skewed_stream_names_its_hot_key_and_shard() {
        let advice = advise(&skewed(), 0.6);
        assert_eq!(advice.span_secs, 10.0);
        let hot = &advice.shards[0];
        assert!((hot.records_per_sec - 400.0).abs() < 1e-9);
        assert!((hot.utilisation - 0.4).abs() < 1e-9);
        assert_eq!(hot.hot_keys[0].key, "hot");
        let h = &hot.hot_keys[0];
        assert!(h.records >= 3_000 && h.records - h.error <= 3_000, "{h:?}");
        assert_eq!(advice.keys.len(), 1);
        let key = &advice.keys[0];
        assert_eq!((key.shard.as_str(), key.key.as_str()), ("shardId-0", "hot"));
        assert!(!key.required);
        assert!(key.text.contains("per-key order"));
        // 7,001 records over 10 s = 0.7 shards' worth → ceil(0.7 / 0.6) = 2.
        assert_eq!(advice.recommended_shards, 2);
        assert_eq!(advice.current_shards, 4);
    }

    #[test]
    fn a_key_above_the_target_must_be_salted_and_scaling_is_called_useless_for_it() {
        let mut s = ShardSample::new("shardId-0");
        for r in 0..9_000i64 {
            s.add("hot", 100, r);
        }
        for r in 0..1_000i64 {
            s.add(&format!("k{r}"), 100, r * 9);
        }
        let sample = StreamSample {
            stream: "s".into(),
            shards: vec![s, ShardSample::new("shardId-1")],
            window_secs: 0.0,
        };
        // 10,000 records over ~9 s: ~1,111/s on shard 0 → 1.11, critical.
        let advice = advise(&sample, 0.6);
        let key = &advice.keys[0];
        assert!(key.required);
        assert_eq!(key.salt_into, 2, "1.0 / 0.6 → 2 sub-keys");
        assert_eq!(advice.shards[0].level, Level::Critical);
        assert!(advice
            .reasoning
            .iter()
            .any(|r| r.contains("more shards would not move that key")));
        assert_eq!(advice.recommended_shards, 2);
        assert!(advice.shards[0].peak_utilisation >= 1.0);
    }

    #[test]
    fn levels_follow_the_adr_thresholds() {
        assert_eq!(Level::of(0.59), Level::Ok);
        assert_eq!(Level::of(0.6), Level::Warning);
        assert_eq!(Level::of(0.81), Level::Critical);
    }
}
