//! Opt-in autoscaling: the pure decision (hysteresis, Kinesis' bounds, cooldown) and the
//! UpdateShardCount call that carries it out.

use crate::error::{detail, AdvisorError};
use aws_sdk_kinesis::types::{ScalingType, StreamStatus};
use aws_sdk_kinesis::Client;
use std::collections::VecDeque;
use std::time::Duration;

/// UpdateShardCount may be called at most 10 times per stream in a rolling 24 hours.
pub const MAX_SCALINGS_PER_DAY: usize = 10;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// When to scale.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscaleConfig {
    /// Scale up when the stream's mean write utilisation stays above this.
    pub high: f64,
    /// Scale down when it stays below this.
    pub low: f64,
    /// The utilisation the new shard count aims at.
    pub target: f64,
    /// How long a threshold must be crossed before acting.
    pub sustain: Duration,
    /// The least time between two scalings.
    pub cooldown: Duration,
    /// Never fewer shards.
    pub min_shards: u32,
    /// Never more shards.
    pub max_shards: u32,
}

impl Default for AutoscaleConfig {
    /// Up above 0.8 (critical) and down below 0.3, each for 5 minutes, aiming at 0.6, at most
    /// every 15 minutes, 1 to 64 shards.
    fn default() -> Self {
        AutoscaleConfig {
            high: 0.8,
            low: 0.3,
            target: 0.6,
            sustain: Duration::from_secs(300),
            cooldown: Duration::from_secs(900),
            min_shards: 1,
            max_shards: 64,
        }
    }
}

/// One measurement of the stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Time on any monotonic clock (the same for every observation).
    pub at: Duration,
    /// Open shards.
    pub shards: u32,
    /// Stream-wide load ÷ (shards × per-shard limit): the mean write utilisation.
    pub mean_utilisation: f64,
    /// The busiest shard's write utilisation.
    pub max_utilisation: f64,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing, and why.
    Hold(String),
    /// UpdateShardCount from `from` to `to` (UNIFORM_SCALING), and why.
    Scale {
        /// Shards now.
        from: u32,
        /// Shards wanted.
        to: u32,
        /// Why.
        reason: String,
    },
}

/// The decision state: how long a threshold has been crossed, and the past scalings.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    config: AutoscaleConfig,
    above_since: Option<Duration>,
    below_since: Option<Duration>,
    scalings: VecDeque<Duration>,
}

impl Autoscaler {
    /// A scaler with no history.
    pub fn new(config: AutoscaleConfig) -> Self {
        Autoscaler {
            config,
            above_since: None,
            below_since: None,
            scalings: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AutoscaleConfig {
        &self.config
    }

    /// The decision for `obs`; a `Scale` is assumed carried out (it starts the cooldown).
    pub fn decide(&mut self, obs: Observation) -> Decision {
        let c = &self.config;
        let u = obs.mean_utilisation;
        if u > c.high {
            self.above_since.get_or_insert(obs.at);
            self.below_since = None;
        } else if u < c.low {
            self.below_since.get_or_insert(obs.at);
            self.above_since = None;
        } else {
            (self.above_since, self.below_since) = (None, None);
        }
        let wanted = self.wanted(obs);
        let (to, reason) = match wanted {
            Ok(w) => w,
            Err(hold) => return Decision::Hold(hold),
        };
        if let Some(hold) = self.limited(obs.at) {
            return Decision::Hold(hold);
        }
        self.scalings.push_back(obs.at);
        (self.above_since, self.below_since) = (None, None);
        Decision::Scale {
            from: obs.shards,
            to,
            reason,
        }
    }

    /// The shard count the sustained state asks for, or why none.
    fn wanted(&self, obs: Observation) -> Result<(u32, String), String> {
        let c = &self.config;
        let (n, u) = (obs.shards.max(1), obs.mean_utilisation);
        let sustained = |since: Option<Duration>| since.is_some_and(|s| obs.at - s >= c.sustain);
        let ideal = ((n as f64 * u / c.target) - 1e-9).ceil().max(1.0) as u32;
        if sustained(self.above_since) {
            let to = ideal.clamp(n + 1, 2 * n).min(c.max_shards);
            if to <= n {
                return Err(format!(
                    "utilisation {u:.2} > {:.2} but already at max_shards {}",
                    c.high, c.max_shards
                ));
            }
            let why = format!("mean utilisation {u:.2} above {:.2} for {:?}: {n} → {to} shards (ideal {ideal}, at most double per call)", c.high, c.sustain);
            return Ok((to, why));
        }
        if sustained(self.below_since) {
            let to = ideal
                .clamp(n.div_ceil(2), n.saturating_sub(1).max(1))
                .max(c.min_shards);
            if to >= n {
                return Err(format!(
                    "utilisation {u:.2} < {:.2} but already at min_shards {}",
                    c.low, c.min_shards
                ));
            }
            let why = format!("mean utilisation {u:.2} below {:.2} for {:?}: {n} → {to} shards (ideal {ideal}, at most halve per call)", c.low, c.sustain);
            return Ok((to, why));
        }
        if obs.max_utilisation > c.high && u <= c.high {
            return Err(format!(
                "the busiest shard is at {:.2} but the stream's mean is {u:.2}: a hot key or uneven hash ranges; more shards would not help, salt the key",
                obs.max_utilisation
            ));
        }
        match (self.above_since, self.below_since) {
            (Some(s), _) | (_, Some(s)) => Err(format!(
                "utilisation {u:.2} out of [{:.2}, {:.2}] for {:?} of {:?}",
                c.low,
                c.high,
                obs.at - s,
                c.sustain
            )),
            _ => Err(format!(
                "utilisation {u:.2} within [{:.2}, {:.2}]",
                c.low, c.high
            )),
        }
    }

    /// Why the cooldown or the daily limit forbids scaling now, if they do.
    fn limited(&mut self, now: Duration) -> Option<String> {
        while self
            .scalings
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= DAY)
        {
            self.scalings.pop_front();
        }
        if let Some(&last) = self.scalings.back() {
            let since = now.saturating_sub(last);
            if since < self.config.cooldown {
                return Some(format!(
                    "cooldown: last scaling {since:?} ago, {:?} required",
                    self.config.cooldown
                ));
            }
        }
        (self.scalings.len() >= MAX_SCALINGS_PER_DAY).then(|| {
            format!("{MAX_SCALINGS_PER_DAY} scalings in the last 24 h (the UpdateShardCount limit)")
        })
    }
}

/// Calls UpdateShardCount (UNIFORM_SCALING) and waits up to `wait` for the stream to be
/// ACTIVE again.
pub async fn scale(
    client: &Client,
    stream: &str,
    to: u32,
    wait: Duration,
) -> Result<(), AdvisorError> {
    let error = |detail: String| AdvisorError::Scale {
        stream: stream.to_owned(),
        target: to,
        detail,
    };
    client
        .update_shard_count()
        .stream_name(stream)
        .target_shard_count(to as i32)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .map_err(|e| error(detail(&e)))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let out = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| error(detail(&e)))?;
        let active = out
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &StreamStatus::Active);
        if active {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(error(format!("not ACTIVE again within {wait:?}")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(secs: u64, shards: u32, mean: f64) -> Observation {
        Observation {
            at: Duration::from_secs(secs),
            shards,
            mean_utilisation: mean,
            max_utilisation: mean,
        }
    }

    fn scaler() -> Autoscaler {
        Autoscaler::new(AutoscaleConfig {
            sustain: Duration::from_secs(60),
            cooldown: Duration::from_secs(600),
            ..AutoscaleConfig::default()
        })
    }

    #[test]
    fn scales_up_only_after_the_threshold_is_held_for_the_sustain_period() {
        let mut a = scaler();
        assert!(matches!(a.decide(obs(0, 4, 0.9)), Decision::Hold(_)));
        assert!(matches!(a.decide(obs(30, 4, 0.95)), Decision::Hold(_)));
        // A dip into the band resets the streak.
        assert!(matches!(a.decide(obs(45, 4, 0.7)), Decision::Hold(_)));
        assert!(matches!(a.decide(obs(90, 4, 0.9)), Decision::Hold(_)));
        // 0.9 × 4 / 0.6 = 6 shards.
        match a.decide(obs(150, 4, 0.9)) {
            Decision::Scale { from: 4, to: 6, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_call_at_most_doubles_or_halves_within_min_and_max() {
        let mut a = Autoscaler::new(AutoscaleConfig {
            sustain: Duration::ZERO,
            cooldown: Duration::ZERO,
            max_shards: 5,
            min_shards: 2,
            ..AutoscaleConfig::default()
        });
        // 3.0 → ideal 10 shards from 2: doubled to 4.
        assert!(matches!(
            a.decide(obs(0, 2, 3.0)),
            Decision::Scale { to: 4, .. }
        ));
        // From 4: double is 8, capped at max 5.
        assert!(matches!(
            a.decide(obs(1, 4, 3.0)),
            Decision::Scale { to: 5, .. }
        ));
        assert!(matches!(a.decide(obs(2, 5, 3.0)), Decision::Hold(r) if r.contains("max_shards")));
        // Idle 8 shards: ideal 1, halved to 4.
        assert!(matches!(
            a.decide(obs(3, 8, 0.01)),
            Decision::Scale { to: 4, .. }
        ));
        // From 3: half is 2 (rounded up) and min is 2.
        assert!(matches!(
            a.decide(obs(4, 3, 0.01)),
            Decision::Scale { to: 2, .. }
        ));
        assert!(matches!(a.decide(obs(5, 2, 0.01)), Decision::Hold(r) if r.contains("min_shards")));
    }

    #[test]
    fn the_cooldown_and_the_daily_limit_hold_further_scalings() {
        let mut a = scaler();
        a.decide(obs(0, 2, 0.9));
        assert!(matches!(a.decide(obs(60, 2, 0.9)), Decision::Scale { .. }));
        a.decide(obs(100, 3, 0.9));
        assert!(matches!(a.decide(obs(200, 3, 0.9)), Decision::Hold(r) if r.contains("cooldown")));
        assert!(matches!(a.decide(obs(660, 3, 0.9)), Decision::Scale { .. }));
        let mut b = Autoscaler::new(AutoscaleConfig {
            sustain: Duration::ZERO,
            cooldown: Duration::ZERO,
            max_shards: 1_000,
            ..AutoscaleConfig::default()
        });
        for i in 0..10 {
            assert!(matches!(
                b.decide(obs(i * 60, 2, 0.9)),
                Decision::Scale { .. }
            ));
        }
        assert!(matches!(b.decide(obs(700, 2, 0.9)), Decision::Hold(r) if r.contains("24 h")));
        // A day after the first, one more is allowed.
        assert!(matches!(
            b.decide(obs(24 * 3600, 2, 0.9)),
            Decision::Scale { .. }
        ));
    }

    #[test]
    fn a_hot_shard_on_a_quiet_stream_is_not_scaled() {
        let mut a = scaler();
        let hot = Observation {
            max_utilisation: 1.2,
            ..obs(0, 4, 0.4)
        };
        assert!(matches!(a.decide(hot), Decision::Hold(r) if r.contains("hot key")));
    }
}
